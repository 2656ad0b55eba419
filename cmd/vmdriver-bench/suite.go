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
)

// suiteRounds is how often each mode runs the suite, alternating.
const suiteRounds = 3

// suiteFile is the ten-subtest NixOS-style suite on the systemd guest.
const suiteFile = "examples/scripts/systemd_suite.py"

// suite times the whole `vmdriver eval-file` of the ten-subtest suite on
// the systemd guest in three modes: a cold boot, a warm start, and a warm
// start with every subtest on its own clone (--fork-subtests -j 2). The
// warm modes use an entry `vmdriver snapshot` wrote beforehand (untimed),
// through --warm-from.
func (b *bench) suite(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "vmdb-suite")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	warm := filepath.Join(dir, "warm")
	if out, err := exec.CommandContext(ctx, b.bin, "snapshot", "--out", warm, "--start-scripts", b.systemd).CombinedOutput(); err != nil {
		return fmt.Errorf("vmdriver snapshot: %w\n%s", err, tailText(out))
	}
	modes := []struct {
		name string
		args []string
	}{
		{"cold, plain", nil},
		{"warm, plain", []string{"--warm-from", warm}},
		{"warm, --fork-subtests -j 2", []string{"--warm-from", warm, "--fork-subtests", "-j", "2"}},
	}
	times := make([][]time.Duration, len(modes))
	for range suiteRounds {
		for k, m := range modes {
			args := append([]string{"eval-file", suiteFile, "--start-scripts", b.systemd, "-o", dir}, m.args...)
			cmd := exec.CommandContext(ctx, b.bin, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			start := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("suite, %s: %w\n%s", m.name, err, tailText(out.Bytes()))
			}
			times[k] = append(times[k], time.Since(start))
		}
	}
	fmt.Fprintf(w, "`vmdriver eval-file %s` on the systemd guest, whole process, %d rounds per mode, alternating. The warm modes start from an entry `vmdriver snapshot` wrote beforehand (`--warm-from`).\n\n", suiteFile, suiteRounds)
	fmt.Fprintln(w, "| mode | min | median | max | cold plain / mode (medians) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for k, m := range modes {
		fmt.Fprintf(w, "| %s | %s | %.1fx |\n", m.name, stats(times[k]), float64(median(times[0]))/float64(median(times[k])))
	}
	return nil
}

// tailText is the end of a command's output, for an error.
func tailText(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
