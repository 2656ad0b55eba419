package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotCommand writes a warm entry with `vmdriver snapshot` and
// starts the machine warm from it with --warm-from, which writes nothing.
func TestSnapshotCommand(t *testing.T) {
	start := minimalScript(t)
	dir := filepath.Join(t.TempDir(), "warm")
	code, stdout, stderr := vmdriver(t, "snapshot", "--out", dir, "--start-scripts", start)
	if code != exitOK {
		t.Fatalf("snapshot: exit %d\n%s", code, stderr)
	}
	entries := strings.Fields(stdout)
	if len(entries) != 1 || !strings.HasPrefix(entries[0], dir+"/") {
		t.Fatalf("snapshot printed %q, want one entry in %s", stdout, dir)
	}
	if _, err := os.Stat(filepath.Join(entries[0], "machine.json")); err != nil {
		t.Fatal(err)
	}
	before := listTree(t, dir)

	code, _, stderr = vmdriver(t, "eval", "--warm-from", dir, "--start-scripts", start, `minimal.succeed("true")`)
	if code != exitOK {
		t.Fatalf("--warm-from run: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "started warm in") {
		t.Errorf("--warm-from did not start warm:\n%s", stderr)
	}
	if after := listTree(t, dir); after != before {
		t.Errorf("--warm-from wrote to its directory:\nbefore %s\nafter  %s", before, after)
	}

	code, _, stderr = vmdriver(t, "snapshot", "--start-scripts", start)
	if code != exitUsage || !strings.Contains(stderr, "--out DIR") {
		t.Errorf("snapshot without --out: exit %d, %q", code, stderr)
	}
}

// listTree describes every file under dir with its size and mtime.
func listTree(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		sb.WriteString(p + " " + fi.ModTime().String() + " " + string(rune('0'+fi.Size()%10)) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}
