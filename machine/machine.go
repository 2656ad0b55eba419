// Package machine is the public API of one virtual machine under test:
// the NixOS test driver's Machine (execute, succeed, wait_for_unit,
// screenshots, ...) over any backend.Backend and the guest's backdoor
// shell.
//
// Every blocking call takes a context and has a host-side deadline; a
// wait that runs out of time returns an error that wraps ErrTimeout and
// says what it waited for, for how long, with the machine's last console
// lines. A hypervisor that dies while a command runs is reported within
// seconds (the error wraps backend.ErrExited) instead of hanging. A
// capability the backend lacks gives an error wrapping
// backend.ErrUnsupported.
//
// Like the NixOS driver, any command starts the machine and waits for its
// shell if needed.
package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/ocr"
)

const (
	// commandGrace is how much later than the guest-side timeout the host
	// gives up on a command, so the guest's `timeout` normally wins and
	// the shell stays usable.
	commandGrace = 2 * time.Second
	// exitGrace is how long a closed shell connection may precede the
	// hypervisor's exit before the closed connection is reported as such.
	exitGrace = 2 * time.Second
	// haltGrace is how long Halt waits for `poweroff -f` before killing.
	haltGrace = 10 * time.Second
)

// Machine is one virtual machine. Its methods are safe for concurrent
// use; guest commands run one at a time.
type Machine struct {
	name     string
	backend  backend.Backend
	cfg      config
	log      Logger
	stateDir string
	ownState bool // stateDir is ours to remove
	console  *console

	// lifeMu serialises starting and connecting.
	lifeMu sync.Mutex

	mu        sync.Mutex
	inst      backend.Instance
	cw        *consoleWriter
	pid       int
	shell     *backdoor.Shell
	connected bool
	closed    bool
	closing   chan struct{}
	wg        sync.WaitGroup // instance watchers

	node   int          // node number taken from nodes by a restore; 0 if none
	forks  atomic.Int64 // clones named so far (<name>-k)
	snaps  atomic.Int64 // snapshots taken so far
	snapMu sync.Mutex   // one snapshot at a time

	hookMu      sync.Mutex
	before      func(ctx context.Context) error
	hookRunning atomic.Bool

	// The screen (gui.go); guarded by mu.
	displayOf  backend.Instance // the hypervisor displayHas describes
	displayHas bool             // it has a display device
	ocr        *ocr.Reader      // made on first use
	ocrSlot    chan struct{}    // one OCR job at a time

	// Warm starts (warm.go); guarded by lifeMu.
	warmTried bool      // the first start looked for a warm entry
	warmSave  string    // key of the entry to save once the cold boot settled
	coldStart time.Time // when the cold boot began
}

// New creates a machine named name on backend b without starting it.
func New(b backend.Backend, name string, opts ...Option) (*Machine, error) {
	if b == nil {
		return nil, errors.New("machine: New needs a backend")
	}
	if name == "" {
		return nil, errors.New("machine: New needs a machine name")
	}
	cfg := config{outputDir: "."}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("machine %s: %w", name, err)
		}
	}
	if cfg.logger == nil {
		cfg.logger = DiscardLogger()
	}
	if cfg.bootTimeout <= 0 {
		cfg.bootTimeout = b.BootTimeout()
	}
	if cfg.commandTimeout <= 0 {
		cfg.commandTimeout = DefaultCommandTimeout
	}
	m := &Machine{name: name, backend: b, cfg: cfg, log: cfg.logger, closing: make(chan struct{})}
	m.console = newConsole(func(line string) { m.log.Serial(m.name, line) })

	if cfg.stateDir != "" {
		if err := os.MkdirAll(cfg.stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("machine %s: creating state directory: %w", name, err)
		}
		m.stateDir = cfg.stateDir
	} else {
		dir, err := os.MkdirTemp("", "vmd")
		if err != nil {
			return nil, fmt.Errorf("machine %s: creating state directory: %w", name, err)
		}
		m.stateDir, m.ownState = dir, true
	}
	if m.cfg.sharedDir == "" {
		m.cfg.sharedDir = filepath.Join(m.stateDir, "shared")
	}
	if err := os.MkdirAll(m.cfg.sharedDir, 0o700); err != nil {
		m.removeState()
		return nil, fmt.Errorf("machine %s: creating shared directory: %w", name, err)
	}
	return m, nil
}

// Start creates a machine and starts it (New, then Machine.Start).
func Start(ctx context.Context, b backend.Backend, name string, opts ...Option) (*Machine, error) {
	m, err := New(b, name, opts...)
	if err != nil {
		return nil, err
	}
	if err := m.Start(ctx); err != nil {
		return nil, errors.Join(err, m.Close())
	}
	return m, nil
}

// StartT starts a machine for a test, under t.Context(): it fails the
// test on error, closes the machine in a t.Cleanup registered before the
// start (so a start that fails half-way leaves nothing behind) and logs
// through t.Logf (serial lines as "name # line"), in addition to any
// WithLogger. A failed start also logs a command line that reproduces
// the machine interactively.
func StartT(t testing.TB, b backend.Backend, name string, opts ...Option) *Machine {
	t.Helper()
	tl := newTestLogger(t)
	opts = append(opts, func(c *config) error { c.logger = MultiLogger(c.logger, tl); return nil })
	m, err := New(b, name, opts...)
	if err != nil {
		tl.stop()
		t.Fatalf("creating machine %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("closing machine %s: %v", name, err)
		}
		tl.stop()
	})
	if err := m.Start(t.Context()); err != nil {
		if line := m.ReproduceCommand(); line != "" {
			t.Logf("to start machine %s by hand: %s", name, line)
		}
		t.Fatalf("starting machine %s: %v", name, err)
	}
	return m
}

// ReproduceCommand is a shell command line that starts the machine again
// with an interactive vmdriver prompt, its environment included; "" for
// a machine without a start script.
func (m *Machine) ReproduceCommand() string {
	if m.cfg.startScript == "" {
		return ""
	}
	var b strings.Builder
	for _, kv := range m.cfg.env {
		b.WriteString(guestcmd.Quote(kv) + " ")
	}
	b.WriteString("vmdriver eval-file -I --start-scripts " + guestcmd.Quote(m.cfg.startScript))
	return b.String()
}

// StartScript returns the machine's start script.
func (m *Machine) StartScript() string { return m.cfg.startScript }

// Name returns the machine's name.
func (m *Machine) Name() string { return m.name }

// StateDir returns the machine's state directory.
func (m *Machine) StateDir() string { return m.stateDir }

// SharedDir returns the host directory the guest sees at /tmp/shared.
func (m *Machine) SharedDir() string { return m.cfg.sharedDir }

// OutputDir returns where screenshots and copied files go.
func (m *Machine) OutputDir() string { return m.cfg.outputDir }

// Logger returns the machine's logger.
func (m *Machine) Logger() Logger { return m.log }

// PID returns the hypervisor's process id, or 0 when it is not running.
func (m *Machine) PID() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.inst == nil {
		return 0
	}
	return m.pid
}

// Instance returns the running backend instance, or nil.
func (m *Machine) Instance() backend.Instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inst
}

// Booted reports whether the hypervisor is running.
func (m *Machine) Booted() bool {
	m.mu.Lock()
	inst := m.inst
	m.mu.Unlock()
	return inst != nil && !isDone(inst.Done())
}

// Connected reports whether the guest's shell is connected.
func (m *Machine) Connected() bool {
	sh, _ := m.liveShell()
	return sh != nil
}

// IsUp reports whether the machine is booted and its shell connected.
func (m *Machine) IsUp() bool { return m.Booted() && m.Connected() }

// Log logs msg for this machine.
func (m *Machine) Log(msg string) { m.log.Info(m.name, msg) }

// Nested runs fn inside a log block titled msg and returns its error.
func (m *Machine) Nested(msg string, fn func() error) error {
	end := m.log.Nested(m.name, msg)
	err := fn()
	end(err)
	return err
}

// SetBeforeCommand sets a function run before every guest command and
// monitor command (the driver's polling conditions). Commands it runs
// itself, with the ctx it was given or one derived from it, do not run
// it again, and neither do commands issued while it runs.
func (m *Machine) SetBeforeCommand(fn func(ctx context.Context) error) {
	m.hookMu.Lock()
	defer m.hookMu.Unlock()
	m.before = fn
}

type inHookKey struct{}

func (m *Machine) beforeCommand(ctx context.Context) error {
	m.hookMu.Lock()
	fn := m.before
	m.hookMu.Unlock()
	if fn == nil || ctx.Value(inHookKey{}) != nil {
		return nil
	}
	if !m.hookRunning.CompareAndSwap(false, true) {
		return nil
	}
	defer m.hookRunning.Store(false)
	return fn(context.WithValue(ctx, inHookKey{}, true))
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// current returns the instance and its console writer, or nils.
func (m *Machine) current() (backend.Instance, *consoleWriter) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inst, m.cw
}

// liveShell returns the connected shell if both it and the hypervisor
// are alive.
func (m *Machine) liveShell() (*backdoor.Shell, backend.Instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.connected || m.shell == nil || m.inst == nil {
		return nil, nil
	}
	if isDone(m.shell.Done()) || isDone(m.inst.Done()) {
		return nil, nil
	}
	return m.shell, m.inst
}

// markDisconnected forgets sh if it is the current shell.
func (m *Machine) markDisconnected(sh *backdoor.Shell) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shell == sh {
		m.shell, m.connected = nil, false
	}
}

// Start starts the hypervisor and returns without waiting for the guest
// to boot. It does nothing if the machine is running. A hypervisor that
// exited on its own is replaced.
func (m *Machine) Start(ctx context.Context) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	_, err := m.startLocked(ctx, true)
	return err
}

// startLocked starts the hypervisor unless it runs; m.lifeMu is held.
// Without explicit, a hypervisor that exited unexpectedly is an error
// rather than a reason to start a new one.
func (m *Machine) startLocked(ctx context.Context, explicit bool) (backend.Instance, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("machine %s: %w", m.name, ErrClosed)
	}
	inst := m.inst
	m.mu.Unlock()
	if inst != nil {
		if !isDone(inst.Done()) {
			return inst, nil
		}
		if !explicit {
			return nil, m.exitedError(inst, "running a command")
		}
		m.reap(inst)
	}
	if m.cfg.warmDir != "" && !m.warmTried {
		m.warmTried = true
		if inst := m.startWarm(ctx); inst != nil {
			return inst, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("machine %s: starting: %w", m.name, err)
		}
	}
	m.log.Info(m.name, "starting vm")
	m.coldStart = time.Now()
	m.console.reset()
	cw := &consoleWriter{c: m.console}
	inst, err := m.backend.Start(ctx, m.spec(cw))
	if err != nil {
		return nil, m.backendError("starting the "+m.backend.Hypervisor()+" hypervisor", err)
	}
	return m.adopt(inst, cw)
}

// spec describes the machine to its backend.
func (m *Machine) spec(cw *consoleWriter) backend.Spec {
	return backend.Spec{
		Name:        m.name,
		StartScript: m.cfg.startScript,
		StateDir:    m.stateDir,
		SharedDir:   m.cfg.sharedDir,
		Env:         append([]string(nil), m.cfg.env...),
		TAPs:        m.cfg.taps,
		AllowReboot: m.cfg.allowReboot,
		Console:     cw,
		Logf: func(format string, args ...any) {
			m.log.Info(m.name, fmt.Sprintf(format, args...))
		},
	}
}

// adopt makes a freshly started instance the machine's own.
func (m *Machine) adopt(inst backend.Instance, cw *consoleWriter) (backend.Instance, error) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		inst.Close()
		return nil, fmt.Errorf("machine %s: %w", m.name, ErrClosed)
	}
	m.inst, m.cw, m.pid = inst, cw, inst.PID()
	m.shell, m.connected = nil, false
	m.wg.Add(1)
	go m.watch(inst, cw)
	m.mu.Unlock()
	m.log.Info(m.name, fmt.Sprintf("%s running (pid %d)", m.backend.Hypervisor(), inst.PID()))
	return inst, nil
}

// watch reports the hypervisor's exit and flushes its last console line.
func (m *Machine) watch(inst backend.Instance, cw *consoleWriter) {
	defer m.wg.Done()
	select {
	case <-inst.Done():
		cw.flush()
		m.log.Info(m.name, fmt.Sprintf("%s (pid %d) %s", m.backend.Hypervisor(), inst.PID(), exitHow(inst.ExitErr())))
	case <-m.closing:
	}
}

// exitHow says how the hypervisor ended (Instance.ExitErr's err), for a
// message that named it already.
func exitHow(err error) string {
	var be *backend.Error
	switch {
	case err == nil:
		return "exited cleanly"
	case errors.As(err, &be) && be.Exited && be.Err != nil:
		return be.HowExited() + ": " + be.Err.Error()
	case errors.As(err, &be) && be.Exited:
		return be.HowExited()
	}
	return "exited: " + err.Error()
}

// reap forgets an exited (or to be discarded) instance and releases it.
func (m *Machine) reap(inst backend.Instance) error {
	m.mu.Lock()
	var sh *backdoor.Shell
	if m.inst == inst {
		sh = m.shell
		m.inst, m.shell, m.connected = nil, nil, false
	}
	m.mu.Unlock()
	err := inst.Close()
	if sh != nil {
		sh.Close()
	}
	return err
}

// connect returns the guest's shell, starting the machine and waiting
// for the shell (within the boot timeout) as needed.
func (m *Machine) connect(ctx context.Context) (*backdoor.Shell, backend.Instance, error) {
	if sh, inst := m.liveShell(); sh != nil {
		return sh, inst, nil
	}
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if sh, inst := m.liveShell(); sh != nil {
		return sh, inst, nil
	}
	inst, err := m.startLocked(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	var sh *backdoor.Shell
	err = m.Nested("waiting for the VM to finish booting", func() error {
		start := time.Now()
		bctx, cancel := context.WithTimeout(ctx, m.cfg.bootTimeout)
		defer cancel()
		wctx, stop := watchExit(bctx, inst)
		defer stop()
		s, err := inst.Shell(wctx)
		if err != nil {
			return m.failure(ctx, inst, nil, err, "the guest's root shell (booting)", start)
		}
		sh = s
		m.log.Info(m.name, "connected to guest root shell")
		m.log.Info(m.name, fmt.Sprintf("(connecting took %.2f seconds)", time.Since(start).Seconds()))
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	if m.inst != inst || m.closed {
		m.mu.Unlock()
		return nil, nil, fmt.Errorf("machine %s: stopped while connecting", m.name)
	}
	m.shell, m.connected = sh, true
	m.mu.Unlock()
	if m.warmSave != "" {
		m.saveWarm(ctx, sh, m.coldStart)
	}
	return sh, inst, nil
}

// watchExit derives a context that ends (with cause backend.ErrExited)
// when inst's hypervisor exits. stop releases its goroutine.
func watchExit(ctx context.Context, inst backend.Instance) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-inst.Done():
			cancel(backend.ErrExited)
		case <-quit:
		case <-wctx.Done():
		}
	}()
	return wctx, func() {
		close(quit)
		wg.Wait()
		cancel(nil)
	}
}

// failure turns the error of a blocking call on inst into the error the
// machine reports: the hypervisor's exit, a timeout (WaitError), the
// caller's cancellation, or the error itself. parent is the caller's
// context; sh, if not nil, is the shell the call used.
func (m *Machine) failure(parent context.Context, inst backend.Instance, sh *backdoor.Shell, err error, what string, start time.Time) error {
	if inst != nil && m.hypervisorGone(inst, sh, err) {
		return m.exitedError(inst, what)
	}
	if cerr := parent.Err(); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return fmt.Errorf("machine %s: %s: %w", m.name, what, context.Cause(parent))
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return m.waitError(what, time.Since(start), "", err)
	}
	return m.backendError(what, err)
}

// hypervisorGone reports whether err was caused by the hypervisor's
// exit, waiting briefly for the exit when the shell connection closed.
func (m *Machine) hypervisorGone(inst backend.Instance, sh *backdoor.Shell, err error) bool {
	if isDone(inst.Done()) || errors.Is(err, backend.ErrExited) {
		return true
	}
	closed := errors.Is(err, backdoor.ErrClosed) || (sh != nil && isDone(sh.Done()))
	if !closed {
		return false
	}
	t := time.NewTimer(exitGrace)
	defer t.Stop()
	select {
	case <-inst.Done():
		return true
	case <-t.C:
		return false
	}
}

// exitedError reports that inst's hypervisor is gone: how it ended, its
// last messages (those its exit error carries, else its Diagnostics) and
// the console lines.
func (m *Machine) exitedError(inst backend.Instance, what string) error {
	pid := inst.PID()
	if pid == 0 {
		m.mu.Lock()
		pid = m.pid
		m.mu.Unlock()
	}
	exitErr := inst.ExitErr()
	var b strings.Builder
	fmt.Fprintf(&b, "machine %s: %s: the %s hypervisor (pid %d) %s", m.name, what, m.backend.Hypervisor(), pid, exitHow(exitErr))
	stderr, _, ok := backendTails(exitErr)
	if !ok {
		stderr = lastLines(inst.Diagnostics(), consoleTail)
	}
	writeDiagnostics(&b, stderr)
	writeConsole(&b, m.consoleLines(exitErr))
	errs := []error{backend.ErrExited}
	if exitErr != nil {
		errs = append(errs, exitErr)
	}
	return &renderedError{msg: b.String(), errs: errs}
}

// backendError reports err, which the backend returned while the machine
// was doing what: the machine's name once, err's own words, then the
// hypervisor's last messages and the console lines when err carries them
// (a backend.Error), each once.
func (m *Machine) backendError(what string, err error) error {
	stderr, _, ok := backendTails(err)
	if !ok {
		return fmt.Errorf("machine %s: %s: %w", m.name, what, err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "machine %s: %s: %v", m.name, what, err)
	writeDiagnostics(&b, stderr)
	writeConsole(&b, m.consoleLines(err))
	return &renderedError{msg: b.String(), errs: []error{err}}
}

// consoleLines is what an error report about err quotes of the console:
// the lines a backend.Error in err carries (the failing process's own),
// else the machine's last lines.
func (m *Machine) consoleLines(err error) []string {
	if _, console, _ := backendTails(err); len(console) > 0 {
		return console
	}
	return m.console.tail()
}

// waitError builds the WaitError of a wait that ran out of time.
func (m *Machine) waitError(what string, waited time.Duration, detail string, err error) error {
	return &WaitError{Machine: m.name, What: what, Waited: waited, Detail: detail, Console: m.consoleLines(err), Err: err}
}

// ctxError reports that the caller's ctx ended a wait: a deadline is a
// timeout like any other.
func (m *Machine) ctxError(ctx context.Context, what string, start time.Time) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return m.waitError(what, time.Since(start), "", ctx.Err())
	}
	return fmt.Errorf("machine %s: waiting for %s: %w", m.name, what, context.Cause(ctx))
}

// removeState removes the private state directory unless kept.
func (m *Machine) removeState() error {
	if !m.ownState || m.cfg.keepState {
		return nil
	}
	return os.RemoveAll(m.stateDir)
}

// Close releases everything: the hypervisor (terminated if it still
// runs), the shell, goroutines and the private state directory. It is
// idempotent.
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.closing)
	inst, sh := m.inst, m.shell
	m.inst, m.shell, m.connected = nil, nil, false
	m.mu.Unlock()

	var errs []error
	if inst != nil {
		if err := inst.Close(); err != nil {
			errs = append(errs, fmt.Errorf("machine %s: closing the hypervisor: %w", m.name, err))
		}
	}
	if sh != nil {
		sh.Close()
	}
	m.wg.Wait()
	m.console.close()
	if m.node != 0 {
		m.nodeNumbers().Release(m.node)
	}
	if err := m.removeState(); err != nil {
		errs = append(errs, fmt.Errorf("machine %s: removing state directory: %w", m.name, err))
	}
	return errors.Join(errs...)
}
