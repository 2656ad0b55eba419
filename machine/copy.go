package machine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
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
//
// On a backend whose guest has no shared directory (backend.DirSharer:
// Firecracker, cloud-hypervisor) the tree travels through the shell
// instead, as a tar archive, with the same result.
func (m *Machine) CopyFromHost(ctx context.Context, source, target string) error {
	return m.Nested(fmt.Sprintf("copying %s from the host to %s", source, target), func() error {
		if !m.sharesDir() {
			return m.copyFromHostViaTar(ctx, source, target)
		}
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
		return m.upload(ctx, data, target)
	})
}

// upload writes data to the guest file target through shell commands, in
// chunks of uploadChunk bytes (an empty file too).
func (m *Machine) upload(ctx context.Context, data []byte, target string) error {
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), uploadChunk)
		if _, err := m.Succeed(ctx, guestcmd.Upload(data[:n], target, !first)); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// CopyFromMachine copies a guest file or directory tree to
// OutputDir/targetDir/NAME on the host (NAME is source's base name),
// through the shared directory, and returns the host path. On a backend
// whose guest has no shared directory it comes through the shell as a
// tar archive.
func (m *Machine) CopyFromMachine(ctx context.Context, source, targetDir string) (string, error) {
	name := path.Base(path.Clean(source))
	if name == "/" || name == "." || name == ".." {
		return "", fmt.Errorf("machine %s: copy from machine: %q names no file", m.name, source)
	}
	dst := filepath.Join(m.cfg.outputDir, targetDir, name)
	err := m.Nested(fmt.Sprintf("copying %s from the machine to %s", source, dst), func() error {
		if !m.sharesDir() {
			return m.copyFromMachineViaTar(ctx, source, name, dst)
		}
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
	var dirs dirModes
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
			dirs.add(to, info.Mode().Perm())
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
	return dirs.apply()
}

// dirModes are the modes of directories a copy made writable while it
// filled them; apply sets them, deepest first, once the files are in.
type dirModes []dirMode

type dirMode struct {
	path string
	mode fs.FileMode
}

func (d *dirModes) add(path string, mode fs.FileMode) { *d = append(*d, dirMode{path, mode}) }

func (d dirModes) apply() error {
	for i := len(d) - 1; i >= 0; i-- {
		if err := os.Chmod(d[i].path, d[i].mode); err != nil {
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
	return writeFile(dst, in, mode)
}

// writeFile writes r to dst with mode (whatever the umask).
func writeFile(dst string, r io.Reader, mode fs.FileMode) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	err = errors.Join(err, out.Close())
	if err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// sharesDir reports whether the machine's guest sees the shared
// directory (backend.DirSharer).
func (m *Machine) sharesDir() bool {
	if d, ok := m.backend.(backend.DirSharer); ok {
		return d.SharesDir()
	}
	return true
}

// copyFromHostViaTar is CopyFromHost through the shell: source as a tar
// archive (modes kept, owner root), uploaded in chunks to a temporary
// file in the guest, unpacked to target as `cp -r` would copy it there.
func (m *Machine) copyFromHostViaTar(ctx context.Context, source, target string) error {
	name := filepath.Base(filepath.Clean(source))
	var buf bytes.Buffer
	if err := tarTree(&buf, source, name); err != nil {
		return fmt.Errorf("machine %s: copy from host: packing %s: %w", m.name, source, err)
	}
	if _, err := m.Succeed(ctx, guestcmd.MkdirAll(path.Dir(target))); err != nil {
		return err
	}
	archive, err := m.Succeed(ctx, guestcmd.TempPath())
	if err != nil {
		return err
	}
	archive = strings.TrimSpace(archive)
	if err := m.upload(ctx, buf.Bytes(), archive); err != nil {
		return err
	}
	_, err = m.Succeed(ctx, guestcmd.UnpackTree(archive, name, target))
	return err
}

// copyFromMachineViaTar is CopyFromMachine through the shell: the guest
// writes a tar archive of source to the shell (the protocol carries
// bytes exactly), unpacked on the host as dst.
func (m *Machine) copyFromMachineViaTar(ctx context.Context, source, name, dst string) error {
	// Raw: the archive is binary.
	cmd := guestcmd.PackTree(path.Dir(path.Clean(source)), name)
	res, err := m.exec(ctx, cmd, execParams{raw: true})
	if err != nil {
		return err
	}
	if res.Status != 0 {
		return &CommandError{Machine: m.name, Command: cmd, Status: res.Status}
	}
	out := res.Output
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("machine %s: copy from machine: %w", m.name, err)
	}
	if err := untarTree(strings.NewReader(out), name, dst); err != nil {
		return fmt.Errorf("machine %s: copy from machine: unpacking %s: %w", m.name, source, err)
	}
	return nil
}

// tarTree writes src (a file or a directory tree) to w as a tar archive
// whose entries are under ./name, owned by root.
func tarTree(w io.Writer, src, name string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		hdr.Name = "./" + path.Join(name, filepath.ToSlash(rel))
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// untarTree unpacks a tar archive whose entries are under ./name (or
// name) to dst, which takes name's place. Entries outside name, and
// anything but directories, regular files and symbolic links, are
// refused: the archive comes from the guest.
func untarTree(r io.Reader, name, dst string) error {
	tr := tar.NewReader(r)
	var dirs dirModes
	seen := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		rel := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		var sub string
		switch {
		case rel == name:
		case strings.HasPrefix(rel, name+"/"):
			sub = strings.TrimPrefix(rel, name+"/")
		default:
			return fmt.Errorf("the archive has %q, outside %s", hdr.Name, name)
		}
		seen = true
		// Nothing is written through a link the archive made earlier.
		if err := noLinkBetween(dst, path.Dir(sub)); err != nil {
			return fmt.Errorf("the archive's %q: %w", hdr.Name, err)
		}
		target := filepath.Join(dst, filepath.FromSlash(sub))
		mode := fs.FileMode(hdr.Mode).Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			dirs.add(target, mode)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := writeFile(target, tr, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("the archive's %q is of a kind not copied (tar type %q)", hdr.Name, hdr.Typeflag)
		}
	}
	if !seen {
		return errors.New("the archive is empty")
	}
	return dirs.apply()
}

// noLinkBetween fails if dst, or a directory between dst and dst/sub, is
// a symbolic link.
func noLinkBetween(dst, sub string) error {
	p := dst
	for _, part := range append([]string{""}, strings.Split(sub, "/")...) {
		if part == "." {
			continue
		}
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link", p)
		}
	}
	return nil
}
