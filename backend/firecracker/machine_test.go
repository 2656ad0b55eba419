package firecracker

import (
	"path/filepath"
	"strings"
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
	// reboot() is Firecracker's ctrl-alt-delete, which ends the VMM, as a
	// reboot ends QEMU under -no-reboot.
	if err := clones[0].Reboot(ctx); err != nil {
		t.Errorf("clone Reboot: %v", err)
	}
	if clones[0].Booted() {
		t.Error("the clone's VMM runs on after its reboot")
	}
	if entries, _ := filepath.Glob(filepath.Join(f.stateDir, "*.sock")); len(entries) != 0 {
		t.Errorf("sockets left: %v", entries)
	}
}

// TestMachineWarm starts a machine cold, which saves a warm entry once
// its shell is up, then again warm: restored from that entry.
func TestMachineWarm(t *testing.T) {
	f := newFixture(t, "m", nil)
	warm := t.TempDir()
	ctx := testCtx(t)
	for run, want := range []string{"PUT /actions ok", "/snapshot/load ok"} {
		m, err := machine.New(newBackend(t), "m",
			machine.WithStartScript(f.script),
			machine.WithStateDir(t.TempDir()),
			machine.WithOutputDir(t.TempDir()),
			machine.WithWarm(warm),
			machine.WithEnv(fakeEnv+"=1"))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := m.Succeed(ctx, "echo up"); err != nil || out != "ran: echo up\n" {
			t.Errorf("run %d: echo up = %q, %v", run, out, err)
		}
		if d := m.Instance().Diagnostics(); !strings.Contains(d, want) {
			t.Errorf("run %d: the VMM saw no %s:\n%s", run, want, d)
		}
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("run %d: Shutdown: %v", run, err)
		}
		m.Close()
	}
}
