// Package vlan runs the virtual networks of a test: one VDE switch per
// VLAN, as the NixOS test driver does. Every machine on VLAN n connects
// its NIC with QEMU's `-netdev vde,sock="$QEMU_VDE_SOCKET_<n>"`, so the
// driver passes each switch's Env to every hypervisor it starts.
//
// The switch runs in hub mode (--hub) so that 802.1Q-tagged frames are
// flooded like any others, which tests of VLAN interfaces in the guest
// rely on.
package vlan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/proc"
)

// Binary is the program that runs a switch (Debian package vde2).
const Binary = "vde_switch"

// Timeouts of a switch's life.
const (
	// StartTimeout bounds the wait for the switch's answer to showinfo,
	// in addition to the caller's context.
	StartTimeout = 10 * time.Second
	// CloseGrace is how long Close waits for the switch to exit after
	// closing its stdin before it kills the process group.
	CloseGrace = 2 * time.Second
	// killWait bounds the wait for the exit after SIGKILL.
	killWait = 5 * time.Second
)

var (
	// ErrBadNumber is returned by Start for a VLAN number outside 1–255.
	ErrBadNumber = errors.New("VLAN numbers are 1 to 255")
	// ErrNotInstalled is returned by Start when vde_switch is not on PATH.
	ErrNotInstalled = hosttools.MissingError(Binary)
	// ErrExited is wrapped by the errors of a switch that exited on its
	// own: during Start, or later (Err).
	ErrExited = errors.New("vde_switch exited")
)

// Option configures Start.
type Option func(*config)

type config struct {
	logf func(format string, args ...any)
}

// WithLogf sends the switch's own output (its answers on stdout, its
// stderr) and lifecycle messages to logf, one line per call. They are
// debug material: the driver shows them only when asked.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *config) { c.logf = logf }
}

// Switch is one running vde_switch: the segment of one VLAN.
type Switch struct {
	nr   int
	dir  string // control directory, what QEMU_VDE_SOCKET_<nr> holds
	pid  int
	proc *proc.Process
	logf func(format string, args ...any)

	stdin          io.WriteCloser
	stdout, errOut *lineWriter
	stderr         *tail

	ready     chan struct{} // closed at the line "1000 Success"
	readyOnce sync.Once
	failMu    sync.Mutex
	failLine  string // a showinfo answer other than success

	closing  atomic.Bool   // Close began: an exit from now on is expected
	done     chan struct{} // closed once the process has been reaped
	expected bool          // the exit came after Close began; set before done

	closeOnce sync.Once
	closeErr  error
}

// Start starts the switch of VLAN nr with its control directory
// dir/vde<nr>.ctl and waits until it answers `showinfo` (which it does
// only once the control socket listens). dir must exist; the control
// directory must not. The switch runs in its own process group and dies
// with the calling process; call Close to stop it.
func Start(ctx context.Context, nr int, dir string, opts ...Option) (*Switch, error) {
	if nr < 1 || nr > 255 {
		return nil, fmt.Errorf("vlan %d: %w", nr, ErrBadNumber)
	}
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	bin, err := hosttools.Path(Binary)
	if err != nil {
		return nil, fmt.Errorf("vlan %d: %w", nr, ErrNotInstalled)
	}
	ctl := filepath.Join(dir, fmt.Sprintf("vde%d.ctl", nr))
	// QEMU's VDE client binds a socket of its own in the control
	// directory ("NNN.N"); keep room for it within sun_path (108 bytes).
	if n := len(ctl) + len("/ctl") + 16; n > 107 {
		return nil, fmt.Errorf("vlan %d: control directory %s is too long for unix socket paths (108 bytes): use a shorter directory", nr, ctl)
	}
	if _, err := os.Lstat(ctl); err == nil {
		return nil, fmt.Errorf("vlan %d: control directory %s already exists: is another switch using it?", nr, ctl)
	}

	s := &Switch{
		nr:     nr,
		dir:    ctl,
		logf:   c.logf,
		stderr: &tail{max: 4 << 10},
		ready:  make(chan struct{}),
		done:   make(chan struct{}),
	}
	cmd := exec.Command(bin, "--sock", ctl, "--dirmode", "0700", "--hub")
	s.stdout = &lineWriter{line: s.stdoutLine}
	s.errOut = &lineWriter{line: func(l string) {
		s.stderr.add(l)
		s.logf("vlan %d: vde_switch: %s", nr, l)
	}}
	cmd.Stdout, cmd.Stderr = s.stdout, s.errOut
	// The switch forks nothing; this only bounds Wait should something
	// else hold its output pipes.
	cmd.WaitDelay = time.Second
	// It exits (status 0) when its stdin reaches end of file.
	s.stdin, err = cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("vlan %d: %w", nr, err)
	}
	// Its own process group, so Close reaches everything it runs; it
	// dies with the driver (proc.Start).
	p, err := proc.Start(cmd)
	if err != nil {
		s.stdin.Close()
		return nil, fmt.Errorf("vlan %d: starting %s: %w", nr, bin, err)
	}
	s.proc, s.pid = p, p.PID()
	go s.wait()

	if err := s.awaitReady(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.logf("vlan %d: vde_switch pid %d listening in %s", nr, s.pid, ctl)
	return s, nil
}

// wait reaps the process and records how it ended. Nothing is logged
// after done closes, so a Logf may stop working once Close returned.
func (s *Switch) wait() {
	<-s.proc.Exited() // the output has been copied by then
	s.stdout.flush()
	s.errOut.flush()
	s.expected = s.closing.Load()
	if !s.expected {
		s.logf("vlan %d: vde_switch pid %d exited: %v", s.nr, s.pid, s.describeExit())
	}
	close(s.done)
}

// awaitReady asks the switch for showinfo and waits for its success line.
func (s *Switch) awaitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	if _, err := io.WriteString(s.stdin, "showinfo\n"); err != nil {
		// It died before reading: the exit says why.
		select {
		case <-s.done:
			return s.startupExit()
		case <-ctx.Done():
			return fmt.Errorf("vlan %d: writing showinfo to vde_switch: %w", s.nr, err)
		}
	}
	select {
	case <-s.ready:
	case <-s.done:
		// The success line and the exit may race; success counts.
		select {
		case <-s.ready:
		default:
			return s.startupExit()
		}
	case <-ctx.Done():
		return fmt.Errorf("vlan %d: vde_switch did not answer showinfo: %w%s", s.nr, context.Cause(ctx), s.stderrSuffix())
	}
	s.failMu.Lock()
	bad := s.failLine
	s.failMu.Unlock()
	if bad != "" {
		return fmt.Errorf("vlan %d: vde_switch answered showinfo with %q%s", s.nr, bad, s.stderrSuffix())
	}
	ctl := filepath.Join(s.dir, "ctl")
	st, err := os.Stat(ctl)
	if err != nil {
		return fmt.Errorf("vlan %d: vde_switch is up but its control socket is missing: %w", s.nr, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("vlan %d: %s is not a socket (mode %s)", s.nr, ctl, st.Mode())
	}
	select {
	case <-s.done:
		return s.startupExit()
	default:
	}
	return nil
}

// stdoutLine handles one line the switch printed.
func (s *Switch) stdoutLine(l string) {
	s.logf("vlan %d: vde_switch: %s", s.nr, l)
	switch {
	case l == "1000 Success":
	case len(l) >= 5 && l[0] == '1' && l[4] == ' ' && isDigits(l[1:4]):
		// Another status code: showinfo failed.
		s.failMu.Lock()
		if s.failLine == "" {
			s.failLine = l
		}
		s.failMu.Unlock()
	default:
		return
	}
	s.readyOnce.Do(func() { close(s.ready) })
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *Switch) startupExit() error {
	return fmt.Errorf("vlan %d: %w during startup (%s)%s", s.nr, ErrExited, s.proc.Status(), s.stderrSuffix())
}

func (s *Switch) describeExit() string {
	return s.proc.Status().String() + s.stderrSuffix()
}

func (s *Switch) stderrSuffix() string {
	if t := s.stderr.String(); t != "" {
		return "; its stderr ends with:\n" + t
	}
	return ""
}

// Nr returns the VLAN number.
func (s *Switch) Nr() int { return s.nr }

// SocketDir returns the switch's control directory: what QEMU's
// `-netdev vde,sock=` takes and QEMU_VDE_SOCKET_<nr> holds.
func (s *Switch) SocketDir() string { return s.dir }

// PID returns the switch's process id.
func (s *Switch) PID() int { return s.pid }

// EnvName returns the name of the variable start scripts read the
// switch's control directory from: QEMU_VDE_SOCKET_<nr>.
func (s *Switch) EnvName() string { return fmt.Sprintf("QEMU_VDE_SOCKET_%d", s.nr) }

// Env returns "QEMU_VDE_SOCKET_<nr>=<control directory>", for a
// hypervisor's environment.
func (s *Switch) Env() string { return s.EnvName() + "=" + s.dir }

// Done is closed once the switch process has ended, whether Close ended
// it or it died on its own.
func (s *Switch) Done() <-chan struct{} { return s.done }

// Err reports how the switch ended: nil while it runs and after Close
// stopped it, an error wrapping ErrExited when it exited on its own (its
// exit status and the end of its stderr). Machines on a dead switch's
// network lose their link; their commands then fail or time out.
func (s *Switch) Err() error {
	select {
	case <-s.done:
	default:
		return nil
	}
	if s.expected {
		return nil
	}
	return fmt.Errorf("vlan %d: %w unexpectedly (pid %d, %s)", s.nr, ErrExited, s.pid, s.describeExit())
}

// Close stops the switch: it closes its stdin (the switch then exits by
// itself), waits up to CloseGrace, then kills its process group, and
// removes the control directory. It is idempotent and safe after the
// switch died.
func (s *Switch) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Switch) close() error {
	s.closing.Store(true)
	s.stdin.Close()
	var errs []error
	grace := time.NewTimer(CloseGrace)
	defer grace.Stop()
	select {
	case <-s.done:
	case <-grace.C:
		s.logf("vlan %d: vde_switch pid %d still running %s after its stdin closed; killing it", s.nr, s.pid, CloseGrace)
		// Not reaped yet, so the group id is still ours to signal.
		if err := s.proc.SignalGroup(syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("vlan %d: killing vde_switch: %w", s.nr, err))
		}
		kill := time.NewTimer(killWait)
		defer kill.Stop()
		select {
		case <-s.done:
		case <-kill.C:
			errs = append(errs, fmt.Errorf("vlan %d: vde_switch pid %d did not exit %s after SIGKILL", s.nr, s.pid, killWait))
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("vlan %d: removing its control directory: %w", s.nr, err))
	}
	return errors.Join(errs...)
}

// lineWriter calls line for every complete line written to it (without
// the newline); exec copies the switch's output into it.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	line func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	// A switch never prints endless lines; cap what an odd one keeps.
	if len(w.buf) > 64<<10 {
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// flush passes on an unterminated last line.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(string(w.buf))
		w.buf = nil
	}
}

// tail keeps the last lines written, up to max bytes.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
	size  int
}

func (t *tail) add(l string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, l)
	t.size += len(l) + 1
	for t.size > t.max && len(t.lines) > 1 {
		t.size -= len(t.lines[0]) + 1
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}
