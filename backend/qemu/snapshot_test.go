package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/sparsecopy"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// restoreSpec restores snap as a new instance closed at the end of the
// test.
func restoreSpec(t *testing.T, spec backend.Spec, snap *backend.Snapshot) (*Instance, error) {
	t.Helper()
	spec = specDefaults(t, spec, "clone")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inst, err := New(WithAccel(AccelTCG)).Restore(ctx, spec, snap)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { inst.Close() })
	return inst.(*Instance), nil
}

func mustRun(t *testing.T, ctx context.Context, sh *backdoor.Shell, cmd string) string {
	t.Helper()
	res, err := sh.Run(ctx, cmd, backdoor.RunOptions{})
	if err != nil {
		t.Fatalf("Run(%q): %v", cmd, err)
	}
	if res.Status != 0 {
		t.Fatalf("Run(%q): status %d: %s", cmd, res.Status, res.Output)
	}
	return string(res.Output)
}

func TestSnapshotRestore(t *testing.T) {
	i, sh, _ := bootGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mustRun(t, ctx, sh, "echo before > /tmp/marker")
	// QEMU refuses to migrate while a 9p share is mounted (Machine
	// unmounts and remounts around snapshots).
	mustRun(t, ctx, sh, "umount /tmp/shared")

	dir := stateDir(t)
	snap, err := i.Snapshot(ctx, dir, backend.SnapshotOptions{})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	t.Logf("snapshot: %d bytes, compressed %v, paused %s", snap.Size, snap.Compressed, snap.Paused)
	if snap.Size <= 0 || snap.Backend != "qemu" || snap.Dir != dir {
		t.Errorf("snapshot = %+v", snap)
	}
	// The original keeps running.
	if got := mustRun(t, ctx, sh, "cat /tmp/marker"); got != "before\n" {
		t.Errorf("original after snapshot: %q", got)
	}
	mustRun(t, ctx, sh, "echo original > /tmp/who")

	var shells []*backdoor.Shell
	for k := range 2 {
		c, err := restoreSpec(t, backend.Spec{StartScript: testenv.StartScript(t, "minimal")}, snap)
		if err != nil {
			t.Fatalf("Restore %d: %v", k, err)
		}
		csh, err := c.Shell(ctx)
		if err != nil {
			t.Fatalf("clone %d Shell: %v", k, err)
		}
		if got := mustRun(t, ctx, csh, "cat /tmp/marker"); got != "before\n" {
			t.Errorf("clone %d sees %q, want the state at the snapshot", k, got)
		}
		if got := mustRun(t, ctx, csh, "cat /tmp/who 2>/dev/null || echo none"); got != "none\n" {
			t.Errorf("clone %d sees the original's later write: %q", k, got)
		}
		mustRun(t, ctx, csh, "echo clone"+string(rune('0'+k))+" > /tmp/who")
		shells = append(shells, csh)
	}
	for k, csh := range shells {
		want := "clone" + string(rune('0'+k)) + "\n"
		if got := mustRun(t, ctx, csh, "cat /tmp/who"); got != want {
			t.Errorf("clone %d: /tmp/who = %q, want %q", k, got, want)
		}
	}
	if got := mustRun(t, ctx, sh, "cat /tmp/who"); got != "original\n" {
		t.Errorf("original: /tmp/who = %q", got)
	}
}

func TestRestoreBadSnapshots(t *testing.T) {
	i, sh, _ := bootGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	mustRun(t, ctx, sh, "umount /tmp/shared")
	dir := stateDir(t)
	snap, err := i.Snapshot(ctx, dir, backend.SnapshotOptions{})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	script := testenv.StartScript(t, "minimal")
	state := filepath.Join(dir, stateZstd)
	if !snap.Compressed {
		state = filepath.Join(dir, stateRaw)
	}
	data, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	// copyWith makes a snapshot directory with a modified state file.
	copyWith := func(t *testing.T, state []byte, fixSize bool) *backend.Snapshot {
		d := stateDir(t)
		m, err := readManifest(snap, "qemu")
		if err != nil {
			t.Fatal(err)
		}
		if fixSize {
			m.Size = int64(len(state))
		}
		if err := os.WriteFile(filepath.Join(d, m.State), state, 0o600); err != nil {
			t.Fatal(err)
		}
		if m.RAMFile != "" {
			ram, err := os.Open(filepath.Join(dir, m.RAMFile))
			if err != nil {
				t.Fatal(err)
			}
			defer ram.Close()
			if err := sparsecopy.File(context.Background(), ram, filepath.Join(d, m.RAMFile)); err != nil {
				t.Fatal(err)
			}
		}
		if err := writeManifest(d, m); err != nil {
			t.Fatal(err)
		}
		c := *snap
		c.Dir = d
		return &c
	}
	garbled := append([]byte(nil), data...)
	for k := len(garbled) / 2; k < len(garbled)/2+4096 && k < len(garbled); k++ {
		garbled[k] ^= 0x5a
	}
	wrapper := func(extra string) string {
		d := stateDir(t)
		p := filepath.Join(d, "run-minimal-vm")
		body := "#!/bin/sh\nexec " + shellQuote(script) + " \"$@\" " + extra + "\n"
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}

	tests := []struct {
		name   string
		snap   func(t *testing.T) *backend.Snapshot
		script string
		want   string
	}{
		{"truncated", func(t *testing.T) *backend.Snapshot { return copyWith(t, data[:len(data)/2], false) }, script, "truncated"},
		{"truncated with a matching manifest", func(t *testing.T) *backend.Snapshot { return copyWith(t, data[:len(data)/2], true) }, script, "loading snapshot"},
		{"garbled", func(t *testing.T) *backend.Snapshot { return copyWith(t, garbled, true) }, script, "loading snapshot"},
		{"missing", func(t *testing.T) *backend.Snapshot { c := *snap; c.Dir = stateDir(t); return &c }, script, "not a complete snapshot"},
		{"other backend", func(t *testing.T) *backend.Snapshot { c := *snap; c.Backend = "mock"; return &c }, script, "mock backend"},
		{"more memory", func(*testing.T) *backend.Snapshot { return snap }, wrapper("-m 384"), "memory 384 MiB"},
		{"more CPUs", func(*testing.T) *backend.Snapshot { return snap }, wrapper("-smp 2"), "2 CPUs"},
		{"machine type", func(*testing.T) *backend.Snapshot { return snap }, wrapper("-machine q35"), "machine type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := restoreSpec(t, backend.Spec{StartScript: tt.script}, tt.snap(t))
			if err == nil {
				t.Fatal("Restore succeeded")
			}
			if !errors.Is(err, backend.ErrSnapshotMismatch) {
				t.Errorf("error does not wrap ErrSnapshotMismatch: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			t.Logf("%s: %v", tt.name, err)
		})
	}
}

func TestWrapLockError(t *testing.T) {
	withDisk := manifest{Disks: []snapDisk{{Device: "virtio0"}}}
	refused := &backend.Error{Op: "waiting for QEMU's control socket", Exited: true, ExitStatus: 1,
		Stderr: []string{`qemu-system-x86_64: -drive file=/s/disk.qcow2: Failed to get "write" lock`}}
	err := wrapLockError(refused, withDisk)
	var be *backend.Error
	if !errors.As(err, &be) || !strings.Contains(be.Hint, envDiskImage) || refused.Hint != "" {
		t.Errorf("wrapLockError = %#v; want a copy with the hint", err)
	}
	if !strings.Contains(err.Error(), "another machine is using") || !errors.Is(err, backend.ErrExited) {
		t.Errorf("message %q lacks the hint or ErrExited", err)
	}
	if got := wrapLockError(refused, manifest{}); got != error(refused) {
		t.Errorf("without disks the error changed: %v", got)
	}
	other := &backend.Error{Exited: true, Stderr: []string{"something else"}}
	if got := wrapLockError(other, withDisk); got != error(other) {
		t.Errorf("an unrelated error changed: %v", got)
	}
}
