package mock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
)

// startOn starts machine name on b and closes it when the test ends.
func startOn(t *testing.T, b *Backend, spec backend.Spec) *Instance {
	t.Helper()
	inst, err := b.Start(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst.(*Instance)
}

// restoreOn restores snap as machine name on b and closes it when the
// test ends.
func restoreOn(t *testing.T, b *Backend, spec backend.Spec, snap *backend.Snapshot) *Instance {
	t.Helper()
	inst, err := b.Restore(testCtx(t), spec, snap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst.(*Instance)
}

func snapshot(t *testing.T, in *Instance, opts backend.SnapshotOptions) *backend.Snapshot {
	t.Helper()
	snap, err := in.Snapshot(testCtx(t), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotRestore(t *testing.T) {
	b := New(scripted(), WithGuest(func(_ string, g *Guest) { g.SetLinks(testLinks...) }))
	var origConsole syncBuffer
	orig := startOn(t, b, backend.Spec{Name: "web", Console: &origConsole})
	og := b.Guest("web")
	og.SetState("index.html", "hello")
	run(t, orig, "true")

	snap := snapshot(t, orig, backend.SnapshotOptions{})
	if snap.Backend != "mock" || snap.Machine != "web" || snap.Taken.IsZero() || snap.Compressed || snap.Paused < 0 {
		t.Errorf("snapshot %+v", snap)
	}
	if got := dirNames(t, snap.Dir); !slices.Equal(got, []string{manifestFile, stateFile}) {
		t.Errorf("snapshot directory holds %q", got)
	}
	fi, err := os.Stat(filepath.Join(snap.Dir, stateFile))
	if err != nil || fi.Size() != snap.Size || snap.Size == 0 {
		t.Errorf("Size %d, state file %v, %v", snap.Size, fi, err)
	}
	og.SetState("index.html", "changed after the snapshot")

	type clone struct {
		in      *Instance
		g       *Guest
		console *syncBuffer
	}
	var clones []clone
	pids := map[int]bool{orig.PID(): true}
	for k := 1; k <= 3; k++ {
		name := fmt.Sprintf("web-%d", k)
		console := &syncBuffer{}
		in := restoreOn(t, b, backend.Spec{Name: name, Console: console}, snap)
		if pids[in.PID()] {
			t.Errorf("%s reuses pid %d", name, in.PID())
		}
		pids[in.PID()] = true
		clones = append(clones, clone{in, b.Guest(name), console})
	}
	if b.Restores("web-1") != 1 || b.Starts("web-1") != 0 || b.Starts("web") != 1 {
		t.Errorf("Restores %d, Starts %d %d", b.Restores("web-1"), b.Starts("web-1"), b.Starts("web"))
	}

	for k, c := range clones {
		name := fmt.Sprintf("web-%d", k+1)
		if got := c.g.State("index.html"); got != "hello" {
			t.Errorf("%s: state %q, want the snapshot's", name, got)
		}
		// No boot: the shell came without a banner and the guest did not
		// boot again. Its answers are the WithGuest callbacks'.
		if r := run(t, c.in, "echo alive"); string(r.Output) != "alive\n" {
			t.Errorf("%s: %q", name, r.Output)
		}
		if !c.g.Restored() || c.g.Boots() != 1 || strings.Contains(c.console.String(), "booting") {
			t.Errorf("%s: restored %v, boots %d, console %q", name, c.g.Restored(), c.g.Boots(), c.console.String())
		}
		if ls, err := c.in.Links(testCtx(t)); err != nil || !slices.Equal(ls, testLinks) {
			t.Errorf("%s: links %+v, %v", name, ls, err)
		}
		if got := c.g.Commands(); !slices.Equal(got, []string{"echo alive"}) {
			t.Errorf("%s: recorded commands %q, want its own only", name, got)
		}
		c.g.SetState("own", name)
	}
	if !strings.Contains(origConsole.String(), "booting") {
		t.Errorf("the original's console %q", origConsole.String())
	}
	// Every machine sees its own state only.
	for i, g := range []*Guest{og, clones[0].g, clones[1].g, clones[2].g} {
		if want := map[int]string{1: "web-1", 2: "web-2", 3: "web-3"}[i]; g.State("own") != want {
			t.Errorf("machine %d: own = %q, want %q", i, g.State("own"), want)
		}
	}

	// Clones are independent processes: one ending leaves the others.
	clones[1].in.Kill(testCtx(t))
	<-clones[1].in.Done()
	if r := run(t, clones[2].in, "echo alive"); string(r.Output) != "alive\n" {
		t.Errorf("after a sibling died: %q", r.Output)
	}
	if r := run(t, orig, "echo alive"); string(r.Output) != "alive\n" {
		t.Errorf("the original after a clone died: %q", r.Output)
	}
}

// TestRestoreChain: a clone of a clone, and a clone's reboot.
func TestRestoreChain(t *testing.T) {
	b := New(scripted())
	orig := startOn(t, b, backend.Spec{Name: "a"})
	run(t, orig, "true")
	b.Guest("a").SetState("gen", "1")
	c1 := restoreOn(t, b, backend.Spec{Name: "a-1", AllowReboot: true}, snapshot(t, orig, backend.SnapshotOptions{}))
	b.Guest("a-1").SetState("gen", "1 2")
	c2 := restoreOn(t, b, backend.Spec{Name: "a-2"}, snapshot(t, c1, backend.SnapshotOptions{}))
	if got := b.Guest("a-2").State("gen"); got != "1 2" {
		t.Errorf("clone of a clone: %q", got)
	}
	run(t, c2, "true")
	// A restored guest reboots like any other: a new boot with a banner.
	ctx := testCtx(t)
	old, err := c1.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.SendKey(ctx, "ctrl-alt-delete"); err != nil {
		t.Fatal(err)
	}
	sh, err := c1.Shell(ctx)
	if err != nil || sh == old {
		t.Fatalf("Shell after reboot: same %v, %v", sh == old, err)
	}
	g := b.Guest("a-1")
	if g.Boots() != 2 || !g.Restored() {
		t.Errorf("boots %d, restored %v", g.Boots(), g.Restored())
	}
	run(t, c1, "true")
	if got := g.State("gen"); got != "1 2" {
		t.Errorf("after reboot: %q", got)
	}
}

func TestSnapshotKeepPaused(t *testing.T) {
	b := New(scripted())
	in := startOn(t, b, backend.Spec{Name: "vm"})
	g := b.Guest("vm")
	run(t, in, "true")
	ctx := testCtx(t)
	snap := snapshot(t, in, backend.SnapshotOptions{KeepPaused: true})
	st, err := in.ControlCommand(ctx, "query-status", nil)
	if err != nil || st.(map[string]any)["status"] != "paused" {
		t.Fatalf("query-status after KeepPaused: %v, %v", st, err)
	}
	sh, err := in.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   backdoor.Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := sh.Run(ctx, "echo resumed", backdoor.RunOptions{})
		done <- result{r, err}
	}()
	// Nothing may answer while paused; a bounded look suffices to catch
	// a guest that ignores the pause.
	select {
	case res := <-done:
		t.Fatalf("a paused guest answered: %+v", res)
	case <-time.After(100 * time.Millisecond):
	}
	if slices.Contains(g.Commands(), "echo resumed") {
		t.Error("a paused guest ran a command")
	}
	// A clone of the paused snapshot runs.
	clone := restoreOn(t, b, backend.Spec{Name: "vm-1"}, snap)
	if r := run(t, clone, "echo clone"); string(r.Output) != "clone\n" {
		t.Errorf("clone: %q", r.Output)
	}
	if _, err := in.ControlCommand(ctx, "cont", nil); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || string(res.r.Output) != "resumed\n" {
		t.Fatalf("after cont: %+v", res)
	}
	st, _ = in.ControlCommand(ctx, "query-status", nil)
	if st.(map[string]any)["status"] != "running" {
		t.Errorf("query-status after cont: %v", st)
	}

	// Without KeepPaused the guest runs on; a paused instance can be
	// closed.
	snapshot(t, in, backend.SnapshotOptions{})
	if r := run(t, in, "echo on"); string(r.Output) != "on\n" {
		t.Errorf("after a snapshot: %q", r.Output)
	}
	snapshot(t, in, backend.SnapshotOptions{KeepPaused: true})
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotFailure(t *testing.T) {
	in, g := start(t, backend.Spec{})
	ctx := testCtx(t)
	dir := t.TempDir()
	g.SetSnapshotError(syscall.ENOSPC)
	_, err := in.Snapshot(ctx, dir, backend.SnapshotOptions{})
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "saving the state") {
		t.Fatalf("Snapshot with a full disk: %v", err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("a failed snapshot left %q", got)
	}
	if r := run(t, in, "echo still"); string(r.Output) != "still\n" {
		t.Errorf("after the failed snapshot: %q", r.Output)
	}
	st, _ := in.ControlCommand(ctx, "query-status", nil)
	if st.(map[string]any)["status"] != "running" {
		t.Errorf("query-status %v", st)
	}
	// KeepPaused does not keep a failed snapshot's guest paused.
	if _, err := in.Snapshot(ctx, dir, backend.SnapshotOptions{KeepPaused: true}); err == nil {
		t.Fatal("second snapshot succeeded")
	}
	if r := run(t, in, "echo still"); string(r.Output) != "still\n" {
		t.Errorf("after a failed KeepPaused snapshot: %q", r.Output)
	}
	g.SetSnapshotError(nil)
	if _, err := in.Snapshot(ctx, dir, backend.SnapshotOptions{}); err != nil {
		t.Fatalf("snapshot into the same directory afterwards: %v", err)
	}
}

func TestSnapshotErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	used := t.TempDir()
	tests := []struct {
		name    string
		dir     string
		prepare func(in *Instance, g *Guest) context.Context
		is      error
		want    string
	}{
		{name: "missing dir", dir: filepath.Join(t.TempDir(), "nope"), want: "is not a directory"},
		{name: "file", dir: file, want: "is not a directory"},
		{name: "used dir", dir: used, want: "already holds a snapshot", prepare: func(in *Instance, g *Guest) context.Context {
			if _, err := in.Snapshot(testCtx(t), used, backend.SnapshotOptions{}); err != nil {
				t.Fatal(err)
			}
			return testCtx(t)
		}},
		{name: "exited", dir: t.TempDir(), is: backend.ErrExited, prepare: func(in *Instance, g *Guest) context.Context {
			g.Crash(nil)
			<-in.Done()
			return testCtx(t)
		}},
		{name: "ctx done", dir: t.TempDir(), is: context.Canceled, prepare: func(in *Instance, g *Guest) context.Context {
			ctx, cancel := context.WithCancel(testCtx(t))
			cancel()
			return ctx
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, g := start(t, backend.Spec{})
			ctx := testCtx(t)
			if tt.prepare != nil {
				ctx = tt.prepare(in, g)
			}
			_, err := in.Snapshot(ctx, tt.dir, backend.SnapshotOptions{})
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Snapshot = %v, want %v %q", err, tt.is, tt.want)
			}
		})
	}
}

// rewriteState replaces a snapshot's state file and makes the manifest
// agree, so only the content's own checks can catch it.
func rewriteState(t *testing.T, dir string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, stateFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	mpath := filepath.Join(dir, manifestFile)
	raw, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	m.Size, m.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(mpath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreMismatch(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, snap *backend.Snapshot)
		guest  func(g *Guest) // the restoring backend's configuration
		want   []string
	}{
		{name: "qemu snapshot", damage: func(t *testing.T, snap *backend.Snapshot) { snap.Backend = "qemu" },
			want: []string{`taken by the "qemu" backend`, "only that backend can restore it"}},
		{name: "missing state", damage: func(t *testing.T, snap *backend.Snapshot) {
			os.Remove(filepath.Join(snap.Dir, stateFile))
		}, want: []string{"the saved state is missing", "take the snapshot again"}},
		{name: "missing manifest", damage: func(t *testing.T, snap *backend.Snapshot) {
			os.Remove(filepath.Join(snap.Dir, manifestFile))
		}, want: []string{"holds no complete mock snapshot", "take the snapshot again"}},
		{name: "garbled manifest", damage: func(t *testing.T, snap *backend.Snapshot) {
			os.WriteFile(filepath.Join(snap.Dir, manifestFile), []byte("{\"version\":"), 0o600)
		}, want: []string{"manifest " + manifestFile + " is malformed"}},
		{name: "truncated", damage: func(t *testing.T, snap *backend.Snapshot) {
			if err := os.Truncate(filepath.Join(snap.Dir, stateFile), snap.Size/2); err != nil {
				t.Fatal(err)
			}
		}, want: []string{fmt.Sprintf("bytes, the manifest says"), "truncated", "take the snapshot again"}},
		{name: "garbled", damage: func(t *testing.T, snap *backend.Snapshot) {
			p := filepath.Join(snap.Dir, stateFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for i := len(data) / 3; i < len(data)/2; i++ {
				data[i] = 'x'
			}
			os.WriteFile(p, data, 0o600)
		}, want: []string{"is corrupt", "take the snapshot again"}},
		{name: "not json", damage: func(t *testing.T, snap *backend.Snapshot) {
			rewriteState(t, snap.Dir, []byte("\x00garbage"))
		}, want: []string{"saved state " + stateFile + " is malformed"}},
		{name: "bad content", damage: func(t *testing.T, snap *backend.Snapshot) {
			rewriteState(t, snap.Dir, []byte(`{"version":1,"hardware":{"memory_mib":512,"cpus":1}}`))
		}, want: []string{"is malformed", "differs from the manifest's"}},
		{name: "future version", damage: func(t *testing.T, snap *backend.Snapshot) {
			rewriteState(t, snap.Dir, []byte(`{"version":2,"hardware":{"memory_mib":1024,"cpus":1}}`))
		}, want: []string{"is malformed", "format version 2"}},
		{name: "memory", guest: func(g *Guest) { g.SetHardware(Hardware{MemoryMiB: 2048, CPUs: 1}) },
			want: []string{`taken from machine "vm"`, "memory 2048 MiB, the snapshot has 1024 MiB", "configured like the original"}},
		{name: "cpus", guest: func(g *Guest) { g.SetHardware(Hardware{MemoryMiB: 1024, CPUs: 4}) },
			want: []string{"4 CPUs, the snapshot has 1"}},
		{name: "links", guest: func(g *Guest) { g.SetLinks(testLinks...) },
			want: []string{"network links [virtio-net-pci.0 virtio-net-pci.1 virtio-net-pci.2], the snapshot has [virtio-net-pci.0]", "same order"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := start(t, backend.Spec{})
			snap := snapshot(t, in, backend.SnapshotOptions{})
			if tt.damage != nil {
				tt.damage(t, snap)
			}
			var opts []Option
			if tt.guest != nil {
				opts = append(opts, WithGuest(func(_ string, g *Guest) { tt.guest(g) }))
			}
			b := New(opts...)
			inst, err := b.Restore(testCtx(t), backend.Spec{Name: "vm-1"}, snap)
			if err == nil {
				inst.Close()
				t.Fatal("Restore succeeded")
			}
			if !errors.Is(err, backend.ErrSnapshotMismatch) {
				t.Errorf("Restore = %v, want ErrSnapshotMismatch", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Restore = %v, want %q in it", err, w)
				}
			}
			if b.Restores("vm-1") != 0 || b.Guest("vm-1") != nil {
				t.Error("a failed Restore registered a machine")
			}
		})
	}
}

func TestRestoreOther(t *testing.T) {
	in, _ := start(t, backend.Spec{})
	snap := snapshot(t, in, backend.SnapshotOptions{})
	t.Run("nil", func(t *testing.T) {
		if _, err := New().Restore(testCtx(t), backend.Spec{Name: "x"}, nil); !errors.Is(err, backend.ErrSnapshotMismatch) {
			t.Errorf("Restore(nil) = %v", err)
		}
	})
	t.Run("ctx done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if _, err := New().Restore(ctx, backend.Spec{Name: "x"}, snap); !errors.Is(err, context.Canceled) {
			t.Errorf("Restore = %v", err)
		}
	})
	t.Run("start hook", func(t *testing.T) {
		boom := errors.New("boom")
		var seen []string
		b := New(WithStartHook(func(spec backend.Spec) error {
			seen = append(seen, spec.Name)
			return boom
		}))
		if _, err := b.Restore(testCtx(t), backend.Spec{Name: "x"}, snap); !errors.Is(err, boom) || !slices.Equal(seen, []string{"x"}) {
			t.Errorf("Restore = %v, hook saw %q", err, seen)
		}
	})
	t.Run("bare", func(t *testing.T) {
		b := New(WithBareInstances(), scripted())
		inst, err := b.Restore(testCtx(t), backend.Spec{Name: "x"}, snap)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { inst.Close() })
		if _, ok := inst.(backend.Snapshotter); ok {
			t.Error("a bare restored instance snapshots")
		}
		sh, err := inst.Shell(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		r, err := sh.Run(testCtx(t), "echo bare", backdoor.RunOptions{})
		if err != nil || string(r.Output) != "bare\n" {
			t.Errorf("bare restored instance: %q, %v", r.Output, err)
		}
	})
}
