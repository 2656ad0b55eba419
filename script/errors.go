package script

import (
	"github.com/vmdriver/vmdriver/report"

	"errors"
	"fmt"
	"sort"
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Location is a place in the original test script (before the rewrite):
// the report's location type, so failures pass to the log unchanged.
type Location = report.Location

// Frame is one script function call of a failure's call stack.
type Frame struct {
	// Func is the function's name; "<module>" is the script's top level.
	Func string
	Location
}

// ScriptError is a test script failure: a rewrite, syntax or name error
// found before the script runs, or an error that ended it. Positions
// refer to the script as written, not to its Starlark rewrite.
type ScriptError struct {
	// Msg says what went wrong.
	Msg string
	// Location is where: the innermost script line involved.
	Location Location
	// Stack is the script's call stack at the failure, outermost first
	// (empty for errors found before the script ran).
	Stack []Frame
	// Err is the underlying error: a *starlark.EvalError wrapping the Go
	// error of the call that failed (so errors.Is(err,
	// machine.ErrCheckFailed) works), a syntax error, or the cause of a
	// cancelled run such as driver.ErrGlobalTimeout.
	Err error
}

// Error is "file:line:col: msg".
func (e *ScriptError) Error() string { return e.Location.String() + ": " + e.Msg }

// Unwrap returns the underlying error.
func (e *ScriptError) Unwrap() error { return e.Err }

// Traceback formats the failure like the NixOS driver prints a test
// script error: the script frames, each with its source line, then the
// message.
func (e *ScriptError) Traceback() string {
	var b strings.Builder
	stack := e.Stack
	if len(stack) == 0 && e.Location.Line > 0 {
		stack = []Frame{{Func: "<module>", Location: e.Location}}
	}
	if len(stack) > 0 {
		b.WriteString("Traceback (most recent call last):\n")
		for _, f := range stack {
			fmt.Fprintf(&b, "  File %q, line %d, in %s\n", f.File, f.Line, f.Func)
			if src := strings.TrimSpace(f.Source); src != "" {
				b.WriteString("    " + src + "\n")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// notFoundError reports an unknown name with a suggestion and, for
// modules, the names that exist.
type notFoundError struct {
	what, name, hint string
	have             []string
}

func (e *notFoundError) Error() string {
	msg := fmt.Sprintf("no %s named %q%s", e.what, e.name, e.hint)
	if len(e.have) > 0 {
		msg += "; available: " + strings.Join(e.have, ", ")
	}
	return msg
}

// evalError converts an error from running the script into a
// *ScriptError in original coordinates.
func (r *rewritten) evalError(err error) *ScriptError {
	var se *ScriptError
	if errors.As(err, &se) {
		return se
	}
	var ee *starlark.EvalError
	if !errors.As(err, &ee) {
		return &ScriptError{Msg: err.Error(), Location: Location{File: r.filename}, Err: err}
	}
	out := &ScriptError{Msg: ee.Msg, Err: err}
	for _, fr := range ee.CallStack {
		if fr.Pos.Filename() == "<builtin>" || fr.Pos.Line == 0 {
			continue
		}
		name := fr.Name
		if name == "<toplevel>" {
			name = "<module>"
		}
		out.Stack = append(out.Stack, Frame{Func: name, Location: r.mapPos(fr.Pos)})
	}
	if n := len(out.Stack); n > 0 {
		out.Location = out.Stack[n-1].Location
	} else {
		out.Location = Location{File: r.filename}
	}
	return out
}

// mapPos maps a Starlark position in the rewritten text.
func (r *rewritten) mapPos(p syntax.Position) Location {
	file := p.Filename()
	if file != r.filename {
		return Location{File: file, Line: int(p.Line), Col: int(p.Col)}
	}
	line, col := r.pos(int(p.Line), int(p.Col))
	return r.location(file, line, col)
}

// compileError converts parse and resolve errors of the rewritten text.
// names are the predeclared names, for "did you mean" hints on
// undefined names.
func (r *rewritten) compileError(err error, names func() []string) error {
	switch e := err.(type) {
	case syntax.Error:
		return &ScriptError{Msg: e.Msg, Location: r.mapPos(e.Pos), Err: err}
	case resolve.ErrorList:
		var errs []error
		for _, re := range e {
			msg := re.Msg
			if name, ok := strings.CutPrefix(msg, "undefined: "); ok && !strings.Contains(name, " ") {
				all := names()
				if n := nearest(name, all); n != "" {
					msg += " (did you mean " + n + "?)"
				}
			}
			errs = append(errs, &ScriptError{Msg: msg, Location: r.mapPos(re.Pos), Err: re})
		}
		if len(errs) == 1 {
			return errs[0]
		}
		return errors.Join(errs...)
	}
	return &ScriptError{Msg: err.Error(), Location: Location{File: r.filename}, Err: err}
}

// nearest returns the candidate closest to x in edit distance (ignoring
// case), or "" when none is close enough to be a likely misspelling.
func nearest(x string, candidates []string) string {
	lx := strings.ToLower(x)
	best, bestD := "", (len(x)+1)/2+1
	sorted := append([]string(nil), candidates...)
	sort.Strings(sorted)
	for _, c := range sorted {
		if c == x {
			continue
		}
		if d := levenshtein(lx, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	row := make([]int, len(rb)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		prev := row[0]
		row[0] = i
		for j := 1; j <= len(rb); j++ {
			cur := row[j]
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			row[j] = min(row[j]+1, row[j-1]+1, prev+cost)
			prev = cur
		}
	}
	return row[len(rb)]
}
