package driver

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// runLock is the file in a run directory that its driver holds locked
// (flock) for the whole run. The kernel releases the lock when the driver
// dies, however it dies, so a run directory whose lock can be taken
// belongs to a run that was killed before it could clean up.
const runLock = ".run.lock"

// runDirPrefix names run directories in the temp directory.
const runDirPrefix = "vmdriver-"

// makeRunDir creates a private run directory in base, holding its lock:
// the lock file is made and locked under another name and renamed into
// place, so no sweeping driver ever finds it unlocked while the run lives.
func makeRunDir(base string) (dir string, lock *os.File, err error) {
	dir, err = os.MkdirTemp(base, runDirPrefix)
	if err != nil {
		return "", nil, fmt.Errorf("creating the run directory: %w", err)
	}
	defer func() {
		if err != nil {
			if lock != nil {
				lock.Close()
			}
			os.RemoveAll(dir)
		}
	}()
	tmp := filepath.Join(dir, runLock+".new")
	lock, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("creating the run directory's lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return "", nil, fmt.Errorf("locking the run directory: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, runLock)); err != nil {
		return "", nil, fmt.Errorf("locking the run directory: %w", err)
	}
	return dir, lock, nil
}

// sweepRunDirs removes the run directories in base that killed runs left
// behind (their lock is free), and returns what it removed. Directories
// of live runs, of other users and without a lock (not a run's, or from
// an older vmdriver) are left alone.
func sweepRunDirs(base string) (removed []string, errs error) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return nil, err
	}
	uid := os.Getuid()
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), runDirPrefix) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		var st syscall.Stat_t
		if syscall.Lstat(dir, &st) != nil || int(st.Uid) != uid {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, runLock), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // a live run holds it
			continue
		}
		// Ours now: no other sweeper removes it at the same time.
		err = os.RemoveAll(dir)
		f.Close()
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errs
}
