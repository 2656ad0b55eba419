package modules

import (
	"fmt"
	"net/url"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// urllibParseModule is Python's urllib.parse: quote, quote_plus, unquote,
// unquote_plus and urlencode.
func urllibParseModule() *starlarkstruct.Module {
	quoteFunc := func(plus bool) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var s starlark.Value
			safe := "/"
			if plus {
				safe = ""
			}
			var encoding, errs starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "string", &s, "safe?", &safe, "encoding??", &encoding, "errors??", &errs); err != nil {
				return nil, err
			}
			str, ok := strOrBytes(s)
			if !ok {
				return nil, fmt.Errorf("%s: want str or bytes, got %s", b.Name(), s.Type())
			}
			return starlark.String(urlQuote(str, safe, plus)), nil
		}
	}
	unquoteFunc := func(plus bool) builtinFunc {
		return func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var s string
			var encoding, errs starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "string", &s, "encoding??", &encoding, "errors??", &errs); err != nil {
				return nil, err
			}
			if plus {
				s = strings.ReplaceAll(s, "+", " ")
			}
			return starlark.String(urlUnquote(s)), nil
		}
	}
	return module("urllib.parse", map[string]builtinFunc{
		"quote":        quoteFunc(false),
		"quote_plus":   quoteFunc(true),
		"unquote":      unquoteFunc(false),
		"unquote_plus": unquoteFunc(true),
		"urlencode": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var query starlark.Value
			var doseq bool
			safe := ""
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "query", &query, "doseq?", &doseq, "safe?", &safe); err != nil {
				return nil, err
			}
			var pairs []starlark.Tuple
			switch q := query.(type) {
			case starlark.IterableMapping:
				pairs = q.Items()
			case starlark.Iterable:
				it := q.Iterate()
				defer it.Done()
				var v starlark.Value
				for it.Next(&v) {
					t, ok := v.(starlark.Tuple)
					if !ok || len(t) != 2 {
						return nil, fmt.Errorf("%s: want a dict or a sequence of (key, value) pairs, got element %s", b.Name(), v)
					}
					pairs = append(pairs, t)
				}
			default:
				return nil, fmt.Errorf("%s: want a dict or a sequence of pairs, got %s", b.Name(), query.Type())
			}
			str := func(v starlark.Value) string {
				if s, ok := strOrBytes(v); ok {
					return urlQuote(s, safe, true)
				}
				return urlQuote(v.String(), safe, true)
			}
			var parts []string
			for _, kv := range pairs {
				k := str(kv[0])
				if seq, ok := kv[1].(starlark.Iterable); doseq && ok {
					if _, isStr := strOrBytes(kv[1]); !isStr {
						it := seq.Iterate()
						var v starlark.Value
						for it.Next(&v) {
							parts = append(parts, k+"="+str(v))
						}
						it.Done()
						continue
					}
				}
				parts = append(parts, k+"="+str(kv[1]))
			}
			return starlark.String(strings.Join(parts, "&")), nil
		},
	}, nil)
}

// urlQuote percent-encodes s (as UTF-8) except letters, digits, "_.-~" and
// safe; with plus, spaces become "+".
func urlQuote(s, safe string, plus bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_.-~", c) >= 0:
			b.WriteByte(c)
		case c < 0x80 && strings.IndexByte(safe, c) >= 0:
			b.WriteByte(c)
		case plus && c == ' ':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// urlUnquote decodes %XX escapes, leaving malformed ones as they are.
func urlUnquote(s string) string {
	if r, err := url.PathUnescape(s); err == nil {
		return r
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1:i+3]) {
			var c byte
			fmt.Sscanf(s[i+1:i+3], "%02x", &c)
			b.WriteByte(c)
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// typingModule lets `from typing import Optional, List, ...` succeed: the
// script rewrite strips annotations, so the names are never used; they are None.
func typingModule() *starlarkstruct.Module {
	members := starlark.StringDict{}
	for _, n := range []string{"Any", "Callable", "Dict", "Generator", "Iterable", "Iterator", "List",
		"Literal", "Mapping", "NamedTuple", "Optional", "Sequence", "Set", "Tuple", "Type", "TypeVar", "Union"} {
		members[n] = starlark.None
	}
	return &starlarkstruct.Module{Name: "typing", Members: members}
}
