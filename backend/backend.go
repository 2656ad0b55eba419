// Package backend defines what a hypervisor backend provides to a Machine.
//
// A Backend owns the whole boot sequence of one guest: it spawns the
// hypervisor, connects its control plane and hands back the guest's root
// shell. Machine never knows which hypervisor it drives. Capabilities that
// not every hypervisor has (screenshots, keys, monitor commands, links,
// snapshots) are separate interfaces that an Instance may implement; a
// caller type-asserts for them and reports ErrUnsupported when they are
// missing.
//
// A failure the hypervisor can explain (it exited, or a wait for it ran
// out of time) is returned as an *Error that carries the diagnostics as
// data (exit status, the hypervisor's last messages, the guest's last
// console lines) and whose text names neither the machine nor the tails:
// the caller renders the message once.
package backend

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// ErrUnsupported is wrapped by every error that reports a capability the
// backend does not have.
var ErrUnsupported = errors.New("not supported by this backend")

// ErrNoDisplay is wrapped by a Screenshotter's error when the machine has
// no display device (QEMU -vga none): its screen is only in the guest.
var ErrNoDisplay = errors.New("the machine has no display device")

// ErrExited is wrapped by errors caused by the hypervisor process having
// exited (crashed, killed, or powered off).
var ErrExited = errors.New("hypervisor process exited")

// Spec describes one machine to start.
type Spec struct {
	// Name is the machine's name, used in messages and logs.
	Name string
	// StartScript is the executable that starts the hypervisor (for QEMU a
	// nixpkgs-style run-NAME-vm script). Backends that build their own
	// command line may ignore it.
	StartScript string
	// StateDir is a private (0700) directory owned by this machine; the
	// backend keeps its sockets and per-run files there. It exists.
	StateDir string
	// SharedDir is the host directory that appears at /tmp/shared in the
	// guest.
	SharedDir string
	// Env holds extra KEY=VALUE pairs for the hypervisor's environment
	// (for example QEMU_VDE_SOCKET_1). They are passed through the process
	// environment, never as text in an argv.
	Env []string
	// AllowReboot keeps the hypervisor running when the guest reboots.
	// Without it a guest reboot ends the process (QEMU -no-reboot).
	AllowReboot bool
	// Console receives the guest's serial console output as it arrives.
	// Writes must not block for long; Machine splits it into lines.
	Console io.Writer
	// Logf, when set, receives the backend's own diagnostics.
	Logf func(format string, args ...any)
	// TAPs, when set, are the run's VLANs as bridges of TAP devices: the
	// machine's VLAN NICs are TAP devices on them instead of ports of
	// VDE switches (QEMU_VDE_SOCKET_<n> in Env, then absent).
	TAPs TAPNetworks
}

// Kinds of VLAN networks a backend can attach NICs to (VLANKinds).
const (
	// VDE networks are one VDE switch per VLAN (QEMU_VDE_SOCKET_<n>).
	VDE = "vde"
	// TAP networks are one Linux bridge per VLAN, a TAP device per NIC,
	// in a private network namespace (Spec.TAPs).
	TAP = "tap"
)

// VLANKinds is implemented by a backend to say which kinds of VLAN
// networks (VDE, TAP) it can attach NICs to, preferred first. A backend
// without it takes VDE only.
type VLANKinds interface {
	VLANKinds() []string
}

// NetworkKinds returns the VLAN network kinds b takes, preferred first.
func NetworkKinds(b Backend) []string {
	if k, ok := b.(VLANKinds); ok {
		return k.VLANKinds()
	}
	return []string{VDE}
}

// TAPNetworks are a run's VLANs as Linux bridges in a private network
// namespace (package vlan's Bridges). A hypervisor that takes an open TAP
// device (QEMU's fd=) gets one from OpenTAP; one that opens TAP devices
// by name is started inside the namespace with Do and opens those
// CreateTAP made.
type TAPNetworks interface {
	// OpenTAP creates a TAP device for machine's NIC on vlan, attached
	// to that VLAN's bridge, and returns it open with its name. The
	// device goes away with the last copy of the file.
	OpenTAP(machine string, vlan int) (*os.File, string, error)
	// CreateTAP creates a persistent TAP device for machine's NIC on
	// vlan and returns its name; RemoveTAP removes it.
	CreateTAP(machine string, vlan int) (string, error)
	// RemoveTAP removes a device CreateTAP made.
	RemoveTAP(name string) error
	// SetLink brings a TAP device up or down (down: the bridge drops its
	// frames both ways).
	SetLink(name string, up bool) error
	// Do runs f on a thread inside the namespace: processes f starts live
	// there.
	Do(f func() error) error
}

// Backend starts machines on one kind of hypervisor.
type Backend interface {
	// Name identifies the backend in lower case ("qemu", "mock"): the
	// name a command line chooses it by and the one a Snapshot records.
	Name() string
	// Hypervisor names the hypervisor for people ("QEMU"), in logs and
	// error messages.
	Hypervisor() string
	// Start spawns the hypervisor and connects its control plane. It does
	// not wait for the guest to boot: Instance.Shell does that. On error
	// nothing started by Start is left running.
	Start(ctx context.Context, spec Spec) (Instance, error)
	// BootTimeout is a reasonable default for how long a guest of this
	// backend may take to offer its shell (longer under software
	// emulation).
	BootTimeout() time.Duration
}

// Instance is one running hypervisor process and its guest.
type Instance interface {
	// Shell waits until the guest's root shell is ready and returns it.
	// It fails early, naming the cause, if the hypervisor exits first.
	// Later calls return the same shell while it is alive.
	Shell(ctx context.Context) (*backdoor.Shell, error)
	// PID is the hypervisor's process id, or 0 if there is none.
	PID() int
	// Done is closed once the hypervisor process has exited and every
	// resource tied to it is released.
	Done() <-chan struct{}
	// ExitErr describes how the process ended; nil while it runs and after
	// a clean exit (status 0). Backends return an *Error (Exited set) so
	// that callers can say how it ended and quote its last words.
	ExitErr() error
	// PowerDown asks the guest to power off (ACPI power button). It does
	// not wait for the guest to do so.
	PowerDown(ctx context.Context) error
	// Kill ends the hypervisor at once, as if the power cord were pulled,
	// and waits for the process to be gone.
	Kill(ctx context.Context) error
	// Close releases everything: the process (terminated, then killed
	// after a grace period), sockets and goroutines. It is idempotent and
	// safe to call after the process exited.
	Close() error
	// Diagnostics returns recent hypervisor messages (for QEMU its
	// stderr), for error reports. It may be empty.
	Diagnostics() string
}

// ConsoleWriter is implemented by instances that can type into the serial
// console (what the guest reads from ttyS0).
type ConsoleWriter interface {
	WriteConsole(ctx context.Context, data []byte) error
}

// Monitor is implemented by instances with a human monitor (QEMU's HMP).
type Monitor interface {
	// MonitorCommand runs one monitor command and returns its output.
	MonitorCommand(ctx context.Context, command string) (string, error)
}

// Event is an asynchronous control-plane event (for QEMU, a QMP event).
type Event struct {
	// Name is the event's name, such as "SHUTDOWN".
	Name string
	// Data holds the event's payload.
	Data map[string]any
	// Time is when the hypervisor reported the event.
	Time time.Time
}

// EventSource is implemented by instances whose control plane emits
// events.
type EventSource interface {
	// WaitEvent returns the first event, among those not yet consumed by
	// an earlier WaitEvent (including events that arrived before the
	// call), for which match returns true. Events it skips are consumed.
	WaitEvent(ctx context.Context, match func(Event) bool) (Event, error)
}

// Screenshotter is implemented by instances with a display.
type Screenshotter interface {
	// Screenshot writes the current screen as a PNG file at path.
	Screenshot(ctx context.Context, path string) error
}

// KeySender is implemented by instances with a keyboard.
type KeySender interface {
	// SendKey presses and releases one key or chord given in QEMU's key
	// names ("a", "shift-a", "ctrl-alt-delete", "ret").
	SendKey(ctx context.Context, key string) error
}

// CtrlAltDeleter is implemented by instances that cannot send keys but
// can press ctrl-alt-delete on the guest (Firecracker's SendCtrlAltDel),
// which is how a machine reboots.
type CtrlAltDeleter interface {
	CtrlAltDelete(ctx context.Context) error
}

// RawCommander is implemented by instances whose control plane accepts
// raw commands (for QEMU, QMP commands with JSON arguments).
type RawCommander interface {
	// ControlCommand runs one control-plane command and returns its
	// result decoded from JSON.
	ControlCommand(ctx context.Context, command string, args map[string]any) (any, error)
}

// WarmKeyer is implemented by backends whose machines can start warm: from
// a post-boot snapshot saved by an earlier run instead of a cold boot.
// WarmKey describes, as text, everything of the backend's own that
// decides what a machine of spec boots into — the hypervisor binary and
// version, the arguments the backend adds to the command line — so that
// any change to them makes a different key and a cold boot. The machine
// adds what it knows itself (start script, environment).
type WarmKeyer interface {
	WarmKey(spec Spec) (string, error)
}

// Link is one network interface of a machine.
type Link struct {
	// Name is the hypervisor's id for the interface, as SetLink takes it
	// (for QEMU the NIC's name, such as "virtio-net-pci.1").
	Name string
	// VLAN is the virtual LAN the interface is on; 0 for the user-mode
	// (NAT) network.
	VLAN int
	// MAC is the interface's hardware address (lower case, colon
	// separated).
	MAC string
	// Up reports whether the cable is plugged in, as last set through
	// SetLink (hypervisors may not report it; a new link is up).
	Up bool
	// Restricted reports, for a user-mode (VLAN 0) link, that the
	// hypervisor lets no packet from the guest out to the host's
	// networks, only forwarded host ports in (QEMU: restrict=on, as its
	// own `info network` says). Always false for VLAN links, which reach
	// nothing but the test's own switch.
	Restricted bool
}

// LinkController is implemented by instances whose network links can be
// cut and restored.
type LinkController interface {
	// Links lists the machine's network interfaces in the hypervisor's
	// order.
	Links(ctx context.Context) ([]Link, error)
	// SetLink plugs (up) or unplugs (!up) the named link's cable; the
	// guest sees carrier come and go.
	SetLink(ctx context.Context, name string, up bool) error
}

// DirSharer is implemented by backends whose guests may not see
// Spec.SharedDir (Firecracker has no file system device, cloud-hypervisor
// would need virtiofsd). SharesDir reports whether their guests see it at
// /tmp/shared; a backend without the method shares it. Without it, file
// copies go through the shell.
type DirSharer interface {
	SharesDir() bool
}

// PortForwarder is implemented by instances with a user-mode network.
type PortForwarder interface {
	// ForwardPort makes TCP connections to hostPort on the host reach
	// guestPort in the guest through the user-mode network.
	ForwardPort(ctx context.Context, hostPort, guestPort int) error
}
