package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/proc"
	"github.com/vmdriver/vmdriver/internal/tail"
	"github.com/vmdriver/vmdriver/qmp"
)

// Grace periods. They bound how long teardown waits; none of them delays
// a process that behaves.
const (
	// killGrace is how long Kill waits after QMP quit before SIGKILL.
	killGrace = 2 * time.Second
	// termGrace is how long Close waits after SIGTERM before SIGKILL.
	termGrace = 5 * time.Second
	// reapGrace bounds the wait for a SIGKILLed process to be reaped.
	reapGrace = 10 * time.Second
	// pipeGrace is how long the output readers may run on after QEMU
	// exited (a straggler holding the pipes) before they are cut off.
	pipeGrace = 2 * time.Second
	// eofGrace is how long a shell read that hit EOF waits to learn
	// whether QEMU exited, so the error can name the process.
	eofGrace = time.Second
	// tailLines is how many console or stderr lines an error quotes.
	tailLines = 15
)

// launchConfig is what launch needs, already validated.
type launchConfig struct {
	microvm    bool // -M microvm: name its known boot hang on a timeout
	name       string
	script     string
	stateDir   string
	args       []string
	env        []string
	console    io.Writer
	logf       func(format string, args ...any)
	qmpTimeout time.Duration
	// logShellBuf logs the shell channel's buffer size (once per
	// backend).
	logShellBuf func(msg string)
	// restored says the guest shell is already running (a snapshot is
	// being restored), so no banner will come.
	restored bool
	// ram is how QEMU gets the guest's RAM (ram.go).
	ram ramPlan
	// taps are TAP devices QEMU inherits after the RAM file (tap.go).
	taps []*os.File
}

// Instance is one running QEMU process and its guest. Besides
// backend.Instance it implements backend.ConsoleWriter, Monitor,
// EventSource, Screenshotter, KeySender, RawCommander, LinkController and
// PortForwarder.
type Instance struct {
	microvm  bool
	name     string
	script   string
	stateDir string
	logf     func(format string, args ...any)

	proc  *proc.Process
	pid   int
	stdin *os.File

	console *tail.Buffer // the serial console's tail
	stderr  *tail.Buffer // QEMU's stderr tail (Diagnostics)

	mu     sync.Mutex
	qmp    *qmp.Client       // set once QMP is up; closed by the watcher
	events *qmp.Subscription // subscribed right after dialing
	gone   bool              // the watcher has released everything

	shellConn net.Conn        // our end of the shell socketpair
	shell     *backdoor.Shell // reads shellConn from the spawn on

	exited <-chan struct{} // closed once the process was reaped (proc.Exited)
	done   chan struct{}   // closed once everything is released

	readers sync.WaitGroup // stdout and stderr copiers

	consoleSem chan struct{} // one console write at a time
	shotSeq    atomic.Uint64
	links      linkState // what SetLink set (links.go)

	closeOnce sync.Once
	closeErr  error

	snapMu sync.Mutex // one snapshot at a time

	// ramLive is the shared file holding the guest's RAM (nil for
	// anonymous or privately mapped RAM); ramMiB its size, 0 when QEMU
	// has its default RAM (ram.go).
	ramLive *os.File
	ramMiB  int64
	// ignoreShared records that the x-ignore-shared migration capability
	// is on in this QEMU (set for a shared-RAM save or a restore from a
	// RAM file; it stays on, and a stream records it).
	ignoreShared bool
}

// backendName is the Name of the backend that started the instance.
func (i *Instance) backendName() string {
	if i.microvm {
		return "microvm"
	}
	return "qemu"
}

var (
	_ backend.Instance       = (*Instance)(nil)
	_ backend.ConsoleWriter  = (*Instance)(nil)
	_ backend.Monitor        = (*Instance)(nil)
	_ backend.EventSource    = (*Instance)(nil)
	_ backend.Screenshotter  = (*Instance)(nil)
	_ backend.KeySender      = (*Instance)(nil)
	_ backend.RawCommander   = (*Instance)(nil)
	_ backend.LinkController = (*Instance)(nil)
	_ backend.PortForwarder  = (*Instance)(nil)
)

// launch makes the shell channel, spawns the start script, starts the
// goroutines that watch it and connects QMP. Any failure tears down what
// was started.
func launch(ctx context.Context, c launchConfig) (_ *Instance, err error) {
	qmpPath := filepath.Join(c.stateDir, qmpSocket)
	// A stale socket from an earlier run would make us talk to a QEMU
	// that is no longer there.
	if err := removeSocket(qmpPath); err != nil {
		return nil, err
	}
	// The shell channel exists before QEMU starts (QEMU uses it at
	// startup) and is already connected, so there is nothing to accept
	// and no socket file.
	pair, err := newShellPair()
	if err != nil {
		return nil, err
	}
	if c.logShellBuf != nil {
		c.logShellBuf(pair.describe())
	}

	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		pair.ours.Close()
		closeAll(pair.theirs)
		return nil, err
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		pair.ours.Close()
		closeAll(pair.theirs, stdinR, stdinW)
		return nil, err
	}
	stderrR, stderrW, err := os.Pipe()
	if err != nil {
		pair.ours.Close()
		closeAll(pair.theirs, stdinR, stdinW, stdoutR, stdoutW)
		return nil, err
	}

	cmd := exec.Command(c.script, c.args...)
	cmd.Dir = c.stateDir
	cmd.Env = c.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, stderrW
	// ExtraFiles[0] is fd 3 (shellChildFD) in the script; it execs QEMU,
	// which keeps it.
	cmd.ExtraFiles = []*os.File{pair.theirs}
	if c.ram.live != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, c.ram.live) // fd 4: ramChildFD
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, c.taps...) // the TAP plan's fds
	spawned := time.Now()
	// Its own process group, so teardown reaches every process the
	// script started; Pdeathsig so QEMU dies with the driver even when
	// the driver is SIGKILLed (the script execs QEMU, which keeps the
	// setting; a QEMU the script forks instead would not get it). Linux
	// sends it when the spawning thread exits, which the Go runtime does
	// only for goroutines that exit while locked to their thread.
	p, err := proc.Start(cmd)
	// The child has its copies; ours would keep the pipes open forever
	// and keep the shell channel from ending when QEMU does.
	closeAll(stdinR, stdoutW, stderrW, pair.theirs)
	if err != nil {
		pair.ours.Close()
		closeAll(stdinW, stdoutR, stderrR)
		return nil, fmt.Errorf("start script %s: %w", c.script, err)
	}

	console := c.console
	if console == nil {
		console = io.Discard
	}
	i := &Instance{
		microvm:    c.microvm,
		name:       c.name,
		script:     c.script,
		stateDir:   c.stateDir,
		logf:       c.logf,
		proc:       p,
		pid:        p.PID(),
		stdin:      stdinW,
		console:    tail.New(16 << 10),
		stderr:     tail.New(16 << 10),
		shellConn:  pair.ours,
		exited:     p.Exited(),
		done:       make(chan struct{}),
		consoleSem: make(chan struct{}, 1),
		ramLive:    c.ram.live,
		ramMiB:     c.ram.mib,
	}
	// The backdoor reads the channel from now on, so QEMU never finds it
	// full while anyone waits for the guest.
	shellOpts := []backdoor.Option{
		backdoor.WithLogf(i.logf),
		backdoor.WithPreBanner(func(line string) { i.logf("guest shell (before banner): %s", line) }),
	}
	if c.restored {
		shellOpts = append(shellOpts, backdoor.WithoutBanner())
	}
	i.shell = backdoor.New(&exitConn{Conn: pair.ours, inst: i}, shellOpts...)
	i.readers.Add(2)
	go i.copyStdout(stdoutR, console)
	go i.copyStderr(stderrR)
	go i.watch(stdoutR, stderrR)
	defer func() {
		if err != nil {
			i.Close()
		}
	}()

	client, err := i.dialQMP(ctx, qmpPath, c.qmpTimeout)
	if err != nil {
		return nil, err
	}
	i.mu.Lock()
	if i.gone {
		i.mu.Unlock()
		client.Close()
		return nil, i.exitedEarly()
	}
	i.qmp = client
	i.events = client.Subscribe()
	i.mu.Unlock()
	i.logf("qemu: pid %d started, control socket up after %s", i.pid, time.Since(spawned).Round(time.Millisecond))
	return i, nil
}

// dialQMP connects to QEMU's QMP socket, retrying while QEMU starts up.
func (i *Instance) dialQMP(ctx context.Context, path string, limit time.Duration) (*qmp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	backoff := 5 * time.Millisecond
	var lastErr error
	for {
		select {
		case <-i.exited:
			return nil, i.exitedEarly()
		default:
		}
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := qmp.Dial(actx, "unix", path)
		acancel()
		if err == nil {
			return c, nil
		}
		lastErr = err
		t := time.NewTimer(backoff)
		select {
		case <-i.exited:
			t.Stop()
			return nil, i.exitedEarly()
		case <-ctx.Done():
			t.Stop()
			return nil, i.withTails(&backend.Error{
				Op:  "waiting for QEMU's control socket " + path,
				Err: fmt.Errorf("%w (last attempt: %v)", ctx.Err(), lastErr),
			})
		case <-t.C:
		}
		backoff = min(backoff*2, 25*time.Millisecond)
	}
}

// exitedEarly describes a start script that ended before QEMU's control
// socket came up. It waits for the output readers so the tails are whole.
func (i *Instance) exitedEarly() error {
	i.waitDone(pipeGrace + time.Second)
	e := i.ended("waiting for QEMU's control socket", "start script "+i.script)
	switch e.ExitStatus {
	case 127:
		e.Hint = "status 127: a program was not found; is QEMU installed? On Debian: apt-get install qemu-system-x86"
	case 126:
		e.Hint = "status 126: a program could not be executed; check permissions"
	}
	return i.withTails(e)
}

// ended describes the exited process (who, for people) as an error of
// op, without the tails.
func (i *Instance) ended(op, who string) *backend.Error {
	st := i.proc.Status()
	return &backend.Error{Op: op, Process: who, PID: i.pid, Exited: true, ExitStatus: st.Code, Signal: st.Signal, Err: st.Err}
}

// withTails adds the last stderr and console lines to e.
func (i *Instance) withTails(e *backend.Error) *backend.Error {
	e.Stderr = i.stderr.Lines(tailLines)
	e.Console = i.console.Lines(tailLines)
	return e
}

// waitDone waits up to d for the watcher to finish.
func (i *Instance) waitDone(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-i.done:
		return true
	case <-t.C:
		return false
	}
}

// copyStdout passes the serial console on to the spec's writer and keeps
// its tail. It never stops reading, so QEMU never blocks on the pipe.
func (i *Instance) copyStdout(r *os.File, console io.Writer) {
	defer i.readers.Done()
	defer r.Close()
	w := tail.Tee(i.console, console, func(err error) {
		i.logf("qemu: console writer failed, console output is no longer passed on: %v", err)
	})
	io.Copy(w, r) //nolint:errcheck // ends at EOF or when cut off
}

// copyStderr keeps QEMU's stderr for Diagnostics and logs it line by line.
func (i *Instance) copyStderr(r *os.File) {
	defer i.readers.Done()
	defer r.Close()
	lw := &lineWriter{max: 4096, fn: func(line string) { i.logf("qemu stderr: %s", line) }}
	io.Copy(io.MultiWriter(i.stderr, lw), r) //nolint:errcheck // ends at EOF or when cut off
	lw.Flush()
}

// watch waits for the process to exit and then releases everything tied
// to it, closing done last.
func (i *Instance) watch(stdoutR, stderrR *os.File) {
	<-i.exited
	// Anything the script left behind in its process group goes too.
	_ = i.proc.SignalGroup(syscall.SIGKILL)

	readersDone := make(chan struct{})
	go func() { i.readers.Wait(); close(readersDone) }()
	t := time.NewTimer(pipeGrace)
	select {
	case <-readersDone:
		t.Stop()
	case <-t.C:
		// Something outside the group holds the pipes; stop reading.
		closeAll(stdoutR, stderrR)
		<-readersDone
	}

	// Closing the connection underneath the shell (rather than
	// Shell.Close, which reads as "closed by the host") lets the shell's
	// pending calls fail with exitConn's error naming QEMU. It also ends
	// the channel when something the script started still holds QEMU's
	// end.
	i.shellConn.Close()
	st := time.NewTimer(eofGrace)
	select {
	case <-i.shell.Done():
	case <-st.C:
	}
	st.Stop()
	i.shell.Close()
	i.mu.Lock()
	i.gone = true
	client := i.qmp
	i.mu.Unlock()
	if client != nil {
		client.Close()
	}
	i.stdin.Close()
	// QEMU removes its QMP socket only when it exits cleanly.
	_ = removeSocket(filepath.Join(i.stateDir, qmpSocket))
	if i.proc.Err() != nil {
		i.logf("qemu: pid %d %s", i.pid, i.ended("", "").HowExited())
	}
	close(i.done)
}

// exitConn is the shell connection as the backdoor sees it: once QEMU has
// exited, a failed read or write says so, naming the process, instead of
// a bare EOF.
type exitConn struct {
	net.Conn
	inst *Instance
}

func (c *exitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		err = c.explain(err)
	}
	return n, err
}

func (c *exitConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		err = c.explain(err)
	}
	return n, err
}

// explain replaces err by the process's exit when QEMU has exited (or
// exits within eofGrace of the connection ending).
func (c *exitConn) explain(err error) error {
	if errors.Is(err, net.ErrClosed) {
		// Closed by us; if the process is gone, say so.
		select {
		case <-c.inst.exited:
			return c.inst.exitSummary()
		default:
			return err
		}
	}
	t := time.NewTimer(eofGrace)
	defer t.Stop()
	select {
	case <-c.inst.exited:
		return c.inst.exitSummary()
	case <-t.C:
		return err
	}
}

// exitSummary names the exited process without waiting for anything (the
// watcher may be waiting for the caller).
func (i *Instance) exitSummary() error {
	return i.ended("", "QEMU")
}

// exitError describes QEMU's exit, with its tails, for a caller that was
// doing something (what; may be empty).
func (i *Instance) exitError(what string, cause error) error {
	i.waitDone(pipeGrace + time.Second)
	e := i.ended(what, "QEMU")
	if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, net.ErrClosed) {
		e.Err = cause
	}
	return i.withTails(e)
}

// Shell waits until the guest's backdoor shell is ready and returns it.
// It fails early if QEMU exits first, and at ctx's deadline with the last
// console lines if the guest never prints the banner.
//
// Every call returns the same *backdoor.Shell for the instance's whole
// life, and every call asks that shell whether it is ready rather than
// remembering an earlier answer: after a guest reboot (Shell.ExpectRestart,
// or a banner seen again) the shell is not ready until the new banner, and
// Shell must wait for it. The check is cheap when the shell is ready, but
// it queues behind a command another goroutine is running on the shell.
func (i *Instance) Shell(ctx context.Context) (*backdoor.Shell, error) {
	select {
	case <-i.exited:
		return nil, i.exitError("", nil)
	default:
	}
	// Stop waiting as soon as QEMU exits, even if something the script
	// started keeps the channel open for a while.
	wctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-i.exited:
			cancel(errQEMUExited)
		case <-wctx.Done():
		}
	}()
	err := i.shell.WaitReady(wctx)
	cancel(nil)
	wg.Wait()
	if err == nil {
		return i.shell, nil
	}
	select {
	case <-i.exited:
		return nil, i.exitError(awaitBanner, nil)
	default:
	}
	if ctx.Err() != nil {
		if i.microvm && strings.Contains(i.console.String(), microvmHangMarker) {
			err = fmt.Errorf("%w (%s)", err, microvmHangHint)
		}
		return nil, i.deadlineError(awaitShell, err) // err names the banner
	}
	select {
	case <-i.shell.Done():
		return nil, fmt.Errorf("the guest shell connection ended: %w", err)
	default:
	}
	return nil, fmt.Errorf("%s: %w", awaitShell, err)
}

// errQEMUExited cancels a wait when QEMU exits; callers report the exit
// itself.
var errQEMUExited = errors.New("qemu exited")

// awaitShell names what Shell waits for; awaitBanner also names the
// banner, for errors that do not.
const (
	awaitShell  = "waiting for the guest's backdoor shell on the virtio console"
	awaitBanner = "waiting for the guest's backdoor shell (banner \"" + backdoor.Banner + "\" on the virtio console)"
)

// deadlineError reports a wait that ran out of time, with the tails so
// the reader sees how far the guest got.
func (i *Instance) deadlineError(what string, err error) error {
	return i.withTails(&backend.Error{Op: what, Err: err})
}

// PID returns QEMU's process id (the start script execs QEMU).
func (i *Instance) PID() int { return i.pid }

// Done is closed once QEMU has exited and everything tied to it has been
// released.
func (i *Instance) Done() <-chan struct{} { return i.done }

// ExitErr describes how QEMU ended: nil while it runs and after status 0;
// otherwise a *backend.Error (wrapping backend.ErrExited) with the tails
// of its stderr and console.
func (i *Instance) ExitErr() error {
	select {
	case <-i.exited:
	default:
		return nil
	}
	if i.proc.Err() == nil {
		return nil
	}
	return i.withTails(i.ended("", "QEMU"))
}

// Diagnostics returns the tail of QEMU's stderr.
func (i *Instance) Diagnostics() string { return i.stderr.String() }

// ConsoleTail returns up to n of the last serial console lines.
func (i *Instance) ConsoleTail(n int) []string { return i.console.Lines(n) }

// client returns the QMP client, or an error if QEMU is gone.
func (i *Instance) client() (*qmp.Client, error) {
	i.mu.Lock()
	c, gone := i.qmp, i.gone
	i.mu.Unlock()
	if gone || c == nil {
		return nil, i.exitError("", nil)
	}
	return c, nil
}

// execute runs one QMP command, turning a connection lost to QEMU's exit
// into an error that says so.
func (i *Instance) execute(ctx context.Context, command string, args, result any) error {
	c, err := i.client()
	if err != nil {
		return err
	}
	err = c.Execute(ctx, command, args, result)
	if err != nil && errors.Is(err, qmp.ErrClosed) {
		select {
		case <-i.exited:
			return i.exitError("running QMP "+command, nil)
		default:
		}
	}
	if err != nil {
		return err
	}
	return nil
}

// PowerDown presses the ACPI power button (QMP system_powerdown). Guests
// without an ACPI handler ignore it.
func (i *Instance) PowerDown(ctx context.Context) error {
	return i.execute(ctx, "system_powerdown", nil, nil)
}

// Kill ends QEMU at once: QMP quit, and SIGKILL for the process group if
// it is still there 2 s later. It returns once everything is released.
func (i *Instance) Kill(ctx context.Context) error {
	select {
	case <-i.exited:
	default:
		if c, err := i.client(); err == nil {
			qctx, cancel := context.WithTimeout(ctx, killGrace)
			// The reply may never come: QEMU can exit first.
			_ = c.Execute(qctx, "quit", nil, nil)
			cancel()
		}
		t := time.NewTimer(killGrace)
		select {
		case <-i.exited:
		case <-t.C:
			i.logf("qemu: pid %d ignored QMP quit for %s; sending SIGKILL", i.pid, killGrace)
			_ = i.proc.SignalGroup(syscall.SIGKILL)
		case <-ctx.Done():
			_ = i.proc.SignalGroup(syscall.SIGKILL)
		}
		t.Stop()
	}
	select {
	case <-i.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for QEMU (pid %d) to exit after kill: %w", i.pid, ctx.Err())
	}
}

// Close terminates QEMU's process group (SIGTERM, then SIGKILL after 5 s)
// and releases sockets, connections and goroutines. It is idempotent and
// bounded.
func (i *Instance) Close() error {
	i.closeOnce.Do(func() {
		select {
		case <-i.exited:
		default:
			_ = i.proc.SignalGroup(syscall.SIGTERM)
			t := time.NewTimer(termGrace)
			select {
			case <-i.exited:
			case <-t.C:
				i.logf("qemu: pid %d still running %s after SIGTERM; sending SIGKILL", i.pid, termGrace)
				_ = i.proc.SignalGroup(syscall.SIGKILL)
			}
			t.Stop()
		}
		if !i.waitDone(reapGrace) {
			i.closeErr = fmt.Errorf("QEMU (pid %d) was not reaped %s after SIGKILL", i.pid, reapGrace)
		}
		if i.ramLive != nil {
			i.ramLive.Close() // the last reference: the guest RAM is freed
		}
	})
	return i.closeErr
}

// WriteConsole types data into the serial console (QEMU's stdin).
func (i *Instance) WriteConsole(ctx context.Context, data []byte) error {
	select {
	case i.consoleSem <- struct{}{}:
		defer func() { <-i.consoleSem }()
	case <-ctx.Done():
		return fmt.Errorf("waiting to write to the serial console: %w", ctx.Err())
	}
	select {
	case <-i.exited:
		return i.exitError("writing to the serial console", nil)
	default:
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = i.stdin.SetWriteDeadline(dl)
		defer i.stdin.SetWriteDeadline(time.Time{}) //nolint:errcheck // best effort
	}
	if _, err := i.stdin.Write(data); err != nil {
		select {
		case <-i.exited:
			return i.exitError("writing to the serial console", err)
		default:
		}
		return fmt.Errorf("writing to the serial console: %w", err)
	}
	return nil
}

// MonitorCommand runs one human monitor (HMP) command through QMP
// human-monitor-command and returns its output.
func (i *Instance) MonitorCommand(ctx context.Context, command string) (string, error) {
	var out string
	if err := i.execute(ctx, "human-monitor-command", map[string]any{"command-line": command}, &out); err != nil {
		return "", err
	}
	return out, nil
}

// ControlCommand runs one QMP command and returns its "return" member
// decoded from JSON.
func (i *Instance) ControlCommand(ctx context.Context, command string, args map[string]any) (any, error) {
	var result any
	var a any
	if args != nil {
		a = args
	}
	if err := i.execute(ctx, command, a, &result); err != nil {
		return nil, err
	}
	return result, nil
}

// WaitEvent returns the first not yet consumed QMP event (including those
// that arrived before the call) for which match returns true; the events
// it skips are consumed.
func (i *Instance) WaitEvent(ctx context.Context, match func(backend.Event) bool) (backend.Event, error) {
	i.mu.Lock()
	sub := i.events
	i.mu.Unlock()
	if sub == nil {
		return backend.Event{}, i.exitError("", nil)
	}
	ev, err := sub.Wait(ctx, func(e qmp.Event) bool {
		return match == nil || match(backend.Event(e))
	})
	if err != nil {
		if errors.Is(err, qmp.ErrClosed) {
			select {
			case <-i.exited:
				return backend.Event{}, i.exitError("waiting for a QMP event", nil)
			default:
			}
		}
		return backend.Event{}, fmt.Errorf("waiting for a QMP event: %w", err)
	}
	return backend.Event(ev), nil
}

// Screenshot writes the screen as a PNG file at path (QMP screendump into
// the state directory, then moved into place).
func (i *Instance) Screenshot(ctx context.Context, path string) error {
	tmp := filepath.Join(i.stateDir, fmt.Sprintf("screendump-%d.png", i.shotSeq.Add(1)))
	defer os.Remove(tmp)
	if err := i.execute(ctx, "screendump", map[string]any{"filename": tmp, "format": "png"}, nil); err != nil {
		var qe *qmp.Error
		if errors.As(err, &qe) && noConsole(qe.Desc) {
			return fmt.Errorf("%w (%w)", backend.ErrNoDisplay, err)
		}
		return err
	}
	if err := moveFile(tmp, path); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}

// noConsole reports QEMU's screendump error for a machine without a
// display device (7.2: "There is no console to take a screendump from";
// older: "There is no QemuConsole I can screendump from").
func noConsole(desc string) bool {
	return strings.Contains(desc, "no console") || strings.Contains(desc, "no QemuConsole")
}

// SendKey presses and releases one key or chord in QEMU's key names
// (HMP sendkey, so NixOS key names work).
func (i *Instance) SendKey(ctx context.Context, key string) error {
	if key == "" || strings.ContainsFunc(key, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("invalid key %q: use QEMU key names such as \"ret\" or \"ctrl-alt-delete\"", key)
	}
	out, err := i.MonitorCommand(ctx, "sendkey "+key)
	if err != nil {
		return err
	}
	if out = strings.TrimSpace(out); out != "" {
		return fmt.Errorf("sendkey %s: %s", key, out)
	}
	return nil
}

// moveFile renames src to dst, copying when they are on different file
// systems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || !errors.Is(err, syscall.EXDEV) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// removeSocket removes a leftover unix socket file; anything else at the
// path is an error rather than something to delete.
func removeSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	return os.Remove(path)
}

// closeAll closes files, ignoring errors (teardown paths).
func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
