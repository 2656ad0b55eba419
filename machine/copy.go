package machine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// guestShared is where the guest sees the shared directory.
const guestShared = "/tmp/shared"

// uploadChunk is how many bytes of a file one CopyFromHostViaShell
// command carries: its base64 text (4/3 as long) keeps the command line
// well under 64 KiB.
const uploadChunk = 45 << 10

// CopyFromHost copies a host file or directory tree to target in the
// guest, through the shared directory: it is staged in a temporary
// directory there, then copied with `cp -r` in the guest (creating
// target's parent directory). Modes follow the host; the owner is root.
func (m *Machine) CopyFromHost(ctx context.Context, source, target string) error {
	return m.Nested(fmt.Sprintf("copying %s from the host to %s", source, target), func() error {
		tmp, err := os.MkdirTemp(m.cfg.sharedDir, "copy")
		if err != nil {
			return fmt.Errorf("machine %s: copy from host: %w", m.name, err)
		}
		defer os.RemoveAll(tmp)
		name := filepath.Base(filepath.Clean(source))
		if err := copyTree(source, filepath.Join(tmp, name)); err != nil {
			return fmt.Errorf("machine %s: copy from host: staging %s: %w", m.name, source, err)
		}
		staged := path.Join(guestShared, filepath.Base(tmp), name)
		if _, err := m.Succeed(ctx, guestcmd.MkdirAll(path.Dir(target))); err != nil {
			return err
		}
		_, err = m.Succeed(ctx, guestcmd.CopyTree(staged, target))
		return err
	})
}

// CopyFromHostViaShell copies a host file to target in the guest through
// shell commands (base64 text, in chunks that keep every command line
// under 64 KiB), for guests without a shared directory.
func (m *Machine) CopyFromHostViaShell(ctx context.Context, source, target string) error {
	return m.Nested(fmt.Sprintf("copying %s from the host to %s through the shell", source, target), func() error {
		data, err := os.ReadFile(source)
		if err != nil {
			return fmt.Errorf("machine %s: copy from host via shell: %w", m.name, err)
		}
		if _, err := m.Succeed(ctx, guestcmd.MkdirAll(path.Dir(target))); err != nil {
			return err
		}
		for first := true; first || len(data) > 0; first = false {
			n := min(len(data), uploadChunk)
			if _, err := m.Succeed(ctx, guestcmd.Upload(data[:n], target, !first)); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	})
}

// CopyFromMachine copies a guest file or directory tree to
// OutputDir/targetDir/NAME on the host (NAME is source's base name),
// through the shared directory, and returns the host path.
func (m *Machine) CopyFromMachine(ctx context.Context, source, targetDir string) (string, error) {
	name := path.Base(path.Clean(source))
	if name == "/" || name == "." || name == ".." {
		return "", fmt.Errorf("machine %s: copy from machine: %q names no file", m.name, source)
	}
	dst := filepath.Join(m.cfg.outputDir, targetDir, name)
	err := m.Nested(fmt.Sprintf("copying %s from the machine to %s", source, dst), func() error {
		tmp, err := os.MkdirTemp(m.cfg.sharedDir, "copy")
		if err != nil {
			return fmt.Errorf("machine %s: copy from machine: %w", m.name, err)
		}
		defer os.RemoveAll(tmp)
		guestTmp := path.Join(guestShared, filepath.Base(tmp))
		if _, err := m.Succeed(ctx, guestcmd.MkdirAll(guestTmp)); err != nil {
			return err
		}
		if _, err := m.Succeed(ctx, guestcmd.CopyTree(source, path.Join(guestTmp, name))); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("machine %s: copy from machine: %w", m.name, err)
		}
		if err := copyTree(filepath.Join(tmp, name), dst); err != nil {
			return fmt.Errorf("machine %s: copy from machine: %w", m.name, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return dst, nil
}

// CopyFromVM is the deprecated name of CopyFromMachine.
func (m *Machine) CopyFromVM(ctx context.Context, source, targetDir string) (string, error) {
	return m.CopyFromMachine(ctx, source, targetDir)
}

// copyTree copies a file, symlink or directory tree, keeping modes.
func copyTree(src, dst string) error {
	type dirMode struct {
		path string
		mode fs.FileMode
	}
	var dirs []dirMode
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			// Writable while we fill it; its own mode is set at the end.
			dirs = append(dirs, dirMode{to, info.Mode().Perm()})
			return os.MkdirAll(to, 0o700)
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case info.Mode().IsRegular():
			return copyFile(p, to, info.Mode().Perm())
		}
		return fmt.Errorf("%s is neither a file, a directory nor a symlink", p)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chmod(dirs[i].path, dirs[i].mode); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	err = errors.Join(err, out.Close())
	if err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
