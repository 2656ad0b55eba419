package backdoor

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// GuestRequest is one command as a fake guest receives it.
type GuestRequest struct {
	// Command is the command text exactly as the caller of Run or Send
	// wrote it.
	Command string
	// Timeout is the guest-side limit (RunOptions.Timeout, rounded up to
	// a millisecond), or 0. The fake does not enforce it: a handler that
	// wants to simulate a timeout returns status 124 (or 143) itself.
	Timeout time.Duration
}

// GuestReply is a fake guest's answer.
type GuestReply struct {
	// Output is the command's stdout.
	Output []byte
	// Status is its exit status.
	Status int
	// Hold keeps stdout open this long after reporting the status, like a
	// background child would.
	Hold time.Duration
}

// GuestHandler computes the reply to one command. ctx ends when the fake
// guest stops (its ctx ended or the connection closed).
type GuestHandler func(ctx context.Context, req GuestRequest) GuestReply

// FakeGuestOptions tunes ServeGuest.
type FakeGuestOptions struct {
	// NoBanner skips the banner: the shell is already set up, as after a
	// restore (pair with WithoutBanner).
	NoBanner bool
	// PreBanner is text written before the banner, verbatim.
	PreBanner string
	// Raw is called with unframed input lines such as "poweroff" (without
	// the newline), in order with the commands around them.
	Raw func(text string)
}

// ServeGuest plays the guest side of the protocol on conn until ctx ends
// or conn closes; it returns nil on a clean close (by either side) and
// ctx's error if ctx ended first. It closes conn before returning.
//
// It parses exactly what Shell sends and answers in the wire format a real
// guest bash produces with the prelude installed, including the status
// marker in the middle of the base64 text. Handler calls run one at a
// time, in order.
func ServeGuest(ctx context.Context, conn net.Conn, h GuestHandler, opts FakeGuestOptions) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	g := &fakeGuest{conn: conn, h: h, opts: opts, sig: make(chan struct{}, 1)}
	if !opts.NoBanner {
		if err := g.write([]byte(opts.PreBanner + Banner + "\n")); err != nil {
			return g.result(parent, err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		g.readLoop()
	}()
	err := g.work(ctx)
	cancel()
	wg.Wait()
	if err == nil {
		err = g.readErr
	}
	return g.result(parent, err)
}

type fakeGuest struct {
	conn net.Conn
	h    GuestHandler
	opts FakeGuestOptions

	mu      sync.Mutex
	items   []fakeItem
	sig     chan struct{}
	readErr error // set before the reader's cancel
}

// fakeItem is one unit of input: a framed command, an ack, or a raw line.
type fakeItem struct {
	kind byte // 'c' command, 'a' ack, 'r' raw
	id   string
	req  GuestRequest
	raw  string
}

func (g *fakeGuest) result(parent context.Context, err error) error {
	if parent.Err() != nil {
		return parent.Err()
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return err
}

func (g *fakeGuest) push(it fakeItem) {
	g.mu.Lock()
	g.items = append(g.items, it)
	g.mu.Unlock()
	signal(g.sig)
}

// readLoop parses the host's script, never blocking on the handler (like
// a tty buffer, it lets the host's writes complete).
func (g *fakeGuest) readLoop() {
	r := bufio.NewReaderSize(g.conn, 64<<10)
	setup := make(map[string]bool, len(preludeLines))
	for _, l := range preludeLines {
		setup[l] = true
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			g.readErr = err
			return
		}
		text := strings.TrimSuffix(line, "\n")
		switch {
		case setup[text]:
		case strings.HasPrefix(text, ackPrefix):
			g.push(fakeItem{kind: 'a', id: strings.TrimPrefix(text, ackPrefix)})
		case strings.HasPrefix(text, "__vmd ") || strings.HasPrefix(text, "__vmdt "):
			it, err := parseFramed(r, line)
			if err != nil {
				g.readErr = err
				return
			}
			g.push(it)
		default:
			g.push(fakeItem{kind: 'r', raw: text})
		}
	}
}

// parseFramed parses `__vmd ID 'CMD'` or `__vmdt ID SECS 'C1' 'C2'…`,
// reading more lines while a quote is open.
func parseFramed(r *bufio.Reader, line string) (fakeItem, error) {
	var ws wordScanner
	for !ws.feed(line) {
		more, err := r.ReadString('\n')
		if err != nil {
			return fakeItem{}, fmt.Errorf("fake guest: framed command cut short: %w", err)
		}
		line = more
	}
	w := ws.words
	bad := fmt.Errorf("fake guest: malformed framed command %q", strings.Join(w, " "))
	switch {
	case w[0] == "__vmd" && len(w) == 3:
		return fakeItem{kind: 'c', id: w[1], req: GuestRequest{Command: w[2]}}, nil
	case w[0] == "__vmdt" && len(w) >= 4:
		secs, err := strconv.ParseFloat(w[2], 64)
		if err != nil {
			return fakeItem{}, bad
		}
		d := time.Duration(secs*1000+0.5) * time.Millisecond
		return fakeItem{kind: 'c', id: w[1], req: GuestRequest{Command: strings.Join(w[3:], ""), Timeout: d}}, nil
	}
	return fakeItem{}, bad
}

// wordScanner splits bash words made of bare text, '…' and \x, across
// lines; it is just enough bash for what frame produces.
type wordScanner struct {
	words   []string
	cur     strings.Builder
	inWord  bool
	inQuote bool
	escape  bool
}

// feed consumes one line (with its newline) and reports whether the
// command is complete.
func (w *wordScanner) feed(s string) bool {
	for len(s) > 0 {
		if w.inQuote {
			i := strings.IndexByte(s, '\'')
			if i < 0 {
				w.cur.WriteString(s)
				return false
			}
			w.cur.WriteString(s[:i])
			s = s[i+1:]
			w.inQuote = false
			continue
		}
		c := s[0]
		s = s[1:]
		switch {
		case w.escape:
			w.cur.WriteByte(c)
			w.escape = false
		case c == '\'':
			w.inQuote, w.inWord = true, true
		case c == '\\':
			w.escape, w.inWord = true, true
		case c == ' ' || c == '\n':
			if w.inWord {
				w.words = append(w.words, w.cur.String())
				w.cur.Reset()
				w.inWord = false
			}
			if c == '\n' {
				return true
			}
		default:
			w.cur.WriteByte(c)
			w.inWord = true
		}
	}
	return false
}

func (g *fakeGuest) write(b []byte) error {
	_, err := g.conn.Write(b)
	return err
}

// work answers the queued input in order.
func (g *fakeGuest) work(ctx context.Context) error {
	for {
		g.mu.Lock()
		var it fakeItem
		ok := len(g.items) > 0
		if ok {
			it = g.items[0]
			g.items = g.items[1:]
		}
		g.mu.Unlock()
		if !ok {
			select {
			case <-g.sig:
				continue
			case <-ctx.Done():
				return nil
			}
		}
		var err error
		switch it.kind {
		case 'a':
			err = g.write([]byte("\036a" + it.id + "\n"))
		case 'r':
			if g.opts.Raw != nil {
				g.opts.Raw(it.raw)
			}
		case 'c':
			err = g.answer(ctx, it)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

func (g *fakeGuest) answer(ctx context.Context, it fakeItem) error {
	if err := g.write([]byte("\036s" + it.id + "\n")); err != nil {
		return err
	}
	rep := g.h(ctx, it.req)
	text := wrapBase64(rep.Output)
	half := len(text) / 2
	var b []byte
	b = append(b, text[:half]...)
	b = append(b, "\036x"+it.id+" "+strconv.Itoa(rep.Status)+"\n"...)
	b = append(b, text[half:]...)
	if err := g.write(b); err != nil {
		return err
	}
	if rep.Hold > 0 {
		t := time.NewTimer(rep.Hold)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return g.write([]byte("\036e" + it.id + "\n"))
}

// wrapBase64 encodes b the way base64(1) does by default: 76 columns, a
// newline after every line, nothing at all for empty input.
func wrapBase64(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	out := make([]byte, 0, len(enc)+len(enc)/lineLen+1)
	for len(enc) > 0 {
		n := min(len(enc), lineLen)
		out = append(out, enc[:n]...)
		out = append(out, '\n')
		enc = enc[n:]
	}
	return out
}
