// Package proc runs the long-lived host processes of a test (hypervisors,
// switches) the one way they all need: in a process group of their own,
// killed with the driver even if it is killed (Pdeathsig), reaped in the
// background, with how they ended at hand.
package proc

import (
	"errors"
	"fmt"
	"os/exec"
	"syscall"
)

// Process is one started process.
type Process struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{}
	err    error // cmd.Wait's result; set before exited is closed
}

// Start starts cmd in a new process group and reaps it in the
// background. cmd's SysProcAttr is set here.
func Start(cmd *exec.Cmd) (*Process, error) {
	// Setpgid: the process and everything it starts can be killed as a
	// group; Pdeathsig: it dies with the driver, even on SIGKILL.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait() // also waits for output copied to writers
		close(p.exited)
	}()
	return p, nil
}

// PID is the process id (also its process group id).
func (p *Process) PID() int { return p.pid }

// Exited is closed once the process has been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended: nil while it runs and after exit status
// 0, else the *exec.ExitError (or the error waiting for it).
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Status is how an exited process ended.
type Status struct {
	// Code is the exit status; -1 when a signal ended it or it did not
	// exit normally.
	Code int
	// Signal is the signal that ended it, or 0.
	Signal syscall.Signal
	// Err is an error waiting for the process that is not an exit
	// status.
	Err error
}

// String says it as a person would: "exit status 3", "killed by signal
// killed".
func (s Status) String() string {
	switch {
	case s.Err != nil:
		return s.Err.Error()
	case s.Signal != 0:
		return "killed by signal " + s.Signal.String()
	}
	return fmt.Sprintf("exit status %d", s.Code)
}

// Status reports how the process ended; call it after Exited is closed.
func (p *Process) Status() Status {
	<-p.exited
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return Status{}
	case errors.As(p.err, &ee):
		st := Status{Code: ee.ExitCode()}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			st.Signal = ws.Signal()
		}
		return st
	}
	return Status{Code: -1, Err: p.err}
}

// SignalGroup sends sig to the process's group: the process and anything
// it started that stayed in the group. A group that is gone already is
// not an error.
func (p *Process) SignalGroup(sig syscall.Signal) error {
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
