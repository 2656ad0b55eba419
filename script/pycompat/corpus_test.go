package pycompat

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpus returns the NixOS-style test scripts under testdata/corpus.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "corpus", "*.py"))
	if err != nil || len(files) < 15 {
		t.Fatalf("corpus: %d files, %v", len(files), err)
	}
	out := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

func TestCorpus(t *testing.T) {
	for name, src := range corpus(t) {
		t.Run(name, func(t *testing.T) {
			res, err := Rewrite(name, src)
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if err := Check(name, src); err != nil {
				t.Fatalf("Check: %v\n%s", err, res.Source)
			}
			if in, out := bytes.Count(src, []byte("\n")), bytes.Count(res.Source, []byte("\n")); in != out {
				t.Errorf("line count changed: %d lines in, %d out", in, out)
			}
			// Lines without rewrites are copied as they are, and map to themselves.
			inLines := strings.Split(string(src), "\n")
			outLines := strings.Split(string(res.Source), "\n")
			same := 0
			for i := range min(len(inLines), len(outLines)) {
				if inLines[i] != outLines[i] {
					continue
				}
				same++
				for col := 1; col <= len([]rune(inLines[i])); col++ {
					if l, c := res.Pos(i+1, col); l != i+1 || c != col {
						t.Fatalf("unchanged line %d col %d maps to %d:%d", i+1, col, l, c)
					}
				}
			}
			if same == 0 {
				t.Errorf("no line was left unchanged")
			}
		})
	}
}

// TestCorpusRewriteIsStable checks that rewriting the output again changes
// nothing: the output has no Python-only constructs left.
func TestCorpusRewriteIsStable(t *testing.T) {
	for name, src := range corpus(t) {
		res, err := Rewrite(name, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := Rewrite(name, res.Source)
		if err != nil {
			t.Fatalf("%s: second rewrite: %v", name, err)
		}
		if !bytes.Equal(again.Source, res.Source) {
			t.Errorf("%s: second rewrite changed the output:\n%s", name, again.Source)
		}
	}
}
