package qemu

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// NewMicrovm returns a QEMU backend that boots machines under QEMU's
// microvm machine type (-M microvm: no PCI, no firmware, virtio-mmio
// devices) instead of running their start scripts. It builds the QEMU
// command line from the machine description `vmdriver image build`
// writes beside each start script (backend.DescriptionPath). Everything
// after the spawn (QMP, the guest shell, snapshots, links) is the QEMU
// backend's.
func NewMicrovm(opts ...Option) *Backend {
	b := New(opts...)
	b.microvm = true
	return b
}

// microvmMachine is the -machine value: no option ROMs (there is no
// firmware to run them), the ISA serial port for the kernel console, and
// the RTC so the guest has a wall clock.
const microvmMachine = "microvm,x-option-roms=off,isa-serial=on,rtc=on"

// microvmConfig is everything microvmArgs needs; it holds no host state
// so the command line can be tested as a table.
type microvmConfig struct {
	Desc *backend.Description
	// StateDir is the machine's state directory (absolute): the disk
	// overlays live there.
	StateDir string
	// SharedDir is the host directory shared as 9p tag "shared", or "".
	SharedDir string
	// Getenv reads the spec's environment over the driver's:
	// QEMU_VDE_SOCKET_<n>, QEMU_NET_OPTS, QEMU_KERNEL_PARAMS and
	// QEMU_OPTS.
	Getenv func(string) string
	// TSCkHz, when positive, is passed as tsc_early_khz= (see
	// hostTSCkHz).
	TSCkHz int
	// TAPFDs maps a VLAN NIC's index to the TAP device QEMU inherits
	// for it (tapPlan); NICs not in it join their VLAN's VDE switch.
	TAPFDs map[int]int
}

// microvmArgs returns QEMU's machine arguments for a description, before
// the driver's own (driverArgs), and the disk overlays to create first
// (overlay path to backing image and format). Like the start scripts, the
// user-mode NIC is restricted (restrict=on) unless the image was built
// with --net-outbound (vmdriver.outbound=1 on the kernel command line).
func microvmArgs(c microvmConfig) (args []string, overlays [][3]string, err error) {
	d := c.Desc
	args = []string{
		"-name", d.Name,
		"-machine", microvmMachine,
		"-m", fmt.Sprint(d.MemoryMiB),
		"-smp", fmt.Sprint(d.CPUs),
		"-nodefaults", "-no-user-config",
		"-device", "virtio-rng-device",
	}
	outbound := strings.Contains(" "+d.Cmdline+" ", " vmdriver.outbound=1 ")
	for i, nic := range d.NICs {
		id := fmt.Sprintf("net%d", i)
		if nic.VLAN == 0 {
			netdev := "user,id=" + id
			if !outbound {
				netdev += ",restrict=on"
			}
			if o := c.Getenv("QEMU_NET_OPTS"); o != "" {
				netdev += "," + o
			}
			args = append(args, "-netdev", netdev)
		} else if fd, ok := c.TAPFDs[i]; ok {
			args = append(args, "-netdev", fmt.Sprintf("tap,id=%s,fd=%d", id, fd))
		} else {
			env := fmt.Sprintf("QEMU_VDE_SOCKET_%d", nic.VLAN)
			sock := c.Getenv(env)
			if sock == "" {
				return nil, nil, fmt.Errorf("%s is not set, but %s has a NIC on VLAN %d: start the driver with --vlans including %d", env, d.Name, nic.VLAN, nic.VLAN)
			}
			args = append(args, "-netdev", "vde,id="+id+",sock="+qemuEscape(sock))
		}
		args = append(args, "-device", "virtio-net-device,netdev="+id+",mac="+nic.MAC)
	}
	if d.Hosts != "" {
		args = append(args, "-fw_cfg", "name=opt/vmdriver/hosts,string="+qemuEscape(d.Hosts))
	}
	if d.Net != "" {
		args = append(args, "-fw_cfg", "name=opt/vmdriver/net,string="+qemuEscape(d.Net))
	}
	if d.Shared && c.SharedDir != "" {
		args = append(args,
			"-fsdev", "local,id=shared,path="+qemuEscape(c.SharedDir)+",security_model=none",
			"-device", "virtio-9p-device,fsdev=shared,mount_tag=shared")
	}
	for i, disk := range d.Disks {
		id := "root"
		if i > 0 {
			id = fmt.Sprintf("disk%d", i)
		}
		overlay := filepath.Join(c.StateDir, fmt.Sprintf("%s-%s.qcow2", d.Name, id))
		overlays = append(overlays, [3]string{overlay, d.Path(disk.Path), disk.Format})
		args = append(args,
			"-drive", "file="+qemuEscape(overlay)+",if=none,id="+id+",format=qcow2",
			"-device", "virtio-blk-device,drive="+id)
	}
	cmdline := microvmCmdline(d.Cmdline)
	if c.TSCkHz > 0 {
		cmdline += fmt.Sprintf(" tsc_early_khz=%d", c.TSCkHz)
	}
	if p := c.Getenv("QEMU_KERNEL_PARAMS"); p != "" {
		cmdline += " " + p
	}
	args = append(args, "-kernel", d.Path(d.Kernel))
	if d.Initrd != "" {
		args = append(args, "-initrd", d.Path(d.Initrd))
	}
	args = append(args, "-append", cmdline)
	// Like the start scripts' unquoted $QEMU_OPTS: split at blanks.
	return append(args, strings.Fields(c.Getenv("QEMU_OPTS"))...), overlays, nil
}

// specGetenv looks a variable up in the spec's environment (last entry
// wins), then in the driver's.
func specGetenv(env []string) func(string) string {
	return func(key string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
				return v
			}
		}
		return os.Getenv(key)
	}
}

// microvmCommand takes the spec's description, creates its disk overlays
// (kept when they exist: a restore makes its own) and returns the QEMU
// binary and its machine arguments.
func microvmCommand(ctx context.Context, spec backend.Spec, desc *backend.Description, stateDir string, tcg bool, tapFDs map[int]int) (string, []string, error) {
	bin, err := hosttools.Path(QEMUBinary)
	if err != nil {
		return "", nil, ErrNoQEMU
	}
	// Like the start scripts: SHARED_DIR or STATE/xchg, created.
	shared := spec.SharedDir
	if shared == "" {
		shared = filepath.Join(stateDir, "xchg")
	}
	if desc.Shared {
		if err := os.MkdirAll(shared, 0o700); err != nil {
			return "", nil, fmt.Errorf("shared directory: %w", err)
		}
	}
	cfg := microvmConfig{Desc: desc, StateDir: stateDir, SharedDir: shared, Getenv: specGetenv(spec.Env), TAPFDs: tapFDs}
	if tcg {
		cfg.TSCkHz = hostTSCkHz()
	}
	args, overlays, err := microvmArgs(cfg)
	if err != nil {
		return "", nil, err
	}
	for _, o := range overlays {
		if _, err := os.Stat(o[0]); err == nil {
			continue
		}
		if err := runTool(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-b", o[1], "-F", o[2], o[0]); err != nil {
			return "", nil, fmt.Errorf("disk overlay %s: %w", o[0], err)
		}
	}
	return bin, args, nil
}

// microvmCmdline drops acpi=noirq from a kernel command line: microvm
// describes its virtio-mmio devices' interrupts in ACPI only, and without
// ACPI IRQ routing every device fails to probe ("virtio-mmio LNRO0005:03:
// error -ENXIO: IRQ index 0 not found"), so the guest never sees
// /dev/hvc0.
func microvmCmdline(cmdline string) string {
	fields := strings.Fields(cmdline)
	out := fields[:0]
	for _, f := range fields {
		if f != "acpi=noirq" {
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

// microvmHangMarker is the console line of microvm's known boot hang: the
// kernel's TSC calibration against the PIT fails under TCG (the vCPU is
// descheduled in the measuring window), microvm has no HPET or ACPI PM
// timer to fall back to, and the kernel stops there for good.
const microvmHangMarker = "Marking TSC unstable due to could not calculate TSC khz"

// microvmHangHint explains a boot that timed out after microvmHangMarker.
const microvmHangHint = "the guest kernel hung after its TSC calibration against the PIT failed (\"" + microvmHangMarker +
	"\"): -M microvm has no HPET or ACPI PM timer to fall back to; a TCG boot on a loaded host hits this now and then, start the machine again or use --backend qemu"

// hostTSCkHz returns the host's TSC frequency in kHz, or 0 when it is not
// known. Under TCG the guest reads the host's TSC, so telling the guest
// kernel its frequency (tsc_early_khz=) spares it the calibration against
// the PIT that fails when the vCPU is descheduled, after which it hangs
// on microvm (microvmHangMarker). The host's /proc/cpuinfo "cpu MHz" is
// the TSC frequency only with the tsc_known_freq and constant_tsc flags.
func hostTSCkHz() int {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseCPUInfoTSCkHz(f)
}

// parseCPUInfoTSCkHz reads the first processor's "cpu MHz" and flags.
func parseCPUInfoTSCkHz(r io.Reader) int {
	var mhz float64
	var known, constant, seenMHz, seenFlags bool
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() && !(seenMHz && seenFlags) {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "cpu MHz":
			mhz, _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			seenMHz = true
		case "flags":
			fl := strings.Fields(v)
			known, constant = slices.Contains(fl, "tsc_known_freq"), slices.Contains(fl, "constant_tsc")
			seenFlags = true
		}
	}
	if !known || !constant || mhz < 100 {
		return 0
	}
	return int(mhz * 1000)
}
