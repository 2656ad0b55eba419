package modules

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// shlexModule is Python's shlex: quote, split (POSIX mode) and join.
func shlexModule() *starlarkstruct.Module {
	return module("shlex", map[string]builtinFunc{
		"quote": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var s string
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s); err != nil {
				return nil, err
			}
			return starlark.String(shellQuote(s)), nil
		},
		"split": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var s string
			var comments bool
			posix := true
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "s", &s, "comments?", &comments, "posix?", &posix); err != nil {
				return nil, err
			}
			if !posix {
				return nil, fmt.Errorf("%s: posix=False is not supported", b.Name())
			}
			words, err := shellSplit(s, comments)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return stringList(words), nil
		},
		"join": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var words starlark.Iterable
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &words); err != nil {
				return nil, err
			}
			strs, err := stringsOf(b.Name(), words)
			if err != nil {
				return nil, err
			}
			return starlark.String(shellJoin(strs)), nil
		},
	}, nil)
}

// shellQuote quotes s for a POSIX shell exactly as Python's shlex.quote does.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_@%+=:,./-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// shellJoin is shlex.join.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// shellSplit splits like Python's shlex.split in POSIX mode: single quotes are
// literal; in double quotes a backslash escapes only `"` and `\`; outside
// quotes it escapes any character.
func shellSplit(s string, comments bool) ([]string, error) {
	words := []string{}
	var cur strings.Builder
	inWord := false
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && comments:
			for i < len(rs) && rs[i] != '\n' {
				i++
			}
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\\':
			if i+1 >= len(rs) {
				return nil, fmt.Errorf("no escaped character")
			}
			i++
			cur.WriteRune(rs[i])
			inWord = true
		case c == '\'':
			end := -1
			for j := i + 1; j < len(rs); j++ {
				if rs[j] == '\'' {
					end = j
					break
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("no closing quotation")
			}
			cur.WriteString(string(rs[i+1 : end]))
			i = end
			inWord = true
		case c == '"':
			closed := false
			for i++; i < len(rs); i++ {
				if rs[i] == '"' {
					closed = true
					break
				}
				if rs[i] == '\\' && i+1 < len(rs) && (rs[i+1] == '"' || rs[i+1] == '\\') {
					i++
				}
				cur.WriteRune(rs[i])
			}
			if !closed {
				return nil, fmt.Errorf("no closing quotation")
			}
			inWord = true
		default:
			cur.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func stringList(ss []string) *starlark.List {
	vs := make([]starlark.Value, len(ss))
	for i, s := range ss {
		vs[i] = starlark.String(s)
	}
	return starlark.NewList(vs)
}

// stringsOf converts an iterable of str (or Path) into Go strings.
func stringsOf(fn string, it starlark.Iterable) ([]string, error) {
	var out []string
	iter := it.Iterate()
	defer iter.Done()
	var v starlark.Value
	for iter.Next(&v) {
		var p pathArg
		if err := p.Unpack(v); err != nil {
			return nil, fmt.Errorf("%s: element %d: %w", fn, len(out), err)
		}
		out = append(out, string(p))
	}
	return out, nil
}
