// Package shellquote quotes words for the POSIX shell commands the
// driver sends to guests.
package shellquote

import "strings"

// Quote quotes s as one word for a POSIX shell. Words made only of safe
// characters stay as they are, which keeps logged commands readable.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe && s[0] != '-' {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
