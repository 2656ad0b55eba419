package machine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// ErrTimeout is wrapped by every error reporting that a wait or command
// ran out of time. errors.Is(err, context.DeadlineExceeded) also holds for
// such errors.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string { return "timed out" }

// Is makes ErrTimeout match context.DeadlineExceeded.
func (timeoutError) Is(target error) bool { return target == context.DeadlineExceeded }

// Timeout reports true, like net.Error's.
func (timeoutError) Timeout() bool { return true }

// ErrCheckFailed is wrapped by errors reporting that the guest is not in
// the state the caller required: a command failed (or succeeded) against
// expectations, a unit failed or is in the wrong state. It corresponds to
// the NixOS driver's RequestedAssertionFailed.
var ErrCheckFailed = errors.New("check failed")

// ErrClosed is returned by calls on a Machine after Close.
var ErrClosed = errors.New("machine is closed")

// Error messages are rendered here, once: the machine's name, what it was
// doing, the cause's own words, then the hypervisor's last messages and
// the console lines, each at most once. Backends return their
// diagnostics as data (backend.Error) rather than text, so nothing is
// quoted twice.

// WaitError reports a wait (or command) that ran out of time. It wraps
// ErrTimeout and the last error seen, if any.
type WaitError struct {
	// Machine is the machine's name.
	Machine string
	// What names what was awaited ("unit nginx.service to become active").
	What string
	// Waited is how long the wait lasted.
	Waited time.Duration
	// Detail is the last observation, such as "unit nginx.service is
	// inactive and has no pending job"; it may be empty.
	Detail string
	// Console holds the machine's last console lines (the backend's,
	// when Err carries them).
	Console []string
	// Err is the error the last attempt ended with, if any.
	Err error
}

// Error says what was awaited, for how long, what was seen last, and
// lists the hypervisor's last messages (when Err carries them) and the
// console lines.
func (e *WaitError) Error() string {
	var b strings.Builder
	b.WriteString(e.summary())
	stderr, _, _ := backendTails(e.Err)
	writeDiagnostics(&b, stderr)
	writeConsole(&b, e.Console)
	return b.String()
}

// summary is the message without the console lines.
func (e *WaitError) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine %s: timed out after %.2f seconds waiting for %s", e.Machine, e.Waited.Seconds(), e.What)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	var inner *WaitError
	switch {
	case e.Err == nil || e.Err == context.DeadlineExceeded:
	case errors.As(e.Err, &inner):
		b.WriteString(" (" + inner.summary() + ")")
	default:
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns ErrTimeout and the last attempt's error.
func (e *WaitError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrTimeout}
	}
	return []error{ErrTimeout, e.Err}
}

// writeConsole appends the last console lines to an error message.
func writeConsole(b *strings.Builder, lines []string) {
	if len(lines) == 0 {
		b.WriteString("\n(no console output)")
		return
	}
	fmt.Fprintf(b, "\nlast %d console lines:", len(lines))
	for _, l := range lines {
		b.WriteString("\n    " + l)
	}
}

// writeDiagnostics appends the hypervisor's last messages to an error
// message.
func writeDiagnostics(b *strings.Builder, lines []string) {
	if len(lines) == 0 {
		return
	}
	b.WriteString("\nhypervisor diagnostics:")
	for _, l := range lines {
		b.WriteString("\n    " + l)
	}
}

// backendTails returns the hypervisor's last messages and the console
// lines that the first backend.Error in err's tree carries, and whether
// there is one.
func backendTails(err error) (stderr, console []string, ok bool) {
	var be *backend.Error
	if !errors.As(err, &be) {
		return nil, nil, false
	}
	return be.Stderr, be.Console, true
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	return lines[max(0, len(lines)-n):]
}

// renderedError is an error whose whole message the machine rendered
// (see above); it wraps the errors it reports.
type renderedError struct {
	msg  string
	errs []error
}

func (e *renderedError) Error() string   { return e.msg }
func (e *renderedError) Unwrap() []error { return e.errs }

// CommandError reports a command whose exit status contradicts what
// Succeed or Fail required. It wraps ErrCheckFailed.
type CommandError struct {
	// Machine is the machine's name.
	Machine string
	// Command is the command as given.
	Command string
	// Status is its exit status.
	Status int
	// Output is its stdout.
	Output string
	// WantFailure is true for Fail (the command unexpectedly succeeded).
	WantFailure bool
}

// Error is the NixOS driver's message ("command `cmd` failed (exit code
// N)") plus the output.
func (e *CommandError) Error() string {
	if e.WantFailure {
		return fmt.Sprintf("machine %s: command `%s` unexpectedly succeeded", e.Machine, e.Command)
	}
	msg := fmt.Sprintf("machine %s: command `%s` failed (exit code %d)", e.Machine, e.Command, e.Status)
	if out := strings.TrimRight(e.Output, "\n"); out != "" {
		msg += "; output:\n" + indent(outputTail(out))
	}
	return msg
}

// Error messages show at most this much of a command's output: its end,
// where failures usually explain themselves. The whole output stays in
// CommandError.Output.
const (
	errorOutputLines = 20
	errorOutputBytes = 4096
)

// outputTail shortens out to its last lines for an error message.
func outputTail(out string) string {
	cut := false
	if len(out) > errorOutputBytes {
		out, cut = out[len(out)-errorOutputBytes:], true
		if i := strings.IndexByte(out, '\n'); i >= 0 {
			out = out[i+1:]
		}
	}
	if lines := strings.Split(out, "\n"); len(lines) > errorOutputLines {
		out, cut = strings.Join(lines[len(lines)-errorOutputLines:], "\n"), true
	}
	if cut {
		out = "[... earlier output left out ...]\n" + out
	}
	return out
}

// Unwrap returns ErrCheckFailed.
func (e *CommandError) Unwrap() error { return ErrCheckFailed }

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
