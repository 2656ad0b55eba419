package qemu

import (
	"bytes"
	"strings"
)

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
