package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vmdriver/vmdriver/script/pycompat"
)

// startup times `vmdriver eval 'print(1)'` with no machines, the whole
// process from exec to exit.
func startup(ctx context.Context, w io.Writer, bin string, n int) error {
	if _, err := exec.Command(bin, "eval", "print(1)").Output(); err != nil { // warm the page cache
		return fmt.Errorf("%s eval: %w", bin, err)
	}
	var ds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		out, err := exec.CommandContext(ctx, bin, "eval", "print(1)").Output()
		d := time.Since(t0)
		if err != nil {
			return err
		}
		if string(out) != "1\n" {
			return fmt.Errorf("eval printed %q", out)
		}
		ds = append(ds, d)
	}
	fmt.Fprintln(w, "| measure | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| `vmdriver eval 'print(1)'`, no machines, exec to exit (n=%d) | %s |\n", n, stats(ds))
	fmt.Fprintf(w, "\nTarget: under 30 ms (the Python driver takes 0.13 s with an empty script on this kind of machine).\n")
	return nil
}

// rewriteSpeed times the Python-compat rewrite plus the Starlark parse of
// a realistic ~2,000-line script assembled from the rewrite's corpus of
// NixOS-style test scripts.
func rewriteSpeed(w io.Writer, corpusDir string) error {
	files, err := filepath.Glob(filepath.Join(corpusDir, "*.py"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no corpus scripts in %s", corpusDir)
	}
	var src bytes.Buffer
	for lines := 0; lines < 2000; {
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			src.Write(data)
			src.WriteByte('\n')
			lines += bytes.Count(data, []byte("\n")) + 1
		}
	}
	nlines := bytes.Count(src.Bytes(), []byte("\n"))
	opts := pycompat.FileOptions()
	var ds []time.Duration
	for i := 0; i < 30; i++ {
		t0 := time.Now()
		r, err := pycompat.Rewrite("bench.py", src.Bytes())
		if err != nil {
			return err
		}
		if _, err := opts.Parse("bench.py", r.Source, 0); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	fmt.Fprintf(w, "| rewrite + parse of a %d-line script (n=30) | %s |\n", nlines, stats(ds))
	fmt.Fprintf(w, "\nTarget: under 20 ms.\n")
	return nil
}
