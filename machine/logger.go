package machine

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Logger receives everything a Machine reports. The test-script layer
// implements it with a nested log tree; NewTextLogger is a simple one.
// Implementations must be safe for concurrent use: serial lines arrive
// from the backend's goroutines while commands run.
type Logger interface {
	// Info logs a message about machine ("" for none).
	Info(machine, msg string)
	// Warn logs something that may explain a later failure.
	Warn(machine, msg string)
	// Serial logs one line of the machine's serial console.
	Serial(machine, line string)
	// Nested opens a log block; the returned end closes it with the
	// block's outcome (nil for success).
	Nested(machine, msg string) (end func(err error))
}

// NewTextLogger returns a Logger writing plain lines to w: "name: msg",
// "name: warning: msg", serial lines as "name # line", and nested blocks
// closed by "name: (finished: msg, in X.XX seconds)".
func NewTextLogger(w io.Writer) Logger { return &textLogger{w: w} }

type textLogger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *textLogger) line(machine, sep, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if machine == "" {
		fmt.Fprintln(l.w, msg)
		return
	}
	fmt.Fprintf(l.w, "%s%s%s\n", machine, sep, msg)
}

func (l *textLogger) Info(machine, msg string)    { l.line(machine, ": ", msg) }
func (l *textLogger) Warn(machine, msg string)    { l.line(machine, ": ", "warning: "+msg) }
func (l *textLogger) Serial(machine, line string) { l.line(machine, " # ", line) }

func (l *textLogger) Nested(machine, msg string) func(error) {
	l.line(machine, ": ", msg)
	start := time.Now()
	return func(err error) {
		verb := "finished"
		if err != nil {
			verb = "failed"
		}
		l.line(machine, ": ", fmt.Sprintf("(%s: %s, in %.2f seconds)", verb, msg, time.Since(start).Seconds()))
	}
}

// DiscardLogger returns a Logger that drops everything (the default).
func DiscardLogger() Logger { return discardLogger{} }

type discardLogger struct{}

func (discardLogger) Info(string, string)               {}
func (discardLogger) Warn(string, string)               {}
func (discardLogger) Serial(string, string)             {}
func (discardLogger) Nested(string, string) func(error) { return func(error) {} }

// MultiLogger returns a Logger that logs to every one of ls (nil entries
// are skipped).
func MultiLogger(ls ...Logger) Logger {
	var m multiLogger
	for _, l := range ls {
		if l != nil {
			m = append(m, l)
		}
	}
	return m
}

type multiLogger []Logger

func (m multiLogger) Info(machine, msg string) {
	for _, l := range m {
		l.Info(machine, msg)
	}
}

func (m multiLogger) Warn(machine, msg string) {
	for _, l := range m {
		l.Warn(machine, msg)
	}
}

func (m multiLogger) Serial(machine, line string) {
	for _, l := range m {
		l.Serial(machine, line)
	}
}

func (m multiLogger) Nested(machine, msg string) func(error) {
	ends := make([]func(error), len(m))
	for i, l := range m {
		ends[i] = l.Nested(machine, msg)
	}
	return func(err error) {
		for i := len(ends) - 1; i >= 0; i-- {
			ends[i](err)
		}
	}
}

// testLogger logs through t.Logf until the test's cleanup stops it
// (t.Logf after a test ended panics, and serial lines come from other
// goroutines).
type testLogger struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
	text    *textLogger
}

func newTestLogger(t testing.TB) *testLogger {
	tl := &testLogger{t: t}
	tl.text = &textLogger{w: tlWriter{tl}}
	return tl
}

// tlWriter turns the text logger's lines into t.Logf calls.
type tlWriter struct{ tl *testLogger }

func (w tlWriter) Write(p []byte) (int, error) {
	w.tl.mu.Lock()
	defer w.tl.mu.Unlock()
	if !w.tl.stopped {
		w.tl.t.Logf("%s", strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (tl *testLogger) stop() {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.stopped = true
}

func (tl *testLogger) Info(machine, msg string)               { tl.text.Info(machine, msg) }
func (tl *testLogger) Warn(machine, msg string)               { tl.text.Warn(machine, msg) }
func (tl *testLogger) Serial(machine, line string)            { tl.text.Serial(machine, line) }
func (tl *testLogger) Nested(machine, msg string) func(error) { return tl.text.Nested(machine, msg) }
