package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// pythonCallScript times calls from inside a test script, the same text
// on both engines: succeed("true") on the minimal guest (a guest round
// trip) and is_up() (no guest work: the engine's own cost of a call).
const pythonCallScript = `import time
start_all()
minimal.succeed("true")
for what in ["succeed", "is_up"]:
    for i in range(%d):
        t0 = time.perf_counter()
        if what == "succeed":
            minimal.succeed("true")
        else:
            minimal.is_up()
        print(what, time.perf_counter() - t0)
`

// python compares the CPython bridge with the Starlark engine: per-call
// cost on the minimal guest, and start-up with an empty script.
func (b *bench) pythonBridge(ctx context.Context, w io.Writer, minimal string) error {
	py := b.python3
	if py == "" {
		var err error
		if py, err = hosttools.Path("python3"); err != nil {
			return err
		}
	}
	v, _ := exec.CommandContext(ctx, py, "--version").Output()
	fmt.Fprintf(w, "Interpreter: %s (%s).\n\n", strings.TrimSpace(string(v)), py)
	dir, err := os.MkdirTemp("", "vmdb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "calls.py")
	if err := os.WriteFile(script, []byte(fmt.Sprintf(pythonCallScript, b.cmds*4)), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(w, "Per call, timed inside the script (%d calls each, after a first command booted the guest):\n\n", b.cmds*4)
	fmt.Fprintln(w, "| call | Starlark median | CPython median | added by CPython |")
	fmt.Fprintln(w, "|---|---|---|---|")
	times := map[string]map[string][]time.Duration{}
	for _, engine := range []string{"--starlark", "--python"} {
		cmd := exec.CommandContext(ctx, b.bin, "eval-file", engine, "--python-bin", py, "--start-scripts", minimal, script)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("vmdriver eval-file %s: %w", engine, err)
		}
		times[engine] = map[string][]time.Duration{}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			secs, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return fmt.Errorf("%s printed %q", engine, l)
			}
			times[engine][f[0]] = append(times[engine][f[0]], time.Duration(secs*float64(time.Second)))
		}
	}
	for _, call := range []string{"succeed", "is_up"} {
		s, p := times["--starlark"][call], times["--python"][call]
		if len(s) == 0 || len(p) == 0 {
			return fmt.Errorf("no timings of %s", call)
		}
		name := map[string]string{"succeed": "`succeed(\"true\")` (guest round trip)", "is_up": "`is_up()` (no guest work)"}[call]
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", name, fmtFine(median(s)), fmtFine(median(p)), fmtFine(median(p)-median(s)))
	}
	fmt.Fprintln(w, "\nTarget: at most 1 ms added per call.")

	empty := filepath.Join(dir, "empty.py")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| start-up: `vmdriver eval-file empty.py`, no machines, exec to exit (n=10) | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, engine := range []string{"--starlark", "--python"} {
		var ds []time.Duration
		for i := 0; i < 11; i++ {
			t0 := time.Now()
			if err := exec.CommandContext(ctx, b.bin, "eval-file", engine, "--python-bin", py, empty).Run(); err != nil {
				return fmt.Errorf("vmdriver eval-file %s empty.py: %w", engine, err)
			}
			if i > 0 { // the first warms the page cache
				ds = append(ds, time.Since(t0))
			}
		}
		fmt.Fprintf(w, "| %s | %s |\n", strings.TrimPrefix(engine, "--"), stats(ds))
	}
	return nil
}

// fmtFine is fmtDur with microseconds below a millisecond.
func fmtFine(d time.Duration) string {
	if d < time.Millisecond && d > -time.Millisecond {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
	return fmtDur(d)
}
