package script_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/script"
)

func TestErrorPositions(t *testing.T) {
	e := machines(t, "server")
	se := e.scriptErr(lines(
		`# a comment`,
		`def helper(cmd):`,
		`    server.succeed(cmd)`,
		``,
		`with subtest("positions"):`,
		`    helper("exit {}".format(7))`,
	))
	if se.Location.File != "test.py" || se.Location.Line != 3 || se.Location.Source != "    server.succeed(cmd)" {
		t.Errorf("location = %+v", se.Location)
	}
	if len(se.Stack) != 2 {
		t.Fatalf("stack = %+v", se.Stack)
	}
	if f := se.Stack[0]; f.Func != "<module>" || f.Line != 6 || !strings.Contains(f.Source, `helper("exit {}".format(7))`) {
		t.Errorf("outer frame = %+v", f)
	}
	if f := se.Stack[1]; f.Func != "helper" || f.Line != 3 {
		t.Errorf("inner frame = %+v", f)
	}
	tb := se.Traceback()
	for _, want := range []string{
		"Traceback (most recent call last):",
		`File "test.py", line 6, in <module>`,
		`    helper("exit {}".format(7))`,
		`File "test.py", line 3, in helper`,
		"command `exit 7` failed (exit code 7)",
	} {
		if !strings.Contains(tb, want) {
			t.Errorf("traceback lacks %q:\n%s", want, tb)
		}
	}
	if !strings.HasPrefix(se.Error(), "test.py:3:") {
		t.Errorf("Error() = %q", se.Error())
	}
}

func TestDidYouMean(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"method", `server.wait_for_unti("x")`, "did you mean wait_for_unit?"},
		{"keyword", `server.wait_for_unit("x", timout=3)`, "did you mean timeout?"},
		{"keyword of a global", `retry(lambda x: True, timeuot=3)`, "did you mean timeout?"},
		{"global", `start_al()`, "undefined: start_al (did you mean start_all?)"},
		{"machine", `severs.succeed("true")`, "undefined: severs (did you mean server?)"},
		{"assertion", `t.assertEqul(1, 1)`, `t has no attribute or method "assertEqul" (did you mean assertEqual?)`},
		{"log", `log.inf("x")`, "did you mean info?"},
		{"polling condition", `polling_condition(lambda: True).wiat()`, "did you mean wait?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := machines(t, "server")
			se := e.wantErr(tt.src+"\n", tt.want)
			if se.Location.Line != 1 {
				t.Errorf("line %d, want 1", se.Location.Line)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	src := []byte(lines(
		`start_all()`,
		`with subtest("talk"):`,
		`    server.succeed("true")`,
		`    client.succeed("true")`,
	))
	if err := script.Check("t.py", src, []string{"server", "client"}); err != nil {
		t.Errorf("Check with both machines: %v", err)
	}
	err := script.Check("t.py", src, []string{"server", "clients"})
	var se *script.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("Check with an unknown machine = %v", err)
	}
	if !strings.Contains(se.Msg, "undefined: client") || se.Location.Line != 4 || se.Location.Source != `    client.succeed("true")` {
		t.Errorf("error = %+v", se)
	}
	// Several errors are all reported.
	err = script.Check("t.py", []byte("a.succeed('x')\nb.succeed('y')\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "undefined: a") || !strings.Contains(err.Error(), "undefined: b") {
		t.Errorf("two unknown names: %v", err)
	}
	// A single machine is also `machine`; Python names apply.
	if err := script.Check("t.py", []byte("machine.succeed('x')\nweb_1.succeed('x')\n"), []string{"web-1"}); err != nil {
		t.Errorf("single machine: %v", err)
	}
	// Unsupported Python is reported at its line.
	err = script.Check("t.py", []byte("x = 1\nclass Foo:\n    pass\n"), nil)
	if !errors.As(err, &se) || se.Location.Line != 2 || !strings.Contains(se.Msg, "class") {
		t.Errorf("class: %v", err)
	}
	// So are syntax errors.
	err = script.Check("t.py", []byte("x = 1\ny = = 2\n"), nil)
	if !errors.As(err, &se) || se.Location.Line != 2 {
		t.Errorf("syntax error: %v", err)
	}
}

func TestGlobalTimeoutStopsBusyLoop(t *testing.T) {
	e := newEnv(t, envConfig{machines: []string{"server"}, globalTimeout: 50 * time.Millisecond})
	err := e.run(lines(`x = 0`, `while True:`, `    x += 1`))
	if !errors.Is(err, driver.ErrGlobalTimeout) {
		t.Fatalf("err = %v, want ErrGlobalTimeout", err)
	}
	var se *script.ScriptError
	// Where the loop was interrupted depends on timing; that it is
	// reported as a script error at a script line does not.
	if !errors.As(err, &se) || se.Location.Line < 1 || se.Location.Line > 3 || !strings.Contains(se.Msg, "global timeout") {
		t.Errorf("script error = %+v", se)
	}
}

func TestGlobalTimeoutStopsBlockedCall(t *testing.T) {
	e := newEnv(t, envConfig{machines: []string{"server"}, globalTimeout: 50 * time.Millisecond})
	err := e.run(`server.wait_for_file("/never", timeout=600)` + "\n")
	if !errors.Is(err, driver.ErrGlobalTimeout) {
		t.Fatalf("err = %v, want ErrGlobalTimeout", err)
	}
}

// cancelWriter cancels a context on its first write.
type cancelWriter struct {
	once   sync.Once
	cancel context.CancelFunc
}

func (w *cancelWriter) Write(p []byte) (int, error) {
	w.once.Do(w.cancel)
	return len(p), nil
}

func TestContextCancelStopsScript(t *testing.T) {
	e := machines(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	opts := e.opts(lines(`print("started")`, `while True:`, `    pass`))
	opts.Stdout = &cancelWriter{cancel: cancel}
	err := script.Run(ctx, opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestGlobalTimeoutStopsModuleSleep checks that the modules block under
// the run's context.
func TestGlobalTimeoutStopsModuleSleep(t *testing.T) {
	e := newEnv(t, envConfig{globalTimeout: 50 * time.Millisecond})
	err := e.run(lines(`import time`, `time.sleep(600)`))
	if !errors.Is(err, driver.ErrGlobalTimeout) {
		t.Fatalf("err = %v, want ErrGlobalTimeout", err)
	}
}
