package script_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/script/modules"
)

// TestPythonFidelity: what a script author writes behaves as in Python,
// where Starlark alone would fail or differ at run time.
func TestPythonFidelity(t *testing.T) {
	e := machines(t)
	var stderr bytes.Buffer
	opts := e.opts(lines(
		`import sys`,
		`assert "%.2f" % 3.14159 == "3.14", "%.2f"`,
		`assert "%-5s|" % "ab" == "ab   |", "%-5s"`,
		`assert "%5s|" % "ab" == "   ab|", "%5s"`,
		`assert "%05.1f" % 3.14159 == "003.1", "%05.1f"`,
		`assert "%x %o %d%%" % (255, 8, 3.9) == "ff 10 3%", "%x %o %d"`,
		`assert "%s and %r" % ("q", "q") == "q and 'q'", "%s %r"`,
		`assert "%(a)s-%(b)03d" % {"a": "x", "b": 2} == "x-002", "mapping"`,
		`assert "%s" % [1, "a"] == "[1, 'a']", "%s of a list"`,
		`assert "{:.2f}".format(2.0 / 3) == "0.67", "format spec"`,
		`assert "{:>4}|{!r}|{k}".format("a", "b", k=1) == "   a|'b'|1", "format fields"`,
		`fmt = "{0}-{0}:{1[1]}"`,
		`assert fmt.format(7, [8, 9]) == "7-7:9", "format on a variable"`,
		`assert f"{['a']}" == "['a']", "f-string of a list"`,
		`assert b"abc".decode() == "abc", "decode"`,
		`assert "abc".encode() == b"abc", "encode"`,
		`assert "é".encode("utf-8").decode("utf-8") == "é", "round trip"`,
		`assert "a\tb".expandtabs(4) == "a   b", "expandtabs"`,
		`assert max([], default=0) == 0 and max([1, 3, 2]) == 3, "max"`,
		`assert min([], default=-1) == -1 and min(4, 2) == 2, "min"`,
		`assert repr("q") == "'q'" and repr({1: "x"}) == "{1: 'x'}", "repr"`,
		`assert str({1, 2}) == "{1, 2}" and str(["a"]) == "['a']", "str of containers"`,
		`first, *rest = [1, 2, 3]`,
		`assert first == 1 and rest == [2, 3], "starred"`,
		`*init, last = "a b c".split()`,
		`assert init == ["a", "b"] and last == "c", "starred first"`,
		`print("to stderr", file=sys.stderr)`,
		`print("to stdout", ["a"])`,
		`exit(0)`,
		`assert False, "exit(0) did not end the script"`,
	))
	opts.Stderr = &stderr
	if err := script.Run(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	if got := stderr.String(); got != "to stderr\n" {
		t.Errorf("stderr %q", got)
	}
	if got := e.stdout.String(); got != "to stdout ['a']\n" {
		t.Errorf("stdout %q", got)
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		src  string
		code int
		msg  string
	}{
		{"exit(3)", 3, "exit(3)"},
		{"import sys\nsys.exit(1)", 1, "exit(1)"},
		{`exit("giving up")`, 1, "giving up"},
		{"first, *rest = []", -1, "not enough values to unpack (expected at least 1, got 0)"},
		{`x = "%d" % "a"`, -1, "a number is required, not string"},
	}
	for _, tt := range tests {
		err := machines(t).run(tt.src)
		var se *modules.SystemExit
		switch {
		case err == nil || !strings.Contains(err.Error(), tt.msg):
			t.Errorf("%q: error %v, want one containing %q", tt.src, err, tt.msg)
		case tt.code >= 0 && (!errors.As(err, &se) || se.Code != tt.code):
			t.Errorf("%q: error %v, want SystemExit(%d)", tt.src, err, tt.code)
		}
	}
}
