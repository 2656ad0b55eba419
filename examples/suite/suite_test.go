// Package suite runs suite.py, the ten-subtest NixOS-style suite that the
// benchmark times cold, warm and forked, against the systemd guest.
package suite

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

func TestSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	start := testenv.StartScript(t, "systemd")
	src, err := os.ReadFile("suite.py")
	if err != nil {
		t.Fatal(err)
	}
	log := report.New(report.Options{Out: testWriter{t}, JUnit: true})
	d, err := driver.New(driver.Config{
		Machines:      []driver.MachineConfig{{Name: "systemd", StartScript: start}},
		GlobalTimeout: 10 * time.Minute,
		OutputDir:     t.TempDir(),
	}, driver.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := script.Run(ctx, script.Options{Driver: d, Filename: "suite.py", Source: src, Stdout: testWriter{t}, Logger: log}); err != nil {
		t.Fatalf("suite.py failed: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
