package script_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/script"
)

func TestMachineGlobals(t *testing.T) {
	e := machines(t, "web-1", "db")
	e.mustRun(lines(
		`assert [m.name for m in machines] == ["db", "web-1"]`,
		`assert web_1.name == "web-1" and db.name == "db"`,
		`assert driver.machines == machines`,
		`assert driver.out_dir == "`+e.outDir+`"`,
		`assert vlans == []`,
	))
	if err := script.Check("t.py", []byte("machine.succeed('true')\n"), []string{"web-1", "db"}); err == nil {
		t.Error("with two machines, `machine` is defined")
	}
}

func TestMachineAlias(t *testing.T) {
	t.Run("single machine", func(t *testing.T) {
		e := machines(t, "server")
		e.mustRun(lines(`machine.succeed("true")`, `machine.succeed("echo again")`, `assert machine.name == "server"`))
		if n := e.log.Count("warn", "deprecated"); n != 1 {
			t.Errorf("%d deprecation warnings, want 1: %q", n, e.log.All("warn"))
		}
		if got := e.commands("server"); !slices.Equal(got, []string{"true", "echo again"}) {
			t.Errorf("commands = %q", got)
		}
	})
	t.Run("named machine", func(t *testing.T) {
		e := machines(t, "machine")
		e.mustRun(`machine.succeed("true")` + "\n")
		if n := e.log.Count("warn", "deprecated"); n != 0 {
			t.Errorf("%d deprecation warnings for a machine really named machine", n)
		}
	})
}

func TestStartAllJoinAll(t *testing.T) {
	e := machines(t, "a", "b")
	e.mustRun(lines(
		`start_all()`,
		`assert a.booted and b.booted`,
		`a.execute("poweroff", check_return=False)`,
		`b.execute("poweroff", check_return=False)`,
		`join_all()`,
		`assert not a.booted and not b.booted`,
	))
	for _, n := range []string{"a", "b"} {
		if s := e.b.Starts(n); s != 1 {
			t.Errorf("%s started %d times", n, s)
		}
	}
	if !e.log.Has("open", "start all VMs") {
		t.Error("start_all logged no block")
	}
}

func TestCreateMachine(t *testing.T) {
	e := machines(t)
	e.mustRun(lines(
		`m = create_machine("/nix/store/x-run-extra-vm")`,
		`assert m.name == "extra"`,
		`m.succeed("echo hi")`,
		`n = create_machine("/bin/start", name="other", keep_machine_state=False)`,
		`assert n.name == "other"`,
		`assert machines == []`,
	))
	if got := e.commands("extra"); !slices.Equal(got, []string{"echo hi"}) {
		t.Errorf("commands = %q", got)
	}
	e.wantErr(`create_machine("/bin/x", "positional-name")`+"\n", "create_machine: got 2 positional arguments, want at most 1")
}

func TestSubtests(t *testing.T) {
	e := machines(t, "server")
	se := e.wantErr(lines(
		`with subtest("outer"):`,
		`    with subtest("first"):`,
		`        server.succeed("true")`,
		`    with subtest("second"):`,
		`        server.succeed("exit 1")`,
		`    server.succeed("echo never")`,
	), "command `exit 1` failed")
	if se.Location.Line != 5 {
		t.Errorf("failure at line %d, want 5", se.Location.Line)
	}
	got := e.log.All("subtest", "subtest-ok", "subtest-fail")
	want := []string{"subtest||outer", "subtest||first", "subtest-ok||first", "subtest||second", "subtest-fail||second", "subtest-fail||outer"}
	if !slices.Equal(got, want) {
		t.Errorf("subtests:\n got %q\nwant %q", got, want)
	}
	fails := e.rep.Failures()
	if len(fails) != 2 {
		t.Fatalf("failures = %+v, want 2", fails)
	}
	for i, name := range []string{"second", "outer"} {
		f := fails[i]
		prefix := `Test "` + name + `" failed with error: "machine server: command ` + "`exit 1`" + ` failed (exit code 1)`
		if !strings.HasPrefix(f.Msg, prefix) {
			t.Errorf("failure %d = %q, want prefix %q", i, f.Msg, prefix)
		}
		if f.Loc == nil || f.Loc.Line != 5 || f.Loc.File != "test.py" || !strings.Contains(f.Loc.Source, `server.succeed("exit 1")`) {
			t.Errorf("failure %d location = %+v", i, f.Loc)
		}
	}
	if slices.Contains(e.commands("server"), "echo never") {
		t.Error("the script went on after the failure")
	}
}

func TestSubtestLeftByReturnAndBreak(t *testing.T) {
	e := machines(t, "server")
	e.mustRun(lines(
		`def f():`,
		`    with subtest("returns"):`,
		`        return 1`,
		`f()`,
		`server.log("after return")`,
		`for i in range(3):`,
		`    with subtest("loops"):`,
		`        for j in range(3):`,
		`            break`,
		`x = f()`,
	))
	got := e.log.All("subtest", "subtest-ok", "subtest-fail", "info")
	want := []string{"subtest||returns", "subtest-ok||returns", "info|server|after return", "subtest||loops", "subtest-ok||loops", "subtest||loops", "subtest-ok||loops", "subtest||loops", "subtest-ok||loops", "subtest||returns", "subtest-ok||returns"}
	if !containsInOrder(got, want) || slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "subtest-fail") }) {
		t.Errorf("log:\n got %q\nwant %q", got, want)
	}
}

func TestSubtestPureStarlarkError(t *testing.T) {
	e := machines(t)
	e.wantErr(lines(
		`with subtest("lookup"):`,
		`    x = {}["missing"]`,
	), `key "missing" not in dict`)
	fails := e.rep.Failures()
	if len(fails) != 1 || !strings.Contains(fails[0].Msg, `Test "lookup" failed`) || fails[0].Loc == nil || fails[0].Loc.Line != 2 {
		t.Errorf("failures = %+v", fails)
	}
	if got := e.log.All("subtest-fail"); !slices.Equal(got, []string{"subtest-fail||lookup"}) {
		t.Errorf("log = %q", got)
	}
}

func TestRetry(t *testing.T) {
	e := machines(t)
	e.mustRun(lines(
		`calls = []`,
		`def once(last):`,
		`    calls.append(last)`,
		`    return True`,
		`retry(once)`,
		`assert calls == [False]`,
		`calls.clear()`,
		`def at_last(last):`,
		`    calls.append(last)`,
		`    return last`,
		`retry(at_last, timeout=0.05)`,
		`assert calls == [False, True], calls`,
		`calls.clear()`,
		`retry(at_last, timeout_seconds=0.05)`,
		`assert calls == [False, True], calls`,
	))
	se := e.wantErr(lines(`retry(lambda last: False, timeout=0.05)`), "action timed out")
	if !errors.Is(se, driver.ErrRetryTimeout) {
		t.Errorf("%v does not wrap ErrRetryTimeout", se)
	}
	e.wantErr(`retry(lambda last: fail("inner"), timeout=5)`+"\n", "inner")
	e.wantErr(`retry(lambda last: True, timeout=1, timeout_seconds=1)`+"\n", "not both")
}

func TestPollingCondition(t *testing.T) {
	e := machines(t, "server")
	se := e.wantErr(lines(
		`state = {"ok": True}`,
		`def healthy():`,
		`    "the server is healthy"`,
		`    server.succeed("echo probe")`,
		`    return state["ok"]`,
		`cond = polling_condition(healthy, interval=0.000000001)`,
		`assert cond.description == "the server is healthy"`,
		`with cond:`,
		`    server.succeed("echo one")`,
		`    state["ok"] = False`,
		`    server.succeed("echo two")`,
		`    server.succeed("echo three")`,
	), "polling condition failed", "the server is healthy", "returned False")
	if !errors.Is(se, driver.ErrPollingCondition) {
		t.Errorf("%v does not wrap ErrPollingCondition", se)
	}
	if se.Location.Line != 11 {
		t.Errorf("failure at line %d, want 11", se.Location.Line)
	}
	want := []string{"echo probe", "echo one", "echo probe"}
	if got := e.commands("server"); !slices.Equal(got, want) {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

func TestPollingConditionForms(t *testing.T) {
	e := machines(t, "server")
	e.mustRun(lines(
		`checks = []`,
		`def cond():`,
		`    checks.append(1)`,
		`cond = polling_condition(interval=0.000000001, description="decorated")(cond)`,
		`assert cond.description == "decorated"`,
		`with cond:`,
		`    server.succeed("true")`,
		`    server.succeed("true")`,
		`assert len(checks) == 2, checks`,
		`server.succeed("true")`,
		`assert len(checks) == 2, "checked outside its block"`,
		`cond.wait(timeout=5)`,
		`assert len(checks) == 3`,
		`def named():`,
		`    return True`,
		`c2 = polling_condition(named, seconds_interval=1)`,
		`assert c2.description == "named"`,
		`c3 = polling_condition(lambda: fail("broken"))`,
		`with c3:`,
		`    pass`,
	))
	if !e.log.Has("warn", "seconds_interval is deprecated") {
		t.Error("no deprecation warning for seconds_interval")
	}
	e.wantErr(lines(
		`def never():`,
		`    return False`,
		`polling_condition(never).wait(timeout=0.05)`,
	), "action timed out")
}

func TestLogAndSerial(t *testing.T) {
	e := machines(t)
	e.wantErr(lines(
		`log.info("an info")`,
		`log.warning("a warning")`,
		`with log.nested("a block"):`,
		`    log.info("inside")`,
		`serial_stdout_off()`,
		`serial_stdout_on()`,
		`log.error("fatal")`,
		`log.info("never")`,
	), "fatal")
	want := []string{"info||an info", "warn||a warning", "open||a block", "info||inside", "ok||a block", "warn||error: fatal"}
	if got := e.log.All(); !containsInOrder(got, want) || e.log.Has("info", "never") {
		t.Errorf("log = %q", got)
	}
	if !slices.Equal(e.rep.Serial(), []bool{false, true}) {
		t.Errorf("serial = %v", e.rep.Serial())
	}
}

func TestSerialWithoutReporter(t *testing.T) {
	e := machines(t)
	opts := e.opts("serial_stdout_off()\n")
	opts.Reporter = nil
	if err := script.Run(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.log.SerialSwitches(), []bool{false}) {
		t.Errorf("logger got serial %v", e.log.SerialSwitches())
	}
}

func TestHelpers(t *testing.T) {
	e := machines(t)
	e.mustRun(lines(
		`print("a", 1, None, sep="-")`,
		`print("b", end="")`,
		`print()`,
		`assert sum([1, 2, 3]) == 6 and sum([0.5], 1) == 1.5`,
		`assert isinstance("x", str) and isinstance(1, (str, int)) and not isinstance(1, str)`,
		`assert isinstance(True, int) and isinstance([], list) and isinstance({}, dict)`,
		`assert fmt_(".2f", 3.14159) == "3.14"`,
		`assert Exception("boom") == "Exception: boom"`,
		`assert os != None`,
		`import json`,
		`assert json != None`,
	))
	if got := e.stdout.String(); got != "a-1-None\nb\n" {
		t.Errorf("stdout = %q", got)
	}
	tests := []struct{ src, msg string }{
		{`raise Exception("boom")`, "Exception: boom"},
		{`raise RuntimeError("x", 1)`, `RuntimeError: ('x', 1)`},
		{`raise ValueError()`, "ValueError"},
		{`fail("plain", "words")`, "plain words"},
		{`assert 1 == 2`, "AssertionError"},
		{`assert_(1 == 2, "numbers differ")`, "AssertionError: numbers differ"},
		{`import pathlibx`, `import: no module named "pathlibx"`},
		{`x = import_("json", "nosuch")`, `import: module json has no member "nosuch"`},
		{`isinstance(1, len)`, "isinstance: <built-in function len> is not a type"},
		{`test_script()`, "the test script is already running"},
	}
	for _, tt := range tests {
		e.wantErr(tt.src+"\n", tt.msg)
	}
	se := e.scriptErr("import jsno\n")
	if !strings.Contains(se.Msg, "did you mean json?") || !strings.Contains(se.Msg, "available: datetime, json, math, os") {
		t.Errorf("unknown module error = %q", se.Msg)
	}
}

func TestSessionExecAndTestScript(t *testing.T) {
	e := machines(t, "server")
	opts := e.opts(lines(`server.succeed("echo from the script")`, `counter.append(1)`))
	s, err := script.NewSession(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	globals := starlark.StringDict{}
	for k, v := range s.Globals() {
		globals[k] = v
	}
	ctx := testCtx(t)
	if err := s.Exec(ctx, "<repl>", []byte("counter = []\n"), globals); err != nil {
		t.Fatal(err)
	}
	// The script shares the REPL's namespace, like the NixOS driver's.
	if err := s.Exec(ctx, "<repl>", []byte("test_script()\n"), globals); err != nil {
		t.Fatal(err)
	}
	if got := globals["counter"].String(); got != "[1]" {
		t.Errorf("counter = %s after test_script()", got)
	}
	if err := s.Exec(ctx, "<repl>", []byte("server.succeed('echo direct')\nout = server.succeed('echo x')\n"), globals); err != nil {
		t.Fatal(err)
	}
	if globals["out"] != starlark.String("x\n") {
		t.Errorf("out = %v", globals["out"])
	}
	if err := s.Exec(ctx, "<repl>", []byte("server.wait_for_unti('x')\n"), globals); err == nil || !strings.Contains(err.Error(), "did you mean wait_for_unit?") {
		t.Errorf("misspelt method in the REPL: %v", err)
	}
	if err := s.Exec(ctx, "<repl>", []byte("undefined_name\n"), globals); err == nil || !strings.Contains(err.Error(), "undefined: undefined_name") {
		t.Errorf("undefined name in the REPL: %v", err)
	}

	// Globals alone: builtins need a thread from Exec.
	g := script.Globals(e.d, script.Options{})
	th := &starlark.Thread{}
	_, err = starlark.Call(th, g["start_all"], nil, nil)
	if !errors.Is(err, script.ErrNoContext) {
		t.Errorf("start_all on a foreign thread = %v", err)
	}
}

func TestTestScript(t *testing.T) {
	e := machines(t, "server")
	opts := e.opts(lines(`server.succeed("echo from the script")`))
	s, err := script.NewSession(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	globals := starlark.StringDict{}
	for k, v := range s.Globals() {
		globals[k] = v
	}
	for range 2 {
		if err := s.Exec(testCtx(t), "<repl>", []byte("test_script()\n"), globals); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.commands("server"); !slices.Equal(got, []string{"echo from the script", "echo from the script"}) {
		t.Errorf("commands = %q", got)
	}
	if n := e.log.Count("open", "run the VM test script"); n != 2 {
		t.Errorf("%d test script blocks", n)
	}
}

func TestCheckFailedIsRequestedAssertion(t *testing.T) {
	e := machines(t)
	se := e.wantErr(`t.assertEqual(1, 2)`+"\n", "1 != 2")
	if !errors.Is(se, machine.ErrCheckFailed) {
		t.Errorf("%v does not wrap ErrCheckFailed", se)
	}
}

// TestWithNeverIterated checks that context managers entered by with_
// but never iterated (a run cancelled between with_ and its loop) are
// exited when the run ends.
func TestWithNeverIterated(t *testing.T) {
	e := machines(t, "server")
	e.mustRun(lines(
		`def bad():`,
		`    return False`,
		`x = with_(polling_condition(bad), subtest("orphan"))`,
	))
	if got := e.log.All("subtest", "subtest-ok"); !slices.Equal(got, []string{"subtest||orphan", "subtest-ok||orphan"}) {
		t.Errorf("subtests = %q", got)
	}
	// The condition is no longer active.
	e.mustRun(`server.succeed("true")` + "\n")
}
