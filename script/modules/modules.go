// Package modules provides the subset of Python's standard library that NixOS test
// scripts import, as Starlark modules written in Go: json, re, shlex, time, os,
// os.path, math, subprocess, tempfile, datetime, shutil, pathlib, urllib.parse
// and typing, plus an open() builtin.
//
// The script runtime turns `import json` into `json = import_("json")` and
// `from os import path` into `path = import_("os", "path")`; import_ resolves the
// dotted name with [Modules.Lookup]. Members follow Python's names and, as far as
// Starlark values allow, Python's behaviour. Deliberate differences are documented
// on the member that has them; the main ones are:
//
//   - string positions (re match spans) are byte offsets, as everywhere in Starlark;
//   - the re module runs on RE2: no backreferences or lookaround (a clear error),
//     \b is ASCII-only, and an empty match right after a match is skipped;
//   - captured subprocess output is bytes unless text=True, as in Python, but
//     Starlark bytes have no .decode(): str(b) decodes UTF-8;
//   - a child process's stdin is /dev/null unless input= or stdin= says otherwise,
//     because the driver's own stdin does not belong to the script;
//   - os.environ is this run's private copy: changing it affects the children that
//     subprocess starts, not the driver process.
//
// Everything that touches the host and can block (time.sleep, subprocess, os.system)
// is bounded by [Host.Context] and logged through [Host]; temporary files and
// directories that the script did not clean up are removed by [Modules.Close].
package modules

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Host connects the modules to the test run, so that host-side work can be
// cancelled with the run and shows up in its log. Every field is optional.
type Host struct {
	// Context returns the context of the script thread th that calls a
	// module: its cancellation ends sleeps and kills host commands. Nil
	// means context.Background().
	Context func(th *starlark.Thread) context.Context
	// Log records one line in thread th's log, e.g. "running host command:
	// ..." (a forked subtest's thread logs into its own subtest's block).
	Log func(th *starlark.Thread, msg string)
	// Nested opens a log section in thread th's log around a host command;
	// the returned function closes it with the command's error (nil when it
	// completed). When nil, Log is used.
	Nested func(th *starlark.Thread, msg string) (end func(error))
	// Stdout and Stderr receive the output of host commands that do not capture or
	// redirect it (Python's children inherit the driver's). Nil means os.Stdout and
	// os.Stderr.
	Stdout, Stderr io.Writer
}

// Modules is one run's set of modules. Module values carry state (os.environ,
// open files, temporary directories, the regexp cache), so each script run gets
// its own Modules from [New] and calls [Modules.Close] when it ends.
// Its methods are safe for concurrent use.
type Modules struct {
	host    Host
	mods    map[string]starlark.Value
	open    *starlark.Builtin
	environ *Environ
	re      reCache

	mu       sync.Mutex
	files    map[*File]struct{}               // open files, closed by Close
	tempDirs map[*temporaryDirectory]struct{} // TemporaryDirectory objects not yet cleaned up
}

// New returns the modules for one script run. It snapshots the driver's
// environment into os.environ.
func New(h Host) *Modules {
	m := &Modules{
		host:     h,
		environ:  newEnviron(os.Environ()),
		files:    make(map[*File]struct{}),
		tempDirs: make(map[*temporaryDirectory]struct{}),
	}
	m.open = starlark.NewBuiltin("open", m.openBuiltin)
	osPath := m.osPathModule()
	urllibParse := urllibParseModule()
	m.mods = map[string]starlark.Value{
		"json":         m.jsonModule(),
		"re":           m.reModule(),
		"shlex":        shlexModule(),
		"time":         m.timeModule(),
		"os":           m.osModule(osPath),
		"os.path":      osPath,
		"math":         mathModule(),
		"subprocess":   m.subprocessModule(),
		"tempfile":     m.tempfileModule(),
		"datetime":     datetimeModule(),
		"shutil":       m.shutilModule(),
		"pathlib":      pathlibModule(),
		"urllib.parse": urllibParse,
		"urllib":       &starlarkstruct.Module{Name: "urllib", Members: starlark.StringDict{"parse": urllibParse}},
		"typing":       typingModule(),
		"sys":          m.sysModule(),
	}
	return m
}

// Lookup returns the module with this dotted name ("json", "os", "os.path",
// "urllib.parse", ...), or nil if there is none. The same name always yields
// the same value within one Modules.
func (m *Modules) Lookup(name string) starlark.Value {
	v, ok := m.mods[name]
	if !ok {
		return nil
	}
	return v
}

// Names lists the importable module names, sorted.
func (m *Modules) Names() []string {
	names := make([]string, 0, len(m.mods))
	for name := range m.mods {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Open returns Python's open(file, mode="r") as a Starlark builtin, for the
// runtime to predeclare. Files it opens are closed by [Modules.Close] if the
// script leaves them open.
func (m *Modules) Open() *starlark.Builtin { return m.open }

// Close releases what the script left behind: it closes open files (deleting
// NamedTemporaryFile files created with delete=True) and removes
// TemporaryDirectory directories not yet cleaned up. Directories from
// tempfile.mkdtemp are kept, as in Python. Close may be called more than once.
func (m *Modules) Close() error {
	m.mu.Lock()
	files := make([]*File, 0, len(m.files))
	for f := range m.files {
		files = append(files, f)
	}
	dirs := make([]*temporaryDirectory, 0, len(m.tempDirs))
	for d := range m.tempDirs {
		dirs = append(dirs, d)
	}
	m.mu.Unlock()

	var errs []error
	for _, f := range files {
		if err := f.close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range dirs {
		if err := d.cleanup(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ctx returns the context of the calling thread.
func (m *Modules) ctx(th *starlark.Thread) context.Context {
	if m.host.Context != nil {
		if ctx := m.host.Context(th); ctx != nil {
			return ctx
		}
	}
	return context.Background()
}

func (m *Modules) log(th *starlark.Thread, msg string) {
	if m.host.Log != nil {
		m.host.Log(th, msg)
	}
}

// nested opens a log section, falling back to a plain log line.
func (m *Modules) nested(th *starlark.Thread, msg string) func(error) {
	if m.host.Nested != nil {
		if end := m.host.Nested(th, msg); end != nil {
			return end
		}
		return func(error) {}
	}
	m.log(th, msg)
	return func(error) {}
}

func (m *Modules) stdout() io.Writer {
	if m.host.Stdout != nil {
		return m.host.Stdout
	}
	return os.Stdout
}

func (m *Modules) stderr() io.Writer {
	if m.host.Stderr != nil {
		return m.host.Stderr
	}
	return os.Stderr
}

func (m *Modules) track(f *File) {
	m.mu.Lock()
	m.files[f] = struct{}{}
	m.mu.Unlock()
}

func (m *Modules) untrack(f *File) {
	m.mu.Lock()
	delete(m.files, f)
	m.mu.Unlock()
}

// builtinFunc is the signature of a Starlark builtin's implementation.
type builtinFunc = func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

// module builds a module from name and builtins; each builtin is named
// "module.member" so that its errors say where they come from.
func module(name string, funcs map[string]builtinFunc, values starlark.StringDict) *starlarkstruct.Module {
	members := make(starlark.StringDict, len(funcs)+len(values))
	for k, fn := range funcs {
		members[k] = starlark.NewBuiltin(name+"."+k, fn)
	}
	for k, v := range values {
		members[k] = v
	}
	return &starlarkstruct.Module{Name: name, Members: members}
}

// methodAttr looks a method up in a table and binds it to recv; the builtin is
// named "type.method".
func methodAttr[T starlark.Value](recv T, typeName, name string, methods map[string]func(T, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)) starlark.Value {
	fn, ok := methods[name]
	if !ok {
		return nil
	}
	return starlark.NewBuiltin(typeName+"."+name, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return fn(recv, thread, b, args, kwargs)
	})
}

func methodNames[M any](methods map[string]M, extra ...string) []string {
	names := slices.Collect(func(yield func(string) bool) {
		for k := range methods {
			if !yield(k) {
				return
			}
		}
	})
	names = append(names, extra...)
	slices.Sort(names)
	return names
}

// pathArg unpacks a str or pathlib.Path argument (Python's os.PathLike).
type pathArg string

// Unpack implements starlark.Unpacker.
func (p *pathArg) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.String:
		*p = pathArg(x)
	case *Path:
		*p = pathArg(x.path)
	default:
		return fmt.Errorf("got %s, want str or Path", v.Type())
	}
	return nil
}

// strOrBytes returns the contents of a str or bytes value.
func strOrBytes(v starlark.Value) (string, bool) {
	switch x := v.(type) {
	case starlark.String:
		return string(x), true
	case starlark.Bytes:
		return string(x), true
	}
	return "", false
}

// noneOr reports whether an optional argument was given as something other than None.
func given(v starlark.Value) bool { return v != nil && v != starlark.None }

// pyRepr formats a value the way Python's repr shows it in messages; Starlark's
// repr is close enough (double quotes instead of single).
func pyRepr(v starlark.Value) string { return v.String() }

// compareEq implements CompareSameType for types that only support == and !=.
func compareEq(op syntax.Token, eq bool, typ string) (bool, error) {
	switch op {
	case syntax.EQL:
		return eq, nil
	case syntax.NEQ:
		return !eq, nil
	}
	return false, fmt.Errorf("%s %s %s not supported", typ, op, typ)
}

// compareOrder implements CompareSameType from a three-way comparison result.
func compareOrder(op syntax.Token, cmp int) (bool, error) {
	switch op {
	case syntax.EQL:
		return cmp == 0, nil
	case syntax.NEQ:
		return cmp != 0, nil
	case syntax.LT:
		return cmp < 0, nil
	case syntax.LE:
		return cmp <= 0, nil
	case syntax.GT:
		return cmp > 0, nil
	case syntax.GE:
		return cmp >= 0, nil
	}
	return false, fmt.Errorf("unsupported comparison %s", op)
}
