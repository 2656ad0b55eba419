package images

import (
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"syscall"
)

// cpioTree collects the entries of an initramfs and writes them as a
// "newc" cpio archive (the format the kernel unpacks). Entries are owned
// by root whoever builds the archive, parent directories are added
// automatically, and the output is deterministic (sorted, mtime 0).
type cpioTree struct {
	entries map[string]cpioEntry
}

type cpioEntry struct {
	mode         uint32 // file type and permission bits
	data         []byte // file contents or symlink target
	major, minor uint32 // device numbers for device nodes
}

func newCPIOTree() *cpioTree { return &cpioTree{entries: map[string]cpioEntry{}} }

func cleanArchivePath(p string) string {
	return strings.TrimPrefix(path.Clean("/"+p), "/")
}

func (t *cpioTree) addParents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.entries[d] = cpioEntry{mode: syscall.S_IFDIR | 0o755}
		}
	}
}

// Dir adds a directory.
func (t *cpioTree) Dir(p string, perm uint32) {
	p = cleanArchivePath(p)
	t.addParents(p)
	t.entries[p] = cpioEntry{mode: syscall.S_IFDIR | perm&0o7777}
}

// File adds a regular file.
func (t *cpioTree) File(p string, perm uint32, data []byte) {
	p = cleanArchivePath(p)
	t.addParents(p)
	t.entries[p] = cpioEntry{mode: syscall.S_IFREG | perm&0o7777, data: data}
}

// Symlink adds a symbolic link to target.
func (t *cpioTree) Symlink(p, target string) {
	p = cleanArchivePath(p)
	t.addParents(p)
	t.entries[p] = cpioEntry{mode: syscall.S_IFLNK | 0o777, data: []byte(target)}
}

// CharDev adds a character device node (no root needed: it only exists
// in the archive).
func (t *cpioTree) CharDev(p string, perm, major, minor uint32) {
	p = cleanArchivePath(p)
	t.addParents(p)
	t.entries[p] = cpioEntry{mode: syscall.S_IFCHR | perm&0o7777, major: major, minor: minor}
}

// WriteTo writes the archive, parents before children, ending with the
// TRAILER!!! entry.
func (t *cpioTree) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	// Plain byte order puts every directory before its contents because
	// a path sorts before all paths it prefixes.
	slices.Sort(names)
	cw := &countWriter{w: w}
	ino := uint32(1)
	for _, n := range names {
		e := t.entries[n]
		nlink := uint32(1)
		if e.mode&syscall.S_IFMT == syscall.S_IFDIR {
			nlink = 2
		}
		if err := writeCPIOEntry(cw, n, ino, e.mode, nlink, e.major, e.minor, e.data); err != nil {
			return cw.n, err
		}
		ino++
	}
	err := writeCPIOEntry(cw, "TRAILER!!!", 0, 0, 1, 0, 0, nil)
	return cw.n, err
}

// writeCPIOEntry writes one newc header, the NUL-terminated name and the
// data, each padded to a multiple of four bytes.
func writeCPIOEntry(w io.Writer, name string, ino, mode, nlink, rmajor, rminor uint32, data []byte) error {
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	_, err := w.Write(make([]byte, (4-len(data)%4)%4))
	return err
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
