package qemu

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

func TestMountScripts(t *testing.T) {
	out := "shared /tmp/shared rw,relatime,sync,dirsync,access=client,trans=virtio\n" +
		"store /nix/.ro-store ro,trans=virtio\n" +
		"malformed line\n"
	ms := parseMounts(out)
	if len(ms) != 2 || ms[0] != (guestMount{"shared", "/tmp/shared", "rw,relatime,sync,dirsync,access=client,trans=virtio"}) || ms[1].Dir != "/nix/.ro-store" {
		t.Fatalf("parseMounts = %+v", ms)
	}
	if got, want := unmountScript(ms), "sync\numount /nix/.ro-store 2>&1\numount /tmp/shared 2>&1\n"; got != want {
		t.Errorf("unmountScript = %q, want %q (innermost first)", got, want)
	}
	if got, want := mountScript(ms), "mount -t 9p -o rw,relatime,sync,dirsync,access=client,trans=virtio shared /tmp/shared\n"+
		"mount -t 9p -o ro,trans=virtio store /nix/.ro-store\n"; got != want {
		t.Errorf("mountScript = %q, want %q", got, want)
	}
	got := remountMissingScript([]guestMount{{"a b", "/mnt/it's", "trans=virtio"}})
	if want := `grep -q ' /mnt/it'\''s 9p ' /proc/mounts || mount -t 9p -o trans=virtio 'a b' '/mnt/it'\''s'` + "\n"; got != want {
		t.Errorf("remountMissingScript = %q, want %q", got, want)
	}
	if parseMounts("") != nil || !strings.Contains(guestcmd.ListMounts9p(), "/proc/mounts") {
		t.Error("no mounts should parse to nil")
	}
}

// TestSnapshotPrepareOnRealGuest: PrepareSnapshot unmounts the minimal
// guest's 9p share and its Undo mounts it again; a share a process is
// using stays mounted, with an error asking about the process.
func TestSnapshotPrepareOnRealGuest(t *testing.T) {
	i, sh, _ := bootGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mounted := func() string {
		t.Helper()
		res, err := sh.Run(ctx, "grep -c ' /tmp/shared 9p ' /proc/mounts", backdoor.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(res.Output))
	}
	if got := mounted(); got != "1" {
		t.Fatalf("/tmp/shared is mounted %s times before the test", got)
	}

	prep, err := i.PrepareSnapshot(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	if got := mounted(); got != "0" {
		t.Errorf("/tmp/shared is still mounted after PrepareSnapshot (%s)", got)
	}
	if !strings.Contains(prep.Undo, "mount -t 9p") || !strings.Contains(prep.Undo, "/tmp/shared") || prep.What == "" {
		t.Errorf("GuestPrep = %+v", prep)
	}
	if err := runScript(ctx, sh, prep.Undo); err != nil {
		t.Fatalf("Undo: %v", err)
	}
	if got := mounted(); got != "1" {
		t.Errorf("/tmp/shared is mounted %s times after Undo", got)
	}

	if err := runScript(ctx, sh, "(cd /tmp/shared && exec sleep 120) </dev/null >/dev/null 2>&1 & echo $! > /tmp/busy.pid"); err != nil {
		t.Fatal(err)
	}
	_, err = i.PrepareSnapshot(ctx, sh)
	t.Logf("with a busy share: %v", err)
	if err == nil || !strings.Contains(err.Error(), "is a process using it?") {
		t.Errorf("PrepareSnapshot with a busy share = %v, want the hint about a process", err)
	}
	if got := mounted(); got != "1" {
		t.Errorf("/tmp/shared is mounted %s times after the failed PrepareSnapshot, want 1", got)
	}
	if err := runScript(ctx, sh, "kill $(cat /tmp/busy.pid)"); err != nil {
		t.Error(err)
	}
}
