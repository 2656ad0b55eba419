package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// kind is what a record is; its String is the JSON "kind".
type kind int

const (
	kindLine kind = iota
	kindSerial
	kindNestedStart
	kindNestedEnd
	kindSubtestStart
	kindSubtestEnd
	kindFailure
)

var kindNames = [...]string{
	kindLine:         "line",
	kindSerial:       "serial",
	kindNestedStart:  "nested_start",
	kindNestedEnd:    "nested_end",
	kindSubtestStart: "subtest_start",
	kindSubtestEnd:   "subtest_end",
	kindFailure:      "failure",
}

func (k kind) String() string { return kindNames[k] }

// record is one thing logged.
type record struct {
	t       time.Time
	kind    kind
	level   Level
	machine string
	msg     string
	depth   int
	dur     time.Duration
	hasDur  bool
	err     string
	failed  bool
	loc     *Location
}

// ANSI SGR sequences used for colour.
const (
	sgrReset  = "\x1b[0m"
	sgrHead   = "\x1b[1;32m" // bold bright green, like the anchor's nested
	sgrDim    = "\x1b[2m"
	sgrYellow = "\x1b[33m"
	sgrRed    = "\x1b[31m"
)

const failurePrefix = "!!! "

// appendText appends r as text lines indented by depth levels.
func appendText(b []byte, r record, depth int, color bool) []byte {
	if r.kind == kindFailure {
		return appendFailure(b, r, color)
	}
	sep, style, text := ": ", "", r.msg
	switch r.kind {
	case kindLine:
		switch r.level {
		case LevelDebug:
			style = sgrDim
		case LevelWarning:
			style, text = sgrYellow, "warning: "+text
		case LevelError:
			style, text = sgrRed, "error: "+text
		}
	case kindSerial:
		sep, style = " # ", sgrDim
	case kindNestedStart:
		style = sgrHead
	case kindSubtestStart:
		style, text = sgrHead, "subtest: "+text
	case kindNestedEnd, kindSubtestEnd:
		if r.kind == kindSubtestEnd {
			text = "subtest: " + text
		}
		verb := "finished"
		if r.failed {
			verb, style = "failed", sgrRed
		}
		text = fmt.Sprintf("(%s: %s, in %.2f seconds)", verb, text, r.dur.Seconds())
	}
	prefix := ""
	if r.machine != "" {
		prefix = r.machine + sep
	} else if r.kind == kindSerial {
		prefix = "# "
	}
	if !color {
		style = ""
	}
	indent := strings.Repeat("  ", depth)
	for _, line := range splitLines(text) {
		b = append(b, indent...)
		b = append(b, style...)
		b = append(b, prefix...)
		b = appendSanitized(b, line)
		if style != "" {
			b = append(b, sgrReset...)
		}
		b = append(b, '\n')
	}
	return b
}

// appendFailure appends r's "!!! " lines. They are not indented so they
// stand out wherever the failure happened.
func appendFailure(b []byte, r record, color bool) []byte {
	var lines []string
	if loc := r.loc; loc != nil {
		lines = append(lines, loc.String()+":")
		if src := strings.TrimRight(loc.Source, "\r\n"); src != "" {
			lines = append(lines, "    "+src)
			if loc.Col > 0 {
				lines = append(lines, "    "+caret(src, loc.Col))
			}
		}
	}
	lines = append(lines, splitLines(r.msg)...)
	for _, line := range lines {
		if color {
			b = append(b, sgrRed...)
		}
		b = append(b, failurePrefix...)
		b = appendSanitized(b, line)
		if color {
			b = append(b, sgrReset...)
		}
		b = append(b, '\n')
	}
	return b
}

// caret returns a line with "^" under rune column col (1-based) of src,
// keeping src's tabs so the caret lines up in any tab width.
func caret(src string, col int) string {
	var sb strings.Builder
	n := 0
	for _, r := range src {
		if n >= col-1 {
			break
		}
		if r == '\t' {
			sb.WriteByte('\t')
		} else {
			sb.WriteByte(' ')
		}
		n++
	}
	for ; n < col-1; n++ {
		sb.WriteByte(' ')
	}
	sb.WriteByte('^')
	return sb.String()
}

// splitLines splits s into lines, ignoring one trailing line break so a
// command's output ending in "\n" does not add an empty line.
func splitLines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	return strings.Split(s, "\n")
}

// appendSanitized appends s with terminal escape sequences removed and
// other control characters (which could corrupt a terminal, and which XML
// 1.0 forbids) written as Go-style escapes: "\x07", "\u009b". Tabs stay;
// invalid UTF-8 becomes U+FFFD. Serial consoles emit all of these.
func appendSanitized(b []byte, s string) []byte {
	if clean(s) {
		return append(b, s...)
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.TrimSuffix(s, "\r")
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b {
			i += escapeLen(s[i:])
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\t' || (r >= 0x20 && r < 0x7f) || (r > 0x9f && r != 0xfffe && r != 0xffff):
			b = append(b, s[i:i+size]...)
		case r < 0x100:
			b = fmt.Appendf(b, `\x%02x`, r)
		default:
			b = fmt.Appendf(b, `\u%04x`, r)
		}
		i += size
	}
	return b
}

// clean reports whether s needs no sanitizing.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 0x20 && c != '\t') || c == 0x7f || c >= 0x80 {
			return c >= 0x80 && cleanUTF8(s[i:])
		}
	}
	return true
}

func cleanUTF8(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if (r < 0x20 && r != '\t') || (r >= 0x7f && r <= 0x9f) || r == 0xfffe || r == 0xffff {
			return false
		}
	}
	return true
}

// escapeLen returns the length of the escape sequence at the start of s
// (s[0] is ESC): CSI "ESC [ params final", OSC "ESC ] ... BEL|ESC \", or
// ESC plus one character.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[':
		for i := 2; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
			if s[i] < 0x20 || s[i] > 0x7e {
				return i // malformed: drop what was read
			}
		}
		return len(s)
	case ']':
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	_, size := utf8.DecodeRuneInString(s[1:])
	return 1 + size
}

// jsonRecord is the JSON line schema.
type jsonRecord struct {
	Time      string   `json:"time"`
	Level     string   `json:"level"`
	Machine   string   `json:"machine,omitempty"`
	Msg       string   `json:"msg"`
	Kind      string   `json:"kind"`
	Depth     int      `json:"depth"`
	DurationS *float64 `json:"duration_s,omitempty"`
	Error     string   `json:"error,omitempty"`
	File      string   `json:"file,omitempty"`
	Line      int      `json:"line,omitempty"`
	Col       int      `json:"col,omitempty"`
	Source    string   `json:"source,omitempty"`
}

// appendJSON appends r as one JSON line. Text is not sanitized: JSON
// escapes control characters itself and consumers get the exact bytes
// (invalid UTF-8 still becomes U+FFFD).
func appendJSON(b []byte, r record) []byte {
	j := jsonRecord{
		Time:    r.t.UTC().Format(time.RFC3339Nano),
		Level:   r.level.String(),
		Machine: r.machine,
		Msg:     r.msg,
		Kind:    r.kind.String(),
		Depth:   r.depth,
		Error:   r.err,
	}
	if r.hasDur {
		d := r.dur.Seconds()
		j.DurationS = &d
	}
	if loc := r.loc; loc != nil {
		j.File, j.Line, j.Col, j.Source = loc.File, loc.Line, loc.Col, loc.Source
	}
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false) // keep "<" and "&" readable in messages
	if err := enc.Encode(j); err != nil {
		// Unreachable: jsonRecord holds only strings and numbers.
		panic(fmt.Sprintf("report: encode log record: %v", err))
	}
	return buf.Bytes()
}
