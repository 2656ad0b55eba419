package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/script/cpython"
)

// Exit codes of a test run, beyond exitOK, exitFail and exitUsage.
const (
	exitTimeout = 3 // the global timeout ended the run
	exitInfra   = 4 // the run could not be set up (hypervisor missing, ...)
)

// testCmd is one way of running a test: a script file, a code string, a
// check without running, or the nixos-test-driver command line.
type testCmd int

const (
	cmdEvalFile testCmd = iota
	cmdEval
	cmdCheck
	cmdCompat // invoked as nixos-test-driver
)

// runTest implements eval-file (run), eval, check and the
// nixos-test-driver command line.
func runTest(ctx context.Context, kind testCmd, name string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runTestWith(ctx, kind, name, args, nil, stdin, stdout, stderr)
}

// runTestWith is runTest with adjust applied to the driver configuration
// the flags made.
func runTestWith(ctx context.Context, kind testCmd, name string, args []string, adjust func(*driver.Config), stdin io.Reader, stdout, stderr io.Writer) int {
	var f runFlags
	fs := newRunFlagSet(name, &f, stderr)
	if err := parseInterspersed(fs, args, &f); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(stderr, "vmdriver: "+format+"\n", a...)
		return code
	}
	if err := f.checkCombinations(); err != nil {
		return fail(exitUsage, "%v", err)
	}
	var code string // for eval
	if kind == cmdEval {
		if len(f.positional) != 1 {
			return fail(exitUsage, "eval takes exactly one argument, the code to run (got %d)", len(f.positional))
		}
		code, f.positional = f.positional[0], nil
	}
	if len(f.positional) > 1 {
		return fail(exitUsage, "%s takes one test script, got %d arguments: %q", name, len(f.positional), f.positional)
	}
	cfg, err := f.driverConfig()
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	if adjust != nil {
		adjust(&cfg)
	}

	// The script, read and checked before any machine starts.
	var filename string
	var src []byte
	switch {
	case kind == cmdEval:
		filename, src = "<eval>", []byte(code)
	case cfg.TestScript != "":
		filename = cfg.TestScript
		if src, err = os.ReadFile(filename); err != nil {
			return fail(exitUsage, "reading the test script: %v", err)
		}
	case f.interactive:
	default:
		return fail(exitUsage, "no test script: give one as an argument, in --config's test_script, or in $testScript")
	}
	names := make([]string, 0, len(cfg.Machines))
	for _, m := range cfg.Machines {
		names = append(names, m.Name)
	}
	var eng engine // Starlark unless the script needs CPython
	if src != nil {
		eng, err = chooseEngine(ctx, &f, filename, src, script.CheckOptions{Machines: names, VLANs: cfg.VLANs, ForkSubtests: f.forkSubtests})
		if err != nil {
			printScriptError(stderr, err)
			if f.python && errors.Is(err, hosttools.ErrMissing) {
				return exitInfra
			}
			return exitUsage
		}
	}
	if kind == cmdCheck {
		why := ""
		if eng.why != "" {
			why = ": " + eng.why
		}
		fmt.Fprintf(stdout, "%s: ok, runs on %s%s\n", filename, eng, why)
		return exitOK
	}

	log := report.New(report.Options{
		Out:         stderr,
		Format:      f.logFormat,
		Color:       colorFor(stderr),
		Level:       f.logLevel,
		SerialToOut: true,
		JUnit:       f.junitXML != "",
	})
	defer log.Close()
	if f.debugHook != "" {
		log.Warn("", "--debug-hook-attach is accepted for compatibility, but breakpoints are not supported")
	}
	start := time.Now()
	b, err := newBackend(cfg.Backend)
	if err != nil {
		return fail(exitUsage, "%v", err)
	}
	d, err := driver.New(ctx, cfg, driver.WithBackend(b), driver.WithLogger(log))
	if err != nil {
		log.Error("", err.Error())
		return exitInfra
	}
	defer d.Close()

	// With --fork-subtests, each subtest logs to a branch of log (a
	// script.Brancher), merged whole when the subtest ends.
	opts := script.Options{Driver: d, Filename: filename, Source: src, Stdout: stdout, Logger: log, Reporter: log,
		ForkSubtests: f.forkSubtests, Jobs: f.jobs}
	if f.interactive && !f.noInteractive {
		return repl(ctx, opts, stdin, stdout, stderr)
	}
	// Both engines run under the driver's global timeout.
	if eng.python != "" {
		log.Info("", fmt.Sprintf("running the test script on %s: %s", eng, eng.why))
		err = cpython.Run(ctx, cpython.Options{Options: opts, Python: eng.python})
	} else {
		err = script.Run(ctx, opts)
	}
	if err != nil {
		reportFailure(log, err)
	}
	log.Info("", fmt.Sprintf("test script finished in %.2fs", time.Since(start).Seconds()))
	d.Close()
	if jp := f.junitPath(cfg.OutputDir); jp != "" {
		if werr := log.WriteJUnitFile(jp); werr != nil {
			log.Error("", fmt.Sprintf("writing the JUnit report: %v", werr))
		}
	}
	return exitCode(err)
}

// exitCode maps a run's outcome to the documented exit codes.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, driver.ErrGlobalTimeout):
		return exitTimeout
	case errors.Is(err, hosttools.ErrMissing): // QEMU, vde_switch, ...: `make deps`
		return exitInfra
	case errors.Is(err, context.Canceled):
		return exitFail
	default:
		return exitFail
	}
}

func colorFor(w io.Writer) bool {
	if f, ok := w.(*os.File); ok {
		return report.ColorFor(f)
	}
	return false
}

// reportFailure prints the error that ended the script, anchor style:
// "!!!" lines with the script location, the source line and the message,
// preceded by the script's call stack when it has more than one frame.
func reportFailure(log *report.Logger, err error) {
	var se *script.ScriptError
	if !errors.As(err, &se) {
		log.Failure(err.Error(), nil)
		return
	}
	msg := se.Msg
	if len(se.Stack) > 1 {
		msg = strings.TrimRight(se.Traceback(), "\n")
	}
	log.Failure(msg, &se.Location)
}

// printScriptError prints errors found before the script ran (rewrite,
// syntax, unknown names) as "file:line:col: message" with the source line
// and a caret under the column.
func printScriptError(w io.Writer, err error) {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, err := range errs {
		var se *script.ScriptError
		if !errors.As(err, &se) {
			fmt.Fprintf(w, "vmdriver: %v\n", err)
			continue
		}
		fmt.Fprintf(w, "%s\n", se.Error())
		if src := se.Location.Source; src != "" {
			fmt.Fprintf(w, "    %s\n", src)
			if c := se.Location.Col; c > 0 && c <= len(src)+1 {
				pad := []byte(src[:c-1])
				for i, b := range pad {
					if b != '\t' {
						pad[i] = ' '
					}
				}
				fmt.Fprintf(w, "    %s^\n", pad)
			}
		}
	}
}
