package machine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// staging plays the guest's side of copies through the shared
// directory: it answers the mkdir of a staging directory there and the
// cp between a staged path and a guest path, for the sources and targets
// given. Its answer is a mock.Matcher of g (see matcher).
type staging struct {
	// out holds the guest files a copy out may take: path → content.
	out map[string]string

	mu sync.Mutex
	// in maps every target given to what was staged for it: path (the
	// target, or a file under it) → content.
	in map[string]string
}

func (s *staging) matcher(g *mock.Guest) mock.Matcher {
	return func(_ context.Context, req mock.Request) (mock.Reply, bool) { return s.answer(g.SharedDir(), req) }
}

func (s *staging) answer(shared string, req mock.Request) (mock.Reply, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirs, _ := os.ReadDir(shared)
	for _, d := range dirs {
		guestDir, hostDir := path.Join(guestShared, d.Name()), filepath.Join(shared, d.Name())
		if req.Command == guestcmd.MkdirAll(guestDir) {
			return mock.Reply{}, true
		}
		for source, content := range s.out {
			name := path.Base(source)
			if req.Command == guestcmd.CopyTree(source, path.Join(guestDir, name)) {
				err := os.WriteFile(filepath.Join(hostDir, name), []byte(content), 0o644)
				return mock.Reply{}, err == nil
			}
		}
		staged, _ := os.ReadDir(hostDir)
		for _, f := range staged {
			for target := range s.in {
				if req.Command == guestcmd.CopyTree(path.Join(guestDir, f.Name()), target) {
					return mock.Reply{}, s.take(filepath.Join(hostDir, f.Name()), target) == nil
				}
			}
		}
	}
	return mock.Reply{}, false
}

// take records the staged tree at host as copied to target.
func (s *staging) take(host, target string) error {
	return filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(host, p)
		s.in[path.Join(target, filepath.ToSlash(rel))] = string(data)
		return err
	})
}

// guestShared is where the guest sees the shared directory.
const guestShared = "/tmp/shared"

func TestCopyFromHost(t *testing.T) {
	st := &staging{in: map[string]string{"/srv/data dir/o'neil.txt": "", "/etc/conf": ""}}
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.MkdirAll("/srv/data dir"), mock.Reply{})
		g.Answer(guestcmd.MkdirAll("/etc"), mock.Reply{})
		g.Handle(st.matcher(g))
	})
	ctx := testCtx(t)
	src := filepath.Join(t.TempDir(), `it's "a" file.txt`)
	must(t, os.WriteFile(src, []byte("payload\n"), 0o600))
	must(t, e.m.CopyFromHost(ctx, src, "/srv/data dir/o'neil.txt"))

	// A directory tree.
	dir := filepath.Join(t.TempDir(), "conf")
	must(t, os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "sub dir", "a.conf"), []byte("a=1"), 0o644))
	must(t, e.m.CopyFromHost(ctx, dir, "/etc/conf"))

	if got := st.in["/srv/data dir/o'neil.txt"]; got != "payload\n" {
		t.Errorf("staged file %q", got)
	}
	if got := st.in["/etc/conf/sub dir/a.conf"]; got != "a=1" {
		t.Errorf("staged tree: %q", st.in)
	}
	assertSharedEmpty(t, e.m)

	// A failing cp fails the copy.
	err := e.m.CopyFromHost(ctx, src, "/root/elsewhere")
	wantErrContains(t, err, "mkdir -p -- /root", "exit code 127")
	assertSharedEmpty(t, e.m)
}

func TestCopyFromHostViaShell(t *testing.T) {
	const target = "/root/my dir/blob's copy"
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.MkdirAll(path.Dir(target)), mock.Reply{})
		g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
			return mock.Reply{}, strings.HasPrefix(req.Command, "printf %s ")
		})
	})
	ctx := testCtx(t)
	data := make([]byte, 150<<10)
	_, _ = rand.Read(data)
	src := filepath.Join(t.TempDir(), "blob")
	must(t, os.WriteFile(src, data, 0o644))
	before := len(e.guest().Commands())
	must(t, e.m.CopyFromHostViaShell(ctx, src, target))
	cmds := e.guest().Commands()[before:]
	if len(cmds) < 4 || cmds[0] != guestcmd.MkdirAll(path.Dir(target)) {
		t.Fatalf("commands %.200q, want a mkdir and at least 3 uploads for 150 KiB", cmds)
	}
	// The uploads are the chunks of the file, in order: the first
	// truncates, the others append.
	var got []byte
	for k, c := range cmds[1:] {
		if len(c) > 64<<10 {
			t.Errorf("command of %d bytes exceeds 64 KiB", len(c))
		}
		n := uploadedBytes(c, data[len(got):], target, k > 0)
		if n < 0 {
			t.Fatalf("upload %d is not a chunk of the file: %.100q", k, c)
		}
		got = append(got, data[len(got):len(got)+n]...)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("the uploads carry %d bytes, want %d", len(got), len(data))
	}

	empty := filepath.Join(t.TempDir(), "empty")
	must(t, os.WriteFile(empty, nil, 0o644))
	before = len(e.guest().Commands())
	must(t, e.m.CopyFromHostViaShell(ctx, empty, target))
	if cmds := e.guest().Commands()[before:]; len(cmds) != 2 || cmds[1] != guestcmd.Upload(nil, target, false) {
		t.Errorf("an empty file is copied with %q, want one upload that truncates", cmds)
	}
}

// uploadedBytes returns how many bytes from the start of rest the upload
// command cmd carries, or -1 if it is not such an upload.
func uploadedBytes(cmd string, rest []byte, target string, appendTo bool) int {
	// The command grows with the chunk: find the shortest chunk whose
	// command is as long, then try it and the next two (base64 pads).
	lo := sort.Search(len(rest)+1, func(n int) bool { return len(guestcmd.Upload(rest[:n], target, appendTo)) >= len(cmd) })
	for n := lo; n <= min(lo+2, len(rest)); n++ {
		if guestcmd.Upload(rest[:n], target, appendTo) == cmd {
			return n
		}
	}
	return -1
}

func TestCopyFromMachine(t *testing.T) {
	st := &staging{out: map[string]string{"/var/log/my app's log.txt": "log line\n"}}
	e := started(t, func(g *mock.Guest) { g.Handle(st.matcher(g)) })
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
	path, err = e.m.CopyFromVM(ctx, "/var/log/my app's log.txt", "")
	must(t, err)
	if path != filepath.Join(e.out, "my app's log.txt") {
		t.Errorf("CopyFromVM copied to %s", path)
	}

	_, err = e.m.CopyFromMachine(ctx, "/nonexistent", "")
	wantErrContains(t, err, "cp -r", "failed")
	_, err = e.m.CopyFromMachine(ctx, "/", "")
	wantErrContains(t, err, `"/" names no file`)
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
