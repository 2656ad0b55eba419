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
	// wants to simulate a timeout returns status 124 itself.
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
// guest stops (its ctx ended or the connection closed) or restarts.
type GuestHandler func(ctx context.Context, req GuestRequest) GuestReply

// FakeGuestOptions tunes ServeGuest.
type FakeGuestOptions struct {
	// NoBanner skips the banner: the shell is already set up, as after a
	// restore (pair with WithoutBanner). Its console byte counter then
	// starts at an arbitrary value, as a restored guest's would.
	NoBanner bool
	// PreBanner is text written before the banner (and before it again
	// after a restart), verbatim.
	PreBanner string
	// Raw is called with unframed input lines such as "poweroff" (without
	// the newline), in order with the commands around them.
	Raw func(text string)
	// NoCounter makes the fake answer like a guest without debugfs: no
	// console byte counter, output in the wrapped fallback shape.
	NoCounter bool
	// Restart reboots the fake guest whenever a value arrives: the command
	// it is answering gets no more output (its handler's ctx ends), input
	// it has not acted on is lost, its byte counter starts again from zero,
	// and it writes PreBanner and the banner again. The new shell answers
	// only once the host has sent the set-up again, as a real one. A
	// handler may send on it (buffered) to make its command reboot the
	// guest.
	Restart <-chan struct{}
}

// ServeGuest plays the guest side of the protocol on conn until ctx ends
// or conn closes; it returns nil on a clean close (by either side) and
// ctx's error if ctx ended first. It closes conn before returning.
//
// It parses exactly what Shell sends and answers in the wire format a real
// guest bash produces with the prelude installed, including the status
// marker in the middle of the base64 text and the console byte counts
// (it counts what it writes). Handler calls run one at a time, in order.
func ServeGuest(ctx context.Context, conn net.Conn, h GuestHandler, opts FakeGuestOptions) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	g := &fakeGuest{conn: conn, h: h, opts: opts, sig: make(chan struct{}, 1)}
	if opts.NoBanner {
		g.installed = true
		g.sent = restoredCounter
	} else if err := g.write([]byte(opts.PreBanner + Banner + "\n")); err != nil {
		return g.result(parent, err)
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

// restoredCounter is the fake's console counter at the start of a
// NoBanner session: what the guest had sent before the snapshot.
const restoredCounter = 1<<20 + 12345

type fakeGuest struct {
	conn net.Conn
	h    GuestHandler
	opts FakeGuestOptions

	// used by the work goroutine only
	sent      int64 // the console's byte counter: bytes written
	installed bool  // the shell has the prelude

	mu       sync.Mutex
	items    []fakeItem
	sig      chan struct{}
	restarts int   // restarts asked for and not yet played
	readErr  error // set before the reader's cancel
}

// fakeItem is one unit of input: a framed command, an ack request from
// the prelude or a rebaseline request, or a raw line.
type fakeItem struct {
	kind byte // 'c' command, 'a' prelude ack, 'q' rebaseline, 'r' raw
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
		case strings.HasPrefix(text, rebaselinePrefix):
			id, _, _ := strings.Cut(strings.TrimPrefix(text, rebaselinePrefix), " ")
			g.push(fakeItem{kind: 'q', id: id})
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
	n, err := g.conn.Write(b)
	g.sent += int64(n)
	return err
}

// addRestart records a value received from opts.Restart.
func (g *fakeGuest) addRestart() {
	g.mu.Lock()
	g.restarts++
	g.mu.Unlock()
}

// restartPending reports whether a restart is pending, taking a value
// that is waiting on opts.Restart.
func (g *fakeGuest) restartPending() bool {
	select {
	case <-g.opts.Restart:
		g.addRestart()
	default:
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.restarts > 0
}

// takeRestart reports a pending restart and, if there is one, forgets
// the input not acted on yet.
func (g *fakeGuest) takeRestart() bool {
	if !g.restartPending() {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restarts = 0
	g.items = nil
	return true
}

// restart plays the reboot: a new kernel (counter at zero), a new shell
// without the prelude, the banner.
func (g *fakeGuest) restart() error {
	g.installed = false
	g.sent = 0
	return g.write([]byte(g.opts.PreBanner + Banner + "\n"))
}

// work answers the queued input in order.
func (g *fakeGuest) work(ctx context.Context) error {
	for {
		if g.takeRestart() {
			if err := g.restart(); err != nil {
				return g.workErr(ctx, err)
			}
			continue
		}
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
			case <-g.opts.Restart:
				g.addRestart()
				continue
			case <-ctx.Done():
				return nil
			}
		}
		var err error
		switch it.kind {
		case 'a':
			g.installed = true
			err = g.ack(it.id)
		case 'q':
			if g.installed {
				err = g.ack(it.id)
			} else {
				err = g.write([]byte("\036a" + it.id + " !\n"))
			}
		case 'r':
			if g.opts.Raw != nil {
				g.opts.Raw(it.raw)
			}
		case 'c':
			if g.installed { // else bash: "__vmd: command not found"
				err = g.answer(ctx, it)
			}
		}
		if err != nil && err != errRestarting {
			return g.workErr(ctx, err)
		}
	}
}

func (g *fakeGuest) workErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// errRestarting cuts an answer short when the fake guest reboots.
var errRestarting = errors.New("fake guest: restarting")

func (g *fakeGuest) ack(id string) error {
	if g.opts.NoCounter {
		return g.write([]byte("\036a" + id + " nodebugfs\n"))
	}
	return g.write([]byte("\036a" + id + " " + strconv.FormatInt(g.sent, 10) + "\n"))
}

func (g *fakeGuest) answer(ctx context.Context, it fakeItem) error {
	mode := modeCounted
	if g.opts.NoCounter {
		mode = modeWrapped
	}
	if err := g.write([]byte("\036s" + it.id + " " + mode + "\n")); err != nil {
		return err
	}
	// A restart while the handler runs ends its ctx. The helper is
	// joined before looking, so a value the handler itself sent is seen.
	hctx, hcancel := context.WithCancel(ctx)
	hdone := make(chan struct{})
	go func() {
		defer close(hdone)
		select {
		case <-g.opts.Restart:
			g.addRestart()
			hcancel()
		case <-hctx.Done():
		}
	}()
	rep := g.h(hctx, it.req)
	hcancel()
	<-hdone
	if g.restartPending() {
		return errRestarting
	}
	var text []byte
	if g.opts.NoCounter {
		text = wrapBase64(rep.Output)
	} else {
		text = []byte(base64.StdEncoding.EncodeToString(rep.Output))
	}
	half := len(text) / 2
	var b []byte
	b = append(b, text[:half]...)
	b = append(b, "\036x"+it.id+" "+strconv.Itoa(rep.Status)+"\n"...)
	b = append(b, text[half:]...)
	if err := g.write(b); err != nil {
		return err
	}
	if err := g.hold(ctx, rep.Hold); err != nil {
		return err
	}
	if g.opts.NoCounter {
		return g.write([]byte("\036e" + it.id + "\n"))
	}
	return g.write([]byte("\036e" + it.id + " " + strconv.FormatInt(g.sent, 10) + "\n"))
}

// hold keeps stdout open for d, as a background child would, unless the
// guest restarts.
func (g *fakeGuest) hold(ctx context.Context, d time.Duration) error {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
	wait:
		for {
			select {
			case <-t.C:
				break wait
			case <-g.opts.Restart:
				g.addRestart()
				return errRestarting
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if g.restartPending() {
		return errRestarting
	}
	return nil
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
