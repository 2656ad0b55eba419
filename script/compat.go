package script

import (
	"errors"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/script/modules"
	"github.com/vmdriver/vmdriver/script/pycompat"
)

// This file is the only one that talks to the pycompat and modules
// packages, so a change in their API stays in one place.

// fileOptions are the Starlark dialect options the rewritten text needs.
var fileOptions = pycompat.FileOptions()

// rewritten is a test script after the Python→Starlark rewrite.
type rewritten struct {
	filename string
	orig     []byte // the script as written
	source   []byte // the Starlark text the interpreter runs
	res      *pycompat.Result
	lines    []string // orig split into lines, for error reports
}

// rewrite runs the Python→Starlark rewrite. Its errors are *ScriptError.
func rewrite(filename string, src []byte) (*rewritten, error) {
	r := &rewritten{filename: filename, orig: src}
	res, err := pycompat.Rewrite(filename, src)
	if err != nil {
		var pe *pycompat.Error
		if errors.As(err, &pe) {
			file := pe.Filename
			if file == "" {
				file = filename
			}
			msg := "syntax error: " + pe.Msg
			if pe.Construct != pycompat.ConstructSyntax {
				msg = pe.Construct + " is not supported: " + pe.Msg
			}
			return nil, &ScriptError{Msg: msg, Location: r.location(file, pe.Line, pe.Col), Err: err}
		}
		return nil, &ScriptError{Msg: err.Error(), Location: Location{File: filename}, Err: err}
	}
	r.res = res
	r.source = res.Source
	return r, nil
}

// pos maps a position in the rewritten text to the original script.
func (r *rewritten) pos(line, col int) (int, int) {
	if r.res == nil || line <= 0 {
		return line, col
	}
	return r.res.Pos(line, col)
}

// location builds a Location in the original script from an original
// line and column, with the source line attached.
func (r *rewritten) location(file string, line, col int) Location {
	if r.lines == nil {
		r.lines = strings.Split(strings.ReplaceAll(string(r.orig), "\r\n", "\n"), "\n")
	}
	loc := Location{File: file, Line: line, Col: col}
	if file == r.filename && line >= 1 && line <= len(r.lines) {
		loc.Source = strings.TrimRight(r.lines[line-1], "\r")
	}
	return loc
}

// pyModules is the run's Python standard-library subset.
type pyModules struct {
	set  *modules.Modules
	open starlark.Value
}

// newModules creates the module set for session s: a module's host work
// runs under the calling thread's context and logs into its log (a forked
// subtest's own).
func newModules(s *Session) *pyModules {
	set := modules.New(modules.Host{
		Context: threadContext,
		Log:     func(th *starlark.Thread, msg string) { s.logOf(th).Info("", msg) },
		Nested:  func(th *starlark.Thread, msg string) func(error) { return s.logOf(th).Nested("", msg) },
		Stdout:  s.stdout,
		Stderr:  s.opts.Stderr,
	})
	return &pyModules{set: set, open: set.Open()}
}

// lookup returns the module called name, or an error naming what exists.
func (p *pyModules) lookup(name string) (starlark.Value, error) {
	if v := p.set.Lookup(name); v != nil {
		return v, nil
	}
	names := p.set.Names()
	hint := ""
	if n := nearest(name, names); n != "" {
		hint = " (did you mean " + n + "?)"
	}
	return nil, &notFoundError{what: "module", name: name, hint: hint, have: names}
}

// close releases files and temporary directories the script left.
func (p *pyModules) close() error { return p.set.Close() }

// asDuration converts a timedelta (or anything else the modules package
// treats as a duration).
func asDuration(v starlark.Value) (time.Duration, bool) { return modules.AsDuration(v) }
