// Package tail keeps the end of a process's output (a hypervisor's serial
// console or stderr) for error reports and diagnostics.
package tail

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// Buffer keeps the last max bytes written to it, so error reports can
// quote the end of a hypervisor's console or stderr without holding all
// of it. It is safe for concurrent use.
type Buffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

// New returns a Buffer that keeps max bytes.
func New(max int) *Buffer { return &Buffer{max: max} }

// Write never fails.
func (t *Buffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		// Shift rather than reallocate; the buffer is small.
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.truncated = true
	}
	return len(p), nil
}

// Lines returns up to n of the last complete or partial lines, with
// carriage returns and a line cut by the truncation removed.
func (t *Buffer) Lines(n int) []string {
	t.mu.Lock()
	b := bytes.ReplaceAll(t.buf, []byte("\r"), nil)
	truncated := t.truncated
	t.mu.Unlock()
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	if truncated && len(lines) > 1 {
		lines = lines[1:] // the first line lost its beginning
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// String returns the kept text.
func (t *Buffer) String() string {
	return strings.Join(t.Lines(t.max), "\n")
}

// Tee returns a writer that keeps everything in buf and passes it on to
// out, for a hypervisor's serial console: the tail for error messages,
// out for the run's log. A failing out is reported once to onErr (which
// may be nil) and written to no more, and the writer itself never fails,
// so the copy from the hypervisor's pipe never stops and the hypervisor
// never blocks on it. A nil out just keeps the tail.
func Tee(buf *Buffer, out io.Writer, onErr func(error)) io.Writer {
	return &tee{buf: buf, out: out, onErr: onErr}
}

type tee struct {
	buf    *Buffer
	out    io.Writer
	onErr  func(error)
	failed bool
}

func (t *tee) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.out != nil && !t.failed {
		if _, err := t.out.Write(p); err != nil {
			t.failed = true
			if t.onErr != nil {
				t.onErr(err)
			}
		}
	}
	return len(p), nil
}
