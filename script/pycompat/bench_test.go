package pycompat

import (
	"bytes"
	"sort"
	"testing"
)

// script2000 concatenates the corpus scripts until the result has about
// 2,000 lines: a long but realistic test script.
func script2000(b testing.TB) []byte {
	files := corpus(b)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for bytes.Count(buf.Bytes(), []byte("\n")) < 2000 {
		for _, n := range names {
			buf.Write(files[n])
			buf.WriteString("\n")
		}
	}
	return buf.Bytes()
}

func TestScript2000Parses(t *testing.T) {
	src := script2000(t)
	if n := bytes.Count(src, []byte("\n")); n < 2000 || n > 2600 {
		t.Fatalf("generated script has %d lines", n)
	}
	if err := Check("big.py", src); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkRewrite2000Lines measures the rewrite plus Starlark's parse of
// a ~2,000-line script (the target is well under 20 ms).
func BenchmarkRewrite2000Lines(b *testing.B) {
	src := script2000(b)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Rewrite("big.py", src)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := FileOptions().Parse("big.py", res.Source, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRewriteOnly2000Lines is the rewrite alone, for comparison.
func BenchmarkRewriteOnly2000Lines(b *testing.B) {
	src := script2000(b)
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Rewrite("big.py", src); err != nil {
			b.Fatal(err)
		}
	}
}
