package script_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/script"
)

// TestCheckMethods: check resolves machine methods against the API table
// before anything boots.
func TestCheckMethods(t *testing.T) {
	tests := []struct {
		name, src string
		line, col int    // of the error; 0: no error
		want      string // in the message
	}{
		{"known method", `server.wait_for_unit("x")`, 0, 0, ""},
		{"attribute", `print(server.state_dir)`, 0, 0, ""},
		{"alias", `server.copy_from_vm("/x")`, 0, 0, ""},
		{"misspelt", "start_all()\nserver.wait_for_unti('x')", 2, 8, `machine server has no attribute or method "wait_for_unti" (did you mean wait_for_unit?)`},
		{"unsupported", "x = 1\nserver.shell_interact()", 2, 8, "shell_interact: not supported yet (interactive shells)"},
		{"in a function", "def f():\n    server.bogus_method()", 2, 12, `no attribute or method "bogus_method"`},
		{"one-machine alias", `machine.wait_for_windw("x")`, 1, 9, `machine machine has no attribute or method "wait_for_windw" (did you mean wait_for_window?)`},
		{"shadowed by a parameter", "def f(server):\n    server.anything()", 0, 0, ""},
		{"shadowed by a loop", "for server in [1]:\n    server.anything()", 0, 0, ""},
		{"other values", "x = struct()\nx.anything()", 0, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.ReplaceAll(tt.src, "struct()", "driver")
			err := script.Check("t.py", []byte(src), []string{"server"})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var se *script.ScriptError
			if !errors.As(err, &se) {
				t.Fatalf("Check = %v, want a ScriptError", err)
			}
			if !strings.Contains(se.Msg, tt.want) || se.Location.Line != tt.line || se.Location.Col != tt.col {
				t.Errorf("Check = %s at %d:%d, want %q at %d:%d", se.Msg, se.Location.Line, se.Location.Col, tt.want, tt.line, tt.col)
			}
		})
	}
}

// TestCheckMethodsAll reports every unknown method, not just the first.
func TestCheckMethodsAll(t *testing.T) {
	err := script.Check("t.py", []byte("a.shell_interact()\nb.bogus()\n"), []string{"a", "b"})
	if err == nil || !strings.Contains(err.Error(), "shell_interact: not supported yet") || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("Check = %v, want both errors", err)
	}
}

// TestCheckRegexps: a literal pattern RE2 cannot run is refused by check,
// at the pattern, as needing CPython; one it can run is fine.
func TestCheckRegexps(t *testing.T) {
	tests := []struct {
		src  string
		want string // "" for no error
	}{
		{`import re` + "\n" + `re.search(r"(a)\1", "aa")`, "backreference"},
		{`import re` + "\n" + `x = re.compile("foo(?=bar)")`, "lookahead"},
		{`import re` + "\n" + `re.search(r"\d+", "a1")`, ""},
		{`server.wait_for_console_text("(x)\\1")`, "backreferences"},
		{`server.wait_until_tty_matches(1, "ok(?!no)")`, "lookahead"},
		{`server.wait_for_text(regex="a(?<=b)")`, "lookahead"},
		{`server.wait_for_console_text("login:")`, ""},
		{`server.succeed("(a)\\1")`, ""},
	}
	for _, tt := range tests {
		err := script.Check("t.py", []byte(tt.src), []string{"server"})
		if tt.want == "" {
			if err != nil {
				t.Errorf("%q: %v", tt.src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, script.ErrNeedsPython) {
			t.Errorf("%q: Check = %v, want an error about %s wrapping ErrNeedsPython", tt.src, err, tt.want)
		}
	}
}
