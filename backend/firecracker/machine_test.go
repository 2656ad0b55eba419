package firecracker

import (
	"path/filepath"
	"testing"

	"github.com/vmdriver/vmdriver/machine"
)

// TestMachine drives the fake VMM through the Machine API: the code path
// a test script takes.
func TestMachine(t *testing.T) {
	f := newFixture(t, "m", nil)
	ctx := testCtx(t)
	m, err := machine.New(newBackend(t), "m",
		machine.WithStartScript(f.script),
		machine.WithStateDir(f.stateDir),
		machine.WithOutputDir(t.TempDir()),
		machine.WithEnv(fakeEnv+"=1"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if out, err := m.Succeed(ctx, "remember forked"); err != nil {
		t.Fatalf("Succeed: %v (%q)", err, out)
	}
	if _, err := m.Succeed(ctx, "fail 3"); err == nil {
		t.Error("a command with status 3 succeeded")
	}
	clones, err := m.Fork(ctx, 1)
	if err != nil {
		t.Fatalf("Fork: %v", err)
	}
	defer clones[0].Close()
	if out, err := clones[0].Succeed(ctx, "recall"); err != nil || out != "forked\n" {
		t.Errorf("clone recall = %q, %v", out, err)
	}
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := clones[0].Shutdown(ctx); err != nil {
		t.Errorf("clone Shutdown: %v", err)
	}
	if entries, _ := filepath.Glob(filepath.Join(f.stateDir, "*.sock")); len(entries) != 0 {
		t.Errorf("sockets left: %v", entries)
	}
}
