package api

import (
	"fmt"
	"regexp"
	"strings"
)

// Regexp translates a Python regular expression (a parameter of type
// Regex) to Go's RE2 syntax where the two differ: \Z is \z;
// backreferences and lookaround do not exist in RE2 and are reported.
func Regexp(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == '\\' && i+1 < len(p):
			next := p[i+1]
			i++
			switch {
			case next == 'Z':
				b.WriteString(`\z`)
			case next >= '1' && next <= '9':
				return "", fmt.Errorf("regular expression %q: backreferences (\\%c) are not supported", p, next)
			default:
				b.WriteByte('\\')
				b.WriteByte(next)
			}
		case ch == '(' && strings.HasPrefix(p[i:], "(?P="):
			return "", fmt.Errorf("regular expression %q: backreferences ((?P=...)) are not supported", p)
		case ch == '(' && (strings.HasPrefix(p[i:], "(?=") || strings.HasPrefix(p[i:], "(?!") || strings.HasPrefix(p[i:], "(?<=") || strings.HasPrefix(p[i:], "(?<!")):
			return "", fmt.Errorf("regular expression %q: lookahead and lookbehind are not supported", p)
		default:
			b.WriteByte(ch)
		}
	}
	out := b.String()
	if _, err := regexp.Compile(out); err != nil {
		return "", fmt.Errorf("regular expression %q: %w", p, err)
	}
	return out, nil
}
