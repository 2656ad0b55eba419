package cpython

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/script"
)

// Options describe one script run on CPython.
type Options struct {
	// Options are the run's as for the Starlark runtime: Driver, the
	// script, Stdout (the interpreter's stdout; an *os.File is handed to
	// it as is), Logger and Reporter.
	script.Options
	// Python is the interpreter (a path, or a name looked up in PATH);
	// "" finds python3 (Find).
	Python string
}

// Run runs a test script to completion on CPython under ctx and the
// driver's global timeout, then runs `sync` on every machine that is up,
// like script.Run. Script failures are *script.ScriptError, positioned
// in the script as written; an interpreter that dies fails the run with
// an error wrapping ErrDied and quoting its stderr's end.
func Run(ctx context.Context, opts Options) error {
	if opts.Driver == nil {
		return errors.New("cpython: Options.Driver is nil")
	}
	python, err := Find(opts.Python)
	if err != nil {
		return err
	}
	e := newEngine(opts)
	var (
		mu        sync.Mutex
		scriptErr *script.ScriptError
	)
	err = e.d.Run(ctx, func(ctx context.Context) error {
		it, err := e.start(ctx, python)
		if err != nil {
			return err
		}
		defer it.stop()
		s := e.newSession(ctx, it.conn, e.log(), opts.Reporter)
		err = s.runScript(ctx, it, opts.Source)
		if errors.Is(err, script.ErrSubtestsFailed) {
			// Each failure is reported with its subtest already.
			it.stop()
			script.SyncMachines(ctx, e.d, e.log())
			return err
		}
		if err != nil {
			var se *script.ScriptError
			if errors.As(err, &se) {
				mu.Lock()
				scriptErr = se
				mu.Unlock()
			}
			it.kill()
			return err
		}
		it.stop()
		script.SyncMachines(ctx, e.d, e.log())
		return nil
	})
	// As in the Starlark runtime: keep the position when the driver
	// reports a global timeout without wrapping the script's error.
	mu.Lock()
	defer mu.Unlock()
	if se := (*script.ScriptError)(nil); err != nil && scriptErr != nil && !errors.As(err, &se) {
		return scriptErr
	}
	return err
}

func newEngine(opts Options) *engine {
	return &engine{d: opts.Driver, opts: opts, handles: newHandles()}
}

// log is the run's log.
func (e *engine) log() driver.Logger {
	if e.opts.Logger != nil {
		return e.opts.Logger
	}
	return e.d.Logger()
}

func (e *engine) newSession(ctx context.Context, c *conn, log driver.Logger, rep script.Reporter) *session {
	return &session{e: e, ctx: ctx, conn: c, log: log, rep: rep, filename: e.opts.Filename}
}

// start starts an interpreter for this run in the driver's private run
// directory; its stderr lines go to the run's log.
func (e *engine) start(ctx context.Context, python string) (*interp, error) {
	stdout := e.opts.Stdout
	if stdout == nil {
		stdout = os.Stdout
	}
	log := e.log()
	return start(ctx, python, e.d.RunDir(), stdout, func(line string) { log.Info("", "python: "+line) })
}

// Check compiles a script with the interpreter python and checks, as
// script.CheckWith does for Starlark, the names it uses (against what it
// defines and a run with opts' machines and VLANs predeclares) and the
// methods it calls on its machines (against the API table); it runs
// nothing. With ForkSubtests it also finds the statements between two
// top-level subtests.
// Errors in the script are *script.ScriptError (several joined); version
// is the interpreter's ("3.11.2").
func Check(ctx context.Context, python, filename string, src []byte, opts script.CheckOptions) (version string, err error) {
	dir, err := os.MkdirTemp("", "vmdriver-check-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	it, err := start(ctx, python, dir, nil, nil)
	if err != nil {
		return "", err
	}
	defer it.stop()
	e := newEngine(Options{Options: script.Options{Filename: filename}})
	s := e.newSession(ctx, it.conn, nil, nil)
	if err := it.conn.send(s.hello(src, true, opts)); err != nil {
		return "", s.died(ctx, it, err)
	}
	m, err := it.conn.recv(ctx)
	if err != nil {
		return "", s.died(ctx, it, err)
	}
	if m.Op != "done" {
		return "", fmt.Errorf("%w: check answered %q", ErrProtocol, m.Op)
	}
	lines := strings.Split(string(src), "\n")
	var errs []error
	for _, pe := range m.Errs {
		if pe.Between {
			pe.Msg = script.BetweenSubtests
		}
		loc := s.location(pe)
		if loc.Source == "" && loc.File == filename && loc.Line >= 1 && loc.Line <= len(lines) {
			loc.Source = strings.TrimRight(lines[loc.Line-1], "\r")
		}
		var err error = errors.New(pe.Msg)
		if pe.Between {
			err = script.ErrBetweenSubtests
		}
		errs = append(errs, &script.ScriptError{Msg: pe.Msg, Location: loc, Err: err})
	}
	return m.Version, errors.Join(errs...)
}
