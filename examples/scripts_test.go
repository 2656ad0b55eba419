// Package examples runs the example test scripts in scripts/ against real
// guests, the way `vmdriver eval-file` does, so they stay correct.
package examples

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// TestScripts runs every scripts/KIND.py and scripts/KIND_WHAT.py against
// the guest kind KIND (a machine named KIND).
func TestScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	files, err := filepath.Glob("scripts/*.py")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example scripts: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".py")
		kind, _, _ := strings.Cut(name, "_")
		t.Run(name, func(t *testing.T) {
			testenv.NeedQEMU(t)
			start := testenv.StartScript(t, kind)
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			log := report.New(report.Options{Out: testWriter{t}, JUnit: true})
			d, err := driver.New(t.Context(), driver.Config{
				Machines:      []driver.MachineConfig{{Name: kind, StartScript: start}},
				GlobalTimeout: 10 * time.Minute,
				OutputDir:     out,
			}, driver.WithBackend(qemu.New()), driver.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			if err := script.Run(ctx, script.Options{Driver: d, Filename: f, Source: src, Stdout: testWriter{t}, Logger: log}); err != nil {
				t.Fatalf("%s failed: %v", f, err)
			}
		})
	}
}

// testWriter sends output lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
