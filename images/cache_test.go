package images

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const mib = 1 << 20

// fakeEntry is one entry of a fake cache: rel is its path under the cache
// directory; a rel under images/ (or debootstrap) is a directory holding
// size bytes, anything else a file of size bytes.
type fakeEntry struct {
	rel   string
	size  int
	age   time.Duration // since its last use
	stamp bool          // images: has a last-used stamp (else its own mtime counts)
}

// fakeCache is the cache the tests prune, least recently used first.
var fakeCache = []fakeEntry{
	{rel: "debs/old_1.0_amd64.deb", size: 1 * mib, age: 10 * 24 * time.Hour},
	{rel: "debootstrap", size: 2 * mib, age: 5 * 24 * time.Hour},
	{rel: "images/minimal-old", size: 3 * mib, age: 3 * 24 * time.Hour, stamp: true},
	{rel: "images/systemd-nostamp", size: 1 * mib, age: 2 * 24 * time.Hour},
	{rel: "versions/abc.json", size: 100, age: 24 * time.Hour},
	{rel: "images/systemd-sparse", size: 1 * mib, age: time.Hour, stamp: true},
	{rel: "images/minimal-recent", size: 2 * mib, age: time.Minute, stamp: true},
}

// notEntries are in the cache directory but never entries: a build in
// progress (old and big), a download in progress and a memo being written.
var notEntries = []string{"images/.build-systemd-123", "debs/.download-456", "versions/.tmp-x.json-789"}

func randomFile(t *testing.T, path string, size int) {
	t.Helper()
	data := make([]byte, size) // random, so no file system compresses it
	rand.Read(data)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func setAge(t *testing.T, path string, age time.Duration) {
	t.Helper()
	when := time.Now().Add(-age)
	if err := os.Chtimes(path, when, when); err != nil {
		t.Fatal(err)
	}
}

// makeCache builds fakeCache and notEntries in a new directory.
func makeCache(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, e := range fakeCache {
		p := filepath.Join(dir, e.rel)
		if !strings.HasPrefix(e.rel, "images/") && e.rel != "debootstrap" {
			randomFile(t, p, e.size)
			setAge(t, p, e.age)
			continue
		}
		if strings.HasSuffix(e.rel, "-sparse") {
			// A 1 GiB root image holding e.size bytes.
			randomFile(t, filepath.Join(p, rootImgFile), e.size)
			if err := os.Truncate(filepath.Join(p, rootImgFile), 1<<30); err != nil {
				t.Fatal(err)
			}
		} else {
			randomFile(t, filepath.Join(p, "data"), e.size)
		}
		if e.stamp {
			if err := touch(filepath.Join(p, lastUsedFile)); err != nil {
				t.Fatal(err)
			}
			setAge(t, filepath.Join(p, lastUsedFile), e.age)
		}
		setAge(t, p, 30*time.Second) // a stamped entry's own mtime does not count
		if !e.stamp {
			setAge(t, p, e.age)
		}
	}
	for _, rel := range notEntries {
		randomFile(t, filepath.Join(dir, rel, "data"), 4*mib)
		setAge(t, filepath.Join(dir, rel), 30*24*time.Hour)
	}
	return dir
}

func rels(dir string, entries []CacheEntry) []string {
	var out []string
	for _, e := range entries {
		r, _ := filepath.Rel(dir, e.Path)
		out = append(out, r)
	}
	return out
}

func TestListCache(t *testing.T) {
	dir := makeCache(t)
	entries, err := ListCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range fakeCache {
		want = append(want, e.rel)
	}
	if got := rels(dir, entries); !slices.Equal(got, want) {
		t.Fatalf("entries, least recently used first:\n got %q\nwant %q", got, want)
	}
	for i, e := range entries {
		f := fakeCache[i]
		// Allocated blocks: the content plus a few blocks of directory,
		// manifest and stamp; the sparse 1 GiB image counts what it holds.
		if e.Size < int64(f.size) || e.Size > int64(f.size)+64<<10 {
			t.Errorf("%s: size %d, want %d plus a few blocks", f.rel, e.Size, f.size)
		}
		if d := time.Since(e.LastUsed) - f.age; d < 0 || d > time.Minute {
			t.Errorf("%s: last used %v ago, want %v", f.rel, time.Since(e.LastUsed), f.age)
		}
		// debootstrap is one entry, with no name.
		if sec, name, _ := strings.Cut(f.rel, "/"); e.Section != sec || e.Name != name {
			t.Errorf("%s: section %q name %q", f.rel, e.Section, e.Name)
		}
	}

	// A hard-linked file counts once.
	linked := filepath.Join(t.TempDir(), "images", "minimal-linked")
	randomFile(t, filepath.Join(linked, "a"), mib)
	if err := os.Link(filepath.Join(linked, "a"), filepath.Join(linked, "b")); err != nil {
		t.Fatal(err)
	}
	if got, _ := ListCache(filepath.Dir(filepath.Dir(linked))); len(got) != 1 || got[0].Size > mib+64<<10 {
		t.Errorf("hard-linked entry: %+v, want one of about 1 MiB", got)
	}

	missing, err := ListCache(filepath.Join(dir, "nope"))
	if err != nil || len(missing) != 0 {
		t.Errorf("missing cache: %v, %v; want empty", missing, err)
	}
}

func TestPrune(t *testing.T) {
	all := func(except ...string) []string {
		var out []string
		for _, e := range fakeCache {
			if !slices.Contains(except, e.rel) {
				out = append(out, e.rel)
			}
		}
		return out
	}
	for _, tt := range []struct {
		name string
		opts PruneOptions
		keep string // Keep, relative to the cache
		want []string
	}{
		{"nothing asked", PruneOptions{}, "", nil},
		{"older than 2.5 days", PruneOptions{OlderThan: 60 * time.Hour}, "",
			[]string{"debs/old_1.0_amd64.deb", "debootstrap", "images/minimal-old"}},
		{"over 7.5 MiB, least recently used first", PruneOptions{MaxSize: 7*mib + mib/2}, "",
			[]string{"debs/old_1.0_amd64.deb", "debootstrap"}},
		{"age removes more than size", PruneOptions{OlderThan: 36 * time.Hour, MaxSize: 9*mib + mib/2}, "",
			[]string{"debs/old_1.0_amd64.deb", "debootstrap", "images/minimal-old", "images/systemd-nostamp"}},
		{"recent entries stay", PruneOptions{MaxSize: 1}, "", all("images/minimal-recent")},
		{"recent entries stay by age too", PruneOptions{OlderThan: time.Second}, "", all("images/minimal-recent")},
		{"all", PruneOptions{MaxSize: 1, All: true}, "", all()},
		{"kept image stays", PruneOptions{MaxSize: 1, All: true}, "images/systemd-sparse", all("images/systemd-sparse")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := makeCache(t)
			before, err := ListCache(dir)
			if err != nil {
				t.Fatal(err)
			}
			var wantFreed int64
			for _, e := range before {
				if slices.Contains(tt.want, rels(dir, []CacheEntry{e})[0]) {
					wantFreed += e.Size
				}
			}
			if tt.keep != "" {
				tt.opts.Keep = []string{filepath.Join(dir, tt.keep)}
			}
			var reports [2][]string
			for i, dry := range []bool{true, false} {
				opts := tt.opts
				opts.DryRun = dry
				removed, freed, err := Prune(context.Background(), dir, opts)
				if err != nil {
					t.Fatalf("dry run %v: %v", dry, err)
				}
				reports[i] = rels(dir, removed)
				if !slices.Equal(reports[i], tt.want) || freed != wantFreed {
					t.Errorf("dry run %v: removed %q, freed %d; want %q, %d", dry, reports[i], freed, tt.want, wantFreed)
				}
				for _, e := range fakeCache {
					_, err := os.Stat(filepath.Join(dir, e.rel))
					if gone := os.IsNotExist(err); gone != (!dry && slices.Contains(tt.want, e.rel)) {
						t.Errorf("dry run %v: %s gone = %v", dry, e.rel, gone)
					}
				}
			}
			for _, rel := range notEntries {
				if _, err := os.Stat(filepath.Join(dir, rel, "data")); err != nil {
					t.Errorf("%s was touched: %v", rel, err)
				}
			}
			trash, _ := filepath.Glob(filepath.Join(dir, "*", ".trash-*"))
			top, _ := filepath.Glob(filepath.Join(dir, ".trash-*"))
			if len(trash)+len(top) > 0 {
				t.Errorf("trash left behind: %q", append(trash, top...))
			}
		})
	}
}

// TestPruneTrashFirst checks that an entry leaves its name in one rename,
// whole, before anything of it is deleted, so a concurrent builder finds
// either the complete image or none; and that trash a killed prune left
// behind goes with the next prune.
func TestPruneTrashFirst(t *testing.T) {
	dir := makeCache(t)
	leftover := filepath.Join(dir, "images", ".trash-minimal-x-1")
	randomFile(t, filepath.Join(leftover, "data"), 1000)

	var deleted []string
	t.Cleanup(func() { removeTrash = removeTree })
	removeTrash = func(p string) error {
		deleted = append(deleted, p)
		name := filepath.Base(p)
		if !strings.HasPrefix(name, ".trash-") {
			t.Errorf("deleting %s, not a .trash- name", p)
		}
		if p != leftover {
			orig := strings.TrimPrefix(name, ".trash-")
			orig = orig[:strings.LastIndexByte(orig, '-')]
			if _, err := os.Stat(filepath.Join(filepath.Dir(p), orig)); !os.IsNotExist(err) {
				t.Errorf("%s still exists while its trash is deleted", orig)
			}
			if _, err := os.Stat(filepath.Join(p, "data")); strings.HasPrefix(orig, "minimal-old") && err != nil {
				t.Errorf("trash of %s is not whole: %v", orig, err)
			}
		}
		return removeTree(p)
	}

	if _, _, err := Prune(context.Background(), dir, PruneOptions{OlderThan: 60 * time.Hour, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if len(deleted) > 0 {
		t.Fatalf("dry run deleted %q", deleted)
	}
	removed, _, err := Prune(context.Background(), dir, PruneOptions{OlderThan: 60 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3 || len(deleted) != 4 || deleted[0] != leftover {
		t.Errorf("removed %q, deleted %q; want 3 entries and the leftover trash first", rels(dir, removed), deleted)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover trash survived: %v", err)
	}
}

// TestRemoveEntryPutsBackAUsedEntry: an entry whose stamp turned recent
// after Prune listed it (a builder hit it meanwhile) is put back, unless
// forced.
func TestRemoveEntryPutsBackAUsedEntry(t *testing.T) {
	for _, force := range []bool{false, true} {
		dir := t.TempDir()
		p := filepath.Join(dir, "minimal-abc")
		randomFile(t, filepath.Join(p, manifestFile), 10)
		if err := touch(filepath.Join(p, lastUsedFile)); err != nil {
			t.Fatal(err)
		}
		gone, err := removeEntry(p, force)
		if err != nil {
			t.Fatal(err)
		}
		_, statErr := os.Stat(filepath.Join(p, manifestFile))
		if gone != force || (statErr == nil) == force {
			t.Errorf("force %v: gone %v, manifest: %v", force, gone, statErr)
		}
		if left, _ := os.ReadDir(dir); len(left) != map[bool]int{false: 1, true: 0}[force] {
			t.Errorf("force %v: directory holds %v", force, left)
		}
	}
}

func TestBuilderPrune(t *testing.T) {
	for _, tt := range []struct {
		env     string
		want    []string // entries gone
		logWant string
	}{
		{"", nil, ""}, // 4 GiB: the fake cache fits
		{"off", nil, ""},
		{"0", nil, ""},
		// Down to 6.5 MiB, sparing the image just used (minimal-old).
		{"6.5M", []string{"debs/old_1.0_amd64.deb", "debootstrap", "images/systemd-nostamp"}, "freed 4.0 MiB"},
		{"lots", nil, `"lots"`},
	} {
		t.Run(tt.env, func(t *testing.T) {
			t.Setenv(CacheCapEnv, tt.env)
			dir := makeCache(t)
			var log []string
			b := &builder{cache: dir, logf: func(f string, a ...any) { log = append(log, fmt.Sprintf(f, a...)) }}
			b.prune(context.Background(), filepath.Join(dir, "images/minimal-old")) // the image just used
			for _, e := range fakeCache {
				_, err := os.Stat(filepath.Join(dir, e.rel))
				if gone := os.IsNotExist(err); gone != slices.Contains(tt.want, e.rel) {
					t.Errorf("%s gone = %v", e.rel, gone)
				}
			}
			all := strings.Join(log, "\n")
			if tt.logWant == "" && len(log) > 0 || !strings.Contains(all, tt.logWant) {
				t.Errorf("log %q, want %q", all, tt.logWant)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64 // -1: error
	}{
		{"0", 0}, {"4096", 4096}, {"512B", 512}, {"4G", 4 << 30}, {"4g", 4 << 30}, {"500M", 500 << 20},
		{"1.5G", 3 << 29}, {"2KiB", 2048}, {"2kb", 2048}, {"1T", 1 << 40},
		{"", -1}, {"G", -1}, {"lots", -1}, {"-1G", -1}, {"5iB", -1}, {"4X", -1}, {"NaN", -1}, {"inf", -1}, {"9999999T", -1},
	} {
		got, err := ParseSize(tt.in)
		if tt.want < 0 {
			if err == nil || !strings.Contains(err.Error(), `"`+tt.in+`"`) || !strings.Contains(err.Error(), "4G") {
				t.Errorf("ParseSize(%q) = %d, %v; want an error naming it and an example", tt.in, got, err)
			}
		} else if err != nil || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 84 << 20: "84.0 MiB", 4 << 30: "4.0 GiB", 3 << 40: "3.0 TiB"} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCacheCap(t *testing.T) {
	for env, want := range map[string]int64{"": DefaultCacheCap, "off": 0, "OFF": 0, "0": 0, "2G": 2 << 30, " 100M ": 100 << 20, "x": -1} {
		t.Setenv(CacheCapEnv, env)
		got, err := CacheCap()
		if want < 0 {
			if err == nil || !strings.Contains(err.Error(), CacheCapEnv) {
				t.Errorf("%s=%q: %d, %v; want an error naming the variable", CacheCapEnv, env, got, err)
			}
		} else if err != nil || got != want {
			t.Errorf("%s=%q: %d, %v; want %d", CacheCapEnv, env, got, err, want)
		}
	}
}

// TestPruneReportsFailures: an entry that cannot be deleted is reported
// as an error, not as freed, and its trash goes with the next prune.
func TestPruneReportsFailures(t *testing.T) {
	dir := makeCache(t)
	t.Cleanup(func() { removeTrash = removeTree })
	removeTrash = func(string) error { return os.ErrPermission }
	opts := PruneOptions{OlderThan: 4 * 24 * time.Hour} // old.deb and debootstrap
	removed, freed, err := Prune(context.Background(), dir, opts)
	if err == nil || !strings.Contains(err.Error(), "old_1.0_amd64.deb") || len(removed) != 0 || freed != 0 {
		t.Fatalf("removed %q, freed %d, err %v; want nothing and an error naming the file", rels(dir, removed), freed, err)
	}
	removeTrash = removeTree
	if _, _, err := Prune(context.Background(), dir, opts); err != nil {
		t.Fatal(err)
	}
	trash, _ := filepath.Glob(filepath.Join(dir, "*", ".trash-*"))
	top, _ := filepath.Glob(filepath.Join(dir, ".trash-*"))
	if len(trash)+len(top) > 0 {
		t.Errorf("trash left behind: %q", append(trash, top...))
	}
}
