package pycompat

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// kind classifies a token.
type kind uint8

const (
	kName    kind = iota + 1 // identifier or keyword
	kNumber                  // numeric literal
	kString                  // string or bytes literal (not f-string)
	kFString                 // f-string literal, parsed into fs
	kOp                      // operator or delimiter
	kNewline                 // end of a logical line ("\n", or "" at end of file)
	kEOF                     // end of input; its gap holds trailing blank/comment lines
	kFiller                  // no code: carries only text that must be kept (newlines, comments)
	kCode                    // synthetic code fragment that behaves as an operand, e.g. import_("json")
)

// tok is one token together with the text that precedes it (its gap:
// whitespace, comments, blank lines, backslash continuations). Emitting
// every token's gap and text in order reproduces the source; the rewrite
// edits token lists, and each token remembers where it came from so the
// output can be mapped back to the original script.
type tok struct {
	kind     kind
	text     string
	off      int  // byte offset of the token in the original (what synthetic text maps to)
	synth    bool // text is not a verbatim copy of the original at off
	gap      string
	gapOff   int
	gapSynth bool
	fs       *fstring
}

// isOp reports whether t is the operator op.
func (t *tok) isOp(op string) bool { return t != nil && t.kind == kOp && t.text == op }

// isName reports whether t is the identifier or keyword name.
func (t *tok) isName(name string) bool { return t != nil && t.kind == kName && t.text == name }

// fstring is a parsed f-string literal.
type fstring struct {
	raw   bool
	quote string // ", ', """ or '''
	parts []fpart
}

// fpart is literal text (verbatim source, escapes unprocessed, {{ and }}
// kept) or a replacement field.
type fpart struct {
	lit   string
	off   int
	field *ffield
}

// ffield is a replacement field {expr[=][!c][:spec]}.
type ffield struct {
	off     int // offset of '{'
	expr    []*tok
	debug   string // "expr=" text of a self-documenting field, with its spaces
	conv    byte   // 'r', 's', 'a' or 0
	hasSpec bool
	spec    []fpart
}

// scanner is a Python tokenizer that keeps everything between tokens.
type scanner struct {
	src        *source
	text       string
	pos        int
	depth      int
	nested     bool // inside an f-string replacement field: newlines are whitespace
	lineHasTok bool
	opens      []int // offsets of unclosed brackets
	pool       *[]tok
}

// newTok returns a zeroed token from a shared slab (tokens are many and
// small; allocating them one by one dominated the rewrite's cost).
func (s *scanner) newTok() *tok {
	if len(*s.pool) == 0 {
		*s.pool = make([]tok, 256)
	}
	t := &(*s.pool)[0]
	*s.pool = (*s.pool)[1:]
	return t
}

// python keywords, for telling calls from parenthesised expressions and
// operands from operators.
var pyKeywords = map[string]bool{
	"False": true, "None": true, "True": true, "and": true, "as": true, "assert": true,
	"async": true, "await": true, "break": true, "class": true, "continue": true,
	"def": true, "del": true, "elif": true, "else": true, "except": true, "finally": true,
	"for": true, "from": true, "global": true, "if": true, "import": true, "in": true,
	"is": true, "lambda": true, "nonlocal": true, "not": true, "or": true, "pass": true,
	"raise": true, "return": true, "try": true, "while": true, "with": true, "yield": true,
}

// operators, longest first within each length.
var ops3 = []string{"**=", "//=", ">>=", "<<=", "..."}
var ops2 = []string{"**", "//", ">>", "<<", "<=", ">=", "==", "!=", "->", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "@=", ":="}

const ops1 = "+-*/%&|^~<>()[]{},:;.=@!"

// tokenize scans the whole source into tokens; the last is kEOF.
func tokenize(src *source) []*tok {
	s := &scanner{src: src, text: src.text, pool: new([]tok)}
	toks := make([]*tok, 0, len(src.text)/4)
	for {
		t := s.next()
		toks = append(toks, t)
		if t.kind == kEOF {
			return toks
		}
	}
}

// next returns the next token.
func (s *scanner) next() *tok {
	text := s.text
	gapStart := s.pos
	for s.pos < len(text) {
		c := text[s.pos]
		switch c {
		case ' ', '\t', '\f', '\r':
			s.pos++
			continue
		case '#':
			for s.pos < len(text) && text[s.pos] != '\n' {
				s.pos++
			}
			continue
		case '\\':
			if s.pos+1 < len(text) && text[s.pos+1] == '\n' {
				s.pos += 2
				continue
			}
			s.src.syntaxf(s.pos, "unexpected character after line continuation backslash")
		case '\n':
			if s.depth == 0 && !s.nested && s.lineHasTok {
				t := s.newTok()
				*t = tok{kind: kNewline, text: "\n", off: s.pos, gap: text[gapStart:s.pos], gapOff: gapStart}
				s.pos++
				s.lineHasTok = false
				return t
			}
			s.pos++
			continue
		}
		break
	}
	gap := text[gapStart:s.pos]
	if s.pos >= len(text) {
		if s.nested {
			return &tok{kind: kEOF, off: s.pos, gap: gap, gapOff: gapStart}
		}
		if len(s.opens) > 0 {
			o := s.opens[len(s.opens)-1]
			s.src.syntaxf(o, "'%c' is never closed", text[o])
		}
		if s.lineHasTok {
			s.lineHasTok = false
			return &tok{kind: kNewline, off: s.pos, gap: gap, gapOff: gapStart}
		}
		return &tok{kind: kEOF, off: s.pos, gap: gap, gapOff: gapStart}
	}
	start := s.pos
	t := s.newTok()
	t.off, t.gap, t.gapOff = start, gap, gapStart
	s.lineHasTok = true
	c := text[start]
	switch {
	case c == '"' || c == '\'':
		s.scanString(t, start)
	case isDigit(c) || c == '.' && start+1 < len(text) && isDigit(text[start+1]):
		s.scanNumber(t)
	case c == '_' || isLetter(c) || c >= utf8.RuneSelf && isIdentRune(text[start:], true):
		s.pos = identEnd(text, start)
		if s.pos < len(text) && (text[s.pos] == '"' || text[s.pos] == '\'') && isStringPrefix(text[start:s.pos]) {
			s.scanString(t, s.pos)
			return t
		}
		t.kind, t.text = kName, text[start:s.pos]
	default:
		s.scanOp(t)
	}
	return t
}

// isIdentRune reports whether the rune at the start of text may appear in
// an identifier (first: at its start).
func isIdentRune(text string, first bool) bool {
	r, _ := utf8.DecodeRuneInString(text)
	return unicode.IsLetter(r) || !first && (unicode.IsDigit(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Pc))
}

// identEnd returns the offset just past the identifier starting at i.
func identEnd(text string, i int) int {
	for i < len(text) {
		if b := text[i]; b < utf8.RuneSelf {
			if !isLetter(b) && !isDigit(b) && b != '_' {
				break
			}
			i++
			continue
		}
		if !isIdentRune(text[i:], false) {
			break
		}
		_, n := utf8.DecodeRuneInString(text[i:])
		i += n
	}
	return i
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isHex(c byte) bool    { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// isStringPrefix reports whether p is a valid Python string prefix.
func isStringPrefix(p string) bool {
	if len(p) > 2 {
		return false
	}
	switch strings.ToLower(p) {
	case "r", "u", "b", "f", "br", "rb", "fr", "rf":
		return true
	}
	return false
}

func (s *scanner) scanOp(t *tok) {
	text := s.text[s.pos:]
	if s.nested && s.depth == 0 && text[0] == ':' {
		// In a replacement field "{x:=10}" is the spec "=10", not a walrus.
		t.kind, t.text = kOp, ":"
		s.pos++
		return
	}
	if len(text) >= 2 && strings.IndexByte("*/<>.=!-+%&|^@:", text[0]) >= 0 {
		for _, set := range [][]string{ops3, ops2} {
			for _, op := range set {
				if op[0] == text[0] && strings.HasPrefix(text, op) {
					t.kind, t.text = kOp, op
					s.pos += len(op)
					return
				}
			}
		}
	}
	c := text[0]
	if strings.IndexByte(ops1, c) < 0 {
		r, _ := utf8.DecodeRuneInString(text)
		s.src.syntaxf(s.pos, "unexpected character %q", r)
	}
	t.kind, t.text = kOp, text[:1]
	s.pos++
	switch c {
	case '(', '[', '{':
		s.depth++
		s.opens = append(s.opens, t.off)
	case ')', ']', '}':
		if s.depth == 0 {
			if s.nested {
				return // the end of a replacement field; the f-string scanner stops here
			}
			s.src.syntaxf(t.off, "unmatched '%c'", c)
		}
		o := s.text[s.opens[len(s.opens)-1]]
		if o == '(' && c != ')' || o == '[' && c != ']' || o == '{' && c != '}' {
			s.src.syntaxf(t.off, "closing '%c' does not match '%c'", c, o)
		}
		s.depth--
		s.opens = s.opens[:len(s.opens)-1]
	}
}

func (s *scanner) scanNumber(t *tok) {
	text := s.text
	i := s.pos
	if text[i] == '0' && i+1 < len(text) && strings.IndexByte("xXoObB", text[i+1]) >= 0 {
		i += 2
		for i < len(text) && (isHex(text[i]) || text[i] == '_') {
			i++
		}
	} else {
		for i < len(text) && (isDigit(text[i]) || text[i] == '_') {
			i++
		}
		if i < len(text) && text[i] == '.' {
			i++
			for i < len(text) && (isDigit(text[i]) || text[i] == '_') {
				i++
			}
		}
		if i < len(text) && (text[i] == 'e' || text[i] == 'E') {
			j := i + 1
			if j < len(text) && (text[j] == '+' || text[j] == '-') {
				j++
			}
			if j < len(text) && isDigit(text[j]) {
				i = j
				for i < len(text) && (isDigit(text[i]) || text[i] == '_') {
					i++
				}
			}
		}
		if i < len(text) && (text[i] == 'j' || text[i] == 'J') {
			i++
		}
	}
	t.kind, t.text = kNumber, text[s.pos:i]
	s.pos = i
}

// scanString scans a string literal whose prefix starts at t.off and whose
// opening quote is at q.
func (s *scanner) scanString(t *tok, q int) {
	text := s.text
	prefix := strings.ToLower(text[t.off:q])
	quote := text[q : q+1]
	if strings.HasPrefix(text[q:], strings.Repeat(quote, 3)) {
		quote = text[q : q+3]
	}
	i := q + len(quote)
	if strings.Contains(prefix, "f") {
		fs := &fstring{raw: strings.Contains(prefix, "r"), quote: quote}
		fs.parts = s.scanFParts(&i, t.off, fs.quote, fs.raw, false)
		t.kind, t.fs = kFString, fs
	} else {
		for {
			if i >= len(text) || text[i] == '\n' && len(quote) == 1 {
				s.src.syntaxf(t.off, "unterminated string literal")
			}
			if text[i] == '\\' {
				i += 2
				continue
			}
			if strings.HasPrefix(text[i:], quote) {
				i += len(quote)
				break
			}
			i++
		}
		t.kind = kString
	}
	t.text = text[t.off:i]
	s.pos = i
}

// scanFParts scans f-string literal text and replacement fields starting at
// *pi, up to the closing quote (which it consumes) or, in a format spec, up
// to the '}' that ends the field (which it does not consume).
func (s *scanner) scanFParts(pi *int, start int, quote string, raw, inSpec bool) []fpart {
	text := s.text
	i := *pi
	litStart := i
	var parts []fpart
	flush := func(end int) {
		if end > litStart {
			parts = append(parts, fpart{lit: text[litStart:end], off: litStart})
		}
	}
	for {
		if i >= len(text) || text[i] == '\n' && len(quote) == 1 {
			s.src.syntaxf(start, "unterminated f-string")
		}
		c := text[i]
		switch {
		case c == '\\':
			if i+1 < len(text) && (text[i+1] == '{' || text[i+1] == '}') {
				i++ // a backslash stays literal; the brace is handled next
				continue
			}
			if !raw && strings.HasPrefix(text[i+1:], "N{") {
				if j := strings.IndexByte(text[i:], '}'); j > 0 {
					i += j + 1
					continue
				}
			}
			i += 2
		case strings.HasPrefix(text[i:], quote):
			if inSpec {
				s.src.syntaxf(i, "f-string: expecting '}'")
			}
			flush(i)
			*pi = i + len(quote)
			return parts
		case c == '{':
			if !inSpec && i+1 < len(text) && text[i+1] == '{' {
				i += 2
				continue
			}
			flush(i)
			var f *ffield
			f, i = s.scanField(i, quote, raw)
			parts = append(parts, fpart{off: f.off, field: f})
			litStart = i
		case c == '}':
			if inSpec {
				flush(i)
				*pi = i
				return parts
			}
			if i+1 < len(text) && text[i+1] == '}' {
				i += 2
				continue
			}
			s.src.syntaxf(i, "f-string: single '}' is not allowed")
		default:
			i++
		}
	}
}

// scanField scans the replacement field whose '{' is at open and returns it
// with the offset just past its '}'.
func (s *scanner) scanField(open int, quote string, raw bool) (*ffield, int) {
	text := s.text
	sub := &scanner{src: s.src, text: text, pos: open + 1, nested: true, pool: s.pool}
	f := &ffield{off: open}
	var stop *tok
	for {
		depth := sub.depth
		t := sub.next()
		if t.kind == kEOF {
			s.src.syntaxf(open, "f-string: expecting '}'")
		}
		if depth == 0 && t.kind == kOp && (t.text == "}" || t.text == ":" || t.text == "!" || t.text == "=") {
			stop = t
			break
		}
		f.expr = append(f.expr, t)
	}
	if len(f.expr) == 0 {
		s.src.syntaxf(open, "f-string: empty expression not allowed")
	}
	k := stop.off
	if text[k] == '=' {
		k++
		for k < len(text) && text[k] == ' ' {
			k++
		}
		f.debug = text[open+1 : k]
	}
	if k < len(text) && text[k] == '!' {
		if k+1 >= len(text) || strings.IndexByte("rsa", text[k+1]) < 0 {
			s.src.syntaxf(k, "f-string: invalid conversion character: expected 's', 'r', or 'a'")
		}
		f.conv = text[k+1]
		k += 2
	}
	if k < len(text) && text[k] == ':' {
		k++
		f.hasSpec = true
		f.spec = s.scanFParts(&k, open, quote, raw, true)
	}
	if k >= len(text) || text[k] != '}' {
		s.src.syntaxf(open, "f-string: expecting '}'")
	}
	return f, k + 1
}
