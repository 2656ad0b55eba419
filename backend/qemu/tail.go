package qemu

import (
	"bytes"
	"strings"
	"sync"
)

// tailBuffer keeps the last max bytes written to it, so error reports can
// quote the end of QEMU's console or stderr without holding all of it.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

// Write never fails.
func (t *tailBuffer) Write(p []byte) (int, error) {
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
func (t *tailBuffer) Lines(n int) []string {
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
func (t *tailBuffer) String() string {
	return strings.Join(t.Lines(t.max), "\n")
}

// lineWriter calls fn for every line written to it (without the newline);
// an overlong line is passed on in pieces of max bytes.
type lineWriter struct {
	fn  func(line string)
	max int
	buf []byte
}

// Write never fails.
func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		w.buf = append(w.buf, chunk...)
		for len(w.buf) > w.max {
			w.fn(strings.TrimRight(string(w.buf[:w.max]), "\r"))
			w.buf = append(w.buf[:0], w.buf[w.max:]...)
		}
		if i < 0 {
			break
		}
		w.fn(strings.TrimRight(string(w.buf), "\r"))
		w.buf = w.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// Flush passes on a final line without a newline.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.fn(strings.TrimRight(string(w.buf), "\r"))
		w.buf = w.buf[:0]
	}
}
