package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// TestSnapshotDiskFull saves a snapshot onto a file system too small for
// it: the snapshot fails with the reason, leaves no partial files, and
// the machine keeps running with its shared directory mounted.
func TestSnapshotDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testenv.NeedQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := smallTmpfs(t)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	m, err := machine.New(qemu.New(), "full",
		machine.WithStartScript(testenv.StartScript(t, "minimal")),
		machine.WithStateDir(filepath.Join(dir, "state")),
		machine.WithLogger(machine.NewTextLogger(testWriter{t})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if _, err := m.Succeed(ctx, "echo alive > /root/alive"); err != nil {
		t.Fatal(err)
	}
	_, err = m.Snapshot(ctx, "big")
	if err == nil {
		t.Fatal("the snapshot succeeded on a 4 MiB file system")
	}
	// zstd's or Go's wording, whichever file filled the disk first.
	if !strings.Contains(strings.ToLower(err.Error()), "no space left on device") {
		t.Errorf("error does not say the disk is full: %v", err)
	}
	t.Logf("snapshot error: %v", err)
	if out, err := m.Succeed(ctx, "cat /root/alive; grep -c ' /tmp/shared 9p ' /proc/mounts"); err != nil || out != "alive\n1\n" {
		t.Errorf("after the failed snapshot: %q, %v", out, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "state", "snapshots", "*")); len(left) != 0 {
		t.Errorf("the failed snapshot left %v", left)
	}
}

// TestWarmSaveDiskFull saves a warm entry into a cache on a file system
// too small for it: the machine goes on cold with one line saying why,
// and the cache holds no entry and no partial one.
func TestWarmSaveDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testenv.NeedQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := smallTmpfs(t)

	log := &infoLog{t: t}
	m := boot(t, minimalGuest, machine.WithWarm(dir), machine.WithLogger(log))
	if !log.has("no warm entry saved") || !log.has("no space left on device") {
		t.Errorf("the failed save was not reported with its reason")
	}
	ctx := testCtx(t, time.Minute)
	if out, err := m.Succeed(ctx, "echo still-here; grep -c ' /tmp/shared 9p ' /proc/mounts"); err != nil || out != "still-here\n1\n" {
		t.Errorf("after the failed save: %q, %v", out, err)
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if e.IsDir() {
			t.Errorf("the full cache kept %s", e.Name())
		}
	}
}

// smallTmpfs mounts a 4 MiB tmpfs for t, unmounted and removed at its end.
func smallTmpfs(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmdfull")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}
