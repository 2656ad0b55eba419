package script_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/script"
)

// TestPythonScript runs Python test-script syntax end to end: the
// rewrite's with, f-strings with format specs, decorators, imports,
// assert, raise and timedelta timeouts.
func TestPythonScript(t *testing.T) {
	e := newEnv(t, envConfig{machines: []string{"server"}, guest: scriptGuest})
	e.mustRun(lines(
		`import os.path`,
		`from datetime import timedelta`,
		``,
		`start_all()`,
		``,
		`@polling_condition`,
		`def probed():`,
		`    "the server answers"`,
		`    server.succeed("echo probe")`,
		``,
		`@polling_condition(interval=timedelta(microseconds=1), description="custom")`,
		`def checked() -> bool:`,
		`    return True`,
		``,
		`assert probed.description == "the server answers"`,
		`assert checked.description == "custom"`,
		``,
		`with subtest("rewrite"), server.nested("block") as nothing:`,
		`    out = server.succeed(f"echo {1 + 1:03d}")`,
		`    assert out == "002\n", f"got {out!r}"`,
		`    assert nothing is None`,
		`with probed:`,
		`    server.succeed("echo guarded")`,
		``,
		`server.wait_for_file("/etc/hello", timeout=timedelta(seconds=5))`,
		`server.sleep(duration=timedelta(milliseconds=10))`,
		`p = os.path.join(driver.out_dir, "note.txt")`,
		`with open(p, "w") as f:`,
		`    f.write(f"{3.14159:.2f}")`,
		`print(f"{'ok':>4}|")`,
	))
	want := []string{"echo 002", "echo probe", "echo guarded", "sleep 0.01"}
	if got := e.commands("server"); !containsInOrder(got, want) {
		t.Errorf("commands = %q, want in order %q", got, want)
	}
	if b, err := os.ReadFile(filepath.Join(e.outDir, "note.txt")); err != nil || string(b) != "3.14" {
		t.Errorf("note.txt = %q, %v", b, err)
	}
	if got := e.stdout.String(); got != "  ok|\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := e.log.All("open", "ok"); !containsInOrder(got, []string{"open|server|block", "ok|server|block"}) {
		t.Errorf("log = %q", got)
	}
}

func TestPythonErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		msg       string
		line, col int
	}{
		{"raise", `raise RuntimeError(f"bad {1}")`, "RuntimeError: bad 1", 1, 0},
		{"assert", lines(`x = 1`, `assert x == 2, f"x is {x}"`), "AssertionError: x is 1", 2, 0},
		// Positions inside rewritten lines map back exactly: the call's
		// parenthesis, after an f-string that the rewrite changed.
		{"column after f-string", lines(`with subtest("x"):`, `    server.succeed(f"exit {3}")`), "command `exit 3` failed", 2, 19},
		{"column in with", lines(`with subtest(1):`, `    pass`), "subtest: for parameter name: got int, want string", 1, 13},
		{"decorator", lines(`@polling_condition(bogus=1)`, `def f():`, `    pass`, `x = 1`), `unexpected keyword argument "bogus"`, 1, 0},
		{"timeout type", `server.wait_for_file("/etc/hello", timeout="5")`, "for parameter timeout: got string, want a number of seconds or a timedelta", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{machines: []string{"server"}, guest: scriptGuest})
			se := e.wantErr(tt.src+"\n", tt.msg)
			if se.Location.Line != tt.line || (tt.col != 0 && se.Location.Col != tt.col) {
				t.Errorf("location %d:%d, want %d:%d", se.Location.Line, se.Location.Col, tt.line, tt.col)
			}
		})
	}
}

func TestCheckRewriteLimits(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		part      string
	}{
		{"break in with", lines(`for i in range(3):`, `    with subtest("x"):`, `        break`), 3, "break"},
		{"try", lines(`x = 1`, `try:`, `    pass`, `except Exception:`, `    pass`), 2, "try"},
		{"global", lines(`def f():`, `    global x`), 2, "global"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := script.Check("t.py", []byte(tt.src), nil)
			var se *script.ScriptError
			if !errors.As(err, &se) {
				t.Fatalf("Check = %v", err)
			}
			if se.Location.Line != tt.line || !strings.Contains(se.Msg, tt.part) || !strings.Contains(se.Msg, "not supported") {
				t.Errorf("error = %+v", se)
			}
			if se.Location.Source == "" {
				t.Error("no source line")
			}
		})
	}
	// Several machines: every Python name is known.
	if err := script.Check("t.py", []byte("a_b.succeed('x')\nc.succeed('x')\n"), []string{"a-b", "c"}); err != nil {
		t.Error(err)
	}

}
