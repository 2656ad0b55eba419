package firecracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/proc"
	"github.com/vmdriver/vmdriver/internal/tail"
)

const (
	// socketTimeout bounds the wait for the API socket.
	socketTimeout = 10 * time.Second
	// connectTimeout bounds one hybrid vsock handshake.
	connectTimeout = 5 * time.Second
	// retryInterval is the pause between attempts to reach the guest.
	retryInterval = 100 * time.Millisecond
	// closeGrace is how long Close waits after SIGTERM before SIGKILL.
	closeGrace = 5 * time.Second
)

// Instance is one Firecracker process and its guest.
type Instance struct {
	taps      *backend.NamedTAPs // removed once the process has ended
	spec      backend.Spec
	sock      string
	vsockPath string
	api       *apiClient
	proc      *proc.Process
	pid       int
	console   *tail.Buffer
	stderr    *tail.Buffer
	done      chan struct{}
	manifest  *manifest

	connectMu sync.Mutex // one Shell connects at a time
	mu        sync.Mutex
	shell     *backdoor.Shell

	closeOnce sync.Once
}

var (
	_ backend.Instance       = (*Instance)(nil)
	_ backend.Snapshotter    = (*Instance)(nil)
	_ backend.LinkController = (*Instance)(nil)
	_ backend.CtrlAltDeleter = (*Instance)(nil)
)

// watch closes done once the process is reaped and its output copied.
func (i *Instance) watch() {
	<-i.proc.Exited()
	i.mu.Lock()
	sh := i.shell
	i.mu.Unlock()
	if sh != nil {
		sh.Close()
	}
	i.api.close()
	for _, p := range []string{i.sock, i.vsockPath} {
		os.Remove(p)
	}
	close(i.done)
}

// waitSocket waits until the API answers.
func (i *Instance) waitSocket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, socketTimeout)
	defer cancel()
	for {
		var v map[string]any
		err := i.api.call(ctx, "GET", "/version", nil, &v)
		if err == nil {
			return nil
		}
		select {
		case <-i.done:
			return i.exitError("waiting for Firecracker's API socket", nil)
		case <-ctx.Done():
			return i.withTails(&backend.Error{Op: "waiting for Firecracker's API socket", Process: "Firecracker", PID: i.pid, Err: fmt.Errorf("%w (last error: %w)", ctx.Err(), err)})
		case <-time.After(retryInterval):
		}
	}
}

// withTails adds the stderr and console tails.
func (i *Instance) withTails(e *backend.Error) *backend.Error {
	e.Stderr = i.stderr.Lines(20)
	e.Console = i.console.Lines(20)
	return e
}

// exitError describes the exited process while doing op.
func (i *Instance) exitError(op string, cause error) error {
	st := i.proc.Status()
	return i.withTails(&backend.Error{Op: op, Process: "Firecracker", PID: i.pid, Exited: true, ExitStatus: st.Code, Signal: st.Signal, Err: cause})
}

// apiError reports a failed API call during op, blaming the process
// when it has exited: a call fails as the process dies, and its exit is
// seen a moment later, so it waits briefly for it.
func (i *Instance) apiError(op string, err error) error {
	select {
	case <-i.done:
		return i.exitError(op, nil)
	case <-time.After(50 * time.Millisecond):
	}
	return i.withTails(&backend.Error{Op: op, Process: "Firecracker", PID: i.pid, Err: err})
}

// Shell waits for the guest's root shell on the hybrid vsock. Every
// connection gets a fresh shell that prints the banner first, also on a
// restored machine: Firecracker resets vsock connections when it loads a
// snapshot, so the saved guest's shell has no host any more.
func (i *Instance) Shell(ctx context.Context) (*backdoor.Shell, error) {
	i.connectMu.Lock()
	defer i.connectMu.Unlock()
	i.mu.Lock()
	sh := i.shell
	i.mu.Unlock()
	if sh != nil {
		select {
		case <-sh.Done():
		default:
			return sh, nil
		}
	}
	var last error
	for {
		conn, err := dialVsock(ctx, i.vsockPath, BackdoorPort)
		if err == nil {
			var opts []backdoor.Option
			if i.spec.Logf != nil {
				opts = append(opts, backdoor.WithLogf(i.spec.Logf))
			}
			sh := backdoor.New(conn, opts...)
			if err := sh.WaitReady(ctx); err != nil {
				sh.Close()
				select {
				case <-i.done:
					return nil, i.exitError("waiting for the guest's shell", nil)
				default:
				}
				return nil, i.withTails(&backend.Error{Op: "waiting for the guest's shell", Err: err})
			}
			i.mu.Lock()
			i.shell = sh
			i.mu.Unlock()
			return sh, nil
		}
		last = err
		select {
		case <-i.done:
			return nil, i.exitError("waiting for the guest's shell", nil)
		case <-ctx.Done():
			return nil, i.withTails(&backend.Error{Op: "waiting for the guest's shell on vsock port " + strconv.Itoa(BackdoorPort), Err: fmt.Errorf("%w (last attempt: %w)", ctx.Err(), last)})
		case <-time.After(retryInterval):
		}
	}
}

// ErrConnectRefused is wrapped by the error for a hybrid vsock CONNECT
// that Firecracker did not answer with OK (nothing listens on the port
// in the guest yet).
var ErrConnectRefused = errors.New("vsock CONNECT refused")

// dialVsock opens a stream to port in the guest through Firecracker's
// hybrid vsock socket at path.
func dialVsock(ctx context.Context, path string, port int) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
		conn.Close()
		return nil, fmt.Errorf("vsock CONNECT %d: %w", port, err)
	}
	// Read the answer a byte at a time: what follows it is the guest's.
	var line []byte
	b := make([]byte, 1)
	for len(line) < 64 {
		if _, err := conn.Read(b); err != nil {
			conn.Close()
			if errors.Is(err, io.EOF) {
				return nil, fmt.Errorf("%w: port %d", ErrConnectRefused, port)
			}
			return nil, fmt.Errorf("vsock CONNECT %d: %w", port, err)
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	f := strings.Fields(string(line))
	if len(f) != 2 || f[0] != "OK" {
		conn.Close()
		return nil, fmt.Errorf("%w: port %d: answer %q", ErrConnectRefused, port, line)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// PID is the Firecracker process's id.
func (i *Instance) PID() int { return i.pid }

// Done is closed once the process has exited and its resources are
// released.
func (i *Instance) Done() <-chan struct{} { return i.done }

// ExitErr says how the process ended: nil while it runs or after exit
// status 0.
func (i *Instance) ExitErr() error {
	select {
	case <-i.done:
	default:
		return nil
	}
	st := i.proc.Status()
	if st.Code == 0 && st.Signal == 0 && st.Err == nil {
		return nil
	}
	return i.exitError("", st.Err)
}

// Diagnostics returns the end of Firecracker's stderr.
func (i *Instance) Diagnostics() string { return strings.Join(i.stderr.Lines(50), "\n") }

// ConsoleTail returns the guest's last n console lines.
func (i *Instance) ConsoleTail(n int) []string { return i.console.Lines(n) }

// PowerDown sends Ctrl-Alt-Del, which Firecracker's guests take as a
// request to power off (reboot=k makes their reboot end the VMM).
func (i *Instance) PowerDown(ctx context.Context) error {
	if err := i.api.call(ctx, "PUT", "/actions", action{ActionType: "SendCtrlAltDel"}, nil); err != nil {
		return i.apiError("sending Ctrl-Alt-Del", err)
	}
	return nil
}

// CtrlAltDelete is Firecracker's one key action; the guest takes it as a
// reboot, which ends the VMM (reboot=k): a machine's reboot is its end, as
// QEMU's under -no-reboot.
func (i *Instance) CtrlAltDelete(ctx context.Context) error { return i.PowerDown(ctx) }

// Kill kills the process group at once and waits for it to be gone.
func (i *Instance) Kill(ctx context.Context) error {
	if err := i.proc.SignalGroup(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing Firecracker: %w", err)
	}
	select {
	case <-i.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for Firecracker to die: %w", ctx.Err())
	}
}

// Close ends the process (SIGTERM, then SIGKILL after a grace period)
// and releases its sockets. It is idempotent.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		i.mu.Lock()
		sh := i.shell
		i.mu.Unlock()
		if sh != nil {
			sh.Close()
		}
		select {
		case <-i.done:
			return
		default:
		}
		i.proc.SignalGroup(syscall.SIGTERM)
		select {
		case <-i.done:
		case <-time.After(closeGrace):
			i.proc.SignalGroup(syscall.SIGKILL)
			<-i.done
		}
	})
	<-i.done
	return i.taps.Remove()
}

// Links lists the VLAN NICs (Firecracker has no user-mode NIC).
func (i *Instance) Links(ctx context.Context) ([]backend.Link, error) { return i.taps.Links(), nil }

// SetLink brings a VLAN NIC's TAP device up or down.
func (i *Instance) SetLink(ctx context.Context, name string, up bool) error {
	return i.taps.SetLink(name, up)
}

// ForwardPort is unsupported: Firecracker has no user-mode network.
func (i *Instance) ForwardPort(ctx context.Context, hostPort, guestPort int) error {
	return unsupported("forwarding a host port")
}
