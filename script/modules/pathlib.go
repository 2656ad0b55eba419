package modules

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// pathlibModule is Python's pathlib with Path (and PosixPath, the same).
func pathlibModule() *starlarkstruct.Module {
	ctor := starlark.NewBuiltin("pathlib.Path", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
		}
		parts, err := stringsOf(b.Name(), args)
		if err != nil {
			return nil, err
		}
		if len(parts) == 0 {
			return newPath("."), nil
		}
		return newPath(pyJoin(parts...)), nil
	})
	return &starlarkstruct.Module{Name: "pathlib", Members: starlark.StringDict{
		"Path":      ctor,
		"PosixPath": ctor,
	}}
}

// Path is pathlib.Path: an immutable, normalized path. str(p) is the path
// itself; p / "x" and "x" / p join; functions that take paths accept it.
type Path struct{ path string }

// newPath normalizes as pathlib does: no empty or "." components, no trailing
// slash; ".." is kept.
func newPath(p string) *Path {
	abs := strings.HasPrefix(p, "/")
	var parts []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	s := strings.Join(parts, "/")
	switch {
	case abs:
		s = "/" + s
	case s == "":
		s = "."
	}
	return &Path{path: s}
}

func (p *Path) join(other string) *Path {
	if p.path == "." {
		return newPath(other)
	}
	return newPath(pyJoin(p.path, other))
}

// String implements starlark.Value: the path, as str(path) is.
func (p *Path) String() string { return p.path }

// Type implements starlark.Value.
func (p *Path) Type() string { return "Path" }

// Freeze implements starlark.Value; paths are immutable.
func (p *Path) Freeze() {}

// Truth implements starlark.Value.
func (p *Path) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (p *Path) Hash() (uint32, error) { return starlark.String(p.path).Hash() }

// CompareSameType implements starlark.Comparable (by path string).
func (p *Path) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return compareOrder(op, strings.Compare(p.path, y.(*Path).path))
}

// Binary implements starlark.HasBinary: Path / str, str / Path, Path / Path.
func (p *Path) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	if op != syntax.SLASH {
		return nil, nil
	}
	var other pathArg
	if other.Unpack(y) != nil {
		return nil, nil
	}
	if side == starlark.Right {
		return newPath(string(other)).join(p.path), nil
	}
	return p.join(string(other)), nil
}

func (p *Path) name() string {
	if p.path == "/" || p.path == "." {
		return ""
	}
	return pyBasename(p.path)
}

func (p *Path) parent() *Path {
	switch {
	case p.path == "/" || p.path == ".":
		return p
	case !strings.Contains(p.path, "/"):
		return newPath(".")
	}
	return newPath(pyDirname(p.path))
}

// Attr implements starlark.HasAttrs.
func (p *Path) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(p.name()), nil
	case "parent":
		return p.parent(), nil
	case "stem":
		root, _ := pySplitext(p.name())
		return starlark.String(root), nil
	case "suffix":
		_, ext := pySplitext(p.name())
		return starlark.String(ext), nil
	case "parts":
		var parts starlark.Tuple
		if strings.HasPrefix(p.path, "/") {
			parts = append(parts, starlark.String("/"))
		}
		for _, c := range strings.Split(strings.TrimPrefix(p.path, "/"), "/") {
			if c != "" && c != "." {
				parts = append(parts, starlark.String(c))
			}
		}
		return parts, nil
	}
	return methodAttr(p, "Path", name, pathMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (p *Path) AttrNames() []string {
	return methodNames(pathMethods, "name", "parent", "stem", "suffix", "parts")
}

type pathMethod = func(*Path, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

func pathPred(f func(fs.FileInfo) bool) pathMethod {
	return func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		fi, err := os.Stat(p.path)
		return starlark.Bool(err == nil && f(fi)), nil
	}
}

func pathRead(binary bool) pathMethod {
	return func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var encoding, errs starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "encoding??", &encoding, "errors??", &errs); err != nil {
			return nil, err
		}
		if err := checkEncoding(encoding); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		data, err := os.ReadFile(p.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		if binary {
			return starlark.Bytes(data), nil
		}
		return starlark.String(data), nil
	}
}

func pathWrite(binary bool) pathMethod {
	return func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var data, encoding, errs, newline_ starlark.Value
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "data", &data, "encoding??", &encoding, "errors??", &errs, "newline??", &newline_); err != nil {
			return nil, err
		}
		if err := checkEncoding(encoding); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		s, ok := strOrBytes(data)
		if !ok {
			return nil, fmt.Errorf("%s: data must be str or bytes, not %s", b.Name(), data.Type())
		}
		if err := os.WriteFile(p.path, []byte(s), 0o666); err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		if binary {
			return starlark.MakeInt(len(s)), nil
		}
		return starlark.MakeInt(len([]rune(s))), nil
	}
}

var pathMethods = map[string]pathMethod{
	"exists":      pathPred(func(fs.FileInfo) bool { return true }),
	"is_file":     pathPred(func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }),
	"is_dir":      pathPred(fs.FileInfo.IsDir),
	"read_text":   pathRead(false),
	"read_bytes":  pathRead(true),
	"write_text":  pathWrite(false),
	"write_bytes": pathWrite(true),
	"is_absolute": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.Bool(strings.HasPrefix(p.path, "/")), nil
	},
	"as_posix": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return starlark.String(p.path), nil
	},
	"absolute": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		if strings.HasPrefix(p.path, "/") {
			return p, nil
		}
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		return newPath(wd).join(p.path), nil
	},
	"resolve": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var strict bool
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "strict?", &strict); err != nil {
			return nil, err
		}
		abs := pyAbspath(p.path)
		r, err := filepath.EvalSymlinks(abs)
		if err != nil {
			if strict {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			r = abs
		}
		return newPath(r), nil
	},
	"joinpath": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
		}
		parts, err := stringsOf(b.Name(), args)
		if err != nil {
			return nil, err
		}
		q := p
		for _, s := range parts {
			q = q.join(s)
		}
		return q, nil
	},
	"with_name": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var name string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &name); err != nil {
			return nil, err
		}
		if p.name() == "" || name == "" || strings.Contains(name, "/") || name == "." {
			return nil, fmt.Errorf("%s: invalid name %s for %s", b.Name(), starlark.String(name), p.path)
		}
		return p.parent().join(name), nil
	},
	"with_suffix": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var suffix string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &suffix); err != nil {
			return nil, err
		}
		if p.name() == "" || strings.Contains(suffix, "/") || (suffix != "" && (!strings.HasPrefix(suffix, ".") || suffix == ".")) {
			return nil, fmt.Errorf("%s: invalid suffix %s", b.Name(), starlark.String(suffix))
		}
		stem, _ := pySplitext(p.name())
		return p.parent().join(stem + suffix), nil
	},
	"mkdir": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		mode := 0o777
		var parents, existOK bool
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "mode?", &mode, "parents?", &parents, "exist_ok?", &existOK); err != nil {
			return nil, err
		}
		var err error
		if parents {
			err = makedirs(p.path, fs.FileMode(mode), existOK)
		} else {
			err = os.Mkdir(p.path, fs.FileMode(mode))
			if existOK && err != nil {
				if fi, serr := os.Stat(p.path); serr == nil && fi.IsDir() {
					err = nil
				}
			}
		}
		return none(b, err)
	},
	"unlink": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var missingOK bool
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "missing_ok?", &missingOK); err != nil {
			return nil, err
		}
		err := os.Remove(p.path)
		if missingOK && os.IsNotExist(err) {
			err = nil
		}
		return none(b, err)
	},
	"rmdir": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		return none(b, removeDir(p.path))
	},
	"touch": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		mode := 0o666
		existOK := true
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "mode?", &mode, "exist_ok?", &existOK); err != nil {
			return nil, err
		}
		flags := os.O_WRONLY | os.O_CREATE
		if !existOK {
			flags |= os.O_EXCL
		}
		f, err := os.OpenFile(p.path, flags, fs.FileMode(mode))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		return none(b, f.Close())
	},
	"iterdir": func(p *Path, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		entries, err := os.ReadDir(p.path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		out := make([]starlark.Value, len(entries))
		for i, e := range entries {
			out[i] = p.join(e.Name())
		}
		return starlark.NewList(out), nil
	},
}
