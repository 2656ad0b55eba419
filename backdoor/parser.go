package backdoor

import (
	"bytes"
	"encoding/base64"
	"errors"
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
	epoch  int // the guest shell it was sent to (impl.epoch)

	want      bool // the output is decoded and kept (a caller waits)
	abandoned bool // its caller gave up (ctx ended)

	started   bool
	oneLine   bool // mode c: one base64 line, checked by the byte counter
	hasStatus bool
	status    int
	statusAt  time.Time
	ended     bool
	restarted bool   // the guest shell restarted before the command ended
	ack       string // set-up only: what the ack carried after the id
	err       error  // output damaged; set at most once

	// mode w
	line   []byte // partial base64 line
	lineNo int    // complete lines seen
	short  bool   // a line shorter than 76 was seen: it must be the last
	last   []byte // that line, decoded at the end

	// mode c
	pend   []byte // fewer than 4 characters not decoded yet
	chars  int64  // base64 characters seen
	padded bool   // a group with '=' padding was decoded: it must be the last
	nl     bool   // a newline ended the line: nothing may follow

	out []byte // decoded output
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
	c.dropOutput()
}

// lost records a loss the byte counter proved. It replaces any earlier
// error: whatever else looked wrong, this is why.
func (c *command) lost(n, sent, received int64) {
	c.err = fmt.Errorf("%w: %s between guest and host (the guest's console sent %d bytes since the previous marker, the host received %d): "+
		"the host did not read the console fast enough, and QEMU's virtconsole drops what it cannot pass on instead of throttling the guest",
		ErrCorrupt, bytesLost(n), sent, received)
	c.dropOutput()
}

func bytesLost(n int64) string {
	if n == 1 {
		return "1 byte was lost"
	}
	return fmt.Sprintf("%d bytes were lost", n)
}

func (c *command) dropOutput() {
	c.out, c.line, c.last, c.pend = nil, nil, nil, nil
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
	btail      []byte // the last len(Banner)-1 bytes, to find a banner split across reads
	banners    int    // banners seen (the first and every restart)

	inRec bool
	rec   []byte
	recAt int64 // stream position of the current record's \036

	cur  *command // the command whose output is streaming
	cmds map[uint64]*command

	// Byte accounting (mode c): pos counts every byte received; the
	// guest's counter minus offset is the stream position it describes.
	pos         int64
	offset      int64
	lastMark    int64 // stream position of the marker that set offset
	baselined   bool  // offset is known
	warnedCount bool  // the "no exact checks" warning was given

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
		n := len(b)
		b = p.feedPre(b)
		p.pos += int64(n - len(b))
		if !p.bannerSeen {
			return
		}
		p.banners++
	}
	for len(b) > 0 {
		e := p.bannerEnd(b)
		if e < 0 {
			p.feedPost(b)
			return
		}
		// The banner again: the guest rebooted. Whatever of it was in an
		// earlier read has been parsed already; restart discards that.
		s := max(0, e-len(bannerBytes))
		p.feedPost(b[:s])
		p.pos += int64(e - s)
		p.restart()
		b = b[e:]
	}
}

// bannerEnd returns the index in b just past a banner that ends in b
// (it may begin in the previous read), or -1. It never holds bytes back:
// the parser must see an end marker as soon as it arrives.
func (p *parser) bannerEnd(b []byte) int {
	if t := len(p.btail); t > 0 {
		seam := append(p.btail[:t:t], b[:min(len(b), len(bannerBytes)-1)]...)
		if i := bytes.Index(seam, bannerBytes); i >= 0 {
			p.btail = p.btail[:0]
			return i + len(bannerBytes) - t
		}
	}
	if i := bytes.Index(b, bannerBytes); i >= 0 {
		p.btail = p.btail[:0]
		return i + len(bannerBytes)
	}
	keep := len(bannerBytes) - 1
	if len(b) >= keep {
		p.btail = append(p.btail[:0], b[len(b)-keep:]...)
	} else {
		p.btail = append(p.btail, b...)
		if len(p.btail) > keep {
			p.btail = append(p.btail[:0], p.btail[len(p.btail)-keep:]...)
		}
	}
	return -1
}

// restart handles a banner after the shell was up: the guest shell that
// had our commands is gone, and so is its byte counter.
func (p *parser) restart() {
	for id, c := range p.cmds {
		c.restarted, c.ended = true, true
		delete(p.cmds, id)
	}
	p.cur = nil
	p.inRec, p.rec = false, p.rec[:0]
	p.stray, p.strayLines = p.stray[:0], 0
	p.baselined = false
	p.banners++
	p.changed = true
	p.warnf("backdoor: the guest printed the banner again: its root shell restarted (the guest rebooted); commands in flight fail with ErrRestarted, and the shell is set up again")
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
				p.pos += int64(len(b))
				if len(p.rec) > maxRecord {
					p.badRecord()
				}
				return
			}
			p.rec = append(p.rec, b[:i]...)
			p.pos += int64(i + 1)
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
			p.pos += int64(len(b))
			return
		}
		p.data(b[:i])
		p.pos += int64(i)
		p.recAt = p.pos
		p.pos++
		p.inRec = true
		b = b[i+1:]
	}
}

// badRecord handles a record that never ends: bytes were lost.
func (p *parser) badRecord() {
	if p.cur != nil {
		p.cur.corrupt("a protocol marker in the output has no end")
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
	idText, arg, hasArg := strings.Cut(payload, " ")
	id, ok := parseID(idText)
	switch {
	case !ok:
	case typ == recStart:
		oneLine := arg == modeCounted
		if hasArg && !oneLine && arg != modeWrapped {
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
		c.started, c.oneLine = true, oneLine
		if arg == modeWrapped {
			p.noCounter("")
		}
		p.cur = c
		p.changed = true
		return
	case typ == recStatus:
		status, err := strconv.Atoi(arg)
		if !hasArg || err != nil {
			break
		}
		if c := p.cmds[id]; c != nil {
			c.hasStatus, c.status, c.statusAt = true, status, time.Now()
			p.changed = true
		}
		return
	case typ == recEnd:
		count := int64(-1)
		if hasArg && arg != "-" {
			n, err := strconv.ParseInt(arg, 10, 64)
			if err != nil || n < 0 {
				break
			}
			count = n
		}
		c := p.cmds[id]
		p.checkCount(c, count)
		if c == nil {
			if p.cur != nil && p.cur.id == id {
				p.cur = nil
			}
			return
		}
		if !c.started {
			c.corrupt("the start marker of the output was lost")
		}
		p.finish(c)
		return
	case typ == recAck:
		if n, err := strconv.ParseInt(arg, 10, 64); err == nil && n >= 0 {
			p.offset, p.lastMark, p.baselined = n-p.recAt, p.recAt, true
		} else {
			p.baselined = false
			if arg != "!" {
				p.noCounter(arg)
			}
		}
		if c := p.cmds[id]; c != nil {
			c.ack = arg
			p.finish(c)
		}
		return
	}
	p.warnf("backdoor: unknown protocol marker from the guest: %q", truncate(r))
}

// checkCount compares the guest's console counter at an end marker (-1:
// none) with what the host received, and moves the baseline on.
//
// The counter is read just before the marker is written, so a byte
// another guest process writes in between is in the host's count but not
// in the guest's: the offset seen at a marker is the true one minus such
// bytes. A smaller offset than before therefore proves no loss, and the
// old offset stays (taking the smaller one would make the next command
// look short); a larger one means bytes were lost.
func (p *parser) checkCount(c *command, count int64) {
	if count < 0 {
		if c != nil && c.oneLine && c.want {
			p.warnf("backdoor: command %s: the guest could no longer read its console byte counter, so this output's length is unchecked; later commands fall back to wrapped output", shortCmd(c.text))
			p.noCounter("unreadable")
		}
		p.baselined = false
		return
	}
	was, prev, known := p.offset, p.lastMark, p.baselined
	if !known {
		// The first end marker after WithoutBanner: the baseline.
		p.offset, p.lastMark, p.baselined = count-p.recAt, p.recAt, true
		return
	}
	// The guest counted count-was bytes before this record, the host
	// received recAt: the difference is the loss since the last marker.
	loss := count - was - p.recAt
	if loss < 0 {
		p.warnf("backdoor: the host received %d bytes more than the guest's console had counted when it wrote a marker; another guest process wrote to the console at that moment (harmless)", -loss)
		return
	}
	p.offset, p.lastMark = count-p.recAt, p.recAt
	if loss == 0 {
		return
	}
	sent, received := count-was-prev, p.recAt-prev
	if c != nil && c.want {
		c.lost(loss, sent, received)
		return
	}
	p.warnf("backdoor: %s between guest and host, in output nobody waits for: the host did not read the console fast enough, and QEMU's virtconsole drops what it cannot pass on", bytesLost(loss))
}

// noCounter warns, once per Shell, that output lengths are not checked
// exactly. reason is what the guest's ack said ("" if no ack was seen).
func (p *parser) noCounter(reason string) {
	if p.warnedCount {
		return
	}
	p.warnedCount = true
	const tail = "; output is checked by its line structure only, which misses a loss whose length is a multiple of 77 bytes"
	switch {
	case reason == "nodebugfs" || reason == "":
		p.warnf("backdoor: exact output-length checks are unavailable because debugfs is not mounted in the guest (no %s)%s. Fix: mount -t debugfs none /sys/kernel/debug in the guest before the backdoor shell starts", portsDir, tail)
	case strings.HasPrefix(reason, "consoles="):
		p.warnf("backdoor: exact output-length checks are unavailable because the guest's debugfs lists %s virtio console ports in %s, not exactly one%s", strings.TrimPrefix(reason, "consoles="), portsDir, tail)
	case reason == "unreadable":
		p.warnf("backdoor: exact output-length checks are unavailable because the guest cannot read bytes_sent of its console port in %s%s", portsDir, tail)
	default:
		p.warnf("backdoor: exact output-length checks are unavailable: the guest shell reported no console byte counter (%q)%s", truncate([]byte(reason)), tail)
	}
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
	if c.oneLine {
		if len(c.pend) > 0 {
			c.corrupt("the output ends inside a base64 group (%d characters left over after %d)", len(c.pend), c.chars)
		}
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
// whose connection closed (or guest restarted) before their output ended.
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
	if c.oneLine {
		c.dataOneLine(d)
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

// dataOneLine decodes mode c output: one line of base64 (a final newline
// is tolerated), decoded as it arrives in groups of 4 characters.
func (c *command) dataOneLine(d []byte) {
	if c.nl {
		c.corrupt("output continues after a newline at character %d", c.chars)
		return
	}
	if i := bytes.IndexByte(d, '\n'); i >= 0 {
		if i != len(d)-1 {
			c.corrupt("output continues after a newline at character %d", c.chars+int64(i))
			return
		}
		c.nl = true
		d = d[:i]
	}
	if len(d) == 0 {
		return
	}
	if len(c.pend) > 0 {
		k := min(4-len(c.pend), len(d))
		c.pend = append(c.pend, d[:k]...)
		d = d[k:]
		if len(c.pend) < 4 {
			return
		}
		if !c.decode(c.pend) {
			return
		}
		c.pend = c.pend[:0]
	}
	n := len(d) &^ 3
	if n > 0 && !c.decode(d[:n]) {
		return
	}
	if len(d) > n {
		if c.padded {
			c.corrupt("output continues after base64 padding at character %d", c.chars)
			return
		}
		c.pend = append(c.pend, d[n:]...)
	}
}

// decode appends the decoding of src (a multiple of 4 characters) to the
// output and reports whether it was valid.
func (c *command) decode(src []byte) bool {
	if c.padded {
		c.corrupt("output continues after base64 padding at character %d", c.chars)
		return false
	}
	want := len(src) / 4 * 3
	pad := 0
	if src[len(src)-1] == '=' {
		pad++
		if src[len(src)-2] == '=' {
			pad++
		}
	}
	if i := bytes.IndexByte(src, '='); i >= 0 && i < len(src)-pad {
		c.corrupt("output continues after base64 padding at character %d", c.chars+int64(i))
		return false
	}
	n := len(c.out)
	c.out = grow(c.out, want)[:n+want]
	m, err := base64.StdEncoding.Decode(c.out[n:], src)
	// Decode skips \r and \n; the length check catches those too.
	if err != nil || m != want-pad {
		at := c.chars
		var ce base64.CorruptInputError
		if errors.As(err, &ce) {
			at += int64(ce)
		}
		c.corrupt("the output is not valid base64 near character %d", at)
		return false
	}
	c.out = c.out[:n+m]
	c.chars += int64(len(src))
	c.padded = pad > 0
	return true
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
