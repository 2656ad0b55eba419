package modules

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// errClosedFile is returned by operations on a closed file object.
var errClosedFile = errors.New("I/O operation on closed file")

// openBuiltin is Python's open(file, mode="r", buffering=-1, encoding=None,
// errors=None, newline=None). Text files hold UTF-8 and are not newline-translated.
func (m *Modules) openBuiltin(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		p                        pathArg
		mode                     = "r"
		buffering                = -1
		encoding, errs, newline_ starlark.Value
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "file", &p, "mode?", &mode, "buffering?", &buffering,
		"encoding??", &encoding, "errors??", &errs, "newline??", &newline_); err != nil {
		return nil, err
	}
	if err := checkEncoding(encoding); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	fm, err := parseFileMode(mode)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	f, err := os.OpenFile(string(p), fm.flags, 0o666)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return m.newFile(f, mode, fm, false), nil
}

func checkEncoding(enc starlark.Value) error {
	if enc == nil {
		return nil
	}
	s, ok := enc.(starlark.String)
	if !ok {
		return fmt.Errorf("encoding must be str, not %s", enc.Type())
	}
	switch strings.ToLower(strings.ReplaceAll(string(s), "_", "-")) {
	case "utf-8", "utf8", "ascii", "us-ascii":
		return nil
	}
	return fmt.Errorf("unsupported encoding %s: only UTF-8 is supported", s)
}

type fileMode struct {
	flags              int
	readable, writable bool
	binary             bool
}

// parseFileMode parses a Python open() mode: one of r, w, a, x, optionally
// "+", optionally "b" or "t".
func parseFileMode(mode string) (fileMode, error) {
	var fm fileMode
	var kind byte
	plus, text := false, false
	for i := 0; i < len(mode); i++ {
		switch c := mode[i]; c {
		case 'r', 'w', 'a', 'x':
			if kind != 0 {
				return fm, fmt.Errorf("invalid mode %q: must have exactly one of r, w, a, x", mode)
			}
			kind = c
		case '+':
			if plus {
				return fm, fmt.Errorf("invalid mode %q", mode)
			}
			plus = true
		case 'b':
			if fm.binary || text {
				return fm, fmt.Errorf("invalid mode %q", mode)
			}
			fm.binary = true
		case 't':
			if fm.binary || text {
				return fm, fmt.Errorf("invalid mode %q", mode)
			}
			text = true
		default:
			return fm, fmt.Errorf("invalid mode %q", mode)
		}
	}
	switch kind {
	case 'r':
		fm.readable = true
	case 'w':
		fm.writable, fm.flags = true, os.O_CREATE|os.O_TRUNC
	case 'a':
		fm.writable, fm.flags = true, os.O_CREATE|os.O_APPEND
	case 'x':
		fm.writable, fm.flags = true, os.O_CREATE|os.O_EXCL
	default:
		return fm, fmt.Errorf("invalid mode %q: must have exactly one of r, w, a, x", mode)
	}
	if plus {
		fm.readable, fm.writable = true, true
	}
	switch {
	case fm.readable && fm.writable:
		fm.flags |= os.O_RDWR
	case fm.writable:
		fm.flags |= os.O_WRONLY
	default:
		fm.flags |= os.O_RDONLY
	}
	return fm, nil
}

// File is a Python file object from open() or tempfile.NamedTemporaryFile.
// Reads return str in text mode and bytes in binary mode; write accepts
// either in both modes. It supports `with` (__enter__ returns the file,
// __exit__ closes it) and iteration over its lines.
type File struct {
	m             *Modules
	name, mode    string
	fm            fileMode
	deleteOnClose bool

	mu     sync.Mutex
	f      *os.File // nil once closed
	rd     *bufio.Reader
	closed bool
}

func (m *Modules) newFile(f *os.File, mode string, fm fileMode, deleteOnClose bool) *File {
	file := &File{m: m, name: f.Name(), mode: mode, fm: fm, f: f, deleteOnClose: deleteOnClose}
	m.track(file)
	return file
}

// Name returns the file's path.
func (f *File) Name() string { return f.name }

// osFile returns the open *os.File, for redirecting a child process to it.
func (f *File) osFile() (*os.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil, errClosedFile
	}
	if err := f.unread(); err != nil {
		return nil, err
	}
	return f.f, nil
}

func (f *File) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.f == nil {
		return nil
	}
	err := f.f.Close()
	f.f, f.rd = nil, nil
	if f.deleteOnClose {
		if rmErr := os.Remove(f.name); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
			err = errors.Join(err, rmErr)
		}
	}
	f.m.untrack(f)
	return err
}

// unread gives back what the read buffer holds, so that writes and seeks
// happen at the position the script sees. Callers hold f.mu.
func (f *File) unread() error {
	if f.rd == nil {
		return nil
	}
	n := f.rd.Buffered()
	f.rd = nil
	if n > 0 {
		if _, err := f.f.Seek(int64(-n), io.SeekCurrent); err != nil {
			return err
		}
	}
	return nil
}

func (f *File) reader() *bufio.Reader {
	if f.rd == nil {
		f.rd = bufio.NewReader(f.f)
	}
	return f.rd
}

func (f *File) value(s string) starlark.Value {
	if f.fm.binary {
		return starlark.Bytes(s)
	}
	return starlark.String(s)
}

// check verifies that the file is open and allows the operation. Callers hold f.mu.
func (f *File) check(read, write bool) error {
	switch {
	case f.f == nil:
		return errClosedFile
	case read && !f.fm.readable:
		return fmt.Errorf("file not open for reading (mode %q)", f.mode)
	case write && !f.fm.writable:
		return fmt.Errorf("file not open for writing (mode %q)", f.mode)
	}
	return nil
}

func (f *File) readLine() (string, error) {
	line, err := f.reader().ReadString('\n')
	if err == io.EOF {
		err = nil
	}
	return line, err
}

// String implements starlark.Value.
func (f *File) String() string {
	return fmt.Sprintf("<file %s, mode %s>", starlark.String(f.name), starlark.String(f.mode))
}

// Type implements starlark.Value.
func (f *File) Type() string { return "file" }

// Freeze implements starlark.Value: a file is a handle, not data; it stays usable.
func (f *File) Freeze() {}

// Truth implements starlark.Value.
func (f *File) Truth() starlark.Bool { return true }

// Hash implements starlark.Value (identity).
func (f *File) Hash() (uint32, error) { return starlark.String(fmt.Sprintf("%p", f)).Hash() }

// CompareSameType implements starlark.Comparable (identity).
func (f *File) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return compareEq(op, f == y.(*File), "file")
}

// Iterate implements starlark.Iterable: the remaining lines, with their "\n".
func (f *File) Iterate() starlark.Iterator { return &lineIterator{f: f} }

type lineIterator struct {
	f *File
}

func (it *lineIterator) Next(p *starlark.Value) bool {
	it.f.mu.Lock()
	defer it.f.mu.Unlock()
	if it.f.check(true, false) != nil {
		return false
	}
	line, err := it.f.readLine()
	if err != nil || line == "" {
		return false
	}
	*p = it.f.value(line)
	return true
}

func (it *lineIterator) Done() {}

// Attr implements starlark.HasAttrs.
func (f *File) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(f.name), nil
	case "mode":
		return starlark.String(f.mode), nil
	case "closed":
		f.mu.Lock()
		defer f.mu.Unlock()
		return starlark.Bool(f.f == nil), nil
	}
	return methodAttr(f, "file", name, fileMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (f *File) AttrNames() []string { return methodNames(fileMethods, "name", "mode", "closed") }

type fileMethod = func(*File, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// locked runs op with the file locked, after checking it allows reading or writing.
func locked(read, write bool, op func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)) fileMethod {
	return func(f *File, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if err := f.check(read, write); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		v, err := op(f, b, args, kwargs)
		if err != nil {
			if strings.HasPrefix(err.Error(), b.Name()+":") {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		return v, nil
	}
}

func (f *File) write(v starlark.Value) (int, error) {
	s, ok := strOrBytes(v)
	if !ok {
		return 0, fmt.Errorf("want str or bytes, got %s", v.Type())
	}
	if err := f.unread(); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(f.f, s); err != nil {
		return 0, err
	}
	if f.fm.binary {
		return len(s), nil
	}
	return utf8.RuneCountInString(s), nil
}

var fileMethods = map[string]fileMethod{
	"read": locked(true, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		size := -1
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0, &size); err != nil {
			return nil, err
		}
		r := f.reader()
		if size < 0 {
			data, err := io.ReadAll(r)
			return f.value(string(data)), err
		}
		var out strings.Builder
		if f.fm.binary {
			_, err := io.CopyN(&out, r, int64(size))
			if err == io.EOF {
				err = nil
			}
			return f.value(out.String()), err
		}
		for range size {
			c, _, err := r.ReadRune()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			out.WriteRune(c)
		}
		return f.value(out.String()), nil
	}),
	"readline": locked(true, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		line, err := f.readLine()
		return f.value(line), err
	}),
	"readlines": locked(true, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		var lines []starlark.Value
		for {
			line, err := f.readLine()
			if err != nil {
				return nil, err
			}
			if line == "" {
				return starlark.NewList(lines), nil
			}
			lines = append(lines, f.value(line))
		}
	}),
	"write": locked(false, true, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var v starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &v); err != nil {
			return nil, err
		}
		n, err := f.write(v)
		if err != nil {
			return nil, err
		}
		return starlark.MakeInt(n), nil
	}),
	"writelines": locked(false, true, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var lines starlark.Iterable
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &lines); err != nil {
			return nil, err
		}
		it := lines.Iterate()
		defer it.Done()
		var v starlark.Value
		for it.Next(&v) {
			if _, err := f.write(v); err != nil {
				return nil, err
			}
		}
		return starlark.None, nil
	}),
	// flush is a no-op: writes are not buffered.
	"flush": locked(false, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return starlark.None, starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0)
	}),
	"seek": locked(false, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var offset int64
		whence := 0
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &offset, &whence); err != nil {
			return nil, err
		}
		if err := f.unread(); err != nil {
			return nil, err
		}
		pos, err := f.f.Seek(offset, whence)
		if err != nil {
			return nil, err
		}
		return starlark.MakeInt64(pos), nil
	}),
	"tell": locked(false, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		pos, err := f.f.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, err
		}
		if f.rd != nil {
			pos -= int64(f.rd.Buffered())
		}
		return starlark.MakeInt64(pos), nil
	}),
	"fileno": locked(false, false, func(f *File, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.MakeUint64(uint64(f.f.Fd())), nil
	}),
	"close": func(f *File, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return none(b, f.close())
	},
	"__enter__": func(f *File, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.f == nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), errClosedFile)
		}
		return f, nil
	},
	"__exit__": func(f *File, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return none(b, f.close())
	},
}

// tempfileModule is Python's tempfile: gettempdir, gettempprefix, mkdtemp,
// TemporaryDirectory and NamedTemporaryFile.
func (m *Modules) tempfileModule() *starlarkstruct.Module {
	return module("tempfile", map[string]builtinFunc{
		"gettempdir": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			return starlark.String(m.tempDir()), nil
		},
		"gettempprefix": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			return starlark.String("tmp"), nil
		},
		"mkdtemp": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			dir, err := m.mkdtemp(b, args, kwargs)
			if err != nil {
				return nil, err
			}
			return starlark.String(dir), nil
		},
		"TemporaryDirectory": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			dir, err := m.mkdtemp(b, args, kwargs)
			if err != nil {
				return nil, err
			}
			d := &temporaryDirectory{m: m, name: dir}
			m.mu.Lock()
			m.tempDirs[d] = struct{}{}
			m.mu.Unlock()
			return d, nil
		},
		"NamedTemporaryFile": m.namedTemporaryFile,
	}, nil)
}

// tempDir is gettempdir(): $TMPDIR from os.environ, else the system default.
func (m *Modules) tempDir() string {
	if d, ok := m.environ.get("TMPDIR"); ok && d != "" {
		return d
	}
	return os.TempDir()
}

// tempNameArgs unpacks suffix, prefix and dir and returns the pattern for
// os.MkdirTemp/CreateTemp.
func (m *Modules) tempName(suffix, prefix starlark.Value, dir pathArg) (string, string, error) {
	sfx, pfx := "", "tmp"
	if given(suffix) {
		s, ok := suffix.(starlark.String)
		if !ok {
			return "", "", fmt.Errorf("suffix must be str, not %s", suffix.Type())
		}
		sfx = string(s)
	}
	if given(prefix) {
		s, ok := prefix.(starlark.String)
		if !ok {
			return "", "", fmt.Errorf("prefix must be str, not %s", prefix.Type())
		}
		pfx = string(s)
	}
	if strings.ContainsRune(sfx+pfx, '/') {
		return "", "", fmt.Errorf("prefix and suffix must not contain /")
	}
	d := string(dir)
	if d == "" {
		d = m.tempDir()
	}
	return d, pfx + "*" + sfx, nil
}

func (m *Modules) mkdtemp(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (string, error) {
	var suffix, prefix starlark.Value
	var dir pathArg
	var ignoreCleanupErrors, deleteDir bool
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "suffix??", &suffix, "prefix??", &prefix, "dir??", &dir,
		"ignore_cleanup_errors?", &ignoreCleanupErrors, "delete?", &deleteDir); err != nil {
		return "", err
	}
	d, pattern, err := m.tempName(suffix, prefix, dir)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.Name(), err)
	}
	path, err := os.MkdirTemp(d, pattern)
	if err != nil {
		return "", fmt.Errorf("%s: %w", b.Name(), err)
	}
	return path, nil
}

func (m *Modules) namedTemporaryFile(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		mode                                      = "w+b"
		buffering                                 = -1
		encoding, newline_, suffix, prefix, errsV starlark.Value
		dir                                       pathArg
		deleteFile                                = true
		deleteOnClose                             = true
	)
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "mode?", &mode, "buffering?", &buffering,
		"encoding??", &encoding, "newline??", &newline_, "suffix??", &suffix, "prefix??", &prefix,
		"dir??", &dir, "delete?", &deleteFile, "errors??", &errsV, "delete_on_close?", &deleteOnClose); err != nil {
		return nil, err
	}
	if err := checkEncoding(encoding); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	fm, err := parseFileMode(mode)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	d, pattern, err := m.tempName(suffix, prefix, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	f, err := os.CreateTemp(d, pattern)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	// CreateTemp opens read-write; the mode decides what the script may do.
	return m.newFile(f, mode, fm, deleteFile), nil
}

// temporaryDirectory is tempfile.TemporaryDirectory(): `with` yields its path
// and removes it afterwards; cleanup() removes it at once; Modules.Close
// removes it if the script did neither.
type temporaryDirectory struct {
	m    *Modules
	name string

	mu   sync.Mutex
	done bool
}

func (d *temporaryDirectory) cleanup() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done {
		return nil
	}
	d.done = true
	d.m.mu.Lock()
	delete(d.m.tempDirs, d)
	d.m.mu.Unlock()
	return removeAllForce(d.name)
}

// removeAllForce removes a tree, first making directories writable where
// needed (copies of Nix store paths are read-only), as Python's
// TemporaryDirectory cleanup does.
func removeAllForce(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	_ = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && e.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// String implements starlark.Value.
func (d *temporaryDirectory) String() string {
	return fmt.Sprintf("<TemporaryDirectory %s>", starlark.String(d.name))
}

// Type implements starlark.Value.
func (d *temporaryDirectory) Type() string { return "TemporaryDirectory" }

// Freeze implements starlark.Value.
func (d *temporaryDirectory) Freeze() {}

// Truth implements starlark.Value.
func (d *temporaryDirectory) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (d *temporaryDirectory) Hash() (uint32, error) { return starlark.String(d.name).Hash() }

// Attr implements starlark.HasAttrs.
func (d *temporaryDirectory) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		return starlark.String(d.name), nil
	}
	return methodAttr(d, "TemporaryDirectory", name, tempDirMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (d *temporaryDirectory) AttrNames() []string { return methodNames(tempDirMethods, "name") }

type tempDirMethod = func(*temporaryDirectory, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var tempDirMethods = map[string]tempDirMethod{
	"__enter__": func(d *temporaryDirectory, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.String(d.name), nil
	},
	"__exit__": func(d *temporaryDirectory, _ *starlark.Thread, b *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
		return none(b, d.cleanup())
	},
	"cleanup": func(d *temporaryDirectory, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return none(b, d.cleanup())
	},
}
