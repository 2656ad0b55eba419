package machine

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// statusProbe is a probe that runs cmd and succeeds when its exit status
// is zero (or non-zero with wantFailure).
func (m *Machine) statusProbe(cmd string, wantFailure bool) probeFunc {
	return func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
		r, err := m.exec(ctx, cmd, execParams{guestTimeout: budget})
		if err != nil {
			return false, "", err
		}
		return (r.Status == 0) != wantFailure, fmt.Sprintf("`%s` exited with status %d", cmd, r.Status), nil
	}
}

// WaitForFile waits until path exists in the guest (`test -e`). Default
// timeout: DefaultWaitTimeout.
func (m *Machine) WaitForFile(ctx context.Context, path string, opts ...WaitOption) error {
	c := waitOptions(opts)
	return m.Nested("waiting for file "+path, func() error {
		return m.retry(ctx, "file "+path+" to exist", c, m.statusProbe(guestcmd.FileExists(path), false))
	})
}

// WaitForOpenPort waits until a TCP port accepts connections in the guest
// (Addr, default localhost). Default timeout: DefaultWaitTimeout.
//
// The probe opens /dev/tcp/ADDR/PORT in the guest's bash rather than
// running `nc -z` like the NixOS driver: busybox's nc has no -z, and the
// probe then launches no program at all.
func (m *Machine) WaitForOpenPort(ctx context.Context, port int, opts ...PortOption) error {
	c := portOptions(opts)
	target := c.addr + ":" + strconv.Itoa(port)
	return m.Nested("waiting for TCP port "+target, func() error {
		return m.retry(ctx, "TCP port "+target+" to open", c,
			m.statusProbe(guestcmd.PortOpen(c.addr, port), false))
	})
}

// WaitForClosedPort waits until a TCP port refuses connections in the
// guest. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitForClosedPort(ctx context.Context, port int, opts ...PortOption) error {
	c := portOptions(opts)
	target := c.addr + ":" + strconv.Itoa(port)
	return m.Nested("waiting for TCP port "+target+" to be closed", func() error {
		return m.retry(ctx, "TCP port "+target+" to close", c,
			m.statusProbe(guestcmd.PortOpen(c.addr, port), true))
	})
}

// WaitForOpenUnixSocket waits until a unix socket at path accepts
// connections (`nc -z -U`, or `nc -z -uU` for a datagram socket: the
// guest needs an nc that has them, such as netcat-openbsd; busybox's has
// not). Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitForOpenUnixSocket(ctx context.Context, path string, datagram bool, opts ...WaitOption) error {
	c := waitOptions(opts)
	return m.Nested("waiting for unix socket "+path, func() error {
		return m.retry(ctx, "unix socket "+path+" to open", c,
			m.statusProbe(guestcmd.UnixSocketOpen(path, datagram), false))
	})
}

// GetTTYText returns the text on virtual terminal tty (/dev/vcsN),
// folded at the terminal's width.
func (m *Machine) GetTTYText(ctx context.Context, tty int) (string, error) {
	r, err := m.exec(ctx, guestcmd.TTYText(tty), execParams{guestTimeout: DefaultCommandTimeout})
	if err != nil {
		return "", err
	}
	if r.Status != 0 {
		return "", &CommandError{Machine: m.name, Command: guestcmd.TTYText(tty), Status: r.Status, Output: r.Output}
	}
	return r.Output, nil
}

// WaitUntilTTYMatches waits until the text on virtual terminal tty
// matches the regular expression pattern. Default timeout:
// DefaultWaitTimeout.
func (m *Machine) WaitUntilTTYMatches(ctx context.Context, tty int, pattern string, opts ...WaitOption) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("machine %s: wait until tty matches: %w", m.name, err)
	}
	c := waitOptions(opts)
	what := fmt.Sprintf("TTY %d to match %q", tty, pattern)
	return m.Nested(fmt.Sprintf("waiting for %s", what), func() error {
		return m.retry(ctx, what, c, func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
			r, err := m.exec(ctx, guestcmd.TTYText(tty), execParams{guestTimeout: budget})
			if err != nil {
				return false, "", err
			}
			if r.Status == 0 && re.MatchString(r.Output) {
				return true, "", nil
			}
			if last {
				m.Log(fmt.Sprintf("last chance to match %q on TTY %d, which currently contains:\n%s", pattern, tty, r.Output))
			}
			return false, fmt.Sprintf("TTY %d shows:\n%s", tty, indent(r.Output)), nil
		})
	})
}

// DumpTTYContents writes the text of virtual terminal tty into the
// guest's journal (and so into the serial log).
func (m *Machine) DumpTTYContents(ctx context.Context, tty int) error {
	_, err := m.Succeed(ctx, guestcmd.DumpTTY(tty))
	return err
}
