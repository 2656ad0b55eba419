package backdoor

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
)

// wire builds a guest-to-host stream as a real guest writes it, with
// the console counter values a guest that started counting at base would
// report.
type wire struct {
	b    []byte
	base int64
}

func (w *wire) add(s string) *wire {
	w.b = append(w.b, s...)
	return w
}

func (w *wire) counter() string { return strconv.FormatInt(w.base+int64(len(w.b)), 10) }

func (w *wire) ack(id string) *wire { return w.add("\036a" + id + " " + w.counter() + "\n") }

// reply adds a counted reply (mode c) whose status marker lands at
// statusAt in the base64 text.
func (w *wire) reply(id, status string, out []byte, statusAt int) *wire {
	text := base64.StdEncoding.EncodeToString(out)
	statusAt = min(statusAt, len(text))
	w.add("\036s" + id + " c\n" + text[:statusAt] + "\036x" + id + " " + status + "\n" + text[statusAt:])
	return w.add("\036e" + id + " " + w.counter() + "\n")
}

func (w *wire) String() string { return string(w.b) }

// wrappedReply is a reply in mode w (no counter).
func wrappedReply(id, status string, out []byte, statusAt int) string {
	text := string(wrapBase64(out))
	statusAt = min(statusAt, len(text))
	return "\036s" + id + " w\n" + text[:statusAt] + "\036x" + id + " " + status + "\n" + text[statusAt:] + "\036e" + id + "\n"
}

func newTestParser() (*parser, *command, *command) {
	p := newParser(false)
	setup := &command{id: 5, kind: kindSetup}
	cmd := &command{id: 6, kind: kindRun, want: true}
	p.cmds[5], p.cmds[6] = setup, cmd
	return p, setup, cmd
}

// TestParserSplits feeds the same stream split at every pair of points:
// the banner, the records and the base64 text may be cut anywhere,
// including between the banner and the bytes that follow it.
func TestParserSplits(t *testing.T) {
	out := []byte("hello\x00world, \xff this is more than one base64 line of output, for sure!!\n")
	for _, mode := range []string{modeCounted, modeWrapped} {
		w := &wire{base: 777}
		w.add("connecting to host...\r\nboot" + Banner + "\n")
		if mode == modeCounted {
			w.ack("5").reply("6", "3", out, 50)
		} else {
			w.add("\036a5 nodebugfs\n" + wrappedReply("6", "3", out, 50))
		}
		stream := w.String()
		for i := 0; i <= len(stream); i++ {
			for j := i; j <= len(stream); j += 7 {
				p, setup, cmd := newTestParser()
				p.feed([]byte(stream[:i]))
				p.feed([]byte(stream[i:j]))
				p.feed([]byte(stream[j:]))
				if !p.bannerSeen || !setup.ended || !cmd.ended || cmd.err != nil || !cmd.hasStatus || cmd.status != 3 || string(cmd.out) != string(out) || cmd.oneLine != (mode == modeCounted) {
					t.Fatalf("mode %s, split %d/%d: banner %v, ack %v, ended %v, err %v, status %d, out %q",
						mode, i, j, p.bannerSeen, setup.ended, cmd.ended, cmd.err, cmd.status, cmd.out)
				}
				var pre, warnings []string
				for _, n := range p.notes {
					if n.pre {
						pre = append(pre, n.text)
					} else {
						warnings = append(warnings, n.text)
					}
				}
				if strings.Join(pre, "|") != "connecting to host...|boot" {
					t.Fatalf("mode %s, split %d/%d: pre-banner lines %q", mode, i, j, pre)
				}
				wantWarn := 0
				if mode == modeWrapped {
					wantWarn = 1 // no exact checks; once
				}
				if len(warnings) != wantWarn {
					t.Fatalf("mode %s, split %d/%d: warnings %q", mode, i, j, warnings)
				}
			}
		}
	}
}

func TestParserByteByByte(t *testing.T) {
	out := make([]byte, 1000)
	for i := range out {
		out[i] = byte(i * 7)
	}
	w := (&wire{}).add(Banner+"\n").ack("5").reply("6", "0", out, 501)
	stream := w.String()
	p, _, cmd := newTestParser()
	for i := range len(stream) {
		p.feed([]byte{stream[i]})
	}
	if cmd.err != nil || string(cmd.out) != string(out) {
		t.Fatalf("err %v, %d bytes", cmd.err, len(cmd.out))
	}
}

// TestParserCounts checks the byte accounting: losses of any size are
// named, surplus bytes only warn, and every check sets a new baseline.
func TestParserCounts(t *testing.T) {
	out := make([]byte, 100000)
	for i := range out {
		out[i] = byte(i*31 + i>>8)
	}
	tests := []struct {
		name     string
		cut, n   int // drop n bytes at offset cut of the first reply
		extra    int // bytes added to the first end marker's count
		wantErr  string
		wantWarn string
	}{
		{name: "intact"},
		{name: "1 byte dropped", cut: 1000, n: 1, wantErr: "1 byte was lost between guest and host (the guest's console sent"},
		{name: "77 bytes dropped", cut: 1000, n: 77, wantErr: "77 bytes were lost"},
		{name: "4096 bytes dropped", cut: 5000, n: 4096, wantErr: "4096 bytes were lost"},
		{name: "a whole line's worth, 4 aligned", cut: 400, n: 76 * 77 * 4, wantErr: "23408 bytes were lost"},
		{name: "host got more than the guest counted", extra: -10, wantWarn: "received 10 bytes more"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := (&wire{base: 1 << 40}).add(Banner + "\n").ack("5")
			start := len(w.b)
			w.reply("6", "0", out, 70000)
			first := w.String()
			if tc.extra != 0 {
				// Rewrite the end marker's count.
				i := strings.LastIndex(first, "\036e6 ")
				n, _ := strconv.ParseInt(strings.TrimSpace(first[i+4:]), 10, 64)
				first = first[:i] + "\036e6 " + strconv.FormatInt(n+int64(tc.extra), 10) + "\n"
			}
			if tc.n > 0 {
				at := start + 20 + tc.cut
				first = first[:at] + first[at+tc.n:]
			}
			// A second command: it must check out whatever happened to
			// the first (the baseline moved on).
			w2 := &wire{base: 1<<40 + int64(len(w.b))}
			w2.reply("7", "0", []byte("next"), 2)
			p, _, cmd := newTestParser()
			cmd2 := &command{id: 7, kind: kindRun, want: true}
			p.cmds[7] = cmd2
			p.feed([]byte(first))
			p.feed(w2.b)
			switch {
			case tc.wantErr == "" && (cmd.err != nil || string(cmd.out) != string(out)):
				t.Fatalf("err %v, %d bytes", cmd.err, len(cmd.out))
			case tc.wantErr != "" && (!errors.Is(cmd.err, ErrCorrupt) || !strings.Contains(cmd.err.Error(), tc.wantErr) || cmd.out != nil):
				t.Fatalf("err %v, want ErrCorrupt containing %q", cmd.err, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(cmd.err.Error(), "QEMU's virtconsole drops"):
				t.Fatalf("err %v does not say why", cmd.err)
			case cmd2.err != nil || string(cmd2.out) != "next":
				t.Fatalf("next command: err %v, out %q", cmd2.err, cmd2.out)
			}
			var warnings []string
			for _, n := range p.notes {
				warnings = append(warnings, n.text)
			}
			if got := strings.Join(warnings, "\n"); (tc.wantWarn == "") != (got == "") || !strings.Contains(got, tc.wantWarn) {
				t.Fatalf("warnings %q, want %q", got, tc.wantWarn)
			}
		})
	}
}

// TestParserBaselineFromEnd: without an ack (WithoutBanner, no WaitReady)
// the first end marker is the baseline, and the second is checked.
func TestParserBaselineFromEnd(t *testing.T) {
	w := &wire{base: 123456}
	w.reply("6", "0", []byte("first"), 3)
	w.reply("7", "0", make([]byte, 10000), 5000)
	stream := w.String()
	cut := strings.Index(stream, "\036s7")
	lossy := stream[:cut+100] + stream[cut+101:]
	p := newParser(true)
	c6 := &command{id: 6, kind: kindRun, want: true}
	c7 := &command{id: 7, kind: kindRun, want: true}
	p.cmds[6], p.cmds[7] = c6, c7
	p.feed([]byte(lossy))
	if c6.err != nil || string(c6.out) != "first" {
		t.Fatalf("first command: err %v, out %q", c6.err, c6.out)
	}
	if !errors.Is(c7.err, ErrCorrupt) || !strings.Contains(c7.err.Error(), "1 byte was lost") {
		t.Fatalf("second command: err %v, want the lost byte", c7.err)
	}
}

// TestParserOneLine checks mode c decoding on its own (the counter
// agrees: the damage is in the text).
func TestParserOneLine(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"empty", "", ""},
		{"one group", "QUFB", "AAA"},
		{"padded", "QUE=", "AA"},
		{"final newline tolerated", "QUFBQQ==\n", "AAAA"},
		{"not a multiple of 4", "QUFBQ", "ends inside a base64 group"},
		{"padding in the middle", "QUE=QUFB", "after base64 padding"},
		{"newline in the middle", "QUFB\nQUFB", "after a newline"},
		{"wrapped text", strings.Repeat("A", 76) + "\n" + "QUFB", "after a newline"},
		{"bad character", "QU*B", "not valid base64"},
		{"carriage return", "QUF\rBQUFB", "not valid base64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Every split of the body, to cross group boundaries.
			for i := 0; i <= len(tc.body); i++ {
				p, _, cmd := newTestParser()
				p.feed([]byte(Banner + "\n\036s6 c\n" + tc.body[:i]))
				p.feed([]byte(tc.body[i:] + "\036x6 0\n\036e6 -\n"))
				want, isErr := tc.want, strings.Contains(tc.want, " ")
				switch {
				case !cmd.ended:
					t.Fatalf("split %d: not ended", i)
				case isErr && (!errors.Is(cmd.err, ErrCorrupt) || !strings.Contains(cmd.err.Error(), want)):
					t.Fatalf("split %d: err %v, want ErrCorrupt containing %q", i, cmd.err, want)
				case !isErr && (cmd.err != nil || string(cmd.out) != want):
					t.Fatalf("split %d: err %v, out %q, want %q", i, cmd.err, cmd.out, want)
				}
			}
		})
	}
}

// TestParserRestart: the banner again, split anywhere (even inside an
// unfinished marker), fails the commands in flight and is counted.
func TestParserRestart(t *testing.T) {
	w := (&wire{}).add("boot\n" + Banner + "\n").ack("5")
	w.add("\036s6 c\nQUFB\036x6 0") // the old shell dies mid-marker
	w.add("\r\nnew kernel\n" + Banner + "\n")
	w.add("\036a9 42\n")
	stream := w.String()
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j += 5 {
			p, setup, cmd := newTestParser()
			p.feed([]byte(stream[:i]))
			p.feed([]byte(stream[i:j]))
			p.feed([]byte(stream[j:]))
			if p.banners != 2 || !setup.ended || setup.restarted || !cmd.ended || !cmd.restarted || len(p.cmds) != 0 || !p.baselined || p.offset != 42-p.recAt {
				t.Fatalf("split %d/%d: banners %d, setup %+v, cmd %+v, %d commands left, baselined %v",
					i, j, p.banners, setup, cmd, len(p.cmds), p.baselined)
			}
			for _, n := range p.notes {
				// The marker the old shell was writing is damaged.
				if !n.pre && !strings.Contains(n.text, "banner again") && !strings.Contains(n.text, "new kernel") && !strings.Contains(n.text, "unknown protocol marker") {
					t.Fatalf("split %d/%d: unexpected warning %q", i, j, n.text)
				}
			}
		}
	}
}

func TestParserCorrupt(t *testing.T) {
	full := strings.Repeat("A", 76) + "\n"
	tests := []struct {
		name, body, want string
	}{
		{"line too long", full[:40] + full, "line 1 has 116 characters"},
		{"short line in the middle", full + full[:40] + "\n" + full, "line 2 has 40 characters (want 76) but more output follows"},
		{"last not a multiple of 4", full + "AAAAA\n", "last output line (2) has 5 characters"},
		{"no final newline", full + "AAAA", "ends inside line 2"},
		{"empty line", full + "\n" + full, "line 2 has 0 characters"},
		{"padding in the middle", strings.Repeat("A", 72) + "AA==\n" + full, "not valid base64"},
		{"bad characters", strings.Repeat("*", 76) + "\n", "not valid base64"},
		{"long line without newline", strings.Repeat("A", 100), "longer than 76"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, cmd := newTestParser()
			p.feed([]byte(Banner + "\n\036s6 w\n" + tc.body + "\036x6 0\n\036e6\n"))
			if !cmd.ended || !errors.Is(cmd.err, ErrCorrupt) || !strings.Contains(cmd.err.Error(), tc.want) {
				t.Fatalf("ended %v, err %v; want ErrCorrupt containing %q", cmd.ended, cmd.err, tc.want)
			}
			if !strings.Contains(cmd.err.Error(), "lost between guest and host") {
				t.Fatalf("error does not explain the cause: %v", cmd.err)
			}
		})
	}
}

// TestParserDroppedPages drops n 4 KiB pages from a long reply: any n
// below 77 must be detected.
func TestParserDroppedPages(t *testing.T) {
	out := make([]byte, 1<<20)
	for i := range out {
		out[i] = byte(i*31 + i>>8)
	}
	stream := Banner + "\n" + wrappedReply("6", "0", out, 1<<30)
	for _, n := range []int{1, 2, 3, 10, 76} {
		from := 5000 + n*333
		lossy := stream[:from] + stream[from+n*4096:]
		p, _, cmd := newTestParser()
		p.feed([]byte(lossy))
		if !errors.Is(cmd.err, ErrCorrupt) {
			t.Errorf("%d pages dropped: err %v", n, cmd.err)
		}
	}
}

func TestParserLostMarkers(t *testing.T) {
	tests := []struct {
		name, stream, want string
	}{
		{"start lost", "QUFB\n\036x6 0\n\036e6\n", "start marker"},
		{"marker without end", "\036s6 w\nQUFB\n\036x6 0" + strings.Repeat("QUFB", 40) + "\n\036e6\n", "protocol marker"},
		{"marker without end, one line", "\036s6 c\nQUFB\036x6 0" + strings.Repeat("QUFB", 40) + "\n\036e6 -\n", "protocol marker"},
		{"end lost", "\036s6 w\nQUFB\n\036x6 0\n\036s7 w\n", "end marker"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _, cmd := newTestParser()
			p.feed([]byte(Banner + "\n" + tc.stream))
			if !cmd.ended || !errors.Is(cmd.err, ErrCorrupt) || !strings.Contains(cmd.err.Error(), tc.want) {
				t.Fatalf("ended %v, err %v; want ErrCorrupt about the %s", cmd.ended, cmd.err, tc.want)
			}
		})
	}
}

func TestParserDiscards(t *testing.T) {
	p, _, cmd := newTestParser()
	cmd.want = false // abandoned
	w := (&wire{}).add(Banner+"\n").reply("6", "0", []byte("ignored"), 3).reply("99", "1", []byte("stale"), 0).add("stray text\n\n")
	p.feed(w.b)
	if !cmd.ended || cmd.out != nil || cmd.err != nil {
		t.Fatalf("abandoned command: ended %v, out %q, err %v", cmd.ended, cmd.out, cmd.err)
	}
	if len(p.cmds) != 1 { // the setup command stays
		t.Fatalf("%d commands left", len(p.cmds))
	}
	if len(p.notes) != 1 || !strings.Contains(p.notes[0].text, "stray text") {
		t.Fatalf("notes %+v, want one warning about the stray text", p.notes)
	}
}

func TestParserLongPreBanner(t *testing.T) {
	p := newParser(false)
	junk := strings.Repeat("x", 10000)
	for i := 0; i < len(junk); i += 1000 {
		p.feed([]byte(junk[i : i+1000]))
	}
	p.feed([]byte(Banner[:5]))
	p.feed([]byte(Banner[5:] + "\n"))
	if !p.bannerSeen || len(p.pre) != 0 {
		t.Fatalf("banner %v, %d bytes kept", p.bannerSeen, len(p.pre))
	}
	total := 0
	for _, n := range p.notes {
		total += len(n.text)
	}
	if total != len(junk) {
		t.Fatalf("pre-banner notes hold %d bytes, want %d", total, len(junk))
	}
}

func TestFrameQuoting(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"''", `''\'''\'''`},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := frame(7, "x", 0); got != "__vmd 7 'x'\n" {
		t.Errorf("frame = %q", got)
	}
	if got := frame(7, "x", 1500*1e6); got != "__vmdt 7 1.5 'x'\n" {
		t.Errorf("frame with timeout = %q", got)
	}
	if got := formatSeconds(1); got != "0.001" {
		t.Errorf("formatSeconds(1ns) = %s", got)
	}
}
