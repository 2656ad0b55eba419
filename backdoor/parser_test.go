package backdoor

import (
	"errors"
	"strings"
	"testing"
)

// stream builds a guest reply as the real guest may write it.
func reply(id, status string, out []byte, statusAt int) string {
	text := string(wrapBase64(out))
	statusAt = min(statusAt, len(text))
	return "\036s" + id + "\n" + text[:statusAt] + "\036x" + id + " " + status + "\n" + text[statusAt:] + "\036e" + id + "\n"
}

func newTestParser() (*parser, *command, *command) {
	p := newParser(false)
	setup := &command{id: 5, kind: kindSetup}
	cmd := &command{id: 6, kind: kindRun, want: true}
	p.cmds[5], p.cmds[6] = setup, cmd
	return p, setup, cmd
}

// TestParserSplits feeds the same stream split at every pair of points:
// the banner, the records and the base64 lines may be cut anywhere,
// including between the banner and the bytes that follow it.
func TestParserSplits(t *testing.T) {
	out := []byte("hello\x00world, \xff this is more than one base64 line of output, for sure!!\n")
	stream := "connecting to host...\r\nboot" + Banner + "\n\036a5\n" + reply("6", "3", out, 50)
	for i := 0; i <= len(stream); i++ {
		for j := i; j <= len(stream); j += 7 {
			p, setup, cmd := newTestParser()
			p.feed([]byte(stream[:i]))
			p.feed([]byte(stream[i:j]))
			p.feed([]byte(stream[j:]))
			if !p.bannerSeen || !setup.ended || !cmd.ended || cmd.err != nil || !cmd.hasStatus || cmd.status != 3 || string(cmd.out) != string(out) {
				t.Fatalf("split %d/%d: banner %v, ack %v, ended %v, err %v, status %d, out %q",
					i, j, p.bannerSeen, setup.ended, cmd.ended, cmd.err, cmd.status, cmd.out)
			}
			var pre []string
			for _, n := range p.notes {
				if !n.pre {
					t.Fatalf("split %d/%d: unexpected warning %q", i, j, n.text)
				}
				pre = append(pre, n.text)
			}
			if strings.Join(pre, "|") != "connecting to host...|boot" {
				t.Fatalf("split %d/%d: pre-banner lines %q", i, j, pre)
			}
		}
	}
}

func TestParserByteByByte(t *testing.T) {
	out := make([]byte, 1000)
	for i := range out {
		out[i] = byte(i * 7)
	}
	stream := Banner + "\n\036a5\n" + reply("6", "0", out, 500)
	p, _, cmd := newTestParser()
	for i := range len(stream) {
		p.feed([]byte{stream[i]})
	}
	if cmd.err != nil || string(cmd.out) != string(out) {
		t.Fatalf("err %v, %d bytes", cmd.err, len(cmd.out))
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
			p.feed([]byte(Banner + "\n\036s6\n" + tc.body + "\036x6 0\n\036e6\n"))
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
	stream := Banner + "\n" + reply("6", "0", out, 1<<30)
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
		{"marker without end", "\036s6\nQUFB\n\036x6 0" + strings.Repeat("QUFB", 40) + "\n\036e6\n", "protocol marker"},
		{"end lost", "\036s6\nQUFB\n\036x6 0\n\036s7\n", "end marker"},
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
	p.feed([]byte(Banner + "\n" + reply("6", "0", []byte("ignored"), 3) + reply("99", "1", []byte("stale"), 0) + "stray text\n\n"))
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
