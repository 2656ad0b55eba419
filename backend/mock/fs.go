package mock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
)

// sharedMount is where the host's shared directory appears in the guest.
const sharedMount = "/tmp/shared"

// fnode is one file or directory of the fake file system.
type fnode struct {
	dir  bool
	data []byte
	mode fs.FileMode
}

// entry is one file or directory of a copied tree; rel is "" for the
// tree's root.
type entry struct {
	rel  string
	dir  bool
	data []byte
	mode fs.FileMode
}

// cleanPath makes a guest path absolute (relative to the backdoor's
// working directory /tmp) and clean.
func cleanPath(p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/tmp/" + p
	}
	return path.Clean(p)
}

func portKey(addr string, port int) string {
	switch addr {
	case "127.0.0.1", "::1", "[::1]", "":
		addr = "localhost"
	}
	return addr + ":" + strconv.Itoa(port)
}

func eventOf(name string, data map[string]any) backend.Event {
	return backend.Event{Name: name, Data: data}
}

// hostPath maps a guest path inside /tmp/shared to the host's shared
// directory; ok is false for other paths or without a shared directory.
func (g *Guest) hostPath(p string) (string, bool) {
	if g.inst == nil || g.inst.spec.SharedDir == "" {
		return "", false
	}
	if p == sharedMount {
		return g.inst.spec.SharedDir, true
	}
	rel, ok := strings.CutPrefix(p, sharedMount+"/")
	if !ok {
		return "", false
	}
	return filepath.Join(g.inst.spec.SharedDir, filepath.FromSlash(rel)), true
}

// statLocked reports whether p exists and is a directory; g.mu is held.
func (g *Guest) statLocked(p string) (exists, dir bool) {
	p = cleanPath(p)
	if hp, ok := g.hostPath(p); ok {
		fi, err := os.Stat(hp)
		if err != nil {
			return false, false
		}
		return true, fi.IsDir()
	}
	n := g.files[p]
	if n == nil {
		return false, false
	}
	return true, n.dir
}

// mkdirAllLocked creates p and its parents.
func (g *Guest) mkdirAllLocked(p string) error {
	p = cleanPath(p)
	if hp, ok := g.hostPath(p); ok {
		return os.MkdirAll(hp, 0o755)
	}
	var parts []string
	for q := p; ; q = path.Dir(q) {
		parts = append(parts, q)
		if q == "/" {
			break
		}
	}
	for _, q := range slices.Backward(parts) {
		if n := g.files[q]; n != nil {
			if !n.dir {
				return fmt.Errorf("cannot create directory '%s': Not a directory", p)
			}
			continue
		}
		if hp, ok := g.hostPath(q); ok {
			if err := os.MkdirAll(hp, 0o755); err != nil {
				return err
			}
			continue
		}
		g.files[q] = &fnode{dir: true, mode: 0o755}
	}
	return nil
}

// parentExistsLocked reports whether p's parent directory exists.
func (g *Guest) parentExistsLocked(p string) bool {
	ok, dir := g.statLocked(path.Dir(cleanPath(p)))
	return ok && dir
}

// writeFileLocked writes (or appends to) a regular file.
// procHostname is the kernel's host name as a file.
const procHostname = "/proc/sys/kernel/hostname"

func (g *Guest) writeFileLocked(p string, data []byte, appendTo bool, mode fs.FileMode) error {
	p = cleanPath(p)
	if p == procHostname {
		// The kernel's host name, as sethostname sees a write there.
		g.hostname = strings.TrimSuffix(string(data), "\n")
		return nil
	}
	if !g.parentExistsLocked(p) {
		return fmt.Errorf("%s: No such file or directory", p)
	}
	if mode == 0 {
		mode = 0o644
	}
	if hp, ok := g.hostPath(p); ok {
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if appendTo {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		f, err := os.OpenFile(hp, flags, mode)
		if err != nil {
			return err
		}
		_, err = f.Write(data)
		return errors.Join(err, f.Close())
	}
	if n := g.files[p]; n != nil && n.dir {
		return fmt.Errorf("%s: Is a directory", p)
	}
	n := g.files[p]
	if n == nil || !appendTo {
		n = &fnode{mode: mode}
		g.files[p] = n
	}
	n.data = append(n.data, data...)
	return nil
}

// readFileLocked returns a regular file's content.
func (g *Guest) readFileLocked(p string) ([]byte, error) {
	p = cleanPath(p)
	if hp, ok := g.hostPath(p); ok {
		return os.ReadFile(hp)
	}
	n := g.files[p]
	switch {
	case n == nil:
		return nil, fmt.Errorf("%s: No such file or directory", p)
	case n.dir:
		return nil, fmt.Errorf("%s: Is a directory", p)
	}
	return slices.Clone(n.data), nil
}

// removeAllLocked removes p and everything below it.
func (g *Guest) removeAllLocked(p string) error {
	p = cleanPath(p)
	if hp, ok := g.hostPath(p); ok {
		return os.RemoveAll(hp)
	}
	for k := range g.files {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(g.files, k)
		}
	}
	return nil
}

// readTreeLocked returns p and, for a directory, everything below it.
func (g *Guest) readTreeLocked(p string) ([]entry, error) {
	p = cleanPath(p)
	if hp, ok := g.hostPath(p); ok {
		var es []entry
		err := filepath.WalkDir(hp, func(fp string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(hp, fp)
			if err != nil {
				return err
			}
			if rel == "." {
				rel = ""
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			e := entry{rel: filepath.ToSlash(rel), dir: d.IsDir(), mode: info.Mode().Perm()}
			if !e.dir {
				if e.data, err = os.ReadFile(fp); err != nil {
					return err
				}
			}
			es = append(es, e)
			return nil
		})
		if err != nil {
			return nil, err
		}
		return es, nil
	}
	root := g.files[p]
	if root == nil {
		return nil, fmt.Errorf("cannot stat '%s': No such file or directory", p)
	}
	es := []entry{{dir: root.dir, data: slices.Clone(root.data), mode: root.mode}}
	if root.dir {
		var keys []string
		for k := range g.files {
			if strings.HasPrefix(k, p+"/") || (p == "/" && k != "/") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			n := g.files[k]
			rel := strings.TrimPrefix(strings.TrimPrefix(k, p), "/")
			es = append(es, entry{rel: rel, dir: n.dir, data: slices.Clone(n.data), mode: n.mode})
		}
	}
	return es, nil
}

// writeTreeLocked creates the tree es at dst (whose parent must exist).
func (g *Guest) writeTreeLocked(dst string, es []entry) error {
	dst = cleanPath(dst)
	if !g.parentExistsLocked(dst) {
		return fmt.Errorf("cannot create '%s': No such file or directory", dst)
	}
	for _, e := range es {
		p := dst
		if e.rel != "" {
			p = dst + "/" + e.rel
		}
		if e.dir {
			if err := g.mkdirAllLocked(p); err != nil {
				return err
			}
			continue
		}
		if err := g.writeFileLocked(p, e.data, false, e.mode); err != nil {
			return err
		}
	}
	return nil
}

// copyLocked is `cp -r src dst`.
func (g *Guest) copyLocked(src, dst string, recursive bool) error {
	es, err := g.readTreeLocked(src)
	if err != nil {
		return err
	}
	if es[0].dir && !recursive {
		return fmt.Errorf("-r not specified; omitting directory '%s'", src)
	}
	if ok, dir := g.statLocked(dst); ok && dir {
		dst = cleanPath(dst) + "/" + path.Base(cleanPath(src))
	}
	return g.writeTreeLocked(dst, es)
}

// WriteFile creates (or replaces) a file in the guest, creating its
// parent directories. Paths under /tmp/shared land in Spec.SharedDir.
func (g *Guest) WriteFile(p string, data []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.mkdirAllLocked(path.Dir(cleanPath(p))); err != nil {
		return err
	}
	return g.writeFileLocked(p, data, false, 0o644)
}

// ReadFile returns a guest file's content.
func (g *Guest) ReadFile(p string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.readFileLocked(p)
}

// MkdirAll creates a guest directory and its parents.
func (g *Guest) MkdirAll(p string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.mkdirAllLocked(p)
}

// Remove removes a guest file or directory tree.
func (g *Guest) Remove(p string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.removeAllLocked(p)
}

// Exists reports whether a guest path exists (`test -e`).
func (g *Guest) Exists(p string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ok, _ := g.statLocked(p)
	return ok
}
