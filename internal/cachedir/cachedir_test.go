package cachedir

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTouch(t *testing.T) {
	p := filepath.Join(t.TempDir(), Stamp)
	if err := Touch(p); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if err := Touch(p); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || time.Since(fi.ModTime()) > time.Minute {
		t.Errorf("Touch did not renew the stamp: %v, %v", fi.ModTime(), err)
	}
	if err := Touch(filepath.Join(t.TempDir(), "no", "dir")); err == nil {
		t.Error("Touch in a missing directory succeeded")
	}
}

func TestFileIdentity(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kernel")
	if err := os.WriteFile(p, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := FileIdentity(p)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := FileIdentity(p); b != a {
		t.Errorf("identity changed without a change: %q, %q", a, b)
	}
	// Rebuilt in place, same size: the modification time shows it.
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(p, []byte("v2"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, later, later)
	if b, _ := FileIdentity(p); b == a {
		t.Errorf("identity %q did not change with the file", b)
	}
	if _, err := FileIdentity(filepath.Join(t.TempDir(), "gone")); err == nil {
		t.Error("a missing file has an identity")
	}
	const store = "/nix/store/abc-qemu/bin/qemu-system-x86_64"
	if id, err := FileIdentity(store); err != nil || id != store {
		t.Errorf("a Nix store path's identity = %q, %v; want the path", id, err)
	}
}
