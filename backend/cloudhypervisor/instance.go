package cloudhypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/proc"
	"github.com/vmdriver/vmdriver/internal/tail"
)

// Instance is one cloud-hypervisor process and its guest.
type Instance struct {
	b        *Backend
	spec     backend.Spec
	desc     *backend.Description
	disks    []string           // this machine's copy-on-write layers, in order
	taps     *backend.NamedTAPs // removed once the process has ended
	proc     *proc.Process
	http     *http.Client
	stderr   *tail.Buffer
	console  *tail.Buffer // the serial console's end, for error reports
	shell    *backdoor.Shell
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	copyDone sync.WaitGroup
}

var (
	_ backend.Instance       = (*Instance)(nil)
	_ backend.Snapshotter    = (*Instance)(nil)
	_ backend.PortForwarder  = (*Instance)(nil)
	_ backend.Screenshotter  = (*Instance)(nil)
	_ backend.KeySender      = (*Instance)(nil)
	_ backend.Monitor        = (*Instance)(nil)
	_ backend.LinkController = (*Instance)(nil)
)

// launch starts cloud-hypervisor with its API socket in spec.StateDir and
// waits until the API answers.
// It runs inside the TAP networks' namespace when the machine has TAP
// devices. The instance owns taps from here on, even on error: they go
// when it has ended.
func (b *Backend) launch(ctx context.Context, spec backend.Spec, desc *backend.Description, disks []string, taps *backend.NamedTAPs) (_ *Instance, err error) {
	defer func() {
		if err != nil {
			taps.Remove()
		}
	}()
	if err := ensureDir(spec.StateDir); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	sock := apiSocket(spec.StateDir)
	for _, p := range []string{sock, consoleSocket(spec.StateDir)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("removing a stale socket: %w", err)
		}
	}
	bin := b.binary
	if bin == "" {
		found, err := hosttools.Path("cloud-hypervisor")
		if err != nil {
			return nil, fmt.Errorf("%w (or give its path with cloudhypervisor.WithBinary)", err)
		}
		bin = found
	}
	cmd := exec.Command(bin, "--api-socket", "path="+sock)
	cmd.Env = append(os.Environ(), spec.Env...)
	i := &Instance{
		b: b, spec: spec, desc: desc, disks: disks, taps: taps,
		stderr:  tail.New(64 << 10),
		console: tail.New(16 << 10),
		done:    make(chan struct{}),
	}
	console := spec.Console
	if console == nil {
		console = io.Discard
	}
	// Pipes of our own rather than cmd.StdoutPipe: proc.Start waits for
	// the process at once, and Wait closes StdoutPipe's read end when
	// the process exits, losing what was not yet read (a dying VMM's last
	// words). Ours end only at EOF.
	stdout, stdoutW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	stderr, stderrW, err := os.Pipe()
	if err != nil {
		stdout.Close()
		stdoutW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = stdoutW, stderrW
	var p *proc.Process
	err = taps.Start(func() (err error) {
		p, err = proc.Start(cmd)
		return err
	})
	// The child has its copies of the write ends.
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdout.Close()
		stderr.Close()
	}
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("starting %s: %w (cloud-hypervisor is not a Debian package: install it yourself, or give its path with cloudhypervisor.WithBinary)", bin, hosttools.ErrMissing)
		}
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	i.proc = p
	i.copyDone.Add(2)
	go func() {
		defer i.copyDone.Done()
		defer stdout.Close()
		io.Copy(tail.Tee(i.console, console, nil), stdout)
	}()
	go func() { defer i.copyDone.Done(); defer stderr.Close(); io.Copy(i.stderr, stderr) }()
	go func() {
		<-p.Exited()
		close(i.done)
	}()
	i.http = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		DisableKeepAlives: true,
	}}
	c, err := i.dialSocket(ctx, sock, "waiting for cloud-hypervisor's API socket")
	if err != nil {
		i.Close()
		return nil, err
	}
	c.Close()
	return i, nil
}

// dialSocket connects to the Unix socket path, retrying until something
// listens there, failing early when the process exits.
func (i *Instance) dialSocket(ctx context.Context, path, op string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, i.b.wait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-i.done:
			return nil, i.exitError(op)
		case <-ctx.Done():
			return nil, i.withTails(&backend.Error{Op: op, Err: ctx.Err()})
		case <-tick.C:
		}
	}
}

// api calls PUT /api/v1/<endpoint> with body as JSON (none if nil).
func (i *Instance) api(ctx context.Context, endpoint string, body any) error {
	limit := i.b.wait
	if endpoint == "vm.snapshot" || endpoint == "vm.restore" {
		limit = max(limit, slowCall) // they copy the guest's whole memory
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %w", endpoint, err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://localhost/api/v1/"+endpoint, r)
	if err != nil {
		return fmt.Errorf("%s: %w", endpoint, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := i.http.Do(req)
	if err != nil {
		// A dying VMM drops the connection a moment before it is reaped.
		if i.wait(time.Second) {
			return i.exitError("cloud-hypervisor API " + endpoint)
		}
		return i.withTails(&backend.Error{Op: "cloud-hypervisor API " + endpoint, Err: err})
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return i.withTails(&backend.Error{
			Op:  "cloud-hypervisor API " + endpoint,
			Err: fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg))),
		})
	}
	return nil
}

// slowCall bounds the API calls that write or read the guest's memory.
const slowCall = 10 * time.Minute

// connectConsole connects to the virtio console's socket, which
// cloud-hypervisor creates once the VM exists, and starts the shell over
// it; restored says the guest's shell is set up already.
func (i *Instance) connectConsole(ctx context.Context, restored bool) error {
	path := consoleSocket(i.spec.StateDir)
	conn, err := i.dialSocket(ctx, path, "waiting for the virtio console's socket")
	if err != nil {
		return err
	}
	opts := []backdoor.Option{}
	if i.spec.Logf != nil {
		opts = append(opts, backdoor.WithLogf(i.spec.Logf))
	}
	if restored {
		opts = append(opts, backdoor.WithoutBanner())
	}
	i.shell = backdoor.New(conn, opts...)
	return nil
}

// Shell waits for the guest's backdoor shell on the virtio console.
func (i *Instance) Shell(ctx context.Context) (*backdoor.Shell, error) {
	const op = "waiting for the guest's backdoor shell on the virtio console"
	select {
	case <-i.done:
		return nil, i.exitError(op)
	default:
	}
	wctx, cancel := context.WithCancel(ctx)
	stop := make(chan struct{})
	go func() {
		select {
		case <-i.done:
			cancel()
		case <-stop:
		}
	}()
	err := i.shell.WaitReady(wctx)
	close(stop)
	cancel()
	if err == nil {
		return i.shell, nil
	}
	// A dying VMM closes the console a moment before it is reaped.
	grace := time.Second
	if ctx.Err() != nil {
		grace = 0
	}
	if i.wait(grace) {
		return nil, i.exitError(op)
	}
	if ctx.Err() != nil {
		return nil, i.withTails(&backend.Error{Op: op, Err: err})
	}
	return nil, fmt.Errorf("%s: %w", op, err)
}

// exitError reports that the process exited while doing op.
func (i *Instance) exitError(op string) error {
	<-i.done
	st := i.proc.Status()
	e := &backend.Error{Op: op, Process: "cloud-hypervisor", PID: i.proc.PID(), Exited: true, ExitStatus: st.Code, Signal: st.Signal, Err: st.Err}
	return i.withTails(e)
}

// withTails adds the end of cloud-hypervisor's stderr and of the guest's
// serial console to e.
func (i *Instance) withTails(e *backend.Error) *backend.Error {
	i.copyWait(100 * time.Millisecond)
	e.Stderr = i.stderr.Lines(20)
	e.Console = i.console.Lines(20)
	return e
}

// copyWait gives the output copies up to d to finish after an exit.
func (i *Instance) copyWait(d time.Duration) {
	select {
	case <-i.done:
	default:
		return
	}
	ch := make(chan struct{})
	go func() { i.copyDone.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
	}
}

// PID returns cloud-hypervisor's process id.
func (i *Instance) PID() int { return i.proc.PID() }

// Done is closed once the process has exited.
func (i *Instance) Done() <-chan struct{} { return i.done }

// ExitErr is nil while the process runs and after a clean exit, else a
// *backend.Error wrapping backend.ErrExited.
func (i *Instance) ExitErr() error {
	select {
	case <-i.done:
	default:
		return nil
	}
	if i.proc.Err() == nil {
		return nil
	}
	return i.exitError("")
}

// Diagnostics returns the end of cloud-hypervisor's stderr.
func (i *Instance) Diagnostics() string { return i.stderr.String() }

// PowerDown presses the ACPI power button (vm.power-button).
func (i *Instance) PowerDown(ctx context.Context) error { return i.api(ctx, "vm.power-button", nil) }

// Kill kills the process group at once and waits for it to be gone.
func (i *Instance) Kill(ctx context.Context) error {
	if err := i.proc.SignalGroup(syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing cloud-hypervisor: %w", err)
	}
	select {
	case <-i.done:
		i.copyWait(time.Second)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for cloud-hypervisor to die: %w", ctx.Err())
	}
}

// Close asks the VMM to shut down (vmm.shutdown), then terminates and
// finally kills the process group, and releases the shell and sockets.
func (i *Instance) Close() error {
	i.closeMu.Lock()
	defer i.closeMu.Unlock()
	if i.closed {
		return nil
	}
	i.closed = true
	if i.shell != nil {
		i.shell.Close()
	}
	select {
	case <-i.done:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		i.api(ctx, "vmm.shutdown", nil) // best effort: the signals follow
		cancel()
		if !i.wait(2 * time.Second) {
			i.proc.SignalGroup(syscall.SIGTERM)
			if !i.wait(3 * time.Second) {
				i.proc.SignalGroup(syscall.SIGKILL)
				<-i.done
			}
		}
	}
	i.copyWait(time.Second)
	i.http.CloseIdleConnections()
	for _, p := range []string{apiSocket(i.spec.StateDir), consoleSocket(i.spec.StateDir)} {
		os.Remove(p)
	}
	return i.taps.Remove()
}

// Links lists the VLAN NICs (cloud-hypervisor has no user-mode NIC).
func (i *Instance) Links(ctx context.Context) ([]backend.Link, error) { return i.taps.Links(), nil }

// SetLink brings a VLAN NIC's TAP device up or down.
func (i *Instance) SetLink(ctx context.Context, name string, up bool) error {
	return i.taps.SetLink(name, up)
}

// wait waits up to d for the process to exit.
func (i *Instance) wait(d time.Duration) bool {
	select {
	case <-i.done:
		return true
	default:
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-i.done:
		return true
	case <-t.C:
		return false
	}
}

// ForwardPort fails: cloud-hypervisor has no user-mode network.
func (i *Instance) ForwardPort(ctx context.Context, hostPort, guestPort int) error {
	return fmt.Errorf("forwarding host port %d: %w", hostPort, errUnsupported)
}

// Screenshot fails: cloud-hypervisor has no display.
func (i *Instance) Screenshot(ctx context.Context, path string) error {
	return fmt.Errorf("screenshot: %w", errUnsupported)
}

// SendKey fails: cloud-hypervisor has no keyboard.
func (i *Instance) SendKey(ctx context.Context, key string) error {
	return fmt.Errorf("sending key %q: %w", key, errUnsupported)
}

// MonitorCommand fails: cloud-hypervisor has no human monitor.
func (i *Instance) MonitorCommand(ctx context.Context, command string) (string, error) {
	return "", fmt.Errorf("monitor command: %w", errUnsupported)
}

// overlay creates a qcow2 copy-on-write layer at path over base.
func overlay(ctx context.Context, base, format, path string) error {
	img, err := hosttools.Path("qemu-img")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, img, "create", "-q", "-f", "qcow2", "-F", format, "-b", base, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img create %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
