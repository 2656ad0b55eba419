package pycompat

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// posOf returns the 1-based line and rune column of the n-th (1-based)
// occurrence of needle in text.
func posOf(t *testing.T, text, needle string, n int) (int, int) {
	t.Helper()
	off := -1
	for i := 0; i < n; i++ {
		j := strings.Index(text[off+1:], needle)
		if j < 0 {
			t.Fatalf("occurrence %d of %q not found in %q", n, needle, text)
		}
		off += 1 + j
	}
	lineStart := strings.LastIndexByte(text[:off], '\n') + 1
	return strings.Count(text[:off], "\n") + 1, utf8.RuneCountInString(text[lineStart:off]) + 1
}

func TestPos(t *testing.T) {
	type probe struct {
		out  string // text in the output
		outN int    // which occurrence
		in   string // where it must map to in the original
		inN  int
	}
	tests := []struct {
		name   string
		src    string
		probes []probe
	}{
		{"assert", "x = 1\nassert foo(x), msg\n", []probe{
			{"foo", 1, "foo", 1}, {"msg", 1, "msg", 1}, {"x)", 1, "x)", 1},
			{"assert_", 1, "assert", 1}, {"(foo", 1, "assert", 1},
			{"), msg", 1, "), msg", 1}, // verbatim: the call's own ')'
		}},
		{"with", "with subtest('a') as b:\n    c = b\n", []probe{
			{"for", 1, "with", 1}, {"b in", 1, "b:", 1}, {"subtest", 1, "subtest", 1},
			{"with_", 1, "subtest", 1}, {"c = b", 1, "c = b", 1}, {":", 1, ":", 1},
		}},
		{"f-string", "y = f\"ab{x}cd{z.w:>3}\"\n", []probe{
			{"x", 1, "x", 1}, {"z.w", 1, "z.w", 1}, {"w", 1, "w", 1},
			{`"ab{}`, 1, `f"`, 1}, {".format", 1, `f"`, 1}, {"fmt_", 1, "{z", 1},
		}},
		{"triple-quoted f-string", "x = f\"\"\"\n  {a}\n  {b +\n c}\n\"\"\"\n", []probe{
			{"a, b", 1, "a}", 1}, {"b +", 1, "b", 1}, {"+", 1, "+", 1}, {" c)", 1, " c}", 1},
		}},
		{"import", "import json\nfrom os import path as p\n", []probe{
			{"json =", 1, "json", 1}, {`"json"`, 1, "json", 1}, {"p =", 1, "p\n", 1}, {`"os"`, 1, "path", 1}, // from-imports map to the member
		}},
		{"annotations", "def f(a: int, b: str = 'x') -> None:\n    return a + b\n", []probe{
			{"b =", 1, "b:", 1}, {"'x'", 1, "'x'", 1}, {"):", 1, ") ", 1}, {":\n", 1, ":\n", 1},
			{"return", 1, "return", 1},
		}},
		{"escapes", "s = '\\d' + t\n", []probe{{"'\\\\d'", 1, "'\\d'", 1}, {"t", 1, "t", 1}}},
		{"tabs and non-ascii", "if x:\n\tassert 'é' == y\n", []probe{
			{"'é'", 1, "'é'", 1}, {"y", 1, "y", 1}, {"assert_", 1, "assert", 1},
		}},
		{"is not", "ok = a is not None and b\n", []probe{
			{"!=", 1, "is", 1}, {"None", 1, "None", 1}, {"b", 1, "b", 1},
		}},
		{"inserted decorator line", "if x:\n    @d\n    def f():\n        pass\ny = 1 + z\n", []probe{
			{"f = d(f)", 1, "f():", 1}, {"(f)", 1, "@", 1}, {"y", 1, "y", 1}, {"z", 1, "z", 1},
		}},
		{"concatenation", "x = 'a' 'b'\n", []probe{
			{"('a'", 1, "'a'", 1}, {"'a'", 1, "'a'", 1}, {"+", 1, "'b'", 1}, {"'b'", 1, "'b'", 1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Rewrite("p.py", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Source)
			for _, p := range tt.probes {
				ol, oc := posOf(t, out, p.out, p.outN)
				wl, wc := posOf(t, tt.src, p.in, p.inN)
				if gl, gc := res.Pos(ol, oc); gl != wl || gc != wc {
					t.Errorf("%q at output %d:%d maps to %d:%d, want %d:%d (%q)\n%s", p.out, ol, oc, gl, gc, wl, wc, p.in, out)
				}
			}
		})
	}
}

func TestPosUnchangedScriptIsIdentity(t *testing.T) {
	src := "start_all()\n\n# comment é\nmachine.wait_for_unit(\"x\")\nout = machine.succeed(\n\t\"a\",\n)\n"
	res, err := Rewrite("id.py", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Source) != src {
		t.Fatalf("an unchanged script was changed:\n%s", res.Source)
	}
	for i, line := range strings.Split(src, "\n") {
		for col := 1; col <= utf8.RuneCountInString(line)+1; col++ {
			if l, c := res.Pos(i+1, col); l != i+1 || c != col {
				t.Fatalf("%d:%d maps to %d:%d", i+1, col, l, c)
			}
		}
	}
}

func TestPosOutOfRange(t *testing.T) {
	res, err := Rewrite("r.py", []byte("x = 1\nassert x\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ line, col, wantLine, wantCol int }{
		{0, 0, 1, 1},     // clamped to the start
		{2, 100, 2, 9},   // past the end of a line: its newline
		{99, 1, 3, 1},    // past the last line: the end of the file
		{1, 100, 1, 6},   // past the end of a copied line: its newline
		{-5, -5, 1, 1},   // nonsense
		{2, 1, 2, 1},     // assert_ → assert
		{2, 9, 2, 8},     // x
		{3, 1, 3, 1},     // the empty last line
		{1, 5, 1, 5},     // 1
		{2, 10, 2, 1},    // the synthetic ')'
		{2, 11, 2, 9},    // the newline after it
		{100, 100, 3, 1}, // past everything
	}
	for _, tt := range tests {
		if l, c := res.Pos(tt.line, tt.col); l != tt.wantLine || c != tt.wantCol {
			t.Errorf("Pos(%d, %d) = %d:%d, want %d:%d", tt.line, tt.col, l, c, tt.wantLine, tt.wantCol)
		}
	}
}
