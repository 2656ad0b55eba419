package pycompat

import (
	"bytes"
	"testing"
)

// FuzzRewrite checks that no input makes the rewrite panic, that its
// output keeps the line count unless a decorator needed a line, and that
// Pos maps every output position into the original.
func FuzzRewrite(f *testing.F) {
	for _, src := range corpus(f) {
		f.Add(src)
	}
	for _, s := range []string{
		"with a as b, (c) as d: pass\n", "x = f'{a!r:{b}}' 'c'\n", "@d\ndef f(): ...\n",
		"a = b = c < d < e\n", "def f(a: int, /, *, b) -> T: pass\n", "s = {x for x in y}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		res, err := Rewrite("f.py", src)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		norm := bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
		lines := bytes.Count(norm, []byte("\n")) + 1
		outLines := bytes.Count(res.Source, []byte("\n")) + 1
		if outLines < lines || outLines > lines+bytes.Count(src, []byte("@"))+1 {
			t.Fatalf("%d lines in, %d out:\n%s", lines, outLines, res.Source)
		}
		for l := 0; l <= outLines+1; l++ {
			for c := 0; c < 4; c++ {
				if ol, oc := res.Pos(l, c*7); ol < 1 || ol > lines || oc < 1 {
					t.Fatalf("Pos(%d, %d) = %d:%d outside the %d-line original", l, c*7, ol, oc, lines)
				}
			}
		}
	})
}
