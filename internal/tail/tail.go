// Package tail keeps the end of a process's output (a hypervisor's serial
// console or stderr) for error reports and diagnostics.
package tail

import (
	"bytes"
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
