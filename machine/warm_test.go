package machine_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// warmEntries lists the entry directories of a warm cache.
func warmEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// warmRun starts a fresh machine "m1" with opts on a fresh mock backend,
// runs one command and returns the environment.
func warmRun(t *testing.T, opts ...machine.Option) *env {
	t.Helper()
	e := newEnv(t, nil, opts...)
	if _, err := e.m.Succeed(testCtx(t), "true"); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestWarmStart(t *testing.T) {
	cache := t.TempDir()

	// First run: no entry, a cold boot, and an entry saved once settled.
	first := warmRun(t, machine.WithWarm(cache))
	if !first.log.has("info", "cold start: no warm entry yet") || !first.log.has("info", "saved a warm entry") {
		t.Fatalf("first run did not boot cold and save:\n%v", first.log.entries)
	}
	entries := warmEntries(t, cache)
	if len(entries) != 1 {
		t.Fatalf("warm cache holds %v, want one entry", entries)
	}
	if _, err := os.Stat(filepath.Join(entries[0], "machine.json")); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(first.guest().Commands(), guestcmd.Settle()) {
		t.Errorf("the cold run saved without settling the guest: %q", first.guest().Commands())
	}

	// Second run: restored, not booted, given its identity (its own
	// machine-id and clock) and the boot's console lines replayed (the
	// mock's boot prints its name).
	second := warmRun(t, machine.WithWarm(cache))
	if got := second.b.Restores("m1"); got != 1 {
		t.Errorf("second run restored %d times, want 1", got)
	}
	if !second.log.has("info", "started warm in") {
		t.Errorf("second run did not say it started warm:\n%v", second.log.entries)
	}
	if cmds := second.guest().Commands(); len(cmds) != 2 || len(second.fixups("m1")) != 1 || cmds[1] != "true" {
		t.Errorf("a warm start sent %q, want the identity fix-up before the test's command", cmds)
	}
	if err := second.m.WaitForConsoleText(testCtx(t), "mock: booting m1", machine.Timeout(5*time.Second)); err != nil {
		t.Errorf("the boot's console lines were not replayed: %v\nconsole: %q", err, second.m.ConsoleLog())
	}
	if n := len(warmEntries(t, cache)); n != 1 {
		t.Errorf("warm cache holds %d entries after a warm run, want 1", n)
	}

	// Another environment is another machine: a new key, a cold boot.
	third := warmRun(t, machine.WithWarm(cache), machine.WithEnv("QEMU_OPTS=-m 1024"))
	if third.b.Restores("m1") != 0 || !third.log.has("info", "cold start: no warm entry yet") {
		t.Errorf("a machine with other options started warm:\n%v", third.log.entries)
	}
	if n := len(warmEntries(t, cache)); n != 2 {
		t.Errorf("warm cache holds %d entries, want 2", n)
	}
	// A per-run path is not part of the key.
	fourth := warmRun(t, machine.WithWarm(cache), machine.WithEnv("QEMU_VDE_SOCKET_1=/tmp/elsewhere"))
	fifth := warmRun(t, machine.WithWarm(cache), machine.WithEnv("QEMU_VDE_SOCKET_1=/tmp/other"))
	if fourth.b.Restores("m1") != 0 || fifth.b.Restores("m1") != 1 {
		t.Errorf("VLAN socket paths changed the key: restores %d then %d, want 0 then 1", fourth.b.Restores("m1"), fifth.b.Restores("m1"))
	}
}

func TestWarmBrokenEntry(t *testing.T) {
	cache := t.TempDir()
	warmRun(t, machine.WithWarm(cache))
	entry := warmEntries(t, cache)[0]
	// Truncate everything the backend saved.
	files, _ := os.ReadDir(entry)
	for _, f := range files {
		if n := f.Name(); n != "machine.json" && n != "last-used" && !f.IsDir() {
			if err := os.Truncate(filepath.Join(entry, n), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	e := warmRun(t, machine.WithWarm(cache))
	if !e.log.has("info", "is unusable and is replaced") {
		t.Fatalf("a truncated entry was not reported:\n%v", e.log.entries)
	}
	if e.log.count("info", "cold start") != 1 || !e.log.has("info", "saved a warm entry") {
		t.Errorf("want one cold start line and a new entry:\n%v", e.log.entries)
	}
	// The replacement works.
	again := warmRun(t, machine.WithWarm(cache))
	if again.b.Restores("m1") != 1 {
		t.Errorf("the replaced entry did not start warm:\n%v", again.log.entries)
	}
}

func TestWarmNotUsed(t *testing.T) {
	cache := t.TempDir()
	// Read-only: an empty cache stays empty.
	ro := warmRun(t, machine.WithWarm(cache), machine.WithWarmReadOnly())
	if n := len(warmEntries(t, cache)); n != 0 || ro.log.has("info", "saved a warm entry") {
		t.Errorf("a read-only warm cache was written: %d entries", n)
	}
	// Kept state: the disk is the state to keep, so never warm.
	warmRun(t, machine.WithWarm(cache))
	kept := warmRun(t, machine.WithWarm(cache), machine.WithKeepState(), machine.WithStateDir(t.TempDir()))
	if kept.b.Restores("m1") != 0 || !kept.log.has("info", "the machine's state is kept") {
		t.Errorf("a machine with kept state started warm:\n%v", kept.log.entries)
	}
}

// TestWarmConcurrentColdRuns starts two machines of one key at once on an
// empty cache: both run, and the cache ends with one complete entry and
// no temporary or lock leftovers in its listing.
func TestWarmConcurrentColdRuns(t *testing.T) {
	cache := t.TempDir()
	a, b := newEnv(t, nil, machine.WithWarm(cache)), newEnv(t, nil, machine.WithWarm(cache))
	ctx := testCtx(t)
	errs := make(chan error, 2)
	for _, e := range []*env{a, b} {
		go func() {
			_, err := e.m.Succeed(ctx, "true")
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	saved := 0
	for _, e := range []*env{a, b} {
		if e.log.has("info", "saved a warm entry") {
			saved++
		}
	}
	if saved < 1 {
		t.Errorf("neither run saved an entry:\n%v\n%v", a.log.entries, b.log.entries)
	}
	entries := warmEntries(t, cache)
	if len(entries) != 1 {
		t.Fatalf("cache holds %v, want one entry", entries)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(cache, ".tmp-*")); len(leftovers) != 0 {
		t.Errorf("temporary directories left: %v", leftovers)
	}
	if again := warmRun(t, machine.WithWarm(cache)); again.b.Restores("m1") != 1 {
		t.Errorf("the entry two concurrent runs made does not start warm:\n%v", again.log.entries)
	}
}
