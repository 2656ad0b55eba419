package machine_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

func TestCopyFromHost(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	src := filepath.Join(t.TempDir(), `it's "a" file.txt`)
	must(t, os.WriteFile(src, []byte("payload\n"), 0o600))
	target := "/srv/data dir/o'neil.txt"
	must(t, e.m.CopyFromHost(ctx, src, target))
	got, err := e.guest().ReadFile(target)
	must(t, err)
	if string(got) != "payload\n" {
		t.Errorf("guest file %q", got)
	}

	// A directory tree.
	dir := filepath.Join(t.TempDir(), "conf")
	must(t, os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "sub dir", "a.conf"), []byte("a=1"), 0o644))
	must(t, e.m.CopyFromHost(ctx, dir, "/etc/conf"))
	got, err = e.guest().ReadFile("/etc/conf/sub dir/a.conf")
	must(t, err)
	if string(got) != "a=1" {
		t.Errorf("guest file %q", got)
	}
	assertSharedEmpty(t, e.m)
}

func TestCopyFromHostViaShell(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	data := make([]byte, 150<<10)
	_, _ = rand.Read(data)
	src := filepath.Join(t.TempDir(), "blob")
	must(t, os.WriteFile(src, data, 0o644))
	before := len(e.guest().Commands())
	target := "/root/my dir/blob's copy"
	must(t, e.m.CopyFromHostViaShell(ctx, src, target))
	got, err := e.guest().ReadFile(target)
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("guest file differs (%d bytes, want %d)", len(got), len(data))
	}
	cmds := e.guest().Commands()[before:]
	uploads := 0
	for _, c := range cmds {
		if len(c) > 64<<10 {
			t.Errorf("command of %d bytes exceeds 64 KiB", len(c))
		}
		if strings.HasPrefix(c, "printf %s ") {
			uploads++
		}
	}
	if uploads < 3 {
		t.Errorf("%d upload commands for 150 KiB, want it chunked", uploads)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	must(t, os.WriteFile(empty, nil, 0o644))
	must(t, e.guest().WriteFile("/tmp/empty", []byte("old")))
	must(t, e.m.CopyFromHostViaShell(ctx, empty, "/tmp/empty"))
	got, err = e.guest().ReadFile("/tmp/empty")
	must(t, err)
	if len(got) != 0 {
		t.Errorf("an empty file copied as %q", got)
	}
}

func TestCopyFromMachine(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		_ = g.WriteFile("/var/log/my app's log.txt", []byte("log line\n"))
		_ = g.WriteFile("/var/lib/state/x/y", []byte("deep"))
	})
	ctx := testCtx(t)
	path, err := e.m.CopyFromMachine(ctx, "/var/log/my app's log.txt", "logs")
	must(t, err)
	if want := filepath.Join(e.out, "logs", "my app's log.txt"); path != want {
		t.Errorf("path %q, want %q", path, want)
	}
	got, err := os.ReadFile(path)
	must(t, err)
	if string(got) != "log line\n" {
		t.Errorf("host file %q", got)
	}

	path, err = e.m.CopyFromVM(ctx, "/var/lib/state", "")
	must(t, err)
	got, err = os.ReadFile(filepath.Join(path, "x", "y"))
	must(t, err)
	if path != filepath.Join(e.out, "state") || string(got) != "deep" {
		t.Errorf("copied tree at %s: %q", path, got)
	}

	_, err = e.m.CopyFromMachine(ctx, "/nonexistent", "")
	wantErrContains(t, err, "cp -r", "failed")
	assertSharedEmpty(t, e.m)
}

// assertSharedEmpty checks the copies left no staging directories.
func assertSharedEmpty(t *testing.T, m *machine.Machine) {
	t.Helper()
	ents, err := os.ReadDir(m.SharedDir())
	must(t, err)
	if len(ents) != 0 {
		t.Errorf("shared dir not cleaned up: %v", ents)
	}
}
