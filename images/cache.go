package images

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/internal/cachedir"
)

// lastUsedFile is the stamp file in an image directory whose mtime says
// when the image was last used: Build touches it on every cache hit and
// build, and the start scripts touch it on every boot.
const lastUsedFile = cachedir.Stamp

// RecentUse is how long after its last use a cache entry is safe from
// Prune (unless PruneOptions.All): a running test may still be starting
// machines from it.
const RecentUse = 10 * time.Minute

// DefaultCacheCap is the size Build prunes the cache down to after every
// build, least recently used entries first, unless VMDRIVER_CACHE_CAP
// says otherwise (see CacheCap).
const DefaultCacheCap int64 = 4 << 30

// CacheCapEnv names the environment variable that overrides
// DefaultCacheCap.
const CacheCapEnv = "VMDRIVER_CACHE_CAP"

// section is one subdirectory of the cache directory.
type section struct {
	name string
	// whole makes the directory one entry instead of one per child.
	whole bool
}

// sections are the parts of the cache directory, in listing order.
// Children whose name starts with a dot are never entries: .build-* (a
// build in progress; build.go removes stale ones), .download-* and
// .tmp-* (being written) and .trash-* (being removed).
var sections = []section{
	// One directory <kind>-<hash>/ per built guest, complete once it
	// holds manifest.json; last used per its lastUsedFile stamp.
	{name: "images"},
	// One .deb per package version, touched whenever a build uses it:
	// each file is an entry, so versions no build uses any more (the
	// previous kernel) age out alone.
	{name: "debs"},
	// Memoized apt-cache answers, one per apt state and query: each is
	// an entry for the same reason, since every apt update orphans the
	// previous state's files.
	{name: "versions"},
	// debootstrap's own package cache, which it uses as a set: one
	// entry, touched by every systemd build.
	{name: "debootstrap", whole: true},
	// Post-boot snapshots of machines started warm (machine.WithWarm):
	// one directory per machine key, stamped by every warm start.
	{name: WarmSection},
}

// WarmSection is the cache subdirectory that holds warm-start entries.
const WarmSection = "warm"

// CacheEntry is one removable unit of the cache directory.
type CacheEntry struct {
	// Section is the cache subdirectory holding the entry ("images",
	// "debs", ...).
	Section string
	// Name is the entry's file name in Section, empty when the entry is
	// the whole section.
	Name string
	// Path is the entry's absolute path.
	Path string
	// Size is the space the entry takes on disk: allocated blocks, so a
	// sparse root image counts only what it holds.
	Size int64
	// LastUsed is the mtime of the entry's lastUsedFile stamp if it has
	// one, else of the entry itself.
	LastUsed time.Time
}

// DefaultCacheDir returns the cache directory Build uses when
// Options.CacheDir is empty: os.UserCacheDir()/vmdriver.
func DefaultCacheDir() (string, error) {
	ucd, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find the user cache directory: %w", err)
	}
	return filepath.Join(ucd, "vmdriver"), nil
}

// ListCache returns the entries of the cache directory dir, least
// recently used first (the order Prune removes them in). A missing
// directory is an empty cache.
func ListCache(dir string) ([]CacheEntry, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("resolve cache directory: %w", err)
	}
	var out []CacheEntry
	add := func(sec, name, path string) {
		fi, err := os.Stat(path)
		if err != nil {
			return // removed meanwhile
		}
		out = append(out, CacheEntry{Section: sec, Name: name, Path: path, Size: diskUsage(path), LastUsed: lastUsed(path, fi)})
	}
	for _, s := range sections {
		sdir := filepath.Join(dir, s.name)
		if s.whole {
			if _, err := os.Stat(sdir); err == nil {
				add(s.name, "", sdir)
			}
			continue
		}
		children, err := os.ReadDir(sdir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read cache: %w", err)
		}
		for _, c := range children {
			if !strings.HasPrefix(c.Name(), ".") {
				add(s.name, c.Name(), filepath.Join(sdir, c.Name()))
			}
		}
	}
	slices.SortStableFunc(out, func(a, b CacheEntry) int {
		return cmp.Or(a.LastUsed.Compare(b.LastUsed), cmp.Compare(a.Path, b.Path))
	})
	return out, nil
}

// lastUsed returns when the entry at path (with info fi) was last used.
func lastUsed(path string, fi fs.FileInfo) time.Time {
	if fi.IsDir() {
		if st, err := os.Stat(filepath.Join(path, lastUsedFile)); err == nil {
			return st.ModTime()
		}
	}
	return fi.ModTime()
}

// diskUsage returns the bytes allocated to path and everything below it.
var diskUsage = cachedir.DiskUsage

// touch sets the mtime of path to now, creating it (empty) if missing.
var touch = cachedir.Touch

// PruneOptions says which cache entries Prune removes. An entry goes if
// it is older than OlderThan, or while the cache is over MaxSize, least
// recently used first; entries used within RecentUse stay unless All.
type PruneOptions struct {
	// OlderThan removes entries last used more than this long ago; 0
	// sets no age limit.
	OlderThan time.Duration
	// MaxSize removes entries until the whole cache takes at most this
	// many bytes; 0 sets no size limit.
	MaxSize int64
	// All also removes entries used within RecentUse.
	All bool
	// Keep lists paths of entries never removed (the image in use).
	Keep []string
	// DryRun removes nothing but reports what would go.
	DryRun bool
}

// Prune removes cache entries of dir as opts says and returns them, least
// recently used first, with the bytes they took. An entry is first
// renamed to a .trash- name, so a concurrent builder finds it whole or
// not at all, then deleted. Prune carries on past an entry it cannot
// remove and returns the errors joined.
func Prune(ctx context.Context, dir string, opts PruneOptions) (removed []CacheEntry, freed int64, err error) {
	entries, err := ListCache(dir)
	if err != nil {
		return nil, 0, err
	}
	if !opts.DryRun {
		sweepTrash(dir)
	}
	keep := map[string]bool{}
	for _, k := range opts.Keep {
		if abs, err := filepath.Abs(k); err == nil {
			keep[abs] = true
		}
	}
	var total int64
	for _, e := range entries {
		total += e.Size
	}
	now := time.Now()
	var errs []error
	for _, e := range entries {
		age := now.Sub(e.LastUsed)
		old := opts.OlderThan > 0 && age > opts.OlderThan
		over := opts.MaxSize > 0 && total > opts.MaxSize
		if !old && !over || keep[e.Path] || !opts.All && age < RecentUse {
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		if !opts.DryRun {
			gone, err := removeEntry(e.Path, opts.All)
			if err != nil {
				errs = append(errs, err) // its trash goes with the next Prune
				continue
			}
			if !gone {
				continue
			}
		}
		removed = append(removed, e)
		freed += e.Size
		total -= e.Size
	}
	return removed, freed, errors.Join(errs...)
}

// removeTrash deletes a renamed entry; tests replace it.
var removeTrash = removeTree

// removeEntry renames path to a .trash- name in its directory (one atomic
// step) and deletes that. Unless force, an entry used since it was listed
// (its stamp became recent) is renamed back and gone is false.
func removeEntry(path string, force bool) (gone bool, err error) {
	trash := filepath.Join(filepath.Dir(path), fmt.Sprintf(cachedir.TrashPrefix+"%s-%x", filepath.Base(path), rand.Uint64()))
	if err := os.Rename(path, trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // another prune was first
		}
		return false, fmt.Errorf("remove %s: %w", path, err)
	}
	if !force {
		if fi, err := os.Stat(trash); err == nil && time.Since(lastUsed(trash, fi)) < RecentUse {
			if os.Rename(trash, path) == nil {
				return false, nil
			}
			// A builder has made a new one meanwhile: this copy is unused.
		}
	}
	if err := removeTrash(trash); err != nil {
		return true, fmt.Errorf("remove %s: %w", trash, err)
	}
	return true, nil
}

// sweepTrash deletes the .trash- entries an interrupted Prune left behind.
func sweepTrash(dir string) {
	dirs := []string{dir}
	for _, s := range sections {
		dirs = append(dirs, filepath.Join(dir, s.name))
	}
	for _, d := range dirs {
		trash, _ := filepath.Glob(filepath.Join(globEscape(d), cachedir.TrashPrefix+"*"))
		for _, t := range trash {
			_ = removeTrash(t)
		}
	}
}

// CacheCap returns the size Build prunes the cache down to:
// VMDRIVER_CACHE_CAP if set (bytes with an optional K, M, G or T suffix;
// "0" or "off" disables pruning and returns 0), else DefaultCacheCap.
func CacheCap() (int64, error) {
	v := strings.TrimSpace(os.Getenv(CacheCapEnv))
	switch strings.ToLower(v) {
	case "":
		return DefaultCacheCap, nil
	case "off":
		return 0, nil
	}
	n, err := ParseSize(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", CacheCapEnv, err)
	}
	return n, nil
}

// ParseSize parses a byte count with an optional binary suffix K, M, G
// or T (also spelled KB or KiB, any case): "4G", "500M", "1.5G", "4096".
func ParseSize(s string) (int64, error) {
	num := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	num, binary := strings.CutSuffix(num, "I") // KiB: then a unit must come
	mult := 1.0
	if i := strings.LastIndexAny(num, "KMGT"); i >= 0 && i == len(num)-1 {
		mult = math.Pow(1024, float64(strings.IndexByte("KMGT", num[i])+1))
		num = num[:i]
	} else if binary {
		num = "" // "5iB"
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) || f*mult >= math.MaxInt64 {
		return 0, fmt.Errorf("invalid size %q: want bytes with an optional K, M, G or T suffix, e.g. 4G or 500M", s)
	}
	return int64(f * mult), nil
}

// FormatSize formats a byte count for people: "512 B", "84.2 MiB".
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 3 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGT"[i])
}
