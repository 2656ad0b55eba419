package backdoor

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cmdKind says who issued a command, for messages.
type cmdKind int

const (
	kindRun   cmdKind = iota // Run: someone waits for the reply
	kindSend                 // Send: nobody waits
	kindSetup                // the prelude: only its ack counts
)

func (k cmdKind) String() string {
	switch k {
	case kindSend:
		return "command sent without waiting"
	case kindSetup:
		return "shell set-up"
	}
	return "command"
}

// command is the host's record of one framed command, from the moment it
// is registered until its end marker (or ack) arrives.
type command struct {
	id     uint64
	text   string
	kind   cmdKind
	sentAt time.Time

	want      bool // the output is decoded and kept (a caller waits)
	abandoned bool // its caller gave up (ctx ended)

	started   bool
	hasStatus bool
	status    int
	statusAt  time.Time
	ended     bool
	err       error // output damaged; set at most once

	line   []byte // partial base64 line
	lineNo int    // complete lines seen
	short  bool   // a line shorter than 76 was seen: it must be the last
	last   []byte // that line, decoded at the end
	out    []byte // decoded output
}

// state describes where a command stands, for messages.
func (c *command) state() string {
	ago := time.Since(c.sentAt).Round(time.Millisecond)
	switch {
	case c.hasStatus:
		return fmt.Sprintf("exited with status %d but a background process still holds its stdout open (sent %v ago)", c.status, ago)
	case c.started:
		return fmt.Sprintf("is still running after %v", ago)
	}
	return fmt.Sprintf("was sent %v ago but the guest shell has not started it (busy with input sent by SendRaw, or slow)", ago)
}

func (c *command) corrupt(format string, args ...any) {
	if c.err != nil {
		return
	}
	c.err = fmt.Errorf("%w: %s; bytes were lost between guest and host (the virtual console drops data when nobody reads it fast enough)",
		ErrCorrupt, fmt.Sprintf(format, args...))
	c.out, c.line, c.last = nil, nil, nil
}

// note is something to tell the caller's callbacks, outside the lock.
type note struct {
	pre  bool // a pre-banner line (else a warning)
	text string
}

// parser turns the guest's byte stream into command replies. It never
// blocks and keeps no more than the current command's output.
type parser struct {
	bannerSeen bool
	pre        []byte // pre-banner bytes after the last newline

	inRec bool
	rec   []byte

	cur  *command // the command whose output is streaming
	cmds map[uint64]*command

	stray      []byte // partial line of output outside any command
	strayLines int    // stray lines reported since the last command start

	notes   []note
	changed bool // some command advanced; waiters must look
}

func newParser(bannerSeen bool) *parser {
	return &parser{bannerSeen: bannerSeen, cmds: make(map[uint64]*command)}
}

const (
	maxPreTail    = 4096 // flush a pre-banner line this long without newline
	maxStrayLines = 20   // stray output lines logged per stretch
	maxNoteLine   = 200
)

var bannerBytes = []byte(Banner)

// feed consumes bytes read from the guest.
func (p *parser) feed(b []byte) {
	if !p.bannerSeen {
		if b = p.feedPre(b); !p.bannerSeen {
			return
		}
	}
	p.feedPost(b)
}

// feedPre looks for the banner, which may be split across any number of
// reads, and returns whatever followed it.
func (p *parser) feedPre(b []byte) []byte {
	p.pre = append(p.pre, b...)
	if i := bytes.Index(p.pre, bannerBytes); i >= 0 {
		p.preLines(p.pre[:i], true)
		rest := p.pre[i+len(bannerBytes):]
		p.pre = nil
		p.bannerSeen = true
		p.changed = true
		return rest
	}
	// The banner holds no newline, so a banner still to come starts after
	// the last newline seen.
	if j := bytes.LastIndexByte(p.pre, '\n'); j >= 0 {
		p.preLines(p.pre[:j+1], false)
		p.pre = append(p.pre[:0], p.pre[j+1:]...)
	}
	if len(p.pre) > maxPreTail {
		k := len(p.pre) - (len(bannerBytes) - 1)
		p.preLines(p.pre[:k], true)
		p.pre = append(p.pre[:0], p.pre[k:]...)
	}
	return nil
}

func (p *parser) preLines(b []byte, partial bool) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 && !partial {
			return
		}
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+1:]
		}
		if s := strings.TrimRight(string(line), "\r"); s != "" {
			p.notes = append(p.notes, note{pre: true, text: s})
		}
	}
}

func (p *parser) feedPost(b []byte) {
	for len(b) > 0 {
		if p.inRec {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				p.rec = append(p.rec, b...)
				if len(p.rec) > maxRecord {
					p.badRecord()
				}
				return
			}
			p.rec = append(p.rec, b[:i]...)
			b = b[i+1:]
			if len(p.rec) > maxRecord {
				p.badRecord()
				continue
			}
			p.record(p.rec)
			p.rec = p.rec[:0]
			p.inRec = false
			continue
		}
		i := bytes.IndexByte(b, recMark)
		if i < 0 {
			p.data(b)
			return
		}
		p.data(b[:i])
		p.inRec = true
		b = b[i+1:]
	}
}

// badRecord handles a record that never ends: bytes were lost.
func (p *parser) badRecord() {
	if p.cur != nil {
		p.cur.corrupt("a protocol marker in the output of line %d has no end", p.cur.lineNo+1)
	} else {
		p.warnf("backdoor: damaged protocol marker from the guest: %q", truncate(p.rec))
	}
	p.rec = p.rec[:0]
	p.inRec = false
}

func (p *parser) record(r []byte) {
	if len(r) == 0 {
		p.warnf("backdoor: empty protocol marker from the guest")
		return
	}
	typ, payload := r[0], string(r[1:])
	switch typ {
	case recStart:
		id, ok := parseID(payload)
		if !ok {
			break
		}
		if c := p.cur; c != nil && !c.ended {
			c.corrupt("the end marker of the output was lost")
			p.finish(c)
		}
		p.strayLines = 0
		c := p.cmds[id]
		if c == nil {
			// A reply to a command from before (another Shell on the
			// same guest shell, before a snapshot): discard it.
			c = &command{id: id}
		}
		c.started = true
		p.cur = c
		p.changed = true
		return
	case recStatus:
		idText, statusText, found := strings.Cut(payload, " ")
		id, ok := parseID(idText)
		status, err := strconv.Atoi(statusText)
		if !found || !ok || err != nil {
			break
		}
		if c := p.cmds[id]; c != nil {
			c.hasStatus, c.status, c.statusAt = true, status, time.Now()
			p.changed = true
		}
		return
	case recEnd, recAck:
		id, ok := parseID(payload)
		if !ok {
			break
		}
		c := p.cmds[id]
		if c == nil {
			if p.cur != nil && p.cur.id == id {
				p.cur = nil
			}
			return
		}
		if typ == recEnd && !c.started {
			c.corrupt("the start marker of the output was lost")
		}
		p.finish(c)
		return
	}
	p.warnf("backdoor: unknown protocol marker from the guest: %q", truncate(r))
}

func parseID(s string) (uint64, bool) {
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil
}

// finish completes c: it validates and decodes the last line.
func (p *parser) finish(c *command) {
	if p.cur == c {
		p.cur = nil
	}
	delete(p.cmds, c.id)
	c.ended = true
	p.changed = true
	if c.err != nil || !c.want {
		return
	}
	if len(c.line) > 0 {
		c.corrupt("the output ends inside line %d (%d characters without a newline)", c.lineNo+1, len(c.line))
		return
	}
	if c.short {
		p.decodeLast(c)
	}
}

func (p *parser) decodeLast(c *command) {
	if len(c.last) == 0 || len(c.last)%4 != 0 {
		c.corrupt("the last output line (%d) has %d characters, want a positive multiple of 4", c.lineNo, len(c.last))
		return
	}
	n := len(c.out)
	c.out = grow(c.out, len(c.last)/4*3)[:n+len(c.last)/4*3]
	m, err := base64.StdEncoding.Decode(c.out[n:], c.last)
	if err != nil {
		c.corrupt("the last output line (%d) is not valid base64: %v", c.lineNo, err)
		return
	}
	c.out = c.out[:n+m]
	c.last = nil
}

// grow makes room for n more bytes, doubling the capacity so that tens
// of megabytes of output cost a couple of copies in all (append grows
// large slices by only 1.25x).
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), max(2*cap(b), len(b)+n, 4096))
	copy(nb, b)
	return nb
}

// partial returns what a command received so far, for NoStatus commands
// whose connection closed before their output ended.
func (c *command) partial() []byte {
	if c.err != nil {
		return nil
	}
	out := c.out
	for _, l := range [][]byte{c.last, c.line} {
		if len(l) > 0 && len(l)%4 == 0 {
			if d, err := base64.StdEncoding.DecodeString(string(l)); err == nil {
				out = append(out, d...)
			}
		}
	}
	return out
}

// data handles bytes outside records.
func (p *parser) data(d []byte) {
	if len(d) == 0 {
		return
	}
	c := p.cur
	if c == nil {
		p.strayData(d)
		return
	}
	if c.err != nil || !c.want {
		return
	}
	for len(d) > 0 {
		if c.short {
			c.corrupt("output line %d has %d characters (want 76) but more output follows it", c.lineNo, len(c.last))
			return
		}
		i := bytes.IndexByte(d, '\n')
		if i < 0 {
			if len(c.line)+len(d) > lineLen {
				c.corrupt("output line %d is longer than 76 characters", c.lineNo+1)
				return
			}
			c.line = append(c.line, d...)
			return
		}
		line := d[:i]
		if len(c.line) > 0 {
			c.line = append(c.line, line...)
			line = c.line
		}
		d = d[i+1:]
		c.lineNo++
		switch {
		case len(line) == lineLen:
			n := len(c.out)
			c.out = grow(c.out, lineBytes)[:n+lineBytes]
			m, err := base64.StdEncoding.Decode(c.out[n:], line)
			if err != nil || m != lineBytes {
				c.corrupt("output line %d is not valid base64 (or padded before the end)", c.lineNo)
				return
			}
		case len(line) > lineLen:
			c.corrupt("output line %d has %d characters, want 76", c.lineNo, len(line))
			return
		default:
			c.short = true
			c.last = append(c.last[:0], line...)
		}
		c.line = c.line[:0]
	}
}

// strayData reports output that belongs to no command (for example the
// output of text sent with SendRaw). Blank lines are ignored silently.
func (p *parser) strayData(d []byte) {
	for len(d) > 0 {
		i := bytes.IndexByte(d, '\n')
		if i < 0 {
			p.stray = append(p.stray, d...)
			if len(p.stray) > maxPreTail {
				p.strayLine(p.stray)
				p.stray = p.stray[:0]
			}
			return
		}
		p.stray = append(p.stray, d[:i]...)
		p.strayLine(p.stray)
		p.stray = p.stray[:0]
		d = d[i+1:]
	}
}

func (p *parser) strayLine(l []byte) {
	if len(bytes.TrimSpace(l)) == 0 {
		return
	}
	if string(bytes.TrimSpace(l)) == Banner {
		p.warnf("backdoor: the guest printed the banner again: its root shell restarted and lost the driver's set-up; commands on this Shell will not be answered (make a new Shell)")
		return
	}
	p.strayLines++
	switch {
	case p.strayLines <= maxStrayLines:
		p.warnf("backdoor: unexpected output from the guest shell outside any command: %q", truncate(l))
	case p.strayLines == maxStrayLines+1:
		p.warnf("backdoor: more unexpected output from the guest shell; not shown")
	}
}

func (p *parser) warnf(format string, args ...any) {
	p.notes = append(p.notes, note{text: fmt.Sprintf(format, args...)})
}

func truncate(b []byte) string {
	if len(b) > maxNoteLine {
		return string(b[:maxNoteLine]) + "…"
	}
	return string(b)
}
