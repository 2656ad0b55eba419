package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// errZstdKilled reports a compressor that had to be killed, or that
// died because the other end of its pipe went away: it has nothing to say
// about why.
var errZstdKilled = errors.New(zstdBinary + " did not finish (killed, or its reader went away)")

// readerGone reports a process killed by SIGPIPE.
func readerGone(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled() && ws.Signal() == syscall.SIGPIPE
	}
	return false
}

// compressor is our own zstd process at one end of a migration stream:
// we can wait for it, end it, and quote its complaints (a full disk, a
// truncated file), which an exec: migration URI would not let us do.
type compressor struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
	err    error // set before done is closed
	killed bool
}

// startCompressor runs zstd with args, its stdin or stdout (the other
// nil) being a pipe end it takes over: ours is closed once it started.
func startCompressor(args []string, stdin, stdout *os.File) (*compressor, error) {
	bin, err := hosttools.Path(zstdBinary)
	if err != nil {
		closeAll(stdin, stdout)
		return nil, err
	}
	c := &compressor{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	if stdin != nil {
		c.cmd.Stdin = stdin
	}
	if stdout != nil {
		c.cmd.Stdout = stdout
	}
	c.cmd.Stderr = &c.stderr
	err = c.cmd.Start()
	closeAll(stdin, stdout)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", zstdBinary, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// stop gives zstd up to grace to exit by itself, then kills it (a reader
// that went away must not leave it blocked on a full pipe). It returns
// zstd's complaint when it failed on its own, errZstdKilled when it had
// to be killed, and nil for a nil compressor (no compression). Calling it
// again returns the same.
func (c *compressor) stop(grace time.Duration) error {
	if c == nil {
		return nil
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.killed = true
		c.cmd.Process.Kill()
		<-c.done
	}
	switch {
	case c.killed || readerGone(c.err):
		return errZstdKilled
	case c.err != nil:
		if msg := strings.TrimSpace(c.stderr.String()); msg != "" {
			return errors.New(msg)
		}
		return c.err
	}
	return nil
}
