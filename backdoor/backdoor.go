// Package backdoor speaks the guest root-shell protocol of NixOS test
// guests over any byte stream (a virtio console socket, a vsock stream).
//
// The guest prints Banner on its console and then runs
// `bash --norc /dev/hvc0`: whatever the host writes is executed as a bash
// script. This package stays wire-compatible with that guest side, but
// improves on the Python driver's host side: one round trip per command,
// a host-side deadline on every read, banner detection that survives any
// split, exit statuses taken as they come, byte-exact output whose length
// is checked against the guest console's own byte counter (see wire.go),
// a reader that drains the stream continuously so QEMU's virtconsole
// should never drop bytes, and recovery when the guest reboots.
package backdoor

import (
	"context"
	"errors"
	"net"
	"time"
)

// Banner is what the guest prints when its root shell is ready.
const Banner = "Spawning backdoor root shell..."

var (
	// ErrClosed is returned when the shell connection has ended.
	ErrClosed = errors.New("backdoor: shell connection closed")
	// ErrCorrupt is returned when output was damaged in transit (for
	// example bytes dropped by the virtual console).
	ErrCorrupt = errors.New("backdoor: command output corrupted in transit")
	// ErrBusy is returned when an earlier command outlived its deadline
	// and still occupies the guest shell.
	ErrBusy = errors.New("backdoor: shell still busy with an earlier command")
	// ErrRestarted is returned for a command in flight when the guest
	// printed the banner again: the guest rebooted and the shell that had
	// the command is gone (whether it ran is unknown). The Shell sets up the
	// new guest shell by itself; later commands run there.
	ErrRestarted = errors.New("backdoor: guest shell restarted: the guest rebooted")
)

// Result is the outcome of one command.
type Result struct {
	// Status is the command's exit status as the guest reported it (124
	// when RunOptions.Timeout ended it).
	Status int
	// Output is the command's stdout, byte for byte.
	Output []byte
}

// RunOptions tunes one command.
type RunOptions struct {
	// Timeout, when positive, also bounds the command inside the guest:
	// when it is up, the guest ends the command's whole process group
	// (TERM, then KILL 2 s later), so background children do not keep the
	// shell busy, and Status is 124. A guest without setsid(1) falls back
	// to timeout(1), which ends only the command's first process (and
	// gives 143 with busybox). The host-side deadline is always ctx.
	Timeout time.Duration
	// NoStatus reads the output but does not require an exit status (for
	// commands that end the machine, such as poweroff); Result.Status is
	// then -1 unless the status arrived anyway, and a connection that
	// closes, or a guest that reboots, after the command was sent is not
	// an error.
	NoStatus bool
	// HeldWarning, when positive, is how long after the command exited
	// with its stdout still held open (a background process inherited it)
	// before the shell warns through its WithLogf function. Zero means a
	// default of a few seconds.
	HeldWarning time.Duration
}

// Option configures a Shell.
type Option func(*config)

type config struct {
	logf      func(format string, args ...any)
	preBanner func(line string)
	ready     bool
}

// WithLogf sends the shell's warnings (a command whose background child
// holds stdout, data before the banner) to logf.
func WithLogf(logf func(format string, args ...any)) Option {
	return func(c *config) { c.logf = logf }
}

// WithPreBanner passes every line the guest writes before the banner to
// fn (useful for "connecting to host..." style diagnostics).
func WithPreBanner(fn func(line string)) Option {
	return func(c *config) { c.preBanner = fn }
}

// WithoutBanner declares that the guest shell is already running and set
// up (for example after restoring a snapshot), so no banner will come.
// The guest's console byte counter then predates the connection: WaitReady
// asks the shell for a fresh baseline (and sends the whole set-up if the
// shell turns out not to have it); without WaitReady the first command's
// end marker becomes the baseline, so only that command's output length
// goes unchecked.
func WithoutBanner() Option {
	return func(c *config) { c.ready = true }
}

// Shell is a guest root shell. Commands run one at a time; Run is safe
// for concurrent use and queues callers.
type Shell struct {
	impl
}

// New starts reading conn at once and keeps reading it for the shell's
// whole life, whatever the caller is doing. The Shell owns conn.
func New(conn net.Conn, opts ...Option) *Shell {
	c := config{logf: func(string, ...any) {}}
	for _, o := range opts {
		o(&c)
	}
	return newShell(conn, c)
}

// WaitReady waits until the guest printed the banner (split however the
// stream splits it) and the shell accepted the driver's set-up. After
// ExpectRestart it waits for the next banner.
func (s *Shell) WaitReady(ctx context.Context) error { return s.ready(ctx, true) }

// ExpectRestart declares that the guest is about to reboot (the caller is
// rebooting it on purpose, say by ctrl-alt-delete): the current guest shell
// no longer counts as ready, so WaitReady, Run and Send wait for the next
// banner and the set-up that follows it. Call it before triggering the
// reboot, and do not send the rebooting command itself with Run or Send
// after calling it (they would wait for the restart). Without it a reboot
// is still handled when its banner arrives: commands in flight then fail
// with ErrRestarted and the new shell is set up automatically.
func (s *Shell) ExpectRestart() { s.expectRestart() }

// Run runs cmd in the guest with `set -euo pipefail` in a fresh subshell
// whose stdin is /dev/null, and returns its exit status and stdout.
// A non-zero status is not an error. Errors mean the exchange itself
// failed: ctx ended (the error then says whether the command was still
// running or had exited with a background process holding its stdout),
// the connection closed (ErrClosed), output was corrupted (ErrCorrupt),
// or the guest rebooted before the command ended (ErrRestarted). Run
// first waits, within ctx, until the shell is ready.
func (s *Shell) Run(ctx context.Context, cmd string, opts RunOptions) (Result, error) {
	return s.run(ctx, cmd, opts)
}

// Send sends cmd to run in the guest without waiting for anything
// (check_output=False in the NixOS driver). Its reply, if any, is
// discarded.
func (s *Shell) Send(ctx context.Context, cmd string) error { return s.send(ctx, cmd, false) }

// SendRestart sends cmd, which restarts the guest shell (switch_root from
// the initrd), without waiting for it, and declares the restart at once,
// as ExpectRestart does: Run and WaitReady then wait for the new banner.
func (s *Shell) SendRestart(ctx context.Context, cmd string) error { return s.send(ctx, cmd, true) }

// SendRaw writes text to the guest shell verbatim, without framing (the
// NixOS driver's shutdown writes "poweroff\n" this way).
func (s *Shell) SendRaw(ctx context.Context, text string) error { return s.sendRaw(ctx, text) }

// Done is closed when the connection has ended.
func (s *Shell) Done() <-chan struct{} { return s.done() }

// Err reports why the connection ended; nil while it is open.
func (s *Shell) Err() error { return s.err() }

// Close closes the connection; pending calls fail with ErrClosed.
func (s *Shell) Close() error { return s.close() }

// Hold waits until the shell is idle (no command queued or in flight)
// and keeps it so until release is called: other callers queue meanwhile.
// A snapshot needs this, so no reply is in flight when the guest's state
// is saved. release must be called exactly once.
func (s *Shell) Hold(ctx context.Context) (release func(), err error) { return s.hold(ctx) }
