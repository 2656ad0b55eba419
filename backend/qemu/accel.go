package qemu

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Accelerator names accepted by WithAccel and VMDRIVER_ACCEL.
const (
	AccelAuto = "auto"
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(KVMIO=0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

// kvmStableAPI is the only API version stock KVM has ever reported.
const kvmStableAPI = 12

// hostProbe gives detectAccel its view of the host, so the decision can be
// tested without a /dev/kvm.
type hostProbe struct {
	// kvmAPIVersion opens /dev/kvm read-write and asks KVM_GET_API_VERSION.
	kvmAPIVersion func() (int, error)
	// cpuinfo returns the contents of /proc/cpuinfo.
	cpuinfo func() ([]byte, error)
}

// realProbe looks at this host.
var realProbe = hostProbe{
	kvmAPIVersion: func() (int, error) {
		f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		// A raw syscall on the fd: no module beyond the standard library
		// is allowed here, and this is the only ioctl needed.
		v, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmGetAPIVersion, 0)
		if errno != 0 {
			return 0, fmt.Errorf("ioctl KVM_GET_API_VERSION: %w", errno)
		}
		return int(v), nil
	},
	cpuinfo: func() ([]byte, error) { return os.ReadFile("/proc/cpuinfo") },
}

// accelChoice is the outcome of detectAccel.
type accelChoice struct {
	// KVM is true when the guest runs under hardware virtualisation.
	KVM bool
	// Args are appended to QEMU's command line.
	Args []string
	// Reason says, for the log, why this accelerator was chosen.
	Reason string
}

// String renders the choice as one log line.
func (c accelChoice) String() string {
	name := "TCG (software emulation)"
	if c.KVM {
		name = "KVM"
	}
	return "qemu accelerator: " + name + ": " + c.Reason
}

// detectAccel decides between KVM and TCG. pref is AccelAuto, AccelKVM or
// AccelTCG. Under auto, KVM is used only when /dev/kvm opens read-write,
// answers API version 12, and the CPU flags show vmx or svm: a
// paravirtual KVM (PVM) has the device but not the flags, and stock guest
// kernels do not boot on it. Otherwise `-machine accel=tcg` is appended;
// QEMU merges -machine options, so this overrides a start script's
// accel=kvm:tcg.
func detectAccel(pref string, p hostProbe) (accelChoice, error) {
	tcg := []string{"-machine", "accel=tcg"}
	switch pref {
	case AccelTCG:
		return accelChoice{Args: tcg, Reason: "requested"}, nil
	case AccelKVM:
		c := accelChoice{KVM: true, Args: []string{"-machine", "accel=kvm"}, Reason: "requested"}
		if why := kvmUnusable(p); why != "" {
			c.Reason += " although " + why + " (QEMU may fail to start)"
		}
		return c, nil
	case AccelAuto, "":
		if why := kvmUnusable(p); why != "" {
			return accelChoice{Args: tcg, Reason: why}, nil
		}
		// The start script's own -machine accel=kvm:tcg stays in charge.
		return accelChoice{KVM: true, Reason: "/dev/kvm answers API version 12 and the CPU has vmx/svm"}, nil
	default:
		return accelChoice{}, fmt.Errorf("unknown QEMU accelerator %q: use %q, %q or %q (WithAccel or VMDRIVER_ACCEL)",
			pref, AccelAuto, AccelKVM, AccelTCG)
	}
}

// kvmUnusable returns why stock kernels cannot boot under KVM here, or ""
// when they can.
func kvmUnusable(p hostProbe) string {
	v, err := p.kvmAPIVersion()
	if err != nil {
		return fmt.Sprintf("/dev/kvm is not usable (%v)", err)
	}
	if v != kvmStableAPI {
		return fmt.Sprintf("/dev/kvm reports API version %d, not %d", v, kvmStableAPI)
	}
	info, err := p.cpuinfo()
	if err != nil {
		return fmt.Sprintf("cannot read the CPU flags (%v)", err)
	}
	if !hasVirtFlag(info) {
		return "/dev/kvm exists but the CPU flags lack vmx/svm (paravirtual KVM cannot boot stock kernels)"
	}
	return ""
}

// hasVirtFlag reports whether any "flags" line of /proc/cpuinfo lists vmx
// or svm.
func hasVirtFlag(cpuinfo []byte) bool {
	for line := range bytes.Lines(cpuinfo) {
		key, val, ok := strings.Cut(string(line), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
