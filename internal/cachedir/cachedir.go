// Package cachedir holds the conventions every part of vmdriver's cache
// directory follows, so the images builder, warm starts and `image prune`
// agree: an entry is a directory whose last use is the modification time
// of its stamp file, names starting with a dot are work in progress
// (never listed or pruned), and an entry is removed by renaming it to a
// .trash- name first, so no reader ever sees half of it.
package cachedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Stamp is the file in an entry directory whose modification time says
// when the entry was last used.
const Stamp = "last-used"

// TrashPrefix starts the name of an entry being removed.
const TrashPrefix = ".trash-"

// Touch sets path's modification time to now, creating it empty if
// missing.
func Touch(path string) error {
	now := time.Now()
	err := os.Chtimes(path, now, now)
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// FileIdentity describes the file at path for a cache key, so that any
// change to it shows: its path, size, modification time and inode. A Nix
// store path is immutable and names its contents, so there the path
// alone is the identity, the same on every machine (a key made in a Nix
// build then holds wherever the same store paths exist).
func FileIdentity(path string) (string, error) {
	if strings.HasPrefix(path, "/nix/store/") {
		return path, nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	ino := uint64(0)
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%s size=%d mtime=%d ino=%d", path, fi.Size(), fi.ModTime().UnixNano(), ino), nil
}

// DiskUsage returns the bytes allocated to path and everything below it,
// counting hard-linked files once. What it cannot read counts nothing.
func DiskUsage(path string) int64 {
	var total int64
	seen := map[[2]uint64]bool{}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := [2]uint64{st.Dev, st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}
