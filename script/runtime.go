// Package script runs NixOS test scripts: Python test scripts are
// rewritten to Starlark (package pycompat) and executed with the NixOS
// driver's globals — machines, start_all, subtest, retry,
// polling_condition, t, log, … — bound to a driver.Driver.
//
// Every blocking call made by a script takes its context from the run: the
// context passed to Run (or Session.Exec) is kept as a thread-local of the
// Starlark thread, and the thread is cancelled when that context ends, so
// even a script stuck in `while True: pass` stops.
//
// A script failure is a *ScriptError whose positions refer to the script
// as written (not its Starlark rewrite).
//
// # Forked subtests
//
// With Options.ForkSubtests (vmdriver's --fork-subtests) a script runs as
// a suite of independent subtests. It is cut into set-up (every
// top-level statement before the first top-level `with subtest(...):`),
// the top-level subtests, and a tail (the statements after the last
// subtest); any other statement between two subtests is an error before
// anything runs (ErrBetweenSubtests). Set-up runs on the machines; then
// each subtest runs on its own thread against fresh clones of every
// machine (driver.Driver.ForkAll), at most Options.Jobs at a time, so
// that one subtest cannot disturb another; finally the tail runs on the
// original machines, which the subtests never touched. A failing subtest
// is reported like any failing subtest and does not stop the others; the
// run then fails with ErrSubtestsFailed.
//
// Each part sees the globals as set-up left them. They are frozen when
// set-up ends, as subtests share them: a subtest (and the tail) cannot
// change set-up's lists and dicts, but it may rebind any name, and the
// names it binds are its own (other subtests and the tail do not see
// them, and functions defined in set-up keep reading set-up's). A
// machine acts on the clone in a subtest, however the script reaches it
// (directly, through `machines`, or in a function defined in set-up);
// start_all and join_all act on the clones too. Data attributes (booted,
// pid, state_dir, ...) read the clone through the machine globals; a
// machine value that set-up stored elsewhere (server = machines[0])
// reads the original's. Only the configured machines are cloned: one
// made by create_machine is shared. Polling conditions belong to the
// driver, not to a subtest. print writes to the shared stdout as it
// happens; a subtest's log is merged whole when it ends if the Logger is
// a Brancher.
package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/script/modules"
)

// Reporter receives what only a full report shows, beyond driver.Logger;
// *report.Logger is one.
type Reporter interface {
	// Failure reports a failed subtest or script, anchor style ("!!!").
	Failure(msg string, loc *Location)
	// SetSerialOutput turns the printing of serial console lines on or off.
	SetSerialOutput(on bool)
}

// Options describe one script and where it reports.
type Options struct {
	// Driver runs the machines; required by Run and NewSession.
	Driver *driver.Driver
	// Filename names the script in errors; Source is its text (Python
	// test script syntax).
	Filename string
	Source   []byte
	// Stdout receives print(); nil means os.Stdout.
	Stdout io.Writer
	// Stderr receives print(..., file=sys.stderr); nil means os.Stderr.
	Stderr io.Writer
	// Logger receives log lines and subtests; nil means Driver.Logger().
	Logger driver.Logger
	// Reporter, if set, receives failures and serial on/off. Without it,
	// failures are logged as warnings with a "!!! " prefix, and
	// serial_stdout_on/off use the Logger if it has SetSerialOutput(bool).
	Reporter Reporter
	// ForkSubtests runs the script as a suite of independent subtests
	// (see "Forked subtests" in the package documentation): set-up once,
	// then every top-level subtest on its own clones of the machines.
	// Give it a Logger that is a Brancher (a *report.Logger), or lines
	// of subtests running side by side mix in the log.
	ForkSubtests bool
	// Jobs bounds how many forked subtests run at once; 0 means
	// DefaultJobs. Only ForkSubtests uses it.
	Jobs int
}

// Thread-local keys.
const (
	localContext = "vmdriver.context"
	localState   = "vmdriver.state"
)

// threadKey is the context key under which the running Starlark thread
// travels into callbacks (polling conditions) that get only a context.
type threadKey struct{}

// ErrNoContext is returned by builtins called on a thread that was not
// started by this package (it has no run context to block under).
var ErrNoContext = errors.New("no run context: run scripts through script.Run or Session.Exec")

// ErrNeedsPython is wrapped by a Check error about something the script
// does that Starlark cannot run but CPython can (a regular expression
// RE2 lacks); pycompat.ErrUnsupported marks the Python constructs the
// rewrite cannot express.
var ErrNeedsPython = errors.New("the script needs CPython")

// Session is the state of one script runtime over a driver: its globals
// and the configured test script. A REPL keeps one Session and calls Exec
// for each input; Run is Session.Run for a one-shot test.
type Session struct {
	d       *driver.Driver
	opts    Options
	log     driver.Logger
	stdout  io.Writer
	printMu sync.Mutex // print's writes: forked subtests print side by side
	mods    *pyModules
	globals starlark.StringDict
	names   []string // sorted names of globals, for hints
	mu      sync.Mutex
	aliased sync.Once // the "machine" alias warned
	values  map[*machine.Machine]*machineValue
}

// NewSession prepares a runtime over opts.Driver. Nothing is started;
// call Close when done.
func NewSession(opts Options) (*Session, error) {
	if opts.Driver == nil {
		return nil, errors.New("script: Options.Driver is nil")
	}
	return newSession(opts), nil
}

func newSession(opts Options) *Session {
	s := &Session{d: opts.Driver, opts: opts, log: opts.Logger, stdout: opts.Stdout}
	if s.log == nil && s.d != nil {
		s.log = s.d.Logger()
	}
	if s.log == nil {
		s.log = nopLogger{}
	}
	if s.stdout == nil {
		s.stdout = os.Stdout
	}
	s.mods = newModules(s)
	s.globals = s.buildGlobals()
	for k := range s.globals {
		s.names = append(s.names, k)
	}
	sort.Strings(s.names)
	return s
}

// Globals returns the session's predeclared names: machines, the driver
// API and the helpers the rewrite calls. The dictionary is shared; do not
// modify it.
func (s *Session) Globals() starlark.StringDict { return s.globals }

// Globals returns the script globals for driver d (opts.Driver is
// ignored), for tools that need the names, such as completion. Builtins
// called on a thread not started by Session.Exec fail with ErrNoContext;
// to run code, use NewSession, whose Close also releases files scripts
// opened.
func Globals(d *driver.Driver, opts Options) starlark.StringDict {
	opts.Driver = d
	return newSession(opts).Globals()
}

// Run runs a test script to completion under ctx and the driver's global
// timeout: rewrite, parse and resolve first (so a broken script boots
// nothing), then execute; afterwards it runs `sync` on every machine that
// is up, like the NixOS driver. Script failures are *ScriptError.
func Run(ctx context.Context, opts Options) error {
	s, err := NewSession(opts)
	if err != nil {
		return err
	}
	err = s.Run(ctx)
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close releases what scripts left behind in this session: open files and
// temporary directories of the modules. Machines belong to the driver.
func (s *Session) Close() error { return s.mods.close() }

// Run runs the configured test script (Options.Filename and Source)
// under ctx and the driver's global timeout; see the package function Run.
func (s *Session) Run(ctx context.Context) error {
	if s.opts.ForkSubtests {
		return s.runForked(ctx)
	}
	return s.runWhole(ctx)
}

// runWhole runs the configured script as one program.
func (s *Session) runWhole(ctx context.Context) error {
	r, prog, err := s.compile(s.opts.Filename, s.opts.Source)
	if err != nil {
		return err
	}
	var (
		mu        sync.Mutex
		scriptErr *ScriptError
	)
	err = s.d.Run(ctx, func(ctx context.Context) error {
		err := s.exec(ctx, "test script", r, func(th *starlark.Thread) error {
			stateOf(th).testScript = true
			_, err := prog.Init(th, s.globals)
			return err
		})
		if cleanExit(err) {
			s.log.Info("", "the test script called exit(0)")
			err = nil
		}
		if err != nil {
			se := s.scriptError(ctx, r, err)
			mu.Lock()
			scriptErr = se
			mu.Unlock()
			return se
		}
		s.syncMachines(ctx)
		return nil
	})
	// The driver may report a global timeout without wrapping the
	// script's error; keep the position (it wraps the cause anyway).
	mu.Lock()
	defer mu.Unlock()
	if se := (*ScriptError)(nil); err != nil && scriptErr != nil && !errors.As(err, &se) {
		return scriptErr
	}
	return err
}

// cleanExit reports whether err is the script ending itself with
// exit(0) (or sys.exit()), a success as in Python.
func cleanExit(err error) bool {
	var se *modules.SystemExit
	return errors.As(err, &se) && se.Code == 0 && se.Msg == ""
}

// syncMachines runs `sync` on every configured machine that is up.
func (s *Session) syncMachines(ctx context.Context) { SyncMachines(ctx, s.d, s.log) }

// Exec runs one piece of script text (a REPL input) against globals,
// which it updates with the names the text defines; globals should start
// as a copy of Session.Globals. It applies no global timeout.
func (s *Session) Exec(ctx context.Context, filename string, src []byte, globals starlark.StringDict) error {
	r, err := rewrite(filename, src)
	if err != nil {
		return err
	}
	f, err := fileOptions.Parse(filename, r.source, 0)
	if err != nil {
		return r.compileError(err, s.nameList(globals))
	}
	err = s.exec(ctx, "repl", r, func(th *starlark.Thread) error {
		stateOf(th).repl = globals
		return starlark.ExecREPLChunk(f, th, globals)
	})
	var rerr resolve.ErrorList
	switch {
	case err == nil:
		return nil
	case errors.As(err, &rerr):
		return r.compileError(rerr, s.nameList(globals))
	}
	return s.scriptError(ctx, r, err)
}

// Check rewrites, parses and resolves a test script against the globals a
// run with these machine names (and no VLANs) would have. It boots
// nothing; errors are *ScriptError (several are joined with errors.Join).
func Check(filename string, src []byte, machineNames []string) error {
	return CheckWith(filename, src, CheckOptions{Machines: machineNames})
}

// CheckOptions describe the run a script is checked against.
type CheckOptions struct {
	// Machines are the machines' names as configured (scripts see them
	// pythonized).
	Machines []string
	// VLANs are the VLAN numbers; each defines a global vlan<N>.
	VLANs []int
	// ForkSubtests also checks what a run with Options.ForkSubtests
	// needs: no statement between two top-level subtests, and every name
	// a subtest or the tail uses defined by set-up (or by itself).
	ForkSubtests bool
}

// CheckWith is Check for a run described by opts.
func CheckWith(filename string, src []byte, opts CheckOptions) error {
	names := map[string]bool{}
	for _, n := range staticGlobalNames() {
		names[n] = true
	}
	for _, n := range opts.Machines {
		names[driver.PythonName(n)] = true
	}
	if len(opts.Machines) == 1 && !names["machine"] {
		names["machine"] = true
	}
	for _, nr := range opts.VLANs {
		names[vlanName(nr)] = true
	}
	r, err := rewrite(filename, src)
	if err != nil {
		return err
	}
	list := func() []string {
		var l []string
		for n := range names {
			l = append(l, n)
		}
		return append(l, universeNames()...)
	}
	f, err := fileOptions.Parse(filename, r.source, 0)
	if err != nil {
		return r.compileError(err, list)
	}
	if _, err := starlark.FileProgram(f, func(n string) bool { return names[n] }); err != nil {
		return r.compileError(err, list)
	}
	machineNames := map[string]bool{"machine": names["machine"]}
	for _, n := range opts.Machines {
		machineNames[driver.PythonName(n)] = true
	}
	if err := checkMethods(r, f, machineNames); err != nil {
		return err
	}
	if opts.ForkSubtests {
		return checkFork(r, func(n string) bool { return names[n] }, list)
	}
	return nil
}

// compile rewrites, parses and resolves a script against the session's
// globals.
func (s *Session) compile(filename string, src []byte) (*rewritten, *starlark.Program, error) {
	return s.compileWith(filename, src, s.globals)
}

// compileWith compiles against other predeclared names (a REPL's).
func (s *Session) compileWith(filename string, src []byte, predeclared starlark.StringDict) (*rewritten, *starlark.Program, error) {
	r, err := rewrite(filename, src)
	if err != nil {
		return nil, nil, err
	}
	_, prog, err := starlark.SourceProgramOptions(fileOptions, filename, r.source, predeclared.Has)
	if err != nil {
		return nil, nil, r.compileError(err, s.nameList(predeclared))
	}
	return r, prog, nil
}

func (s *Session) nameList(extra starlark.StringDict) func() []string {
	return func() []string {
		l := append(append([]string(nil), s.names...), universeNames()...)
		for k := range extra {
			l = append(l, k)
		}
		return l
	}
}

func universeNames() []string {
	l := make([]string, 0, len(starlark.Universe))
	for k := range starlark.Universe {
		l = append(l, k)
	}
	return l
}

// scriptError converts an execution error, naming the context's cause
// when the run was cancelled.
func (s *Session) scriptError(ctx context.Context, r *rewritten, err error) *ScriptError {
	se := r.evalError(err)
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		se.Msg = "test script stopped: " + cause.Error()
		se.Err = fmt.Errorf("%w (%w)", cause, err)
	}
	return se
}

// threadState is what one execution keeps per Starlark thread.
type threadState struct {
	script     *rewritten          // the script running, for positions
	testScript bool                // the configured test script runs
	repl       starlark.StringDict // a REPL's namespace (Exec), shared with test_script()
	seq        int                 // with-blocks entered so far
	pending    []*withIter         // with-blocks left early, whose exit waits for the outcome
	active     []*withIter         // with-blocks entered and not yet exited
	exitErr    error               // an exit that failed after its block completed
}

// exec runs fn on a new Starlark thread whose builtins block under ctx,
// and cancels the thread when ctx ends.
func (s *Session) exec(ctx context.Context, name string, r *rewritten, fn func(th *starlark.Thread) error) error {
	th := &starlark.Thread{Name: name, Print: func(_ *starlark.Thread, msg string) { s.writeStdout(msg + "\n") }}
	tctx := context.WithValue(ctx, threadKey{}, th)
	th.SetLocal(localContext, tctx)
	st := &threadState{script: r}
	th.SetLocal(localState, st)
	stop := context.AfterFunc(ctx, func() { th.Cancel(context.Cause(ctx).Error()) })
	defer stop()
	err := fn(th)
	rerr := errors.Join(s.resolvePending(th, err), s.sweep(th, err))
	if err == nil {
		err = rerr
	}
	return err
}

// writeStdout writes print's output in one Write, one print at a time.
func (s *Session) writeStdout(text string) error {
	s.printMu.Lock()
	defer s.printMu.Unlock()
	_, err := io.WriteString(s.stdout, text)
	return err
}

// contextOf returns the run context of a thread.
func contextOf(th *starlark.Thread) (context.Context, error) {
	if ctx, ok := th.Local(localContext).(context.Context); ok {
		return ctx, nil
	}
	return nil, ErrNoContext
}

func stateOf(th *starlark.Thread) *threadState {
	st, _ := th.Local(localState).(*threadState)
	return st
}

// threadContext is the run context of thread th, for the modules; a
// thread without one (no script runs) gets a cancelled context, so
// nothing blocks.
func threadContext(th *starlark.Thread) context.Context {
	if th != nil {
		if ctx, err := contextOf(th); err == nil {
			return ctx
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(ErrNoContext)
	return ctx
}

// logOf is the log a thread writes to: its forked subtest's, or the
// session's.
func (s *Session) logOf(th *starlark.Thread) driver.Logger {
	if fs := forkOf(th); fs != nil {
		return fs.log
	}
	return s.log
}

// call calls a Starlark callable from Go (retry's function, a polling
// condition, a QMP event filter) and settles the with-blocks it left.
func (s *Session) call(th *starlark.Thread, fn starlark.Value, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	v, err := starlark.Call(th, fn, args, kwargs)
	if rerr := s.resolvePending(th, err); err == nil && rerr != nil {
		err = rerr
	}
	return v, err
}

// failure reports a failure of thread th through its Reporter, or as a
// "!!!" warning.
func (s *Session) failure(th *starlark.Thread, msg string, loc *Location) {
	log, rep := s.log, s.opts.Reporter
	if fs := forkOf(th); fs != nil {
		log, rep = fs.log, fs.rep
	}
	ReportFailure(log, rep, msg, loc)
}

// ReportFailure reports a failure to rep, or to log as a "!!!" warning
// (without a Reporter), as every engine does.
func ReportFailure(log driver.Logger, rep Reporter, msg string, loc *Location) {
	if rep != nil {
		rep.Failure(msg, loc)
		return
	}
	if loc != nil {
		msg = loc.String() + ": " + msg
	}
	log.Warn("", "!!! "+msg)
}

// nopLogger discards everything (a Session without a driver, for Check).
type nopLogger struct{}

func (nopLogger) Info(string, string)               {}
func (nopLogger) Warn(string, string)               {}
func (nopLogger) Serial(string, string)             {}
func (nopLogger) Nested(string, string) func(error) { return func(error) {} }
func (nopLogger) Subtest(string) func(error)        { return func(error) {} }
