package machine

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
)

const (
	// consoleTail is how many console lines error reports carry.
	consoleTail = 20
	// maxPartialLine forces a line break in console output that has none
	// for this many bytes.
	maxPartialLine = 64 << 10
	// maxMatchWindow bounds the text WaitForConsoleText searches: older
	// lines since the last match are dropped from the window (they stay
	// in ConsoleLog).
	maxMatchWindow = 1 << 20
)

// console keeps a machine's serial output: the full log since the last
// start, a ring of the last lines, and wake-ups for waiters.
type console struct {
	mu       sync.Mutex
	lines    []string // since the last start
	gen      int      // incremented by reset
	consumed int      // lines[:consumed] are behind the last console match
	ring     [consoleTail]string
	ringN    int // lines ever seen
	changed  chan struct{}
	closed   bool
	serial   func(line string)
}

func newConsole(serial func(string)) *console {
	return &console{changed: make(chan struct{}), serial: serial}
}

// reset starts a new log (at every start of the machine).
func (c *console) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines, c.consumed = nil, 0
	c.gen++
	c.wakeLocked()
}

func (c *console) wakeLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *console) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
}

// add appends complete lines and logs them.
func (c *console) add(lines []string) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for _, l := range lines {
		c.lines = append(c.lines, l)
		c.ring[c.ringN%consoleTail] = l
		c.ringN++
	}
	c.wakeLocked()
	c.mu.Unlock()
	for _, l := range lines {
		c.serial(l)
	}
}

// replay puts lines saved with a warm entry at the start of the history,
// as if the guest had printed them, without logging them again.
func (c *console) replay(lines []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(slices.Clone(lines), c.lines...)
	c.wakeLocked()
}

// tail returns the last console lines (across restarts).
func (c *console) tail() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := min(c.ringN, consoleTail)
	out := make([]string, 0, n)
	for i := c.ringN - n; i < c.ringN; i++ {
		out = append(out, c.ring[i%consoleTail])
	}
	return out
}

func (c *console) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// match searches the lines after the last match, joined with "\n", for
// re. On a match the lines up to the one where the match ends count as
// consumed. It also returns a channel closed at the next change.
func (c *console) match(re *regexp.Regexp) (bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keep the window bounded: drop its oldest lines.
	size := 0
	start := len(c.lines)
	for start > c.consumed && size+len(c.lines[start-1])+1 <= maxMatchWindow {
		start--
		size += len(c.lines[start]) + 1
	}
	if start == len(c.lines) && start > c.consumed {
		start-- // one huge line: search it anyway
	}
	c.consumed = start
	window := c.lines[c.consumed:]
	text := strings.Join(window, "\n")
	loc := re.FindStringIndex(text)
	if loc == nil || len(window) == 0 {
		return false, c.changed
	}
	end := loc[1]
	if end > loc[0] {
		end-- // the line holding the match's last character
	}
	c.consumed += strings.Count(text[:end], "\n") + 1
	return true, c.changed
}

// consoleWriter is the io.Writer a backend gets as Spec.Console: it cuts
// the stream into lines (dropping \r and trailing blanks and invalid
// UTF-8) and feeds them to the console.
type consoleWriter struct {
	c       *console
	mu      sync.Mutex
	partial []byte
}

func (w *consoleWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	var lines []string
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			if len(w.partial) >= maxPartialLine {
				lines = append(lines, cleanLine(w.partial))
				w.partial = w.partial[:0]
			}
			break
		}
		lines = append(lines, cleanLine(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	// Lines are added under w.mu, so a concurrent flush (the exit watcher
	// and a waiter both flush) returns only once they are in the log, and
	// lines keep their order.
	defer w.mu.Unlock()
	if len(lines) > 0 {
		w.c.add(lines)
	}
	return len(p), nil
}

// flush emits an unterminated last line (when the hypervisor is gone).
func (w *consoleWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.c.add([]string{cleanLine(w.partial)})
		w.partial = nil
	}
}

func cleanLine(b []byte) string {
	s := strings.ReplaceAll(string(b), "\r", "")
	s = strings.ToValidUTF8(s, "")
	return strings.TrimRightFunc(s, unicode.IsSpace)
}

// ConsoleLog returns every serial console line since the machine's last
// start, joined with "\n".
func (m *Machine) ConsoleLog() string { return m.console.log() }

// ConsoleTail returns the machine's last console lines (at most 20),
// across restarts; error reports carry the same lines.
func (m *Machine) ConsoleTail() []string { return m.console.tail() }

// WaitForConsoleText waits until the serial console shows text matching
// the regular expression pattern (Go syntax). It searches the lines that
// arrived since the previous successful WaitForConsoleText (or the start),
// joined with "\n" — so "^" and "$" match at line boundaries only with
// (?m) — and re-checks as each line arrives. Once it returns, the match
// is in ConsoleLog and its lines are behind the next call's search. It
// does not start the machine. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitForConsoleText(ctx context.Context, pattern string, opts ...WaitOption) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("machine %s: wait for console text: %w", m.name, err)
	}
	cfg := waitOptions(opts)
	timeout := cfg.waitTimeout(DefaultWaitTimeout)
	what := fmt.Sprintf("console text matching %q", pattern)
	return m.Nested(fmt.Sprintf("waiting for %s", what), func() error {
		start := time.Now()
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		for {
			ok, changed := m.console.match(re)
			if ok {
				return nil
			}
			var exited <-chan struct{}
			inst, cw := m.current()
			if inst != nil {
				exited = inst.Done()
			}
			select {
			case <-changed:
			case <-exited:
				cw.flush()
				if ok, _ := m.console.match(re); ok {
					return nil
				}
				return m.exitedError(inst, "waiting for "+what)
			case <-timer.C:
				return m.waitError(what, time.Since(start), "", nil)
			case <-ctx.Done():
				return m.ctxError(ctx, what, start)
			}
		}
	})
}
