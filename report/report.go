// Package report writes a test run's log: a human-readable (or JSON)
// stream for the terminal and, on request, a JUnit XML summary for CI.
//
// A Logger implements machine.Logger. Nested blocks and subtests form one
// stack owned by the test script's thread of control; lines that arrive
// from other goroutines (serial consoles, machines starting in parallel)
// are attached to whatever block is current. Every call writes whole lines
// in a single Write under one lock, so output never interleaves mid-line.
package report

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

// Format selects how log lines are written to Options.Out.
type Format int

const (
	// FormatText writes indented lines for people (the default).
	FormatText Format = iota
	// FormatJSON writes one JSON object per line for programs.
	FormatJSON
)

// ErrUnknownFormat is returned by Format.UnmarshalText for a bad name.
var ErrUnknownFormat = errors.New("unknown log format")

// String returns the flag spelling of f ("text" or "json").
func (f Format) String() string {
	switch f {
	case FormatText:
		return "text"
	case FormatJSON:
		return "json"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// MarshalText makes Format usable with flag.TextVar.
func (f Format) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// UnmarshalText parses "text" or "json" (flag.TextVar).
func (f *Format) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "text":
		*f = FormatText
	case "json":
		*f = FormatJSON
	default:
		return fmt.Errorf("%w %q: use text or json", ErrUnknownFormat, b)
	}
	return nil
}

// Level orders messages by importance; Options.Level hides the ones below
// it. The zero value is LevelInfo so an empty Options logs like the anchor.
type Level int

const (
	// LevelDebug is for details only wanted while debugging the driver.
	LevelDebug Level = iota - 1
	// LevelInfo covers ordinary lines, blocks, subtests and serial output.
	LevelInfo
	// LevelWarning is for things that may explain a later failure.
	LevelWarning
	// LevelError is for errors and test failures; it is never hidden.
	LevelError
)

// ErrUnknownLevel is returned by Level.UnmarshalText for a bad name.
var ErrUnknownLevel = errors.New("unknown log level")

// String returns the flag spelling of v ("debug", "info", ...).
func (v Level) String() string {
	switch v {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarning:
		return "warning"
	case LevelError:
		return "error"
	}
	return fmt.Sprintf("Level(%d)", int(v))
}

// MarshalText makes Level usable with flag.TextVar.
func (v Level) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText parses debug, info, warning (or warn) and error.
func (v *Level) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "debug":
		*v = LevelDebug
	case "info":
		*v = LevelInfo
	case "warning", "warn":
		*v = LevelWarning
	case "error":
		*v = LevelError
	default:
		return fmt.Errorf("%w %q: use debug, info, warning or error", ErrUnknownLevel, b)
	}
	return nil
}

// Options configure a Logger. The zero value logs text at info level to
// nowhere; set Out.
type Options struct {
	// Out receives the log (nil discards it). The Logger never closes it.
	Out io.Writer
	// Format is the encoding of Out.
	Format Format
	// Color enables ANSI colours in text output; use ColorFor(os.Stderr).
	Color bool
	// Level hides messages below it, on Out and in the JUnit output.
	Level Level
	// SerialToOut shows serial console lines on Out. The anchor's default
	// is on; SetSerialOutput toggles it while the script runs. Serial lines
	// are recorded for JUnit either way.
	SerialToOut bool
	// JUnit records what WriteJUnit needs: every subtest and the text of
	// every line, kept in memory until the Logger is dropped.
	JUnit bool
	// Name is the JUnit suite name and test case class name; default
	// "vmdriver".
	Name string
	// Now is the clock for timestamps and durations; default time.Now.
	// Tests inject a fake one to get deterministic output.
	Now func() time.Time
}

// ColorFor reports whether output to f should be coloured: f is a
// terminal, NO_COLOR is unset or empty (https://no-color.org) and TERM is
// not "dumb".
func ColorFor(f *os.File) bool {
	return colorFor(f != nil && term.IsTerminal(int(f.Fd())), os.Getenv)
}

func colorFor(isTerminal bool, getenv func(string) string) bool {
	return isTerminal && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// Location is a place in the test script, for Failure.
type Location struct {
	File string
	// Line and Col are 1-based; 0 means unknown. Col counts runes.
	Line, Col int
	// Source is the text of the script line (without its newline), or "".
	Source string
}

// String formats l as file:line:col, leaving out unknown parts.
func (l Location) String() string {
	s := l.File
	if s == "" {
		s = "<script>"
	}
	if l.Line > 0 {
		s += fmt.Sprintf(":%d", l.Line)
		if l.Col > 0 {
			s += fmt.Sprintf(":%d", l.Col)
		}
	}
	return s
}

// Logger is the run's log. It implements machine.Logger (machine "" marks
// a driver-level line) and is safe for concurrent use.
type Logger struct {
	out    io.Writer
	format Format
	color  bool
	level  Level
	junit  bool
	name   string
	now    func() time.Time

	mu      sync.Mutex
	serial  bool
	closed  bool
	err     error // first error writing to out; later writes are skipped
	start   time.Time
	stack   []*block
	subs    []*subtest // in start order
	mainOut strings.Builder
	// mainFailure is the first Failure reported outside any subtest.
	mainFailure *string
	buf, jbuf   []byte // scratch for Out and JUnit lines
	// branch is set on a Logger made by Branch: its records are held
	// here until merge.
	branch *branch
}

// block is an open nested block or subtest.
type block struct {
	machine, msg string
	start        time.Time
	depth        int
	sub          *subtest // non-nil for a subtest
	done         bool
}

// subtest is what the JUnit report needs about one subtest.
type subtest struct {
	name     string // "outer/inner"
	parent   *subtest
	depth    int
	start    time.Time
	end      time.Time
	done     bool
	failure  *string
	out      strings.Builder
	children []*subtest
}

// New returns a Logger configured by opts. The run's clock starts now.
func New(opts Options) *Logger {
	l := &Logger{
		out:    opts.Out,
		format: opts.Format,
		color:  opts.Color && opts.Format == FormatText,
		level:  min(opts.Level, LevelError),
		junit:  opts.JUnit,
		name:   opts.Name,
		now:    opts.Now,
		serial: opts.SerialToOut,
	}
	if l.out == nil {
		l.out = io.Discard
	}
	if l.name == "" {
		l.name = "vmdriver"
	}
	if l.now == nil {
		l.now = time.Now
	}
	l.start = l.now()
	return l
}

// Debug logs a line hidden unless Options.Level is LevelDebug.
func (l *Logger) Debug(machine, msg string) { l.line(LevelDebug, kindLine, machine, msg) }

// Info logs an ordinary line.
func (l *Logger) Info(machine, msg string) { l.line(LevelInfo, kindLine, machine, msg) }

// Warn logs something that may explain a later failure.
func (l *Logger) Warn(machine, msg string) { l.line(LevelWarning, kindLine, machine, msg) }

// Error logs an error. Unlike the anchor it does not end the process;
// use Failure to report why the test failed.
func (l *Logger) Error(machine, msg string) { l.line(LevelError, kindLine, machine, msg) }

// Serial logs one line of machine's serial console.
func (l *Logger) Serial(machine, line string) { l.line(LevelInfo, kindSerial, machine, line) }

func (l *Logger) line(level Level, k kind, machine, msg string) {
	if p := l.mergedInto(); p != nil {
		p.line(level, k, machine, msg)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.emit(record{t: l.now(), kind: k, level: level, machine: machine, msg: msg, depth: len(l.stack)}, l.currentSubtest())
}

// SetSerialOutput shows (on) or hides serial console lines on Out.
func (l *Logger) SetSerialOutput(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serial = on
}

// Nested opens a block: msg is logged and later lines are indented below
// it until end is called, which logs how long the block took. end may be
// called from any goroutine; calls after the first do nothing. Blocks
// ended out of order are tolerated.
func (l *Logger) Nested(machine, msg string) (end func(err error)) {
	if p := l.mergedInto(); p != nil {
		return p.Nested(machine, msg)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := &block{machine: machine, msg: msg, start: l.now(), depth: len(l.stack)}
	l.emit(record{t: b.start, kind: kindNestedStart, level: LevelInfo, machine: machine, msg: msg, depth: b.depth}, l.currentSubtest())
	l.stack = append(l.stack, b)
	return func(err error) { l.end(b, err) }
}

// Subtest opens a subtest: a nested block "subtest: name" and a JUnit test
// case named after the enclosing subtests too ("outer/inner"). end records
// whether it passed (err == nil) and why not.
func (l *Logger) Subtest(name string) (end func(err error)) {
	if p := l.mergedInto(); p != nil {
		return p.Subtest(name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	parent := l.currentSubtest()
	b := &block{msg: name, start: l.now(), depth: len(l.stack)}
	s := &subtest{name: name, parent: parent, depth: b.depth, start: b.start}
	if parent != nil {
		s.name = parent.name + "/" + name
		parent.children = append(parent.children, s)
	}
	b.sub = s
	l.subs = append(l.subs, s)
	l.stack = append(l.stack, b)
	l.emit(record{t: b.start, kind: kindSubtestStart, level: LevelInfo, msg: name, depth: b.depth}, s)
	return func(err error) { l.end(b, err) }
}

func (l *Logger) end(b *block, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b.done || (l.branch != nil && l.branch.merged) {
		// A block of a merged branch that was still open at merge is
		// reported unfinished; it belongs to the parent now.
		return
	}
	b.done = true
	now := l.now()
	r := record{t: now, kind: kindNestedEnd, level: LevelInfo, machine: b.machine, msg: b.msg, depth: b.depth, dur: now.Sub(b.start), hasDur: true}
	if err != nil {
		r.err = err.Error()
		r.failed = true
	}
	target := l.currentSubtest()
	if s := b.sub; s != nil {
		r.kind = kindSubtestEnd
		target = s
		s.done = true
		s.end = now
		if err != nil {
			msg := err.Error()
			s.failure = &msg
		}
	}
	l.emit(r, target)
	for i := len(l.stack) - 1; i >= 0; i-- {
		if l.stack[i] == b {
			l.stack = append(l.stack[:i], l.stack[i+1:]...)
			break
		}
	}
}

// Failure reports why the test failed, anchor style: red lines starting
// with "!!! " naming the script location (loc may be nil), showing the
// script line with a caret under the column, then msg. A failure outside
// any subtest also fails the JUnit case "main".
func (l *Logger) Failure(msg string, loc *Location) {
	if p := l.mergedInto(); p != nil {
		p.Failure(msg, loc)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r := record{t: l.now(), kind: kindFailure, level: LevelError, msg: msg, depth: len(l.stack), failed: true}
	if loc != nil {
		c := *loc
		r.loc = &c
	}
	target := l.currentSubtest()
	if target == nil && l.mainFailure == nil {
		m := msg
		if loc != nil {
			m = loc.String() + ": " + msg
		}
		l.mainFailure = &m
	}
	l.emit(r, target)
}

// Close stops writing to Out (later lines are dropped there but still
// recorded for JUnit) and returns the first error writing to Out.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return l.err
}

// currentSubtest returns the innermost open subtest or nil. l.mu is held.
func (l *Logger) currentSubtest() *subtest {
	for i := len(l.stack) - 1; i >= 0; i-- {
		if s := l.stack[i].sub; s != nil {
			return s
		}
	}
	return nil
}

// emit writes r to Out (a branch holds it until merge) and records it
// for JUnit in target's output (nil: outside any subtest). l.mu is held.
func (l *Logger) emit(r record, target *subtest) {
	if r.level < l.level {
		return
	}
	show := r.kind != kindSerial || l.serial
	switch {
	case l.branch != nil:
		l.branch.recs = append(l.branch.recs, heldRecord{r: r, show: show, outside: target == nil})
	case show:
		l.writeOut(r)
	}
	if l.junit {
		sb, base := &l.mainOut, 0
		if target != nil {
			sb, base = &target.out, target.depth
		}
		l.jbuf = appendText(l.jbuf[:0], r, max(r.depth-base, 0), false)
		sb.Write(l.jbuf)
	}
}

// writeOut writes r to Out. l.mu is held.
func (l *Logger) writeOut(r record) {
	if l.closed || l.err != nil {
		return
	}
	l.buf = l.buf[:0]
	if l.format == FormatJSON {
		l.buf = appendJSON(l.buf, r)
	} else {
		l.buf = appendText(l.buf, r, r.depth, l.color)
	}
	if _, err := l.out.Write(l.buf); err != nil {
		l.err = fmt.Errorf("write log: %w", err)
	}
}
