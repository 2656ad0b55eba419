package modules

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUnsupportedPattern is wrapped by errors for Python regular expression
// syntax that Go's RE2 engine cannot run (backreferences, lookaround, ...).
var ErrUnsupportedPattern = errors.New("not supported by RE2")

// Python's re flag values.
const (
	reIgnoreCase = 2
	reLocale     = 4
	reMultiline  = 8
	reDotAll     = 16
	reUnicode    = 32
	reVerbose    = 64
	reASCII      = 256
)

// eolGroupPrefix names the capture groups that stand for Python's
// non-MULTILINE `$` (see translatePattern). User group names may not use it.
const eolGroupPrefix = "__vmd_eol"

// Unicode versions of \d, \w, \s, as Python's str patterns have them.
const (
	uniDigit = `\p{Nd}`
	uniWord  = `\p{L}\p{N}_`
	uniSpace = `\t\n\v\f\r \x{1c}-\x{1f}\x{85}\p{Z}`
)

// translatePattern rewrites a Python regular expression into Go regexp syntax.
//
// Differences handled:
//   - flags: re.I/M/S become (?i)(?m)(?s); re.X (verbose) is applied here by
//     dropping whitespace and comments; re.A keeps Go's ASCII classes. Leading
//     inline flags (?aiLmsux) are taken as global flags, as Python does.
//   - \d \w \s (and \D \W \S outside classes) match Unicode, as in Python;
//     \s includes \v.
//   - \Z becomes \z; \uXXXX, \UXXXXXXXX, \xHH and octal escapes become \x{...};
//     [\b] is a backspace; {,n} becomes {0,n}; (?#...) comments are dropped.
//   - `$` outside MULTILINE mode also matches before a newline that ends the
//     string. RE2 has no lookahead, so it becomes a capture group (\n?\z) named
//     eolGroupPrefix+N; the matcher moves match ends back over that newline.
//   - backreferences, lookahead/lookbehind, conditionals, atomic groups and
//     \N{...} are rejected with ErrUnsupportedPattern.
func translatePattern(pat string, flags int) (string, error) {
	t := &reTranslator{src: pat, flags: flags}
	if err := t.run(); err != nil {
		return "", err
	}
	var prefix strings.Builder
	if t.flags&reIgnoreCase != 0 {
		prefix.WriteString("(?i)")
	}
	if t.flags&reMultiline != 0 {
		prefix.WriteString("(?m)")
	}
	if t.flags&reDotAll != 0 {
		prefix.WriteString("(?s)")
	}
	return prefix.String() + t.out.String(), nil
}

type reTranslator struct {
	src   string
	pos   int
	flags int
	out   strings.Builder
	eols  int
	// multiline stack: one entry per open group, the MULTILINE state inside it.
	ml []bool
}

func (t *reTranslator) errorf(format string, args ...any) error {
	return fmt.Errorf("%s at position %d", fmt.Sprintf(format, args...), t.pos)
}

func (t *reTranslator) unsupported(what string) error {
	return fmt.Errorf("%s is %w (Go regexp)", what, ErrUnsupportedPattern)
}

func (t *reTranslator) peek() (rune, int) {
	if t.pos >= len(t.src) {
		return -1, 0
	}
	return utf8.DecodeRuneInString(t.src[t.pos:])
}

func (t *reTranslator) multiline() bool {
	if n := len(t.ml); n > 0 {
		return t.ml[n-1]
	}
	return t.flags&reMultiline != 0
}

func (t *reTranslator) verbose() bool { return t.flags&reVerbose != 0 }
func (t *reTranslator) ascii() bool   { return t.flags&reASCII != 0 }

func (t *reTranslator) run() error {
	// Leading global flags: (?aiLmsux), possibly several.
	for strings.HasPrefix(t.src[t.pos:], "(?") {
		end := strings.IndexByte(t.src[t.pos:], ')')
		if end < 0 {
			break
		}
		letters := t.src[t.pos+2 : t.pos+end]
		f, ok := inlineFlags(letters)
		if !ok || letters == "" {
			break
		}
		t.flags |= f
		t.pos += end + 1
	}
	atStart := t.pos
	for t.pos < len(t.src) {
		c, size := t.peek()
		switch {
		case c == '\\':
			if err := t.escape(false); err != nil {
				return err
			}
		case c == '[':
			if err := t.class(); err != nil {
				return err
			}
		case c == '(':
			if err := t.group(atStart); err != nil {
				return err
			}
		case c == ')':
			if len(t.ml) > 0 {
				t.ml = t.ml[:len(t.ml)-1]
			}
			t.out.WriteByte(')')
			t.pos++
		case c == '$':
			t.pos++
			if t.multiline() {
				t.out.WriteByte('$')
			} else {
				fmt.Fprintf(&t.out, `(?P<%s%d>\n?\z)`, eolGroupPrefix, t.eols)
				t.eols++
			}
		case c == '{':
			// Python reads {,n} as {0,n}; Go would take it literally.
			if rest := t.src[t.pos+1:]; strings.HasPrefix(rest, ",") {
				if end := strings.IndexByte(rest, '}'); end > 1 && isDigits(rest[1:end]) {
					t.out.WriteString("{0" + rest[:end+1])
					t.pos += end + 2
					continue
				}
			}
			t.out.WriteByte('{')
			t.pos++
		case t.verbose() && (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'):
			t.pos += size
		case t.verbose() && c == '#':
			if nl := strings.IndexByte(t.src[t.pos:], '\n'); nl >= 0 {
				t.pos += nl + 1
			} else {
				t.pos = len(t.src)
			}
		default:
			t.out.WriteString(t.src[t.pos : t.pos+size])
			t.pos += size
		}
	}
	return nil
}

// inlineFlags parses Python inline flag letters.
func inlineFlags(letters string) (int, bool) {
	f := 0
	for _, c := range letters {
		switch c {
		case 'a':
			f |= reASCII
		case 'i':
			f |= reIgnoreCase
		case 'L':
			f |= reLocale
		case 'm':
			f |= reMultiline
		case 's':
			f |= reDotAll
		case 'u':
			f |= reUnicode
		case 'x':
			f |= reVerbose
		default:
			return 0, false
		}
	}
	return f, true
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// group translates an opening parenthesis and its (?...) extension.
func (t *reTranslator) group(atStart int) error {
	rest := t.src[t.pos:]
	push := func() { t.ml = append(t.ml, t.multiline()) }
	switch {
	case !strings.HasPrefix(rest, "(?"):
		push()
		t.out.WriteByte('(')
		t.pos++
	case strings.HasPrefix(rest, "(?:"):
		push()
		t.out.WriteString("(?:")
		t.pos += 3
	case strings.HasPrefix(rest, "(?P<"), strings.HasPrefix(rest, "(?<") && !strings.HasPrefix(rest, "(?<=") && !strings.HasPrefix(rest, "(?<!"):
		open := "(?P<"
		if !strings.HasPrefix(rest, open) {
			open = "(?<"
		}
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			return t.errorf("missing >, unterminated name")
		}
		name := rest[len(open):end]
		if strings.HasPrefix(name, eolGroupPrefix) {
			return t.errorf("group name %q is reserved", name)
		}
		push()
		t.out.WriteString("(?P<" + name + ">")
		t.pos += end + 1
	case strings.HasPrefix(rest, "(?P="):
		return t.unsupported("the backreference " + upTo(rest, ')'))
	case strings.HasPrefix(rest, "(?="), strings.HasPrefix(rest, "(?!"):
		return t.unsupported("lookahead " + rest[:3])
	case strings.HasPrefix(rest, "(?<=") || strings.HasPrefix(rest, "(?<!"):
		return t.unsupported("lookbehind " + rest[:4])
	case strings.HasPrefix(rest, "(?>"):
		return t.unsupported("the atomic group (?>")
	case strings.HasPrefix(rest, "(?("):
		return t.unsupported("the conditional group (?(")
	case strings.HasPrefix(rest, "(?#"):
		end := strings.IndexByte(rest, ')')
		if end < 0 {
			return t.errorf("missing ), unterminated comment")
		}
		t.pos += end + 1
	default:
		// (?flags) or (?flags-flags:...)
		end := strings.IndexAny(rest, ":)")
		if end < 0 {
			return t.errorf("missing ), unterminated group flags")
		}
		on, off, _ := strings.Cut(rest[2:end], "-")
		fOn, ok1 := inlineFlags(on)
		fOff, ok2 := inlineFlags(off)
		if !ok1 || !ok2 || on+off == "" {
			return t.errorf("unknown extension %s", upTo(rest, ')'))
		}
		if rest[end] == ')' {
			if t.pos != atStart {
				return t.errorf("global flags not at the start of the expression")
			}
			t.flags |= fOn
			t.pos += end + 1
			return nil
		}
		if (fOn|fOff)&reVerbose != 0 {
			return t.unsupported("a scoped verbose flag (?x:...)")
		}
		ml := t.multiline()
		if fOn&reMultiline != 0 {
			ml = true
		}
		if fOff&reMultiline != 0 {
			ml = false
		}
		t.ml = append(t.ml, ml)
		goOn, goOff := goFlags(fOn), goFlags(fOff)
		switch {
		case goOn == "" && goOff == "":
			t.out.WriteString("(?:")
		case goOff == "":
			t.out.WriteString("(?" + goOn + ":")
		default:
			t.out.WriteString("(?" + goOn + "-" + goOff + ":")
		}
		t.pos += end + 1
	}
	return nil
}

func upTo(s string, c byte) string {
	if i := strings.IndexByte(s, c); i >= 0 {
		return s[:i+1]
	}
	return s
}

// goFlags keeps the flags Go understands (i, m, s); a, u and L only change
// class semantics, which this translation handles globally.
func goFlags(f int) string {
	var b strings.Builder
	if f&reIgnoreCase != 0 {
		b.WriteByte('i')
	}
	if f&reMultiline != 0 {
		b.WriteByte('m')
	}
	if f&reDotAll != 0 {
		b.WriteByte('s')
	}
	return b.String()
}

// escape translates a backslash escape at t.pos, inside a character class or not.
func (t *reTranslator) escape(inClass bool) error {
	t.pos++ // the backslash
	c, size := t.peek()
	if c < 0 {
		return t.errorf("bad escape (end of pattern)")
	}
	t.pos += size
	w := &t.out
	switch c {
	case 'd':
		w.WriteString(t.classEscape(inClass, `\d`, uniDigit))
	case 'w':
		w.WriteString(t.classEscape(inClass, `\w`, uniWord))
	case 's':
		w.WriteString(t.classEscape(inClass, `\s\v`, uniSpace))
	case 'D':
		if t.ascii() {
			w.WriteString(`\D`)
		} else {
			w.WriteString(`\P{Nd}`)
		}
	case 'W':
		if t.ascii() || inClass {
			// A negated Unicode set cannot go inside a set: Go's ASCII \W there.
			w.WriteString(`\W`)
		} else {
			w.WriteString(`[^` + uniWord + `]`)
		}
	case 'S':
		switch {
		case inClass:
			w.WriteString(`\S`)
		case t.ascii():
			w.WriteString(`[^\s\v]`)
		default:
			w.WriteString(`[^` + uniSpace + `]`)
		}
	case 'A', 'z':
		if inClass {
			return t.errorf(`bad escape \%c`, c)
		}
		w.WriteString(`\` + string(c))
	case 'Z':
		if inClass {
			return t.errorf(`bad escape \Z`)
		}
		w.WriteString(`\z`)
	case 'b':
		if inClass {
			w.WriteString(`\x08`)
		} else {
			w.WriteString(`\b`)
		}
	case 'B':
		if inClass {
			return t.errorf(`bad escape \B`)
		}
		w.WriteString(`\B`)
	case 'a', 'f', 'n', 'r', 't', 'v':
		w.WriteString(`\` + string(c))
	case 'x', 'u', 'U':
		n := map[rune]int{'x': 2, 'u': 4, 'U': 8}[c]
		if t.pos+n > len(t.src) || !isHex(t.src[t.pos:t.pos+n]) {
			return t.errorf(`incomplete escape \%c`, c)
		}
		v, _ := strconv.ParseUint(t.src[t.pos:t.pos+n], 16, 32)
		if v > utf8.MaxRune {
			return t.errorf(`bad escape \%c%s`, c, t.src[t.pos:t.pos+n])
		}
		fmt.Fprintf(w, `\x{%x}`, v)
		t.pos += n
	case 'N':
		return t.unsupported(`the named character escape \N{...}`)
	case '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		// Octal if it starts with 0, or inside a class, or is three octal digits;
		// otherwise a backreference.
		digits := string(c)
		for len(digits) < 3 && t.pos < len(t.src) && t.src[t.pos] >= '0' && t.src[t.pos] <= '7' {
			digits += t.src[t.pos : t.pos+1]
			t.pos++
		}
		octal := c == '0' || len(digits) == 3
		if inClass && c <= '7' {
			octal = true
		}
		if !octal || strings.ContainsAny(digits, "89") {
			if inClass {
				return t.errorf(`bad escape \%s`, digits)
			}
			return t.unsupported(`the backreference \` + digits)
		}
		v, _ := strconv.ParseUint(digits, 8, 32)
		if v > 0o377 {
			return t.errorf(`octal escape value \%s outside of range 0-0o377`, digits)
		}
		fmt.Fprintf(w, `\x{%x}`, v)
	default:
		if c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return t.errorf(`bad escape \%c`, c)
		}
		// Any other escaped character stands for itself.
		w.WriteString(quoteRegexpRune(c))
	}
	return nil
}

// classEscape returns the translation of \d \w \s: the ASCII form under re.ASCII,
// else the Unicode set, bracketed outside a character class.
func (t *reTranslator) classEscape(inClass bool, ascii, uni string) string {
	if t.ascii() {
		if inClass || !strings.Contains(ascii, `\v`) {
			return ascii
		}
		return "[" + ascii + "]"
	}
	if inClass {
		return uni
	}
	return "[" + uni + "]"
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// quoteRegexpRune returns c as a Go regexp literal, usable in and out of classes.
func quoteRegexpRune(c rune) string {
	if c < utf8.RuneSelf && strings.ContainsRune(`\.+*?()|[]{}^$-&~#`, c) {
		return `\` + string(c)
	}
	if c < 0x20 || c == 0x7f {
		return fmt.Sprintf(`\x{%x}`, c)
	}
	return string(c)
}

// class translates a character class starting at t.pos ('[').
func (t *reTranslator) class() error {
	start := t.pos
	t.pos++
	t.out.WriteByte('[')
	if t.pos < len(t.src) && t.src[t.pos] == '^' {
		t.out.WriteByte('^')
		t.pos++
	}
	first := true
	for {
		c, size := t.peek()
		switch {
		case c < 0:
			t.pos = start
			return t.errorf("unterminated character set")
		case c == ']' && !first:
			t.out.WriteByte(']')
			t.pos++
			return nil
		case c == ']' || c == '[':
			t.out.WriteString(`\` + string(c))
			t.pos++
		case c == '\\':
			if err := t.escape(true); err != nil {
				return err
			}
		default:
			t.out.WriteString(t.src[t.pos : t.pos+size])
			t.pos += size
		}
		first = false
	}
}

// CheckPattern reports whether pattern, a Python regular expression, can
// run here: an error wrapping ErrUnsupportedPattern names what RE2 lacks
// (backreferences, lookaround, ...); any other error is a malformed
// pattern.
func CheckPattern(pattern string) error {
	_, err := translatePattern(pattern, 0)
	return err
}
