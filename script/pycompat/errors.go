package pycompat

import (
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"
)

// ConstructSyntax is the Construct of an *Error that reports invalid syntax
// (in the Python script, or what Starlark rejects in the rewritten text)
// rather than a known Python construct the rewrite cannot express.
const ConstructSyntax = "syntax"

// Sentinel errors that an *Error matches with errors.Is, so a caller can
// tell "valid Python this front end cannot run" (fall back to CPython) from
// "the script is broken" (report it).
var (
	// ErrUnsupported matches every *Error about a Python construct that has
	// no Starlark equivalent (class, try/except, yield, ...).
	ErrUnsupported = errors.New("unsupported python construct")
	// ErrSyntax matches every *Error with Construct ConstructSyntax.
	ErrSyntax = errors.New("syntax error")
)

// Error is a rewrite error at a position of the original script.
type Error struct {
	Filename  string
	Line, Col int    // 1-based; Col counts runes, as Starlark does
	Construct string // e.g. "class", "try/except", or ConstructSyntax
	Msg       string // what to do instead (or, for syntax errors, what is wrong)
}

// Error formats the error as "file:line:col: <construct> is not supported:
// <what to do instead>", or "file:line:col: syntax error: <msg>".
func (e *Error) Error() string {
	if e.Construct == ConstructSyntax {
		return fmt.Sprintf("%s:%d:%d: syntax error: %s", e.Filename, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s is not supported: %s", e.Filename, e.Line, e.Col, e.Construct, e.Msg)
}

// Is reports whether target is the sentinel for this kind of error.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrSyntax:
		return e.Construct == ConstructSyntax
	case ErrUnsupported:
		return e.Construct != ConstructSyntax
	}
	return false
}

// source is the (newline-normalised) original script with a line table.
type source struct {
	name  string
	text  string
	lines []int // byte offset of the start of each line
}

func newSource(name string, text string) *source {
	s := &source{name: name, text: text, lines: make([]int, 1, 64)}
	for i := 0; i < len(text); i++ {
		if text[i] == '\n' {
			s.lines = append(s.lines, i+1)
		}
	}
	return s
}

// position converts a byte offset into a 1-based line and rune column.
func (s *source) position(off int) (line, col int) {
	off = max(0, min(off, len(s.text)))
	i := sort.Search(len(s.lines), func(i int) bool { return s.lines[i] > off }) - 1
	return i + 1, utf8.RuneCountInString(s.text[s.lines[i]:off]) + 1
}

// rewriteError is the panic value that carries an *Error out of the
// recursive scanner and rewriter to Rewrite, which recovers it.
type rewriteError struct{ err *Error }

// fail aborts the rewrite with an error at byte offset off.
func (s *source) fail(off int, construct, msg string) {
	line, col := s.position(off)
	panic(rewriteError{&Error{Filename: s.name, Line: line, Col: col, Construct: construct, Msg: msg}})
}

func (s *source) syntaxf(off int, format string, args ...any) {
	s.fail(off, ConstructSyntax, fmt.Sprintf(format, args...))
}
