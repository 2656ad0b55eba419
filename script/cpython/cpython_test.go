package cpython_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/script/cpython"
)

// TestSameLogTree runs scripts on Starlark and on CPython and requires
// the same log, the same failures reported and the same error.
func TestSameLogTree(t *testing.T) {
	for name, src := range map[string]string{
		"passes": lines(
			`start_all()`,
			`server.succeed("echo hi", "true")`,
			`with subtest("one"):`,
			`    server.succeed("true")`,
			`    status, out = server.execute("exit 3")`,
			`    assert status == 3`,
			`with log.nested("a block"):`,
			`    server.log("inside")`,
			`    log.info("a line")`,
			`retry(lambda last: server.succeed("true") == "")`,
			`server.wait_until_succeeds("true")`,
		),
		"subtest fails": lines(
			`start_all()`,
			`with subtest("one"):`,
			`    server.succeed("true")`,
			`with subtest("two"):`,
			`    server.succeed("exit 3")`,
			`server.succeed("true")`,
		),
		"assertion fails": lines(
			`with subtest("numbers"):`,
			`    t.assertEqual(1, 2)`,
		),
		"polling condition fails": lines(
			`import time`,
			`server.succeed("echo ok > /state")`,
			`@polling_condition(interval=0.001)`,
			`def state_ok():`,
			`    return server.succeed("cat /state") == "ok\n"`,
			`with state_ok:`,
			`    server.succeed("true")`,
			`    server.succeed("echo broken > /state")`,
			`    time.sleep(0.005) # the interval passes`,
			`    server.succeed("true")`,
		),
	} {
		t.Run(name, func(t *testing.T) {
			star, py := newEnv(t, "server"), newEnv(t, "server")
			serr := script.Run(testCtx(t), star.opts(src))
			perr := py.run(src)
			// Serial lines arrive from the console's goroutine, at any point.
			if got, want := py.log.Except("serial"), star.log.Except("serial"); !slices.Equal(got, want) {
				t.Errorf("CPython log:\n  %s\nStarlark log:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			pf, sf := py.rep.Failures(), star.rep.Failures()
			if len(pf) != len(sf) {
				t.Fatalf("CPython reported %d failures, Starlark %d: %v / %v", len(pf), len(sf), pf, sf)
			}
			for i := range pf {
				if pf[i].Msg != sf[i].Msg || (pf[i].Loc == nil) != (sf[i].Loc == nil) || (pf[i].Loc != nil && pf[i].Loc.Line != sf[i].Loc.Line) {
					t.Errorf("failure %d: CPython %q at %v, Starlark %q at %v", i, pf[i].Msg, pf[i].Loc, sf[i].Msg, sf[i].Loc)
				}
			}
			if (serr == nil) != (perr == nil) {
				t.Fatalf("Starlark: %v; CPython: %v", serr, perr)
			}
			if serr == nil {
				return
			}
			var ss, ps *script.ScriptError
			if !errors.As(serr, &ss) || !errors.As(perr, &ps) {
				t.Fatalf("want *ScriptError from both, got %T and %T", serr, perr)
			}
			if ps.Msg != ss.Msg || ps.Location.Line != ss.Location.Line || ps.Location.Source != ss.Location.Source {
				t.Errorf("CPython error %q at %v, Starlark %q at %v", ps.Msg, ps.Location, ss.Msg, ss.Location)
			}
			for _, target := range []error{machine.ErrCheckFailed, driver.ErrPollingCondition} {
				if errors.Is(ps, target) != errors.Is(ss, target) {
					t.Errorf("errors.Is(%v): CPython %v, Starlark %v", target, errors.Is(ps, target), errors.Is(ss, target))
				}
			}
		})
	}
}

// TestPythonLanguage runs what only CPython runs: classes, try/except,
// generators, the walrus, global statements and imports from PYTHONPATH.
func TestPythonLanguage(t *testing.T) {
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, "helpers_mod.py"), []byte("def greet(m):\n    return m.succeed('echo hello ' + m.name).strip()\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PYTHONPATH", lib)
	e := newEnv(t, "server", "client")
	e.mustRun(lines(
		`import helpers_mod`,
		`from dataclasses import dataclass`,
		`class Checked(Machine):`,
		`    def succeed_twice(self, cmd):`,
		`        return [self.succeed(cmd), self.succeed(cmd)]`,
		`c = Checked(server)`,
		`assert c == server and isinstance(server, Machine) and isinstance(c, Checked)`,
		`print("twice", c.succeed_twice("echo x"), repr(c))`,
		`try:`,
		`    server.succeed("exit 4")`,
		`except AssertionError as e:`,
		`    print("caught:", e)`,
		`def outputs():`,
		`    for m in machines:`,
		`        yield m.succeed("hostname").strip()`,
		`print("gen", list(outputs()))`,
		`if (n := len(machines)) == 2:`,
		`    print("walrus", n)`,
		`calls = 0`,
		`def bump():`,
		`    global calls`,
		`    calls += 1`,
		`bump(); bump()`,
		`print("global", calls)`,
		`print(helpers_mod.greet(client))`,
		`@dataclass`,
		`class P:`,
		`    x: int`,
		`print(P(3))`,
	))
	out := e.stdout.String()
	for _, want := range []string{
		"twice ['x\\n', 'x\\n'] <Checked 'server'>",
		"caught: machine server: command `exit 4` failed (exit code 4)",
		"gen ['client', 'server']",
		"walrus 2",
		"global 2",
		"hello client",
		"P(x=3)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

// TestExceptions checks which exception each failure raises, and that a
// script's own exception comes back through the engine as itself.
func TestExceptions(t *testing.T) {
	e := newEnvWith(t, 0, func(_ string, g *mock.Guest) {
		g.AnswerFunc("emit events", func(context.Context, mock.Request) mock.Reply {
			g.EmitEvent("RESET", nil)
			g.EmitEvent("STOP", map[string]any{"reason": "test"})
			return mock.Reply{}
		})
	}, "server")
	e.mustRun(lines(
		`import datetime, inspect`,
		`def raises(exc, fn, *args, **kwargs):`,
		`    try:`,
		`        fn(*args, **kwargs)`,
		`    except exc as e:`,
		`        return str(e)`,
		`    raise Exception("no %s from %s" % (exc.__name__, fn))`,
		`print(raises(RequestedAssertionFailed, server.succeed, "exit 2"))`,
		`print(raises(TimeoutError, server.wait_until_succeeds, "false", timeout=0.01))`,
		`print(raises(AssertionError, server.wait_until_succeeds, "false", timeout=datetime.timedelta(milliseconds=10)))`,
		`print(raises(TypeError, server.wait_for_open_port, "80"))`,
		`print(raises(TypeError, server.execute))`,
		`print(raises(TypeError, server.succeed, "true", timout=3))`,
		`print(raises(ValueError, server.wait_for_file, "/x", timeout=-1))`,
		`print(raises(NotImplementedError, server.shell_interact))`,
		`print(raises(TypeError, retry, "not a function"))`,
		`def boom(last):`,
		`    raise KeyError("from the callback")`,
		`print(raises(KeyError, retry, boom))`,
		`seen = []`,
		`def want_stop(ev):`,
		`    seen.append(ev["event"])`,
		`    server.succeed("true")`,
		`    return ev["event"] == "STOP"`,
		`server.succeed("emit events")`,
		`ev = server.wait_for_qmp_event(want_stop, timeout=5)`,
		`print("event", ev["event"], ev["data"], seen)`,
		`print("sig", inspect.signature(server.succeed), inspect.signature(Machine.execute))`,
		`print("doc", server.wait_for_unit.__doc__.splitlines()[0])`,
		`print(raises(VMDriverError, test_script))`,
	))
	out := e.stdout.String()
	for _, want := range []string{
		"command `exit 2` failed (exit code 2)",
		"timed out after 0.01 seconds waiting for `false`",
		"wait_for_open_port: for parameter port: got str, want int",
		"Machine.execute() missing 1 required positional argument: 'command'",
		"Machine.succeed() got an unexpected keyword argument 'timout'",
		"wait_for_file: for parameter timeout: negative duration",
		"shell_interact: not supported yet (interactive shells)",
		"retry: for parameter fn: got str, want a function",
		"'from the callback'",
		"event STOP {'reason': 'test'} ['RESET', 'STOP']",
		"sig (*commands, timeout=None) (self, command, check_return=True, check_output=True, timeout=900)",
		"doc Wait until a unit is active; fail at once if it failed.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "test_script: the test script is already running") {
		t.Errorf("test_script should raise VMDriverError:\n%s", out)
	}
}

// TestPollingConditionFailsMidRun: a condition that stops holding ends
// the run at the next machine command, named in the log.
func TestPollingConditionFailsMidRun(t *testing.T) {
	e := newEnv(t, "server")
	se := e.scriptErr(lines(
		`import time`,
		`server.succeed("echo up > /service")`,
		`@polling_condition(interval=0.001)`,
		`def service_up():`,
		`    "the service is up"`,
		`    return server.succeed("cat /service") == "up\n"`,
		`with service_up:`,
		`    server.succeed("true")`,
		`    server.succeed("echo down > /service")`,
		`    time.sleep(0.005) # the interval passes`,
		`    server.succeed("true")`,
		`    print("not reached")`,
	))
	if !errors.Is(se, driver.ErrPollingCondition) || se.Location.Line != 11 {
		t.Errorf("error %v at line %d, want a polling condition failure at line 11", se, se.Location.Line)
	}
	if !strings.Contains(se.Msg, "the service is up") || !strings.Contains(se.Msg, "service_up returned False") {
		t.Errorf("message %q should name the condition and its result", se.Msg)
	}
	if strings.Contains(e.stdout.String(), "not reached") || !e.log.Has("", "polling condition failed: the service is up") {
		t.Errorf("the run went on, or the log does not say so:\n%s", strings.Join(e.log.All(), "\n"))
	}
}

// TestInterpreterDies: the interpreter's end fails the run with its exit
// status and the end of its stderr; nothing of it is left.
func TestInterpreterDies(t *testing.T) {
	e := newEnv(t, "server")
	start := time.Now()
	se := e.scriptErr(lines(
		`import os, sys`,
		`server.succeed("true")`,
		`sys.stderr.write("last words\n")`,
		`sys.stderr.flush()`,
		`os._exit(7)`,
	))
	if !errors.Is(se, cpython.ErrDied) || !strings.Contains(se.Msg, "exit status 7") || !strings.Contains(se.Msg, "last words") {
		t.Errorf("error %q, want ErrDied with the status and stderr", se.Msg)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("noticing the death took %s", d)
	}
	if !e.log.Has("", "python: last words") {
		t.Errorf("stderr did not reach the log:\n%s", strings.Join(e.log.All(), "\n"))
	}
	left, _ := filepath.Glob(filepath.Join(e.d.RunDir(), "python-*"))
	if len(left) > 0 {
		t.Errorf("bridge directories left: %v", left)
	}
	se = e.scriptErr("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
	if !strings.Contains(se.Msg, "killed by signal killed") {
		t.Errorf("error %q, want the signal", se.Msg)
	}
}

// TestGlobalTimeoutEndsHungPython: a script stuck in Python is ended by
// the global timeout.
func TestGlobalTimeoutEndsHungPython(t *testing.T) {
	e := newEnvWith(t, 500*time.Millisecond, nil, "server")
	start := time.Now()
	err := e.run("server.succeed('true')\nwhile True:\n    pass\n")
	if !errors.Is(err, driver.ErrGlobalTimeout) {
		t.Fatalf("error %v, want the global timeout", err)
	}
	var se *script.ScriptError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Msg, "test script stopped: global timeout") {
		t.Errorf("error %v, want the script stopped by the global timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the run took %s after a 0.5 s global timeout", d)
	}
}

// TestSyntaxAndCheck: errors found before anything runs, at their line
// and column.
func TestSyntaxAndCheck(t *testing.T) {
	py := python(t)
	ctx := testCtx(t)
	v, err := cpython.Check(ctx, py, "test.py", []byte("x = 1\nif x = 2:\n    pass\n"), script.CheckOptions{Machines: []string{"server"}})
	var se *script.ScriptError
	if !errors.As(err, &se) || se.Location.Line != 2 || se.Location.Col == 0 || !strings.HasPrefix(se.Msg, "syntax error:") || se.Location.Source != "if x = 2:" {
		t.Errorf("Check = %v (%+v), want a syntax error at line 2 with its column and source", err, se)
	}
	if !strings.HasPrefix(v, "3.") {
		t.Errorf("version %q", v)
	}
	_, err = cpython.Check(ctx, py, "test.py", []byte("server.wait_for_unti('x')\nserver.shell_interact()\nother = server\nservre.succeed(other.whatever)\n"), script.CheckOptions{Machines: []string{"server"}})
	for _, want := range []string{
		`test.py:1:8: machine server has no attribute or method "wait_for_unti" (did you mean wait_for_unit?)`,
		"test.py:2:8: shell_interact: not supported yet",
		"test.py:4:1: undefined: servre (did you mean server?)",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %v, want %q", err, want)
		}
	}
	if _, err := cpython.Check(ctx, py, "test.py", []byte("class M(Machine):\n    pass\nserver = M(server)\nserver.anything()\n"), script.CheckOptions{Machines: []string{"server"}}); err != nil {
		t.Errorf("a rebound machine name is the script's own: %v", err)
	}
	e := newEnv(t, "server")
	se = e.scriptErr("server.succeed('true'\n")
	if se.Location.Line != 1 || !strings.HasPrefix(se.Msg, "syntax error:") {
		t.Errorf("Run: %v, want a syntax error at line 1", se)
	}
	if g := e.b.Guest("server"); g != nil {
		t.Errorf("a machine started for a script with a syntax error")
	}
}

// TestDeprecationsAndAlias: the implicit `machine` warns once; deprecated
// parameters warn like on Starlark.
func TestDeprecationsAndAlias(t *testing.T) {
	e := newEnv(t, "server")
	e.mustRun(lines(
		`machine.succeed("true")`,
		`machine.succeed("true")`,
		`assert machine == server`,
		`@polling_condition(seconds_interval=5)`,
		`def holds():`,
		`    return True`,
		`serial_stdout_off()`,
		`serial_stdout_on()`,
	))
	n := 0
	for _, l := range e.log.All() {
		if strings.Contains(l, "using the implicit name `machine`") {
			n++
		}
	}
	if n != 1 || !e.log.Has("", "polling_condition: seconds_interval is deprecated, use interval") {
		t.Errorf("want one alias warning and a deprecation:\n%s", strings.Join(e.log.All(), "\n"))
	}
	if got := e.rep.Serial(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("serial output switched %v", got)
	}
}

// TestForkSubtests: with ForkSubtests each top-level subtest runs on
// clones of the machines in a fork of the interpreter: it sees set-up's
// state, not another subtest's, and the tail sees the originals.
func TestForkSubtests(t *testing.T) {
	e := newEnv(t, "server")
	opts := e.opts(lines(
		`start_all()`,
		`server.succeed("echo base > /setup")`,
		`counter = [0]`,
		`with subtest("one"):`,
		`    counter[0] += 1`,
		`    server.succeed("echo 1 > /one")`,
		`    print("one sees", counter[0], server.succeed("cat /setup").strip())`,
		`with subtest("two"):`,
		`    counter[0] += 1`,
		`    print("two sees", counter[0], server.execute("cat /one")[0])`,
		`with subtest("fails"):`,
		`    server.succeed("exit 2")`,
		`print("tail", counter[0], server.execute("cat /one")[0], server.succeed("cat /setup").strip())`,
	))
	opts.ForkSubtests = true
	err := cpython.Run(testCtx(t), cpython.Options{Options: opts, Python: python(t)})
	if !errors.Is(err, script.ErrSubtestsFailed) || !strings.Contains(err.Error(), `1 of 3 ("fails")`) {
		t.Fatalf("Run = %v, want one of three subtests failed", err)
	}
	for _, want := range []string{"one sees 1 base", "two sees 1 1", "tail 0 1 base"} {
		if !strings.Contains(e.stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, e.stdout.String())
		}
	}
	if f := e.rep.Failures(); len(f) != 1 || !strings.HasPrefix(f[0].Msg, `Test "fails" failed with error: "machine server-`) || f[0].Loc == nil || f[0].Loc.Line != 12 {
		t.Errorf("failures %+v, want the subtest \"fails\" at line 12", f)
	}
	if n := e.log.Count("subtest", ""); n != 3 || !e.log.Has("info", "running 3 subtests on clones") {
		t.Errorf("%d subtests logged:\n%s", n, strings.Join(e.log.All(), "\n"))
	}

	_, err = cpython.Check(testCtx(t), python(t), "test.py", []byte(lines(
		`with subtest("a"):`,
		`    pass`,
		`x = 1`,
		`with subtest("b"):`,
		`    pass`,
	)), script.CheckOptions{ForkSubtests: true})
	var se *script.ScriptError
	if !errors.Is(err, script.ErrBetweenSubtests) || !errors.As(err, &se) || se.Location.Line != 3 {
		t.Errorf("Check = %v, want the statement between subtests at line 3", err)
	}
}
