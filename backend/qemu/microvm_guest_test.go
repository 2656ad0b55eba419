package qemu

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// TestRealMicrovm boots the minimal guest under -M microvm from its
// machine description, checks the user-mode NIC is restricted before the
// guest could send a packet, runs commands, then snapshots it and forks a
// clone.
func TestRealMicrovm(t *testing.T) {
	needQEMU(t)
	b := NewMicrovm(WithAccel(AccelTCG))
	spec := specDefaults(t, backend.Spec{StartScript: testenv.StartScript(t, "minimal")}, "mvm")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Start paused is not offered; the check races only the guest's own
	// boot, which takes seconds before its NIC is even probed.
	inst, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	i := inst.(*Instance)
	t.Cleanup(func() { i.Close() })
	net, err := i.MonitorCommand(ctx, "info network")
	if err != nil {
		t.Fatalf("info network: %v", err)
	}
	if !strings.Contains(net, "restrict=on") || !strings.Contains(net, "virtio-net-device") {
		t.Fatalf("info network does not show a restricted user NIC on virtio-mmio:\n%s", net)
	}
	bctx, bcancel := context.WithTimeout(ctx, b.BootTimeout())
	defer bcancel()
	began := time.Now()
	sh, err := i.Shell(bctx)
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	t.Logf("microvm guest shell after %s", time.Since(began).Round(time.Millisecond))
	if got := mustRun(t, ctx, sh, "echo hello"); got != "hello\n" {
		t.Errorf("echo hello = %q", got)
	}
	if got := mustRun(t, ctx, sh, "ls /sys/bus/virtio/drivers/virtio_console/ | grep -c virtio; ls -d /sys/bus/platform/drivers/virtio-mmio"); !strings.Contains(got, "virtio-mmio") {
		t.Errorf("no virtio-mmio driver in the guest: %q", got)
	}
	mustRun(t, ctx, sh, "test -b /dev/hvc0 || test -c /dev/hvc0")
	mustRun(t, ctx, sh, "echo shared > /tmp/shared/x && grep -q ' /tmp/shared 9p ' /proc/mounts")

	mustRun(t, ctx, sh, "echo before > /tmp/marker; umount /tmp/shared")
	snap, err := i.Snapshot(ctx, stateDir(t), backend.SnapshotOptions{})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if snap.Backend != "microvm" {
		t.Errorf("snapshot's backend %q, want microvm", snap.Backend)
	}
	// A -M pc QEMU cannot load a microvm state: refused up front.
	if _, err := New(WithAccel(AccelTCG)).Restore(ctx, specDefaults(t, backend.Spec{StartScript: spec.StartScript}, "pcclone"), snap); !errors.Is(err, backend.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "microvm") {
		t.Errorf("restoring a microvm snapshot on -M pc = %v, want ErrSnapshotMismatch naming microvm", err)
	}
	c, err := b.Restore(ctx, specDefaults(t, backend.Spec{StartScript: spec.StartScript}, "mvmclone"), snap)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	csh, err := c.Shell(ctx)
	if err != nil {
		t.Fatalf("clone Shell: %v", err)
	}
	if got := mustRun(t, ctx, csh, "cat /tmp/marker"); got != "before\n" {
		t.Errorf("clone sees %q", got)
	}
	mustRun(t, ctx, csh, "echo clone > /tmp/marker")
	if got := mustRun(t, ctx, sh, "cat /tmp/marker"); got != "before\n" {
		t.Errorf("original sees %q after the clone wrote", got)
	}
}

// TestRealMicrovmSystemd boots the systemd guest under -M microvm: its
// root file system is on a virtio-mmio block device (a qcow2 overlay in
// the state directory), and ACPI power-off reaches logind.
func TestRealMicrovmSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the systemd guest")
	}
	needQEMU(t)
	b := NewMicrovm(WithAccel(AccelTCG))
	spec := specDefaults(t, backend.Spec{StartScript: testenv.StartScript(t, "systemd")}, "mvmsd")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	inst, err := b.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	i := inst.(*Instance)
	t.Cleanup(func() { i.Close() })
	bctx, bcancel := context.WithTimeout(ctx, b.BootTimeout())
	defer bcancel()
	sh, err := i.Shell(bctx)
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	if got := mustRun(t, ctx, sh, "findmnt -n -o SOURCE /"); got != "/dev/vda\n" {
		t.Errorf("root file system on %q, want /dev/vda", got)
	}
	mustRun(t, ctx, sh, `s=$(systemctl is-system-running --wait); case "$s" in running | degraded) ;; *) echo "$s"; exit 1 ;; esac`)
	if err := i.PowerDown(ctx); err != nil {
		t.Fatalf("PowerDown: %v", err)
	}
	select {
	case <-i.Done():
	case <-ctx.Done():
		t.Fatal("the systemd guest did not power off within the deadline")
	}
}
