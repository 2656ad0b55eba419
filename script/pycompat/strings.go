package pycompat

import (
	"fmt"
	"strings"
)

// fixString rewrites a (non-f) string literal in place: the prefix is
// normalised to what Starlark accepts (r, b, rb; u is dropped) and, unless
// the literal is raw, escapes are given their Python meaning (fixEscapes).
func (r *rewriter) fixString(t *tok) {
	q := strings.IndexAny(t.text, `"'`)
	prefix := t.text[:q]
	lower := strings.ToLower(prefix)
	raw, isBytes := strings.Contains(lower, "r"), strings.Contains(lower, "b")
	newPrefix := ""
	if raw {
		newPrefix = "r"
	}
	if isBytes {
		newPrefix += "b"
	}
	body := t.text[q:]
	n := 1
	if len(body) >= 6 && body[1] == body[0] && body[2] == body[0] {
		n = 3
	}
	inner := body[n : len(body)-n]
	changed := newPrefix != prefix
	if !raw {
		var c bool
		inner, c = r.fixEscapes(inner, isBytes, t.off+q+n)
		changed = changed || c
	}
	if changed {
		t.text = newPrefix + body[:n] + inner + body[len(body)-n:]
		t.synth = true
	}
}

// fixEscapes rewrites the backslash escapes of a non-raw literal body
// (source text between the quotes, at offset off) so that Starlark reads
// the same value Python does:
//
//   - escapes Python does not know (\@, \$, \., \d, ...) keep their
//     backslash in Python; Starlark rejects them, so the backslash is doubled;
//   - \xHH above 0x7f and octal escapes above 0o177 in str literals mean
//     the code point U+00HH (Python); Starlark wants \u00HH;
//   - in bytes literals \u, \U and \N are not escapes in Python: doubled;
//   - \N{NAME} in str literals has no Starlark equivalent and no name table
//     here: it is reported as an error (use \uXXXX).
//
// \a \b \f \v \n \r \t \\ \' \" \ooo \xHH \uXXXX \UXXXXXXXX and
// backslash-newline mean the same in both languages and are kept.
func (r *rewriter) fixEscapes(s string, isBytes bool, off int) (string, bool) {
	if strings.IndexByte(s, '\\') < 0 {
		return s, false
	}
	var b strings.Builder
	last := 0
	double := func(i int) {
		b.WriteString(s[last:i])
		b.WriteString(`\\`)
		last = i + 1
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 >= len(s) {
			double(i) // a lone backslash before an f-string field: "\{x}"
			continue
		}
		c := s[i+1]
		switch {
		case c == '\n' || strings.IndexByte(`\'"abfnrtv`, c) >= 0:
			i++
		case '0' <= c && c <= '7':
			j, n := i+1, 0
			for j < len(s) && j < i+4 && '0' <= s[j] && s[j] <= '7' {
				n = n*8 + int(s[j]-'0')
				j++
			}
			if !isBytes && n > 0x7f {
				b.WriteString(s[last:i])
				fmt.Fprintf(&b, `\u%04x`, n)
				last = j
			}
			i = j - 1
		case c == 'x':
			if i+3 < len(s) && isHex(s[i+2]) && isHex(s[i+3]) {
				if v := hexVal(s[i+2])<<4 | hexVal(s[i+3]); !isBytes && v > 0x7f {
					b.WriteString(s[last:i])
					fmt.Fprintf(&b, `\u%04x`, v)
					last = i + 4
				}
				i += 3
			} else {
				i++
			}
		case c == 'u' || c == 'U':
			if isBytes {
				double(i)
			} else {
				i++
			}
		case c == 'N':
			if isBytes {
				double(i)
			} else {
				r.src.fail(off+i, `\N{...} escape`, `use \uXXXX or the character itself`)
			}
		default:
			double(i)
		}
	}
	if last == 0 {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

func hexVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}
