// Package cachedir holds the conventions every part of vmdriver's cache
// directory follows, so the images builder, warm starts and `image prune`
// agree: an entry is a directory whose last use is the modification time
// of its stamp file, names starting with a dot are work in progress
// (never listed or pruned), and an entry is removed by renaming it to a
// .trash- name first, so no reader ever sees half of it.
package cachedir

import (
	"errors"
	"io/fs"
	"os"
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
