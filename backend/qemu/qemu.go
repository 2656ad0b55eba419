// Package qemu runs machines under QEMU from nixpkgs-style start scripts.
//
// Start follows the NixOS driver's contract: it runs the start script in
// the machine's state directory with TMPDIR, USE_TMPDIR and SHARED_DIR in
// its environment and the driver's own flags appended (QMP socket, the
// shell on a virtio console, the serial port on stdio, -no-reboot,
// -nographic), connects QMP, and returns while the guest boots.
// Instance.Shell waits for the guest's backdoor banner.
//
// One thing differs from the NixOS driver: the guest shell channel is a
// socketpair made before the spawn, whose QEMU end the script inherits
// (fd 3) and whose send buffer is raised to 16 MiB, because QEMU's
// virtconsole drops guest output its socket cannot take at once.
//
// The accelerator is chosen once per Backend: KVM only where a stock
// kernel really boots under it, TCG otherwise (see WithAccel).
package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/cachedir"
	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// QEMUBinary is the program the start scripts run; Start checks it is
// installed before spawning anything.
const QEMUBinary = "qemu-system-x86_64"

// ErrNoQEMU is wrapped by errors reporting that QEMU is not installed. It
// wraps hosttools.ErrMissing and names the Debian package.
var ErrNoQEMU = hosttools.MissingError(QEMUBinary)

// Environment variables that override options, so a user can change a
// run without changing code.
const (
	// EnvAccel overrides WithAccel: auto, kvm or tcg.
	EnvAccel = "VMDRIVER_ACCEL"
	// EnvTimeoutScale overrides WithTimeoutScale: a positive factor.
	EnvTimeoutScale = "VMDRIVER_TIMEOUT_SCALE"
)

// Default boot timeouts, before scaling.
const (
	bootTimeoutTCG = 5 * time.Minute
	bootTimeoutKVM = 2 * time.Minute

	microvmBootTimeoutTCG = time.Minute
	microvmBootTimeoutKVM = 30 * time.Second
)

// maxSocketPath is the longest unix socket path the kernel accepts
// (sun_path is 108 bytes including the terminating NUL).
const maxSocketPath = 107

// Option configures a Backend.
type Option func(*Backend)

// WithAccel chooses the accelerator: AccelAuto (the default: KVM only if
// a stock kernel boots under it here), AccelKVM or AccelTCG. The
// environment variable VMDRIVER_ACCEL overrides it.
func WithAccel(accel string) Option {
	return func(b *Backend) { b.accel = accel }
}

// WithTimeoutScale multiplies the default timeouts (for slow or loaded
// hosts). The environment variable VMDRIVER_TIMEOUT_SCALE overrides it.
func WithTimeoutScale(f float64) Option {
	return func(b *Backend) { b.scale = f }
}

// WithExtraArgs appends arguments to every QEMU command line, after the
// driver's own.
func WithExtraArgs(args ...string) Option {
	return func(b *Backend) { b.extra = append(b.extra, args...) }
}

// WithLogf receives backend-wide messages (the accelerator choice). When
// unset they go to the first started machine's Spec.Logf.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(b *Backend) { b.logf = logf }
}

// Backend starts QEMU machines. It is safe for concurrent use.
type Backend struct {
	accel string
	scale float64
	extra []string
	logf  func(format string, args ...any)
	probe hostProbe
	// microvm boots machines under -M microvm from their descriptions
	// (NewMicrovm) instead of running their start scripts.
	microvm bool

	// configErr reports a bad option or environment value at Start.
	configErr error

	decideOnce sync.Once
	choice     accelChoice
	choiceErr  error
	logOnce    sync.Once
	bufLogOnce sync.Once // the shell channel's buffer size, logged once
}

var _ backend.Backend = (*Backend)(nil)

// New returns a QEMU backend.
func New(opts ...Option) *Backend {
	return newBackend(os.Getenv, realProbe, opts...)
}

func newBackend(getenv func(string) string, probe hostProbe, opts ...Option) *Backend {
	b := &Backend{accel: AccelAuto, scale: 1, probe: probe}
	for _, o := range opts {
		o(b)
	}
	if v := getenv(EnvAccel); v != "" {
		b.accel = v
	}
	if v := getenv(EnvTimeoutScale); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			b.configErr = fmt.Errorf("%s=%q is not a positive number", EnvTimeoutScale, v)
		} else {
			b.scale = f
		}
	}
	if b.scale <= 0 && b.configErr == nil {
		b.configErr = fmt.Errorf("timeout scale %v is not positive", b.scale)
		b.scale = 1
	}
	return b
}

// Name returns "qemu", or "microvm" for NewMicrovm's backend.
func (b *Backend) Name() string {
	if b.microvm {
		return "microvm"
	}
	return "qemu"
}

// Hypervisor returns "QEMU", or "QEMU microvm".
func (b *Backend) Hypervisor() string {
	if b.microvm {
		return "QEMU microvm"
	}
	return "QEMU"
}

// BootTimeout is 5 minutes under TCG and 2 under KVM, times the timeout
// scale; under microvm 1 minute and 30 seconds, because its boots take
// seconds and a hung one (see microvmHangHint) never recovers.
func (b *Backend) BootTimeout() time.Duration {
	c, _ := b.decide()
	base := bootTimeoutTCG
	if c.KVM {
		base = bootTimeoutKVM
	}
	if b.microvm {
		base = microvmBootTimeoutTCG
		if c.KVM {
			base = microvmBootTimeoutKVM
		}
	}
	return b.Scale(base)
}

// Scale multiplies d by the backend's timeout scale.
func (b *Backend) Scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * b.scale)
}

// bootRAM plans the RAM of a machine that boots: a shared file when the
// start script's memory size can be read, so snapshots need not stream it.
func (b *Backend) bootRAM(spec backend.Spec) ramPlan {
	env := append([]string{"QEMU_OPTS=" + os.Getenv("QEMU_OPTS")}, spec.Env...)
	mib, why := scriptMemoryMiB(spec.StartScript, env)
	if b.microvm {
		mib, why = 0, "the machine description cannot be read"
		if d, err := backend.LoadDescription(backend.DescriptionPath(spec.StartScript)); err == nil {
			mib = int64(d.MemoryMiB)
		}
	}
	if mib == 0 {
		if spec.Logf != nil {
			spec.Logf("qemu: guest RAM is anonymous, so snapshots carry it in their stream: %s", why)
		}
		return ramPlan{}
	}
	f, err := liveRAM(mib)
	if err != nil {
		if spec.Logf != nil {
			spec.Logf("qemu: guest RAM is anonymous, so snapshots carry it in their stream: %v", err)
		}
		return ramPlan{}
	}
	return ramPlan{mib: mib, live: f}
}

// AccelArgs returns the QEMU arguments this backend appends to a start
// script's command line to choose the accelerator: nothing where the
// script's own accel=kvm:tcg is right, `-machine accel=tcg` where /dev/kvm
// exists but cannot boot a stock kernel (a paravirtualised host's KVM).
// Programs that run start scripts themselves (tests, benchmarks) pass
// them too; the reason for the choice comes with them, for a log.
func (b *Backend) AccelArgs() (args []string, reason string, err error) {
	c, err := b.decide()
	if err != nil {
		return nil, "", err
	}
	return slices.Clone(c.Args), c.String(), nil
}

// decide detects the accelerator once.
func (b *Backend) decide() (accelChoice, error) {
	b.decideOnce.Do(func() {
		b.choice, b.choiceErr = detectAccel(b.accel, b.probe)
	})
	return b.choice, b.choiceErr
}

// VLANKinds says that QEMU's VLAN NICs join VDE switches (the NixOS
// driver's way, the default) or take TAP devices the driver opens.
func (b *Backend) VLANKinds() []string { return []string{backend.VDE, backend.TAP} }

// Start validates spec, spawns its start script and connects QMP. It
// returns while the guest boots; Instance.Shell waits for the guest. The
// instance is an *Instance, which also offers the optional capabilities.
// ctx bounds only the start itself. On error nothing it started is left
// running.
func (b *Backend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	inst, err := b.start(ctx, spec, false, b.bootRAM(spec))
	if err != nil {
		return nil, err
	}
	return inst, nil
}

// start is Start with the concrete type, for tests and callers that want
// it.
// With restoring, QEMU waits for a migration stream (-incoming defer) and
// the guest shell is taken as already running (no banner will come).
func (b *Backend) start(ctx context.Context, spec backend.Spec, restoring bool, ram ramPlan) (inst *Instance, err error) {
	defer func() {
		if err != nil && ram.live != nil {
			ram.live.Close()
		}
	}()
	if b.configErr != nil {
		return nil, b.configErr
	}
	choice, err := b.decide()
	if err != nil {
		return nil, err
	}
	logf := spec.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	backendLogf := logf
	if b.logf != nil {
		backendLogf = b.logf
	}
	b.logOnce.Do(func() { backendLogf("%s", choice) })
	if err := validate(spec); err != nil {
		return nil, err
	}
	stateDir, err := filepath.Abs(spec.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	env, err := buildEnv(os.Environ(), stateDir, spec.SharedDir, spec.Env)
	if err != nil {
		return nil, err
	}
	// TAP devices follow the shell (fd 3) and the RAM file (fd 4).
	firstTAP := shellChildFD + 1
	if ram.live != nil {
		firstTAP = ramChildFD + 1
	}
	desc, err := machineDescription(spec, b.microvm)
	if err != nil {
		return nil, err
	}
	taps, err := openTAPs(spec, desc, b.microvm, firstTAP)
	if err != nil {
		return nil, err
	}
	// QEMU has its own copies once started; ours go either way.
	defer taps.close()
	if len(taps.names) > 0 {
		logf("qemu: VLAN NICs on TAP devices %s", strings.Join(taps.names, ", "))
	}
	env = append(env, taps.env...)
	script := spec.StartScript
	var machineArgs []string
	if b.microvm {
		if script, machineArgs, err = microvmCommand(ctx, spec, desc, stateDir, !choice.KVM, taps.fds); err != nil {
			return nil, err
		}
	}
	args := driverArgs(argvOptions{
		Microvm:     b.microvm,
		StateDir:    stateDir,
		ShellFD:     shellChildFD,
		AllowReboot: spec.AllowReboot,
		Display:     hasDisplay(os.Getenv),
		Accel:       choice.Args,
		Extra:       append(ram.args(), b.extra...),
		Incoming:    restoring,
	})
	return launch(ctx, launchConfig{
		name:       spec.Name,
		script:     script,
		stateDir:   stateDir,
		args:       append(machineArgs, args...),
		env:        env,
		console:    spec.Console,
		logf:       logf,
		qmpTimeout: b.Scale(30 * time.Second),
		restored:   restoring,
		ram:        ram,
		taps:       taps.files,
		microvm:    b.microvm,
		logShellBuf: func(msg string) {
			b.bufLogOnce.Do(func() { backendLogf("qemu: %s", msg) })
		},
	})
}

// validate checks what can be checked before anything is spawned, so the
// common mistakes get clear messages rather than a dead QEMU.
func validate(spec backend.Spec) error {
	if spec.StartScript == "" {
		return errors.New("no start script")
	}
	fi, err := os.Stat(spec.StartScript)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("start script %s does not exist: %w", spec.StartScript, err)
	case err != nil:
		return fmt.Errorf("start script %s: %w", spec.StartScript, err)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("start script %s is not a regular file", spec.StartScript)
	case fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("start script %s is not executable (chmod +x %s)", spec.StartScript, spec.StartScript)
	}
	if _, err := hosttools.Path(QEMUBinary); err != nil {
		return ErrNoQEMU
	}
	if spec.StateDir == "" {
		return errors.New("no state directory")
	}
	fi, err = os.Stat(spec.StateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("state directory %s is not a directory", spec.StateDir)
	}
	abs, err := filepath.Abs(spec.StateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	if p := filepath.Join(abs, qmpSocket); len(p) > maxSocketPath {
		return fmt.Errorf("socket path %s is longer than %d bytes: use a shorter state directory (os.MkdirTemp(\"\", \"vmd\"))",
			p, maxSocketPath)
	}
	return nil
}

// warmFormat changes whenever the arguments driverArgs adds, or what a
// snapshot holds, change in a way the rest of the warm key does not show.
const warmFormat = "qemu-warm-2" // 2: guest RAM saved as a file

var _ backend.WarmKeyer = (*Backend)(nil)

// WarmKey names what of the QEMU backend decides a warm-started machine:
// the QEMU binary (path, size, modification time, inode), the
// accelerator and display choice, the reboot policy and the format of the
// arguments the driver adds.
func (b *Backend) WarmKey(spec backend.Spec) (string, error) {
	bin, err := hosttools.Path(QEMUBinary)
	if err != nil {
		return "", ErrNoQEMU
	}
	id, err := cachedir.FileIdentity(bin)
	if err != nil {
		return "", err
	}
	accel, _, err := b.AccelArgs()
	if err != nil {
		return "", err
	}
	args := driverArgs(argvOptions{Microvm: b.microvm, StateDir: "/state", ShellFD: 3, AllowReboot: spec.AllowReboot, Display: hasDisplay(os.Getenv), Accel: accel})
	return fmt.Sprintf("%s\nqemu %s\nargs %q\n", warmFormat, id, args), nil
}
