package modules

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// shutilModule is Python's shutil: copyfile, copy, copy2, copytree, move,
// rmtree and which.
func (m *Modules) shutilModule() *starlarkstruct.Module {
	twoPaths := func(f func(src, dst string) (string, error)) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var src, dst pathArg
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "src", &src, "dst", &dst); err != nil {
				return nil, err
			}
			r, err := f(string(src), string(dst))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.String(r), nil
		}
	}
	return module("shutil", map[string]builtinFunc{
		"copyfile": twoPaths(func(src, dst string) (string, error) { return dst, copyFile(src, dst, false) }),
		"copy":     twoPaths(func(src, dst string) (string, error) { return copyInto(src, dst, false) }),
		"copy2":    twoPaths(func(src, dst string) (string, error) { return copyInto(src, dst, true) }),
		"copytree": twoPaths(func(src, dst string) (string, error) { return dst, copyTree(src, dst) }),
		"move": twoPaths(func(src, dst string) (string, error) {
			if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
				dst = filepath.Join(dst, filepath.Base(src))
			}
			if err := os.Rename(src, dst); err == nil {
				return dst, nil
			}
			fi, err := os.Lstat(src)
			if err != nil {
				return "", err
			}
			if fi.IsDir() {
				err = copyTree(src, dst)
			} else {
				err = copyFile(src, dst, true)
			}
			if err != nil {
				return "", err
			}
			return dst, os.RemoveAll(src)
		}),
		"rmtree": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			var ignoreErrors bool
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p, "ignore_errors?", &ignoreErrors); err != nil {
				return nil, err
			}
			err := rmtree(string(p))
			if ignoreErrors {
				err = nil
			}
			return none(b, err)
		},
		"which": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var cmd string
			var mode int
			var path starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cmd", &cmd, "mode?", &mode, "path??", &path); err != nil {
				return nil, err
			}
			env := m.environ.List()
			if path != nil {
				s, ok := path.(starlark.String)
				if !ok {
					return nil, fmt.Errorf("%s: path must be str, not %s", b.Name(), path.Type())
				}
				env = []string{"PATH=" + string(s)}
			}
			if strings.Contains(cmd, "/") {
				if fi, err := os.Stat(cmd); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					return starlark.String(cmd), nil
				}
				return starlark.None, nil
			}
			p, err := lookPath(cmd, env)
			if err != nil {
				return starlark.None, nil
			}
			return starlark.String(strings.TrimPrefix(p, "./")), nil
		},
	}, nil)
}

// rmtree removes a directory tree; like Python it refuses a missing path, a
// symlink and a non-directory.
func rmtree(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("cannot call rmtree on a symbolic link: %s", p)
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmtree", Path: p, Err: errors.New("not a directory")}
	}
	return os.RemoveAll(p)
}

// copyInto is shutil.copy/copy2: into dst, or dst/basename(src) when dst is a
// directory, with permission bits (and times for copy2).
func copyInto(src, dst string, times bool) (string, error) {
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		dst = filepath.Join(dst, filepath.Base(src))
	}
	if err := copyFile(src, dst, true); err != nil {
		return "", err
	}
	if times {
		if fi, err := os.Stat(src); err == nil {
			if err := os.Chtimes(dst, fi.ModTime(), fi.ModTime()); err != nil {
				return "", err
			}
		}
	}
	return dst, nil
}

// copyFile copies src's contents to dst (created or truncated); mode copies
// the permission bits too.
func copyFile(src, dst string, mode bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "copy", Path: src, Err: errors.New("is a directory")}
	}
	if dfi, err := os.Stat(dst); err == nil && os.SameFile(fi, dfi) {
		return fmt.Errorf("%s and %s are the same file", src, dst)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if mode {
		return os.Chmod(dst, fi.Mode().Perm())
	}
	return nil
}

// copyTree is shutil.copytree: dst must not exist; symlinks are copied as the
// files they point to (Python's default symlinks=False).
func copyTree(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return &fs.PathError{Op: "copytree", Path: dst, Err: fs.ErrExist}
	}
	return filepath.WalkDir(src, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.IsDir() {
			return os.MkdirAll(target, fi.Mode().Perm()|0o700)
		}
		return copyFile(p, target, true)
	})
}
