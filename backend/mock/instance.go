package mock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
)

// Exit causes reported by Instance.ExitErr.
var (
	// ErrCrashed is the default ExitErr of Guest.Crash.
	ErrCrashed = errors.New("mock hypervisor crashed (killed by signal 9)")
	// ErrKilled is the ExitErr after Instance.Kill.
	ErrKilled = errors.New("mock hypervisor killed (signal 9)")
	// ErrTerminated is the ExitErr after Instance.Close of a running
	// instance.
	ErrTerminated = errors.New("mock hypervisor terminated (signal 15)")
)

// Instance is one started mock machine. It implements backend.Instance
// and every optional capability interface of package backend.
type Instance struct {
	spec  backend.Spec
	guest *Guest
	pid   int

	ctx    context.Context // the instance's life
	cancel context.CancelFunc
	wg     sync.WaitGroup // boot goroutines

	mu       sync.Mutex
	boot     *bootRun // the current boot
	exiting  bool
	exitErr  error
	exitCh   chan struct{} // closed when the instance starts to exit
	done     chan struct{} // closed when everything is released
	events   []backend.Event
	evSignal chan struct{} // closed and replaced on every new event
	diag     []string

	consoleMu     sync.Mutex
	consoleClosed bool

	gate   pauseGate  // the guest's vCPUs (Snapshot, "stop", "cont")
	snapMu sync.Mutex // one Snapshot at a time
}

// bootRun is one boot of the guest: a pipe whose guest end ServeGuest
// serves and whose host end is the Shell.
type bootRun struct {
	ctx      context.Context
	cancel   context.CancelFunc
	shell    *backdoor.Shell
	guest    net.Conn
	restored bool // the guest resumes from a snapshot: no boot, no banner
}

// Compile-time checks that Instance has every capability.
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

// newInstance starts an instance for g; restored makes its first shell
// one that is already running (no boot, no banner).
func newInstance(spec backend.Spec, g *Guest, pid int, restored bool) *Instance {
	in := &Instance{
		spec:     spec,
		guest:    g,
		pid:      pid,
		exitCh:   make(chan struct{}),
		done:     make(chan struct{}),
		evSignal: make(chan struct{}),
	}
	in.ctx, in.cancel = context.WithCancel(context.Background())
	g.attach(in)
	in.mu.Lock()
	in.startBootLocked(restored)
	in.mu.Unlock()
	go in.reap()
	return in
}

// startBootLocked begins a new boot (or, restored, serves the shell a
// restored guest already has); in.mu must be held and the instance must
// not be exiting.
func (in *Instance) startBootLocked(restored bool) {
	host, guest := net.Pipe()
	opts := []backdoor.Option{}
	if restored {
		opts = append(opts, backdoor.WithoutBanner())
	}
	if in.spec.Logf != nil {
		logf := in.spec.Logf
		opts = append(opts, backdoor.WithLogf(logf), backdoor.WithPreBanner(func(line string) {
			logf("mock: guest shell says: %q", line)
		}))
	}
	ctx, cancel := context.WithCancel(in.ctx)
	br := &bootRun{ctx: ctx, cancel: cancel, shell: backdoor.New(host, opts...), guest: newGatedConn(guest, &in.gate), restored: restored}
	in.boot = br
	in.wg.Add(1)
	go in.runBoot(br)
}

// runBoot boots the guest once and serves its shell until the boot ends.
func (in *Instance) runBoot(br *bootRun) {
	defer in.wg.Done()
	defer br.guest.Close()
	g := in.guest
	fopts := backdoor.FakeGuestOptions{Raw: g.rawText, NoBanner: true}
	if !br.restored {
		delay, noBanner := g.startBoot()
		in.consoleWrite("mock: booting " + in.spec.Name + "\n")
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-br.ctx.Done():
				t.Stop()
				return
			}
		}
		in.consoleWrite("connecting to host...\n")
		fopts.NoBanner = noBanner
	}
	err := backdoor.ServeGuest(br.ctx, br.guest, g.serve, fopts)
	if err != nil && br.ctx.Err() == nil && in.spec.Logf != nil {
		in.spec.Logf("mock: fake guest shell of %s ended: %v", in.spec.Name, err)
	}
}

// reap waits for the exit signal, then tears everything down and closes
// done. It is the only goroutine that waits for the boot goroutines, so
// exit may be called from anywhere, including a command handler.
func (in *Instance) reap() {
	<-in.exitCh
	in.mu.Lock()
	br := in.boot
	in.mu.Unlock()
	// Cut the connection before anything else: a dead hypervisor must not
	// deliver a reply that a handler returns once its ctx ends.
	br.guest.Close()
	br.shell.Close()
	br.cancel()
	in.cancel()
	in.wg.Wait()
	in.consoleMu.Lock()
	in.consoleClosed = true
	in.consoleMu.Unlock()
	close(in.done)
}

// exit ends the instance with err as its ExitErr (nil for a clean
// power-off), after emitting evs. Only the first call counts.
func (in *Instance) exit(err error, evs ...backend.Event) {
	in.mu.Lock()
	if in.exiting {
		in.mu.Unlock()
		return
	}
	in.exiting = true
	in.exitErr = err
	for _, ev := range evs {
		in.emitLocked(ev)
	}
	if err != nil {
		in.diag = append(in.diag, "mock: "+err.Error())
	}
	in.mu.Unlock()
	close(in.exitCh)
}

// powerOff is a clean guest power-off: SHUTDOWN, then exit status 0.
func (in *Instance) powerOff(reason string) {
	in.exit(nil, newEvent("SHUTDOWN", map[string]any{"guest": true, "reason": reason}))
}

// reboot restarts the guest: with AllowReboot a new boot (and a new
// shell) begins; without it the hypervisor exits, like QEMU -no-reboot.
func (in *Instance) reboot() {
	if !in.spec.AllowReboot {
		in.powerOff("guest-reset")
		return
	}
	in.mu.Lock()
	if in.exiting {
		in.mu.Unlock()
		return
	}
	old := in.boot
	in.emitLocked(newEvent("RESET", map[string]any{"guest": true, "reason": "guest-reset"}))
	in.startBootLocked(false)
	// Close the old shell in the background: Close waits for its
	// goroutines, and reboot may run inside one of them (a handler).
	in.wg.Add(1)
	in.mu.Unlock()
	old.guest.Close()
	old.cancel()
	go func() {
		defer in.wg.Done()
		old.shell.Close()
	}()
}

func (in *Instance) exited() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.exiting
}

// exitedError describes the exit for callers that need the hypervisor:
// a *backend.Error naming no machine (the machine renders that).
func (in *Instance) exitedError() error {
	in.mu.Lock()
	err := in.exitErr
	in.mu.Unlock()
	e := &backend.Error{Process: "the mock hypervisor", PID: in.pid, Exited: true, ExitStatus: -1, Err: err}
	if err == nil {
		e.ExitStatus = 0 // powered off
	}
	return e
}

// Shell waits for the current boot's banner and returns its shell. After
// a reboot it returns the new boot's shell.
func (in *Instance) Shell(ctx context.Context) (*backdoor.Shell, error) {
	for {
		in.mu.Lock()
		if in.exiting {
			in.mu.Unlock()
			return nil, in.exitedError()
		}
		br := in.boot
		in.mu.Unlock()
		err := br.shell.WaitReady(ctx)
		if err == nil {
			return br.shell, nil
		}
		if in.exited() {
			return nil, in.exitedError()
		}
		in.mu.Lock()
		rebooted := in.boot != br
		in.mu.Unlock()
		if rebooted && ctx.Err() == nil {
			continue
		}
		return nil, fmt.Errorf("mock: %w", err)
	}
}

// PID returns the instance's fake process id (never a real process).
func (in *Instance) PID() int { return in.pid }

// Done is closed once the instance has exited and released everything.
func (in *Instance) Done() <-chan struct{} { return in.done }

// ExitErr is nil while running and after a clean power-off; otherwise
// a *backend.Error wrapping backend.ErrExited and ErrCrashed (or the
// Guest.Crash argument), ErrKilled or ErrTerminated.
func (in *Instance) ExitErr() error {
	select {
	case <-in.done:
	default:
		return nil
	}
	if in.exitErr == nil {
		return nil
	}
	return in.exitedError()
}

// PowerDown presses the ACPI power button: POWERDOWN, and unless the
// guest ignores it (Guest.IgnorePowerButton), a clean power-off.
func (in *Instance) PowerDown(ctx context.Context) error {
	if in.exited() {
		return in.exitedError()
	}
	in.emit(newEvent("POWERDOWN", nil))
	if !locked(in.guest, func() bool { return in.guest.ignoreACPI }) {
		in.powerOff("guest-shutdown")
	}
	return nil
}

// Kill ends the instance at once and waits until it is gone.
func (in *Instance) Kill(ctx context.Context) error {
	in.exit(ErrKilled)
	select {
	case <-in.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mock: killing: %w", ctx.Err())
	}
}

// Close ends the instance if it still runs and waits for all of its
// goroutines. It is idempotent.
func (in *Instance) Close() error {
	in.exit(ErrTerminated)
	<-in.done
	return nil
}

// Diagnostics returns the mock's own messages (how the instance ended).
func (in *Instance) Diagnostics() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return strings.Join(in.diag, "\n")
}

// consoleWrite writes text to Spec.Console, one writer at a time, until
// the instance is gone.
func (in *Instance) consoleWrite(text string) {
	if in.spec.Console == nil {
		return
	}
	in.consoleMu.Lock()
	defer in.consoleMu.Unlock()
	if in.consoleClosed {
		return
	}
	_, _ = in.spec.Console.Write([]byte(text))
}

// WriteConsole records data as typed into the serial console
// (Guest.ConsoleInput).
func (in *Instance) WriteConsole(ctx context.Context, data []byte) error {
	if in.exited() {
		return in.exitedError()
	}
	in.guest.recordConsoleInput(data)
	return nil
}

// MonitorCommand records command and returns the guest's scripted answer
// (Guest.SetMonitorReply), "" by default.
func (in *Instance) MonitorCommand(ctx context.Context, command string) (string, error) {
	if in.exited() {
		return "", in.exitedError()
	}
	return in.guest.monitor(command), nil
}

// emit queues an event for WaitEvent.
func (in *Instance) emit(ev backend.Event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.emitLocked(ev)
}

func (in *Instance) emitLocked(ev backend.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	in.events = append(in.events, ev)
	close(in.evSignal)
	in.evSignal = make(chan struct{})
}

// WaitEvent returns the first unconsumed event that match accepts,
// consuming it and every event before it. Events queued before the
// instance exited can still be taken afterwards.
func (in *Instance) WaitEvent(ctx context.Context, match func(backend.Event) bool) (backend.Event, error) {
	for {
		in.mu.Lock()
		for len(in.events) > 0 {
			ev := in.events[0]
			in.events = in.events[1:]
			if match == nil || match(ev) {
				in.mu.Unlock()
				return ev, nil
			}
		}
		sig := in.evSignal
		exiting := in.exiting
		in.mu.Unlock()
		if exiting {
			return backend.Event{}, in.exitedError()
		}
		select {
		case <-sig:
		case <-in.exitCh:
		case <-ctx.Done():
			return backend.Event{}, fmt.Errorf("mock: waiting for an event: %w", ctx.Err())
		}
	}
}

// Screenshot writes a small PNG of one colour to path.
func (in *Instance) Screenshot(ctx context.Context, path string) error {
	if in.exited() {
		return in.exitedError()
	}
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.RGBA{R: 0x20, G: 0x40, B: 0x80, A: 0xff}), image.Point{}, draw.Src)
	var buf bytes.Buffer
	err := png.Encode(&buf, img)
	if err == nil {
		err = os.WriteFile(path, buf.Bytes(), 0o644)
	}
	if err != nil {
		return fmt.Errorf("mock: screenshot: %w", err)
	}
	return nil
}

// SendKey records key; "ctrl-alt-delete" reboots the guest (or ends the
// instance without AllowReboot).
func (in *Instance) SendKey(ctx context.Context, key string) error {
	if in.exited() {
		return in.exitedError()
	}
	in.guest.recordKey(key)
	if key == "ctrl-alt-delete" {
		in.reboot()
	}
	return nil
}

// ControlCommand records the call and returns the guest's scripted reply
// (Guest.SetControlReply). Without one: "query-status" reports running
// or paused, "stop" pauses the guest (its shell answers nothing), "cont"
// resumes it, "system_powerdown" acts like PowerDown, "quit" ends the
// instance cleanly, anything else returns an empty object.
func (in *Instance) ControlCommand(ctx context.Context, command string, args map[string]any) (any, error) {
	if in.exited() {
		return nil, in.exitedError()
	}
	if reply, ok := in.guest.control(command, args); ok {
		return reply, nil
	}
	switch command {
	case "query-status":
		if in.gate.paused() {
			return map[string]any{"running": false, "status": "paused"}, nil
		}
		return map[string]any{"running": true, "status": "running"}, nil
	case "stop":
		in.gate.pause()
		return map[string]any{}, nil
	case "cont":
		in.gate.cont()
		return map[string]any{}, nil
	case "system_powerdown":
		return map[string]any{}, in.PowerDown(ctx)
	case "quit":
		in.exit(nil)
		return map[string]any{}, nil
	}
	return map[string]any{}, nil
}

// newEvent is an event named name that happens now.
func newEvent(name string, data map[string]any) backend.Event {
	return backend.Event{Name: name, Data: data, Time: time.Now()}
}
