package machine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// ExecResult is a command's outcome.
type ExecResult struct {
	// Status is the exit status: 124 when the guest-side timeout ended
	// the command, -1 with NoCheckReturn when none arrived, -2 with
	// NoCheckOutput.
	Status int
	// Output is the command's stdout (invalid UTF-8 replaced).
	Output string
}

// execParams is one guest command as the machine runs it.
type execParams struct {
	guestTimeout time.Duration // 0: none
	hostTimeout  time.Duration // 0: derived from guestTimeout
	noStatus     bool
	noOutput     bool
	// raw keeps the output's bytes as they are (binary data) instead of
	// making it valid UTF-8 for scripts.
	raw bool
}

// exec runs cmd in the guest: the before-command hook, an implicit start
// and connect, then the command under a host deadline while watching
// the hypervisor.
func (m *Machine) exec(ctx context.Context, cmd string, p execParams) (ExecResult, error) {
	if err := m.beforeCommand(ctx); err != nil {
		return ExecResult{}, err
	}
	sh, inst, err := m.connect(ctx)
	if err != nil {
		return ExecResult{}, err
	}
	host := p.hostTimeout
	if host <= 0 {
		if p.guestTimeout > 0 {
			host = p.guestTimeout + commandGrace
		} else {
			host = m.cfg.commandTimeout
		}
	}
	start := time.Now()
	opCtx, cancel := context.WithTimeout(ctx, host)
	defer cancel()
	wctx, stop := watchExit(opCtx, inst)
	defer stop()
	what := fmt.Sprintf("command `%s`", cmd)
	if p.noOutput {
		if err := sh.Send(wctx, cmd); err != nil {
			return ExecResult{}, m.commandFailure(ctx, inst, sh, err, what, start)
		}
		return ExecResult{Status: -2}, nil
	}
	res, err := sh.Run(wctx, cmd, backdoor.RunOptions{
		Timeout:     p.guestTimeout,
		NoStatus:    p.noStatus,
		HeldWarning: m.cfg.heldWarning,
	})
	if err != nil {
		return ExecResult{}, m.commandFailure(ctx, inst, sh, err, what, start)
	}
	if p.noStatus && isDone(sh.Done()) {
		m.markDisconnected(sh)
	}
	if p.raw {
		return ExecResult{Status: res.Status, Output: string(res.Output)}, nil
	}
	return ExecResult{Status: res.Status, Output: strings.ToValidUTF8(string(res.Output), "\uFFFD")}, nil
}

func (m *Machine) commandFailure(ctx context.Context, inst backend.Instance, sh *backdoor.Shell, err error, what string, start time.Time) error {
	if isDone(sh.Done()) {
		m.markDisconnected(sh)
	}
	return m.failure(ctx, inst, sh, err, what, start)
}

// Execute runs cmd in the guest with `set -euo pipefail` and returns its
// exit status and stdout; a non-zero status is not an error. Options:
// Timeout (guest-side limit, default DefaultCommandTimeout), NoCheckReturn,
// NoCheckOutput. Errors mean the command could not be run or its result
// not read: the hypervisor exited (wraps backend.ErrExited), the host
// deadline passed (wraps ErrTimeout), the shell connection failed.
func (m *Machine) Execute(ctx context.Context, cmd string, opts ...ExecOption) (ExecResult, error) {
	c := execOptions(opts)
	return m.exec(ctx, cmd, execParams{
		guestTimeout: c.waitTimeout(DefaultCommandTimeout),
		noStatus:     c.noReturn,
		noOutput:     c.noOutput,
	})
}

// Succeed runs cmd and requires exit status 0; it returns the output.
// A non-zero status gives a *CommandError (wrapping ErrCheckFailed) that
// carries the output. Without Timeout the command has no guest-side
// limit (like the NixOS driver), only the machine's command timeout on
// the host. NoCheckReturn and NoCheckOutput are ignored.
func (m *Machine) Succeed(ctx context.Context, cmd string, opts ...ExecOption) (string, error) {
	return m.check(ctx, cmd, false, opts)
}

// Fail runs cmd and requires a non-zero exit status; it returns the
// output. Status 0 gives a *CommandError (wrapping ErrCheckFailed).
func (m *Machine) Fail(ctx context.Context, cmd string, opts ...ExecOption) (string, error) {
	return m.check(ctx, cmd, true, opts)
}

func (m *Machine) check(ctx context.Context, cmd string, wantFailure bool, opts []ExecOption) (string, error) {
	c := execOptions(opts)
	title := "must succeed: " + cmd
	if wantFailure {
		title = "must fail: " + cmd
	}
	var out string
	err := m.Nested(title, func() error {
		r, err := m.exec(ctx, cmd, execParams{guestTimeout: c.waitTimeout(0)})
		if err != nil {
			return err
		}
		out = r.Output
		if (r.Status == 0) == wantFailure {
			if !wantFailure {
				m.Log("output: " + out)
			}
			return &CommandError{Machine: m.name, Command: cmd, Status: r.Status, Output: out, WantFailure: wantFailure}
		}
		return nil
	})
	return out, err
}

// WaitUntilSucceeds runs cmd once a second (Interval) until it exits 0
// and returns its output. Each attempt is limited, in the guest, to the
// time left. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitUntilSucceeds(ctx context.Context, cmd string, opts ...WaitOption) (string, error) {
	return m.waitUntil(ctx, cmd, false, opts)
}

// WaitUntilFails runs cmd once a second until it exits non-zero and
// returns its output. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitUntilFails(ctx context.Context, cmd string, opts ...WaitOption) (string, error) {
	return m.waitUntil(ctx, cmd, true, opts)
}

func (m *Machine) waitUntil(ctx context.Context, cmd string, wantFailure bool, opts []WaitOption) (string, error) {
	c := waitOptions(opts)
	title, what := "waiting for success: "+cmd, fmt.Sprintf("`%s` to succeed", cmd)
	if wantFailure {
		title, what = "waiting for failure: "+cmd, fmt.Sprintf("`%s` to fail", cmd)
	}
	var out string
	err := m.Nested(title, func() error {
		return m.retry(ctx, what, c, func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
			r, err := m.exec(ctx, cmd, execParams{guestTimeout: budget})
			if err != nil {
				return false, "", err
			}
			out = r.Output
			detail := "last attempt exited with status " + strconv.Itoa(r.Status)
			if o := strings.TrimRight(r.Output, "\n"); o != "" {
				detail += ", output:\n" + indent(o)
			}
			return (r.Status == 0) != wantFailure, detail, nil
		})
	})
	return out, err
}

// Sleep sleeps d in guest time (`sleep SECS` in the guest).
func (m *Machine) Sleep(ctx context.Context, d time.Duration) error {
	cmd := guestcmd.Sleep(d)
	return m.Nested("must succeed: "+cmd, func() error {
		r, err := m.exec(ctx, cmd, execParams{hostTimeout: d + m.cfg.commandTimeout})
		if err != nil {
			return err
		}
		if r.Status != 0 {
			return &CommandError{Machine: m.name, Command: cmd, Status: r.Status, Output: r.Output}
		}
		return nil
	})
}

// probeFunc is one attempt of a polling wait. budget is how long the
// attempt may take in the guest. It reports success, a description of
// what it saw (for the final error), or an error that ends the wait.
type probeFunc func(ctx context.Context, budget time.Duration, last bool) (done bool, seen string, err error)

// retry polls probe until it succeeds or the timeout passes, pausing
// c.retryInterval() between attempts (on a timer, not busy). As in the
// NixOS driver, one last attempt follows the deadline; if it fails too,
// the error is a WaitError naming what, with the last observation.
func (m *Machine) retry(ctx context.Context, what string, c callConfig, probe probeFunc) error {
	timeout := c.waitTimeout(DefaultWaitTimeout)
	interval := c.retryInterval()
	start := time.Now()
	deadline := start.Add(timeout)
	var seen string
	var lastErr error
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		done, s, err := probe(ctx, max(remaining, time.Second), false)
		if err != nil {
			if errors.Is(err, ErrTimeout) && ctx.Err() == nil {
				lastErr = err
				break
			}
			if ctx.Err() != nil {
				return m.ctxError(ctx, what, start)
			}
			return err
		}
		if done {
			return nil
		}
		seen = s
		pause := min(interval, time.Until(deadline))
		if pause <= 0 {
			break
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return m.ctxError(ctx, what, start)
		}
	}
	if lastErr == nil && ctx.Err() == nil {
		// The last try, after the deadline, with a budget of its own.
		budget := min(max(timeout, time.Second), 10*time.Second)
		lctx, cancel := context.WithTimeout(ctx, budget+commandGrace)
		done, s, err := probe(lctx, budget, true)
		cancel()
		switch {
		case err != nil && errors.Is(err, ErrTimeout):
			lastErr = err
		case err != nil:
			return err
		case done:
			return nil
		default:
			seen = s
		}
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return m.ctxError(ctx, what, start)
	}
	return m.waitError(what, time.Since(start), seen, lastErr)
}
