package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmdriver/vmdriver/driver"
)

// snapshotCode starts every machine and runs one command on each: the
// first command of a cold-booted warm machine settles it and saves its
// entry.
const snapshotCode = "start_all()\nfor m in machines:\n    m.succeed(\"true\")\n"

// runSnapshot is `vmdriver snapshot --out DIR [run flags]`: warm entries
// for the configured machines, written into DIR.
func runSnapshot(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var out string
	var rest []string
	for k := 0; k < len(args); k++ {
		a := args[k]
		switch {
		case a == "--out" || a == "-out":
			if k+1 == len(args) {
				fmt.Fprintln(stderr, "vmdriver: snapshot: --out needs a directory")
				return exitUsage
			}
			k++
			out = args[k]
		case strings.HasPrefix(a, "--out=") || strings.HasPrefix(a, "-out="):
			_, out, _ = strings.Cut(a, "=")
		default:
			rest = append(rest, a)
		}
	}
	if out == "" {
		fmt.Fprintln(stderr, "vmdriver: snapshot: say where the warm entries go with --out DIR (e.g. --out ./warm, then run the test with --warm-from ./warm)")
		return exitUsage
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		fmt.Fprintf(stderr, "vmdriver: snapshot: %v\n", err)
		return exitInfra
	}
	code := runTestWith(ctx, cmdEval, "snapshot", append(rest, snapshotCode), func(c *driver.Config) {
		c.Warm, c.WarmDir, c.WarmReadOnly, c.KeepState = true, out, false, false
	}, stdin, stdout, stderr)
	if code != exitOK {
		return code
	}
	entries, err := os.ReadDir(out)
	if err != nil {
		fmt.Fprintf(stderr, "vmdriver: snapshot: %v\n", err)
		return exitInfra
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			fmt.Fprintln(stdout, filepath.Join(out, e.Name()))
			n++
		}
	}
	if n == 0 {
		fmt.Fprintf(stderr, "vmdriver: snapshot: no warm entry was written to %s (see the log for why)\n", out)
		return exitFail
	}
	return exitOK
}
