package backend

import (
	"fmt"
	"strings"
	"syscall"
)

// Error is a failure a backend reports with the hypervisor's diagnostics
// kept as data: how the process ended, its last messages and the guest's
// last console lines. Its Error method says what failed, in a sentence
// without the machine's name and without the diagnostics; whoever shows
// it to people (a Machine) renders the whole message once, with the
// machine's name and each tail exactly once. An Error about a process
// that exited wraps ErrExited.
type Error struct {
	// Op says what the backend was doing, such as "waiting for QEMU's
	// control socket"; it may be empty.
	Op string
	// Process names the process the error is about, for people ("QEMU",
	// "start script /path/run-a-vm"); empty means the hypervisor.
	Process string
	// PID is the process's id, or 0.
	PID int
	// Exited reports that the process has exited.
	Exited bool
	// ExitStatus is the exit status of a process that exited; -1 when a
	// signal ended it or the status is unknown.
	ExitStatus int
	// Signal is the signal that ended the process, or 0.
	Signal syscall.Signal
	// Hint suggests what to do about the failure; it may be empty.
	Hint string
	// Err is the underlying cause, such as context.DeadlineExceeded or
	// ErrSnapshotMismatch; it may be nil.
	Err error
	// Stderr holds the hypervisor's last messages (for QEMU, the end of
	// its stderr), oldest first.
	Stderr []string
	// Console holds the guest's last serial console lines, oldest first.
	Console []string
}

// Error says what failed: the operation, how the process ended, the
// cause and the hint. It includes neither Stderr nor Console.
func (e *Error) Error() string {
	var parts []string
	if e.Op != "" {
		parts = append(parts, e.Op)
	}
	if e.Exited {
		who := e.Process
		if who == "" {
			who = "the hypervisor"
		}
		if e.PID > 0 {
			who += fmt.Sprintf(" (pid %d)", e.PID)
		}
		parts = append(parts, who+" "+e.HowExited())
	}
	if e.Err != nil {
		parts = append(parts, e.Err.Error())
	}
	msg := strings.Join(parts, ": ")
	if msg == "" {
		msg = "hypervisor failure"
	}
	if e.Hint != "" {
		msg += "\n(" + e.Hint + ")"
	}
	return msg
}

// HowExited says how the process ended ("exited with status 3", "was
// killed by signal 9 (killed)"), for a message that named it already.
func (e *Error) HowExited() string {
	switch {
	case e.Signal != 0:
		return fmt.Sprintf("was killed by signal %d (%v)", int(e.Signal), e.Signal)
	case e.ExitStatus >= 0:
		return fmt.Sprintf("exited with status %d", e.ExitStatus)
	}
	return "exited"
}

// Unwrap returns ErrExited when the process exited, and the cause.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Exited {
		errs = append(errs, ErrExited)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Unsupported returns an error saying msg that wraps ErrUnsupported
// without repeating its text: msg says what is unsupported by whom
// ("... unsupported by firecracker ...") and what to do instead.
func Unsupported(msg string) error { return unsupportedError(msg) }

type unsupportedError string

func (e unsupportedError) Error() string { return string(e) }
func (e unsupportedError) Unwrap() error { return ErrUnsupported }
