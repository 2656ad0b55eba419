package testenv

import (
	"slices"
	"strings"
	"sync"

	"github.com/vmdriver/vmdriver/report"
)

// Entry is one thing a Log recorded: its kind ("info", "warn", "serial",
// "open", "ok", "fail" for blocks, "subtest", "subtest-ok",
// "subtest-fail"), the machine it names, and the message.
type Entry struct{ Kind, Machine, Msg string }

// String is "kind|machine|msg".
func (e Entry) String() string { return e.Kind + "|" + e.Machine + "|" + e.Msg }

// Log records everything a run logs, in order: a driver.Logger for tests
// of the script engines.
type Log struct {
	mu       sync.Mutex
	entries  []Entry
	serialOn []bool
}

func (l *Log) add(kind, machine, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, Entry{kind, machine, msg})
}

// Info records a line.
func (l *Log) Info(machine, msg string) { l.add("info", machine, msg) }

// Warn records a warning.
func (l *Log) Warn(machine, msg string) { l.add("warn", machine, msg) }

// Serial records a console line.
func (l *Log) Serial(machine, line string) { l.add("serial", machine, line) }

// Nested records a block's start, and its end with the outcome.
func (l *Log) Nested(machine, msg string) func(error) {
	l.add("open", machine, msg)
	return func(err error) {
		if err != nil {
			l.add("fail", machine, msg)
		} else {
			l.add("ok", machine, msg)
		}
	}
}

// Subtest records a subtest's start, and its end with the outcome.
func (l *Log) Subtest(name string) func(error) {
	l.add("subtest", "", name)
	return func(err error) {
		if err != nil {
			l.add("subtest-fail", "", name)
		} else {
			l.add("subtest-ok", "", name)
		}
	}
}

// SetSerialOutput records a switch of the console echo.
func (l *Log) SetSerialOutput(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.serialOn = append(l.serialOn, on)
}

// SerialSwitches are the SetSerialOutput calls, in order.
func (l *Log) SerialSwitches() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.serialOn)
}

// All returns the entries of the given kinds (all without kinds), as
// strings.
func (l *Log) All(kinds ...string) []string {
	return l.filter(func(e Entry) bool { return len(kinds) == 0 || slices.Contains(kinds, e.Kind) })
}

// Except returns the entries of every kind but those given, as strings.
func (l *Log) Except(kinds ...string) []string {
	return l.filter(func(e Entry) bool { return !slices.Contains(kinds, e.Kind) })
}

func (l *Log) filter(keep func(Entry) bool) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		if keep(e) {
			out = append(out, e.String())
		}
	}
	return out
}

// Has reports whether an entry of kind ("" for any) contains substr.
func (l *Log) Has(kind, substr string) bool { return l.Count(kind, substr) > 0 }

// Count counts the entries of kind ("" for any) that contain substr.
func (l *Log) Count(kind, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if (kind == "" || e.Kind == kind) && strings.Contains(e.Msg, substr) {
			n++
		}
	}
	return n
}

// Failure is one failure a Reporter got.
type Failure struct {
	Msg string
	Loc *report.Location
}

// Reporter records failures and console echo switches: a
// script.Reporter for tests.
type Reporter struct {
	mu       sync.Mutex
	failures []Failure
	serial   []bool
}

// Failure records a failure.
func (r *Reporter) Failure(msg string, loc *report.Location) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, Failure{msg, loc})
}

// SetSerialOutput records a switch of the console echo.
func (r *Reporter) SetSerialOutput(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serial = append(r.serial, on)
}

// Failures are the failures reported, in order.
func (r *Reporter) Failures() []Failure {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.failures)
}

// Serial are the SetSerialOutput calls, in order.
func (r *Reporter) Serial() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.serial)
}
