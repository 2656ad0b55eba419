// Package cloudhypervisor is a backend that runs each machine in its own
// cloud-hypervisor process, configured over its REST API on a Unix socket
// (`cloud-hypervisor --api-socket path=PATH`, then PUT vm.create and
// PUT vm.boot).
//
// The machine comes from its description (backend.Description, written by
// `vmdriver image build` beside run-NAME-vm): the kernel is booted
// directly, every disk gets a qcow2 copy-on-write layer of the machine's
// own, and every VLAN NIC a TAP device on the run's TAP networks
// (backend.Spec.TAPs; the process runs inside their network namespace).
// cloud-hypervisor has no user-mode network, so VLAN 0 NICs are skipped.
// The guest's backdoor shell runs on the virtio console (hvc0), which
// cloud-hypervisor serves on a Unix socket; the serial console (ttyS0) is
// the process's stdout and becomes the console log.
//
// The package is built against cloud-hypervisor's published OpenAPI
// description and tested with a fake VMM; cloud-hypervisor needs KVM.
package cloudhypervisor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// errUnsupported is wrapped by the errors of capabilities
// cloud-hypervisor does not have.
var errUnsupported = backend.Unsupported("unsupported by cloud-hypervisor")

// Option configures a Backend.
type Option func(*Backend)

// WithBinary sets the cloud-hypervisor executable. cloud-hypervisor is not
// a Debian package, so it is not in internal/hosttools' table: the user
// brings it, and by default it is looked up as "cloud-hypervisor" on PATH
// when a machine starts.
func WithBinary(path string) Option { return func(b *Backend) { b.binary = path } }

// WithLogf sets where the backend's own diagnostics go.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(b *Backend) { b.logf = logf }
}

// WithTimeouts sets how long to wait for the API socket and the console
// socket to appear, and for API calls (default 10s each).
func WithTimeouts(d time.Duration) Option { return func(b *Backend) { b.wait = d } }

// Backend starts machines in cloud-hypervisor. It implements
// backend.Backend and backend.Restorer.
type Backend struct {
	binary string
	logf   func(format string, args ...any)
	wait   time.Duration
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Restorer  = (*Backend)(nil)
	_ backend.VLANKinds = (*Backend)(nil)
	_ backend.DirSharer = (*Backend)(nil)
)

// New returns a cloud-hypervisor backend.
func New(opts ...Option) *Backend {
	b := &Backend{logf: func(string, ...any) {}, wait: 10 * time.Second}
	for _, o := range opts {
		o(b)
	}
	return b
}

// VLANKinds says that cloud-hypervisor's VLAN NICs are TAP devices only.
func (b *Backend) VLANKinds() []string { return []string{backend.TAP} }

// SharesDir is false: a shared directory would need virtiofsd, which
// this backend does not run, so the machine copies files through the
// shell.
func (b *Backend) SharesDir() bool { return false }

// Name returns "cloud-hypervisor".
func (b *Backend) Name() string { return "cloud-hypervisor" }

// Hypervisor returns "cloud-hypervisor".
func (b *Backend) Hypervisor() string { return "cloud-hypervisor" }

// BootTimeout is generous for a directly booted kernel under KVM.
func (b *Backend) BootTimeout() time.Duration { return 2 * time.Minute }

// Start loads the machine's description, gives its disks copy-on-write
// layers in spec.StateDir, starts cloud-hypervisor and creates and boots
// the VM. On error nothing is left running.
func (b *Backend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	desc, err := backend.LoadDescription(backend.DescriptionPath(spec.StartScript))
	if err != nil {
		return nil, err
	}
	disks, err := b.overlays(ctx, spec.StateDir, desc)
	if err != nil {
		return nil, err
	}
	cmdline, err := desc.CmdlineWithNet()
	if err != nil {
		return nil, err
	}
	taps, err := backend.CreateNamedTAPs(spec, desc, b.Name())
	if err != nil {
		return nil, err
	}
	cfg := b.vmConfig(spec, desc, cmdline, disks, taps)
	i, err := b.launch(ctx, spec, desc, disks, taps)
	if err != nil {
		return nil, err
	}
	if err := i.api(ctx, "vm.create", cfg); err != nil {
		i.Close()
		return nil, err
	}
	if err := i.api(ctx, "vm.boot", nil); err != nil {
		i.Close()
		return nil, err
	}
	if err := i.connectConsole(ctx, false); err != nil {
		i.Close()
		return nil, err
	}
	return i, nil
}

// overlays gives every disk of desc a qcow2 layer of its own in dir.
func (b *Backend) overlays(ctx context.Context, dir string, desc *backend.Description) ([]string, error) {
	var paths []string
	for k, d := range desc.Disks {
		p := filepath.Join(dir, fmt.Sprintf("disk%d.qcow2", k))
		if err := overlay(ctx, desc.Path(d.Path), d.Format, p); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// vmConfig is the body of vm.create (the spec's VmConfig) for desc.
// cmdline is the description's, with its network table inline
// (cloud-hypervisor has no fw_cfg: Description.CmdlineWithNet).
func (b *Backend) vmConfig(spec backend.Spec, desc *backend.Description, cmdline string, disks []string, taps *backend.NamedTAPs) map[string]any {
	payload := map[string]any{
		"kernel":  desc.Path(desc.Kernel),
		"cmdline": cmdline + " console=ttyS0",
	}
	if desc.Initrd != "" {
		payload["initramfs"] = desc.Path(desc.Initrd)
	}
	cfg := map[string]any{
		"payload": payload,
		"cpus":    map[string]any{"boot_vcpus": desc.CPUs, "max_vcpus": desc.CPUs},
		"memory":  map[string]any{"size": int64(desc.MemoryMiB) << 20},
		"console": map[string]any{"mode": "Socket", "socket": consoleSocket(spec.StateDir)},
		"serial":  map[string]any{"mode": "Tty"},
	}
	var ds []any
	for _, p := range disks {
		ds = append(ds, map[string]any{"path": p, "image_type": "Qcow2"})
	}
	if ds != nil {
		cfg["disks"] = ds
	}
	// No user-mode network in cloud-hypervisor: only VLAN NICs.
	var nets []any
	for _, t := range taps.List() {
		nets = append(nets, map[string]any{"tap": t.Device, "mac": t.NIC.MAC})
	}
	if nets != nil {
		cfg["net"] = nets
	}
	return cfg
}

func apiSocket(stateDir string) string     { return filepath.Join(stateDir, "ch.sock") }
func consoleSocket(stateDir string) string { return filepath.Join(stateDir, "console.sock") }

// ensureDir makes dir with mode 0700 if it is missing.
func ensureDir(dir string) error { return os.MkdirAll(dir, 0o700) }
