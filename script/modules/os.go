package modules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// osModule is Python's os: environ, getenv, getcwd, path, the file system
// calls scripts use, and system.
func (m *Modules) osModule(osPath *starlarkstruct.Module) *starlarkstruct.Module {
	return module("os", map[string]builtinFunc{
		"getenv": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var key string
			var dflt starlark.Value = starlark.None
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "key", &key, "default?", &dflt); err != nil {
				return nil, err
			}
			if v, ok := m.environ.get(key); ok {
				return starlark.String(v), nil
			}
			return dflt, nil
		},
		"getcwd": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			wd, err := os.Getwd()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.String(wd), nil
		},
		"getpid": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			return starlark.MakeInt(os.Getpid()), nil
		},
		"listdir": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			dir := pathArg(".")
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path?", &dir); err != nil {
				return nil, err
			}
			entries, err := os.ReadDir(string(dir))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			names := make([]string, len(entries))
			for i, e := range entries {
				names[i] = e.Name()
			}
			return stringList(names), nil
		},
		"mkdir": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			mode := 0o777
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p, "mode?", &mode); err != nil {
				return nil, err
			}
			return none(b, os.Mkdir(string(p), fs.FileMode(mode)))
		},
		"makedirs": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			mode := 0o777
			var existOK bool
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &p, "mode?", &mode, "exist_ok?", &existOK); err != nil {
				return nil, err
			}
			return none(b, makedirs(string(p), fs.FileMode(mode), existOK))
		},
		"remove":  m.osRemove,
		"unlink":  m.osRemove,
		"rmdir":   pathFunc(func(p string) error { return removeDir(p) }),
		"rename":  twoPathFunc(os.Rename),
		"replace": twoPathFunc(os.Rename),
		"symlink": twoPathFunc(os.Symlink),
		"readlink": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			t, err := os.Readlink(string(p))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.String(t), nil
		},
		"chmod": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			var mode int
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p, "mode", &mode); err != nil {
				return nil, err
			}
			return none(b, os.Chmod(string(p), fs.FileMode(mode)&fs.ModePerm|goModeBits(mode)))
		},
		"system": m.osSystem,
		"waitstatus_to_exitcode": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var status int
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &status); err != nil {
				return nil, err
			}
			if sig := status & 0x7f; sig != 0 {
				return starlark.MakeInt(-sig), nil
			}
			return starlark.MakeInt(status >> 8 & 0xff), nil
		},
	}, starlark.StringDict{
		"environ": m.environ,
		"path":    osPath,
		"sep":     starlark.String("/"),
		"pathsep": starlark.String(":"),
		"linesep": starlark.String("\n"),
		"curdir":  starlark.String("."),
		"pardir":  starlark.String(".."),
		"devnull": starlark.String(os.DevNull),
		"name":    starlark.String("posix"),
	})
}

// goModeBits maps the setuid/setgid/sticky bits of a Unix mode to Go's.
func goModeBits(mode int) fs.FileMode {
	var m fs.FileMode
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func none(b *starlark.Builtin, err error) (starlark.Value, error) {
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	return starlark.None, nil
}

func pathFunc(f func(string) error) builtinFunc {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var p pathArg
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
			return nil, err
		}
		return none(b, f(string(p)))
	}
}

func twoPathFunc(f func(string, string) error) builtinFunc {
	return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var p, q pathArg
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &p, &q); err != nil {
			return nil, err
		}
		return none(b, f(string(p), string(q)))
	}
}

// makedirs is os.makedirs: like os.MkdirAll, but an existing leaf directory is
// an error unless existOK.
func makedirs(p string, mode fs.FileMode, existOK bool) error {
	if !existOK {
		if _, err := os.Lstat(p); err == nil {
			return &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
		}
	}
	if err := os.MkdirAll(p, mode); err != nil {
		return err
	}
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		return &fs.PathError{Op: "mkdir", Path: p, Err: fs.ErrExist}
	}
	return nil
}

// removeDir is os.rmdir: the directory must be empty.
func removeDir(p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: p, Err: errors.New("not a directory")}
	}
	return os.Remove(p)
}

// osRemove is os.remove/os.unlink: files only, as in Python.
func (m *Modules) osRemove(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var p pathArg
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(string(p)); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s: %s is a directory (use os.rmdir or shutil.rmtree)", b.Name(), p)
	}
	return none(b, os.Remove(string(p)))
}

// osPathModule is Python's os.path (posixpath), importable as "os.path".
func (m *Modules) osPathModule() *starlarkstruct.Module {
	str1 := func(f func(string) string) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			return starlark.String(f(string(p))), nil
		}
	}
	pred := func(f func(string) bool) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			return starlark.Bool(f(string(p))), nil
		}
	}
	stat := func(p string, ok func(fs.FileInfo) bool) bool {
		fi, err := os.Stat(p)
		return err == nil && ok(fi)
	}
	return module("os.path", map[string]builtinFunc{
		"join": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if len(kwargs) > 0 || len(args) == 0 {
				return nil, fmt.Errorf("%s: want one or more positional path arguments", b.Name())
			}
			parts, err := stringsOf(b.Name(), args)
			if err != nil {
				return nil, err
			}
			return starlark.String(pyJoin(parts...)), nil
		},
		"exists": pred(func(p string) bool { return stat(p, func(fs.FileInfo) bool { return true }) }),
		"lexists": pred(func(p string) bool {
			_, err := os.Lstat(p)
			return err == nil
		}),
		"isfile": pred(func(p string) bool { return stat(p, func(fi fs.FileInfo) bool { return fi.Mode().IsRegular() }) }),
		"isdir":  pred(func(p string) bool { return stat(p, fs.FileInfo.IsDir) }),
		"islink": pred(func(p string) bool {
			fi, err := os.Lstat(p)
			return err == nil && fi.Mode()&fs.ModeSymlink != 0
		}),
		"isabs":    pred(func(p string) bool { return strings.HasPrefix(p, "/") }),
		"basename": str1(pyBasename),
		"dirname":  str1(pyDirname),
		"normpath": str1(pyNormpath),
		"abspath":  str1(pyAbspath),
		"realpath": str1(func(p string) string {
			abs := pyAbspath(p)
			if r, err := filepath.EvalSymlinks(abs); err == nil {
				return r
			}
			return abs
		}),
		"expanduser": str1(func(p string) string {
			if p != "~" && !strings.HasPrefix(p, "~/") {
				return p
			}
			home, ok := m.environ.get("HOME")
			if !ok {
				if h, err := os.UserHomeDir(); err == nil {
					home = h
				}
			}
			if home == "" {
				return p
			}
			return strings.TrimRight(home, "/") + p[1:]
		}),
		"split": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			return starlark.Tuple{starlark.String(pyDirname(string(p))), starlark.String(pyBasename(string(p)))}, nil
		},
		"splitext": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			root, ext := pySplitext(string(p))
			return starlark.Tuple{starlark.String(root), starlark.String(ext)}, nil
		},
		"getsize": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &p); err != nil {
				return nil, err
			}
			fi, err := os.Stat(string(p))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.MakeInt64(fi.Size()), nil
		},
		"relpath": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var p pathArg
			start := pathArg(".")
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "path", &p, "start?", &start); err != nil {
				return nil, err
			}
			r, err := filepath.Rel(pyAbspath(string(start)), pyAbspath(string(p)))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.String(r), nil
		},
	}, starlark.StringDict{"sep": starlark.String("/")})
}

// pyJoin is posixpath.join: an absolute component discards what precedes it,
// and "/" is inserted only where missing; nothing is cleaned.
func pyJoin(parts ...string) string {
	out := parts[0]
	for _, p := range parts[1:] {
		switch {
		case strings.HasPrefix(p, "/"):
			out = p
		case out == "" || strings.HasSuffix(out, "/"):
			out += p
		default:
			out += "/" + p
		}
	}
	return out
}

func pyBasename(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func pyDirname(p string) string {
	head := p[:strings.LastIndexByte(p, '/')+1]
	if head != "" && strings.Trim(head, "/") != "" {
		head = strings.TrimRight(head, "/")
	}
	return head
}

// pySplitext splits off the extension: from the last dot of the last
// component, unless all that precedes it in the component is dots.
func pySplitext(p string) (string, string) {
	base := pyBasename(p)
	dot := strings.LastIndexByte(base, '.')
	if dot <= 0 || strings.Trim(base[:dot], ".") == "" {
		return p, ""
	}
	cut := len(p) - len(base) + dot
	return p[:cut], p[cut:]
}

// pyNormpath is posixpath.normpath (which keeps a leading "//").
func pyNormpath(p string) string {
	if p == "" {
		return "."
	}
	clean := filepath.Clean(p)
	if strings.HasPrefix(p, "//") && !strings.HasPrefix(p, "///") {
		return "/" + clean
	}
	return clean
}

func pyAbspath(p string) string {
	if !strings.HasPrefix(p, "/") {
		if wd, err := os.Getwd(); err == nil {
			p = pyJoin(wd, p)
		}
	}
	return pyNormpath(p)
}

// Environ is os.environ: a str→str mapping owned by one run. It supports
// e[k], e[k] = v, k in e, len, iteration and the dict methods get, keys, values,
// items, pop, setdefault, update and copy. Unlike a dict it stays mutable after
// the script's globals are frozen (it is the run's environment, not a script
// value), and is safe for concurrent use. Children started through subprocess
// and os.system get its contents as their environment.
type Environ struct {
	mu   sync.Mutex
	keys []string
	vals map[string]string
}

func newEnviron(env []string) *Environ {
	e := &Environ{vals: make(map[string]string)}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			e.set(k, v)
		}
	}
	return e
}

func (e *Environ) get(k string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.vals[k]
	return v, ok
}

func (e *Environ) set(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.vals[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.vals[k] = v
}

func (e *Environ) del(k string) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.vals[k]
	if ok {
		delete(e.vals, k)
		e.keys = slices.DeleteFunc(e.keys, func(x string) bool { return x == k })
	}
	return v, ok
}

// List returns the environment in os/exec's "key=value" form.
func (e *Environ) List() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, len(e.keys))
	for i, k := range e.keys {
		out[i] = k + "=" + e.vals[k]
	}
	return out
}

func (e *Environ) snapshot() ([]string, map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]string, len(e.vals))
	for k, v := range e.vals {
		m[k] = v
	}
	return slices.Clone(e.keys), m
}

// String implements starlark.Value.
func (e *Environ) String() string {
	keys, vals := e.snapshot()
	var b strings.Builder
	b.WriteString("environ({")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", starlark.String(k), starlark.String(vals[k]))
	}
	b.WriteString("})")
	return b.String()
}

// Type implements starlark.Value.
func (e *Environ) Type() string { return "os._Environ" }

// Freeze implements starlark.Value: the environment stays mutable (see Environ).
func (e *Environ) Freeze() {}

// Truth implements starlark.Value.
func (e *Environ) Truth() starlark.Bool { return e.Len() > 0 }

// Hash implements starlark.Value.
func (e *Environ) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: os._Environ") }

// Len implements starlark.Sequence.
func (e *Environ) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.keys)
}

// Iterate implements starlark.Iterable: the keys, in insertion order.
func (e *Environ) Iterate() starlark.Iterator {
	keys, _ := e.snapshot()
	return &stringIterator{keys: keys}
}

type stringIterator struct{ keys []string }

func (it *stringIterator) Next(p *starlark.Value) bool {
	if len(it.keys) == 0 {
		return false
	}
	*p = starlark.String(it.keys[0])
	it.keys = it.keys[1:]
	return true
}

func (it *stringIterator) Done() {}

// Items implements starlark.IterableMapping.
func (e *Environ) Items() []starlark.Tuple {
	keys, vals := e.snapshot()
	out := make([]starlark.Tuple, len(keys))
	for i, k := range keys {
		out[i] = starlark.Tuple{starlark.String(k), starlark.String(vals[k])}
	}
	return out
}

// Get implements starlark.Mapping.
func (e *Environ) Get(k starlark.Value) (starlark.Value, bool, error) {
	s, ok := k.(starlark.String)
	if !ok {
		return nil, false, fmt.Errorf("os.environ: key must be str, not %s", k.Type())
	}
	v, found := e.get(string(s))
	if !found {
		return nil, false, nil
	}
	return starlark.String(v), true, nil
}

// SetKey implements starlark.HasSetKey.
func (e *Environ) SetKey(k, v starlark.Value) error {
	ks, ok1 := k.(starlark.String)
	vs, ok2 := v.(starlark.String)
	if !ok1 || !ok2 {
		return fmt.Errorf("os.environ: keys and values must be str, got %s and %s", k.Type(), v.Type())
	}
	if strings.ContainsAny(string(ks), "=\x00") || ks == "" || strings.ContainsRune(string(vs), 0) {
		return fmt.Errorf("os.environ: invalid variable %s", ks)
	}
	e.set(string(ks), string(vs))
	return nil
}

// CompareSameType implements starlark.Comparable.
func (e *Environ) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	return compareEq(op, e == y.(*Environ), "os._Environ")
}

// Attr implements starlark.HasAttrs.
func (e *Environ) Attr(name string) (starlark.Value, error) {
	return methodAttr(e, "environ", name, environMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (e *Environ) AttrNames() []string { return methodNames(environMethods) }

type environMethod = func(*Environ, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var environMethods = map[string]environMethod{
	"get": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k string
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &k, &dflt); err != nil {
			return nil, err
		}
		if v, ok := e.get(k); ok {
			return starlark.String(v), nil
		}
		return dflt, nil
	},
	"keys": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		keys, _ := e.snapshot()
		return stringList(keys), nil
	},
	"values": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		keys, vals := e.snapshot()
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = vals[k]
		}
		return stringList(out), nil
	},
	"items": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		items := e.Items()
		out := make([]starlark.Value, len(items))
		for i, t := range items {
			out[i] = t
		}
		return starlark.NewList(out), nil
	},
	"copy": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
			return nil, err
		}
		items := e.Items()
		d := starlark.NewDict(len(items))
		for _, t := range items {
			_ = d.SetKey(t[0], t[1])
		}
		return d, nil
	},
	"pop": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k string
		var dflt starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &k, &dflt); err != nil {
			return nil, err
		}
		if v, ok := e.del(k); ok {
			return starlark.String(v), nil
		}
		if dflt == nil {
			return nil, fmt.Errorf("%s: key %s not in environ", b.Name(), starlark.String(k))
		}
		return dflt, nil
	},
	"setdefault": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var k, v string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 2, &k, &v); err != nil {
			return nil, err
		}
		if old, ok := e.get(k); ok {
			return starlark.String(old), nil
		}
		if err := e.SetKey(starlark.String(k), starlark.String(v)); err != nil {
			return nil, err
		}
		return starlark.String(v), nil
	},
	"update": func(e *Environ, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var pairs []starlark.Tuple
		if len(args) > 1 {
			return nil, fmt.Errorf("%s: want at most 1 positional argument, got %d", b.Name(), len(args))
		}
		if len(args) == 1 {
			m, ok := args[0].(starlark.IterableMapping)
			if !ok {
				return nil, fmt.Errorf("%s: want a mapping, got %s", b.Name(), args[0].Type())
			}
			pairs = m.Items()
		}
		for _, kw := range kwargs {
			pairs = append(pairs, kw)
		}
		for _, kv := range pairs {
			if err := e.SetKey(kv[0], kv[1]); err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
		}
		return starlark.None, nil
	},
}
