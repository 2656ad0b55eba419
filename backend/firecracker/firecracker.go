// Package firecracker is a backend.Backend that boots machines on
// Firecracker (https://firecracker-microvm.github.io/).
//
// It is built against Firecracker's published API description
// (firecracker.yaml, API 1.17.0-dev, revision 81b38b9) and tested with a
// fake VMM that serves that API; it has not been run against the real
// hypervisor here, which needs KVM.
//
// One Firecracker process runs per machine, started with
// `--api-sock STATEDIR/fc.sock` in a process group of its own. The
// backend configures it from the machine description that `vmdriver
// image build` writes beside the start script (backend.Description):
// PUT /boot-source, /machine-config, /drives/{id} (one private copy of
// each raw disk in the state directory: Firecracker takes raw files
// only, and a qcow2 disk is refused), /network-interfaces/{id} for VLAN
// NICs (TAP devices named by the WithTAP function), /vsock, then PUT
// /actions InstanceStart.
//
// The guest's root shell (the backdoor) is reached over Firecracker's
// hybrid vsock: the backend connects to the vsock's Unix socket, sends
// "CONNECT <BackdoorPort>\n" and reads "OK <n>\n"; the stream that
// follows is the guest's shell, spoken exactly as on QEMU's virtconsole:
// the guest first prints backdoor.Banner, then runs a root bash on the
// stream. The guest must therefore serve vsock port BackdoorPort like
// this (as NixOS's backdoor.service does on hvc0):
//
//	socat VSOCK-LISTEN:1025,reuseaddr,fork \
//	    EXEC:'sh -c "echo Spawning backdoor root shell...; exec bash --norc"',stderr
//
// The project's images do not do this yet.
//
// The serial console (ttyS0) is the process's stdout. Firecracker has no
// user-mode network, no display, no keyboard and no monitor: VLAN 0 NICs
// are skipped, and port forwarding, screenshots, keys and monitor
// commands are not offered (backend.ErrUnsupported).
//
// What a description or Spec asks for that Firecracker cannot give is
// left out: Firecracker cannot reboot a guest (reboot=k makes a guest
// reboot end the process, whatever Spec.AllowReboot says), has no shared
// directory (Description.Shared and Spec.SharedDir are ignored) and no
// fw_cfg (Description.Hosts and Net are not handed to the guest yet).
//
// Snapshots pause the VM (PATCH /vm), save its state and memory (PUT
// /snapshot/create) with frozen copies of its disks, and resume it.
// Restore starts a fresh process and loads the snapshot (PUT
// /snapshot/load) before any configuration, with the vsock and TAP
// devices overridden for the new machine. Firecracker records each
// drive's path in the snapshot and reopens it while loading; the drives
// are therefore given as paths relative to the process's working
// directory, the state directory ("disk0.raw"), so that a restored
// process opens its own copies and a snapshot (or a warm entry, which is
// moved after it is saved) needs nothing outside its directory.
package firecracker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/proc"
	"github.com/vmdriver/vmdriver/internal/sparsecopy"
	"github.com/vmdriver/vmdriver/internal/tail"
)

// BackdoorPort is the vsock port on which the guest serves its root shell.
const BackdoorPort = 1025

// guestCID is the guest's vsock context id (each machine has its own
// hybrid vsock socket, so all can use the same).
const guestCID = 3

// binaryName is the program looked up in PATH without WithBinary.
const binaryName = "firecracker"

// consoleArgs are appended to the description's kernel command line:
// the serial console Firecracker offers, no reboot (Firecracker cannot
// reboot a guest: a reboot ends the process), and the backdoor shell on
// vsock (the project's systemd guests listen there with it).
const consoleArgs = "console=ttyS0 reboot=k panic=1 vmdriver.backdoor=vsock"

// ErrNoFirecracker is wrapped by the error for a missing firecracker
// binary.
var ErrNoFirecracker = errors.New("firecracker is not installed")

// unsupported is the error for what Firecracker cannot do: it wraps
// backend.ErrUnsupported and says "unsupported by firecracker".
func unsupported(what string) error {
	return backend.Unsupported(what + ": unsupported by firecracker")
}

// Backend starts machines on Firecracker.
type Backend struct {
	binary      string
	bootTimeout time.Duration
}

// Option configures a Backend.
type Option func(*Backend)

// WithBinary runs the firecracker binary at path instead of the one in
// PATH.
func WithBinary(path string) Option { return func(b *Backend) { b.binary = path } }

// WithBootTimeout sets BootTimeout's answer.
func WithBootTimeout(d time.Duration) Option { return func(b *Backend) { b.bootTimeout = d } }

// New returns a Firecracker backend.
func New(opts ...Option) *Backend {
	b := &Backend{bootTimeout: time.Minute}
	for _, o := range opts {
		o(b)
	}
	return b
}

var (
	_ backend.Backend   = (*Backend)(nil)
	_ backend.Restorer  = (*Backend)(nil)
	_ backend.VLANKinds = (*Backend)(nil)
	_ backend.DirSharer = (*Backend)(nil)
)

// VLANKinds says that Firecracker's VLAN NICs are TAP devices only.
func (b *Backend) VLANKinds() []string { return []string{backend.TAP} }

// SharesDir is false: Firecracker has no file system device, so the
// machine copies files through the shell.
func (b *Backend) SharesDir() bool { return false }

// Name returns "firecracker".
func (b *Backend) Name() string { return "firecracker" }

// Hypervisor returns "Firecracker".
func (b *Backend) Hypervisor() string { return "Firecracker" }

// BootTimeout is how long a guest may take to offer its shell.
func (b *Backend) BootTimeout() time.Duration { return b.bootTimeout }

// binaryPath finds the firecracker program.
func (b *Backend) binaryPath() (string, error) {
	if b.binary != "" {
		if _, err := os.Stat(b.binary); err != nil {
			return "", fmt.Errorf("%w at %s: %w", ErrNoFirecracker, b.binary, err)
		}
		return b.binary, nil
	}
	p, err := hosttools.Path(binaryName)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrNoFirecracker, err)
	}
	return p, nil
}

// Start boots spec's machine from its description.
func (b *Backend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	desc, err := backend.LoadDescription(backend.DescriptionPath(spec.StartScript))
	if err != nil {
		return nil, err
	}
	if !desc.OffersShell(backend.ShellVsock) {
		return nil, unsupported(fmt.Sprintf("machine %s's image serves its shell on the virtio console only (%s), which Firecracker does not have; build it with `vmdriver image build --kind systemd`, whose guests also listen on vsock", spec.Name, strings.Join(desc.Shells, ", ")))
	}
	args, err := bootArgs(desc)
	if err != nil {
		return nil, err
	}
	disks, err := copyDisks(ctx, desc, spec.StateDir)
	if err != nil {
		return nil, err
	}
	taps, err := backend.CreateNamedTAPs(spec, desc, b.Name())
	if err != nil {
		return nil, err
	}
	i, err := b.launch(ctx, spec, taps)
	if err != nil {
		return nil, err
	}
	if err := i.configure(ctx, desc, args, disks, taps.List()); err != nil {
		i.Close()
		return nil, err
	}
	i.manifest = newManifest(spec.Name, desc, len(disks))
	return i, nil
}

func ifaceID(index int) string { return fmt.Sprintf("eth%d", index) }
func driveID(index int) string { return fmt.Sprintf("disk%d", index) }

// copyDisks gives the machine its own copy of every disk in dir (a
// reflink or sparse copy where the file system allows) and returns their
// paths relative to dir, Firecracker's working directory.
func copyDisks(ctx context.Context, desc *backend.Description, dir string) ([]string, error) {
	var out []string
	for i, d := range desc.Disks {
		if d.Format != "raw" {
			return nil, unsupported(fmt.Sprintf("disk %d: format %s (Firecracker takes raw images only)", i, d.Format))
		}
		name := driveID(i) + ".raw"
		os.Remove(filepath.Join(dir, name)) // a start before this one's copy
		if err := sparsecopy.Path(ctx, desc.Path(d.Path), filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("copying disk %d: %w", i, err)
		}
		out = append(out, name) // relative to the working directory: see the package doc
	}
	return out, nil
}

// bootArgs is the description's command line, with the machine's
// network table inline (Firecracker has no fw_cfg), and what Firecracker's
// guest needs.
func bootArgs(desc *backend.Description) (string, error) {
	line, err := desc.CmdlineWithNet()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line + " " + consoleArgs), nil
}

// put is one configuration request.
type put struct {
	path string
	body any
}

// configure sends the machine's configuration and starts it. disks are
// the drives' paths as Firecracker opens them.
func (i *Instance) configure(ctx context.Context, desc *backend.Description, args string, disks []string, taps []backend.NamedTAP) error {
	calls := []put{
		{"/boot-source", bootSource{KernelImagePath: desc.Path(desc.Kernel), InitrdPath: desc.Path(desc.Initrd), BootArgs: args}},
		{"/machine-config", machineConfig{VCPUCount: desc.CPUs, MemSizeMiB: desc.MemoryMiB}},
	}
	for n, d := range disks {
		// Not is_root_device: the description's command line names the
		// root file system itself.
		calls = append(calls, put{"/drives/" + driveID(n), drive{DriveID: driveID(n), PathOnHost: d}})
	}
	for _, t := range taps {
		calls = append(calls, put{"/network-interfaces/" + ifaceID(t.Index), networkInterface{IfaceID: ifaceID(t.Index), HostDevName: t.Device, GuestMAC: t.NIC.MAC}})
	}
	calls = append(calls, put{"/vsock", vsock{GuestCID: guestCID, UDSPath: i.vsockPath}})
	for _, c := range calls {
		if err := i.api.call(ctx, "PUT", c.path, c.body, nil); err != nil {
			return i.apiError("configuring Firecracker", err)
		}
	}
	if err := i.api.call(ctx, "PUT", "/actions", action{ActionType: "InstanceStart"}, nil); err != nil {
		return i.apiError("starting the machine", err)
	}
	return nil
}

// launch starts the process and waits for its API socket.
// launch starts Firecracker, inside the TAP networks' namespace when the
// machine has TAP devices, and waits for its API socket. The instance
// owns taps from here on, even on error: they go when it has ended.
func (b *Backend) launch(ctx context.Context, spec backend.Spec, taps *backend.NamedTAPs) (*Instance, error) {
	bin, err := b.binaryPath()
	if err != nil {
		taps.Remove()
		return nil, err
	}
	sock := filepath.Join(spec.StateDir, "fc.sock")
	vs := filepath.Join(spec.StateDir, "vsock.sock")
	for _, p := range []string{sock, vs} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			taps.Remove()
			return nil, fmt.Errorf("removing a stale socket: %w", err)
		}
	}
	i := &Instance{
		taps:      taps,
		spec:      spec,
		sock:      sock,
		vsockPath: vs,
		console:   tail.New(16 << 10),
		stderr:    tail.New(16 << 10),
		done:      make(chan struct{}),
		api:       newAPIClient(sock),
	}
	cmd := exec.Command(bin, "--api-sock", sock)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.StateDir
	// exec copies through the writer: it must never fail (tail.Tee).
	cmd.Stdout = tail.Tee(i.console, spec.Console, nil)
	cmd.Stderr = i.stderr
	var p *proc.Process
	err = taps.Start(func() (err error) {
		p, err = proc.Start(cmd)
		return err
	})
	if err != nil {
		taps.Remove()
		return nil, fmt.Errorf("starting Firecracker: %w", err)
	}
	i.proc = p
	i.pid = p.PID()
	go i.watch()
	if err := i.waitSocket(ctx); err != nil {
		i.Close()
		return nil, err
	}
	return i, nil
}
