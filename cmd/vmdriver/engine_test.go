package main

import (
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// TestEngineChoice: which engine runs a script, what check says, and
// the errors of each.
func TestEngineChoice(t *testing.T) {
	testenv.NeedCommand(t, "python3")
	dir := t.TempDir()
	class := writeFile(t, dir, "class.py", "x = 1\nclass Foo:\n    pass\nprint(Foo.__name__, x)\n")
	plain := writeFile(t, dir, "plain.py", "print(1 + 1)\n")
	broken := writeFile(t, dir, "broken.py", "print(1)\nif x = 1:\n    pass\n")
	for _, tt := range []struct {
		name       string
		args       []string
		code       int
		out, notIn string
	}{
		{"check: Starlark", []string{"check", plain}, exitOK, "plain.py: ok, runs on Starlark", ""},
		{"check: CPython, and why", []string{"check", class}, exitOK, "class.py: ok, runs on CPython 3.", ""},
		{"check --python", []string{"check", "--python", plain}, exitOK, "runs on CPython", ""},
		{"check --starlark refuses", []string{"check", "--starlark", class}, exitUsage, "class.py:2:1: class is not supported", ""},
		{"both engines", []string{"check", "--python", "--starlark", plain}, exitUsage, "give one", ""},
		{"python and -I", []string{"eval", "--python", "-I", "print(1)"}, exitUsage, "cannot be combined with --python", ""},
		{"runs on CPython, says why", []string{"eval-file", class}, exitOK, "running the test script on CPython", ""},
		{"runs on Starlark", []string{"eval-file", plain}, exitOK, "2\n", "CPython"},
		{"eval --python", []string{"eval", "--python", "import sys; print(sys.version_info[0])"}, exitOK, "3\n", ""},
		{"syntax error before anything runs", []string{"eval-file", "--python", broken}, exitUsage, "broken.py:2:", "test script finished"},
		{"bad --python-bin", []string{"check", "--python", "--python-bin", "python9", plain}, exitUsage, "give its path", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := vmdriver(t, tt.args...)
			all := stdout + stderr
			if code != tt.code || !strings.Contains(all, tt.out) || (tt.notIn != "" && strings.Contains(all, tt.notIn)) {
				t.Fatalf("code %d (want %d), output %q (want %q, not %q)", code, tt.code, all, tt.out, tt.notIn)
			}
		})
	}
	// Without an interpreter, a script Starlark refuses is refused, and
	// check says why CPython could not take it.
	t.Setenv("PATH", t.TempDir())
	code, _, stderr := vmdriver(t, "check", class)
	if code != exitUsage || !strings.Contains(stderr, "class.py:2:1: class is not supported") || !strings.Contains(stderr, "no CPython to run it instead: python3 is not installed: install the Debian package python3") {
		t.Fatalf("without python3: code %d, stderr %q", code, stderr)
	}
	if code, _, stderr := vmdriver(t, "eval", "--python", "print(1)"); code != exitInfra || !strings.Contains(stderr, "python3") {
		t.Fatalf("--python without python3: code %d, stderr %q", code, stderr)
	}
}
