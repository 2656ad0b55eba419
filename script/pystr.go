package script

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// Python's string formatting where Starlark's differs. The rewrite
// (package pycompat) wraps a string literal followed by % in fstr_(...),
// and the receiver of .format(), .decode(), .encode() and .expandtabs()
// in py_(...), so these calls get Python's behaviour: printf-style flags,
// width and precision; format specs in str.format; bytes and str
// conversions.

// fstrBuiltin is fstr_(s): a string whose % is Python's.
func fstrBuiltin(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackPositionalArgs("fstr_", args, kwargs, 1, &s); err != nil {
		return nil, err
	}
	return pyFmtString(s), nil
}

// pyFmtString is a string literal on the left of %.
type pyFmtString string

var _ starlark.HasBinary = pyFmtString("")

func (s pyFmtString) String() string        { return pyQuote(string(s)) }
func (s pyFmtString) Type() string          { return "string" }
func (s pyFmtString) Freeze()               {}
func (s pyFmtString) Truth() starlark.Bool  { return s != "" }
func (s pyFmtString) Hash() (uint32, error) { return starlark.String(s).Hash() }

// Binary implements s % args.
func (s pyFmtString) Binary(op syntax.Token, y starlark.Value, side starlark.Side) (starlark.Value, error) {
	if op != syntax.PERCENT || side != starlark.Left {
		return starlark.Binary(op, starlark.String(s), y)
	}
	out, err := printf(string(s), y)
	if err != nil {
		return nil, err
	}
	return starlark.String(out), nil
}

// printf is Python's format % args.
func printf(format string, args starlark.Value) (string, error) {
	var positional starlark.Tuple
	mapping, isMap := args.(*starlark.Dict)
	if t, ok := args.(starlark.Tuple); ok {
		positional = t
	} else {
		positional = starlark.Tuple{args}
	}
	next := 0
	take := func() (starlark.Value, error) {
		if next >= len(positional) {
			return nil, errors.New("not enough arguments for format string")
		}
		next++
		return positional[next-1], nil
	}
	var b strings.Builder
	usedMap := false
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(format) {
			return "", errors.New("incomplete format")
		}
		var v starlark.Value
		if format[i] == '(' {
			end := strings.IndexByte(format[i:], ')')
			if end < 0 || !isMap {
				return "", errors.New("format requires a mapping")
			}
			key := format[i+1 : i+end]
			i += end + 1
			x, found, err := mapping.Get(starlark.String(key))
			if err != nil {
				return "", err
			}
			if !found {
				return "", fmt.Errorf("KeyError: %s", pyQuote(key))
			}
			v, usedMap = x, true
		}
		flags := ""
		for i < len(format) && strings.IndexByte("-+ #0", format[i]) >= 0 {
			flags += string(format[i])
			i++
		}
		width, prec := "", ""
		readNum := func(dst *string) error {
			if i < len(format) && format[i] == '*' {
				x, err := take()
				if err != nil {
					return err
				}
				n, ok := x.(starlark.Int)
				if !ok {
					return errors.New("* wants int")
				}
				*dst = n.String()
				i++
				return nil
			}
			for i < len(format) && format[i] >= '0' && format[i] <= '9' {
				*dst += string(format[i])
				i++
			}
			return nil
		}
		if err := readNum(&width); err != nil {
			return "", err
		}
		hasPrec := false
		if i < len(format) && format[i] == '.' {
			i++
			hasPrec = true
			if err := readNum(&prec); err != nil {
				return "", err
			}
			if prec == "" {
				prec = "0"
			}
		}
		for i < len(format) && strings.IndexByte("hlL", format[i]) >= 0 {
			i++ // length modifiers mean nothing in Python
		}
		if i >= len(format) {
			return "", errors.New("incomplete format")
		}
		conv := format[i]
		if conv == '%' {
			b.WriteByte('%')
			continue
		}
		if v == nil {
			x, err := take()
			if err != nil {
				return "", err
			}
			v = x
		}
		out, err := printfOne(conv, flags, width, prec, hasPrec, v)
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	if !usedMap && next < len(positional) && !isMap {
		return "", errors.New("not all arguments converted during string formatting")
	}
	return b.String(), nil
}

// printfOne formats one conversion through the equivalent Python format
// spec: [align][sign][#][0][width][.prec][type].
func printfOne(conv byte, flags, width, prec string, hasPrec bool, v starlark.Value) (string, error) {
	text := conv == 's' || conv == 'r' || conv == 'a' || conv == 'c'
	spec := ""
	switch {
	case strings.Contains(flags, "-"):
		spec += "<"
	case text:
		spec += ">" // printf right-aligns text too
	}
	switch {
	case strings.Contains(flags, "+"):
		spec += "+"
	case strings.Contains(flags, " "):
		spec += " "
	}
	if strings.Contains(flags, "#") {
		spec += "#"
	}
	if strings.Contains(flags, "0") && !strings.Contains(flags, "-") && !text {
		spec += "0"
	}
	spec += width
	if hasPrec {
		spec += "." + prec
	}
	switch conv {
	case 's':
		return pyFormat(spec, starlark.String(strOf(v)))
	case 'r', 'a':
		return pyFormat(spec, starlark.String(pyRepr(v)))
	case 'c':
		s := ""
		switch x := v.(type) {
		case starlark.Int:
			n, _ := x.Int64()
			s = string(rune(n))
		case starlark.String:
			s = string(x)
		default:
			return "", fmt.Errorf("%%c requires an int or a char, not %s", v.Type())
		}
		return pyFormat(spec, starlark.String(s))
	case 'd', 'i', 'u', 'o', 'x', 'X':
		n, err := toPyInt(v)
		if err != nil {
			return "", fmt.Errorf("%%%c format: %w", conv, err)
		}
		typ := string(conv)
		if conv == 'i' || conv == 'u' {
			typ = "d"
		}
		return pyFormat(spec+typ, n)
	case 'e', 'E', 'f', 'F', 'g', 'G':
		if !hasPrec {
			spec += ".6"
		}
		f, ok := starlark.AsFloat(v)
		if !ok {
			return "", fmt.Errorf("%%%c format: a real number is required, not %s", conv, v.Type())
		}
		return pyFormat(spec+string(conv), starlark.Float(f))
	}
	return "", fmt.Errorf("unsupported format character '%c' (0x%x)", conv, conv)
}

// toPyInt converts what %d takes: ints, floats (truncated), bools.
func toPyInt(v starlark.Value) (starlark.Int, error) {
	switch x := v.(type) {
	case starlark.Int:
		return x, nil
	case starlark.Bool:
		if x {
			return starlark.MakeInt(1), nil
		}
		return starlark.MakeInt(0), nil
	case starlark.Float:
		return starlark.NumberToInt(x)
	}
	return starlark.Int{}, fmt.Errorf("a number is required, not %s", v.Type())
}

// pyBuiltin is py_(x): x as the receiver of a Python method Starlark's
// values lack (or have with other rules).
func pyBuiltin(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := starlark.UnpackPositionalArgs("py_", args, kwargs, 1, &v); err != nil {
		return nil, err
	}
	return &pyReceiver{v: v}, nil
}

// pyReceiver gives its value Python's decode, encode, expandtabs and
// format; any other attribute is the value's own.
type pyReceiver struct{ v starlark.Value }

var _ starlark.HasAttrs = (*pyReceiver)(nil)

func (r *pyReceiver) String() string        { return r.v.String() }
func (r *pyReceiver) Type() string          { return r.v.Type() }
func (r *pyReceiver) Freeze()               {}
func (r *pyReceiver) Truth() starlark.Bool  { return r.v.Truth() }
func (r *pyReceiver) Hash() (uint32, error) { return r.v.Hash() }

func (r *pyReceiver) AttrNames() []string {
	if a, ok := r.v.(starlark.HasAttrs); ok {
		return a.AttrNames()
	}
	return nil
}

func (r *pyReceiver) Attr(name string) (starlark.Value, error) {
	str, isStr := r.v.(starlark.String)
	by, isBytes := r.v.(starlark.Bytes)
	method := func(fn func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)) *starlark.Builtin {
		return starlark.NewBuiltin(name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return fn(args, kwargs)
		})
	}
	switch {
	case name == "decode" && (isBytes || isStr):
		return method(func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var enc, errs string
			if err := starlark.UnpackArgs(name, args, kwargs, "encoding?", &enc, "errors?", &errs); err != nil {
				return nil, err
			}
			if err := utf8Only(enc); err != nil {
				return nil, err
			}
			if isStr {
				// Commands' output is already text here.
				return str, nil
			}
			if errs != "replace" && errs != "ignore" && !utf8.ValidString(string(by)) {
				return nil, errors.New(`UnicodeDecodeError: 'utf-8' codec can't decode the bytes (use errors="replace")`)
			}
			return starlark.String(strings.ToValidUTF8(string(by), "\uFFFD")), nil
		}), nil
	case name == "encode" && isStr:
		return method(func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var enc, errs string
			if err := starlark.UnpackArgs(name, args, kwargs, "encoding?", &enc, "errors?", &errs); err != nil {
				return nil, err
			}
			if err := utf8Only(enc); err != nil {
				return nil, err
			}
			return starlark.Bytes(str), nil
		}), nil
	case name == "expandtabs" && isStr:
		return method(func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			size := 8
			if err := starlark.UnpackArgs(name, args, kwargs, "tabsize?", &size); err != nil {
				return nil, err
			}
			return starlark.String(expandTabs(string(str), size)), nil
		}), nil
	case name == "format" && isStr:
		return method(func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			out, err := strFormat(string(str), args, kwargs)
			if err != nil {
				return nil, fmt.Errorf("format: %w", err)
			}
			return starlark.String(out), nil
		}), nil
	}
	if a, ok := r.v.(starlark.HasAttrs); ok {
		return a.Attr(name)
	}
	return nil, nil
}

func utf8Only(enc string) error {
	switch strings.ToLower(strings.ReplaceAll(enc, "-", "")) {
	case "", "utf8", "ascii":
		return nil
	}
	return fmt.Errorf("LookupError: only utf-8 is supported, not %q", enc)
}

// expandTabs is Python's str.expandtabs.
func expandTabs(s string, size int) string {
	var b strings.Builder
	col := 0
	for _, r := range s {
		switch r {
		case '\t':
			if size > 0 {
				n := size - col%size
				b.WriteString(strings.Repeat(" ", n))
				col += n
			}
		case '\n', '\r':
			b.WriteRune(r)
			col = 0
		default:
			b.WriteRune(r)
			col++
		}
	}
	return b.String()
}

// strFormat is Python's str.format: {}, {0}, {name}, {x.attr}, {x[key]},
// !r/!s/!a and format specs.
func strFormat(format string, args starlark.Tuple, kwargs []starlark.Tuple) (string, error) {
	var b strings.Builder
	auto := 0
	for i := 0; i < len(format); i++ {
		c := format[i]
		switch {
		case c == '{' && i+1 < len(format) && format[i+1] == '{':
			b.WriteByte('{')
			i++
			continue
		case c == '}' && i+1 < len(format) && format[i+1] == '}':
			b.WriteByte('}')
			i++
			continue
		case c == '}':
			return "", errors.New("single '}' encountered in format string")
		case c != '{':
			b.WriteByte(c)
			continue
		}
		end := strings.IndexByte(format[i:], '}')
		if end < 0 {
			return "", errors.New("expected '}' before end of string")
		}
		field := format[i+1 : i+end]
		i += end
		if strings.ContainsRune(field, '{') {
			return "", errors.New("nested replacement fields are not supported")
		}
		spec := ""
		if k := strings.IndexByte(field, ':'); k >= 0 {
			field, spec = field[:k], field[k+1:]
		}
		conv := byte(0)
		if k := strings.IndexByte(field, '!'); k >= 0 {
			if k+2 != len(field) {
				return "", errors.New("expected ':' after conversion specifier")
			}
			field, conv = field[:k], field[k+1]
		}
		v, err := formatField(field, &auto, args, kwargs)
		if err != nil {
			return "", err
		}
		switch conv {
		case 'r', 'a':
			v = starlark.String(pyRepr(v))
		case 's':
			v = starlark.String(strOf(v))
		case 0:
		default:
			return "", fmt.Errorf("unknown conversion specifier %c", conv)
		}
		s, err := pyFormat(spec, v)
		if err != nil {
			return "", err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// formatField resolves a replacement field's name ("", "0", "name") and
// its .attr and [key] accessors.
func formatField(field string, auto *int, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	name, rest := field, ""
	if k := strings.IndexAny(field, ".["); k >= 0 {
		name, rest = field[:k], field[k:]
	}
	var v starlark.Value
	switch {
	case name == "":
		if *auto >= len(args) {
			return nil, fmt.Errorf("replacement index %d out of range for positional args tuple", *auto)
		}
		v = args[*auto]
		*auto++
	case name[0] >= '0' && name[0] <= '9':
		n, err := strconv.Atoi(name)
		if err != nil || n >= len(args) {
			return nil, fmt.Errorf("replacement index %s out of range for positional args tuple", name)
		}
		v = args[n]
	default:
		for _, kv := range kwargs {
			if string(kv[0].(starlark.String)) == name {
				v = kv[1]
			}
		}
		if v == nil {
			return nil, fmt.Errorf("KeyError: %s", pyQuote(name))
		}
	}
	for rest != "" {
		if rest[0] == '.' {
			attr := rest[1:]
			if k := strings.IndexAny(attr, ".["); k >= 0 {
				attr, rest = attr[:k], attr[k:]
			} else {
				rest = ""
			}
			a, ok := v.(starlark.HasAttrs)
			var x starlark.Value
			if ok {
				x, _ = a.Attr(attr)
			}
			if x == nil {
				return nil, fmt.Errorf("%s has no attribute %s", v.Type(), attr)
			}
			v = x
			continue
		}
		k := strings.IndexByte(rest, ']')
		if k < 0 {
			return nil, errors.New("missing ']' in format string")
		}
		key := rest[1:k]
		rest = rest[k+1:]
		switch c := v.(type) {
		case starlark.Mapping:
			var kv starlark.Value = starlark.String(key)
			if n, err := strconv.Atoi(key); err == nil {
				if y, found, _ := c.Get(starlark.MakeInt(n)); found {
					v = y
					continue
				}
			}
			y, found, err := c.Get(kv)
			if err != nil || !found {
				return nil, fmt.Errorf("KeyError: %s", pyQuote(key))
			}
			v = y
		case starlark.Indexable:
			n, err := strconv.Atoi(key)
			if err != nil || n < 0 || n >= c.Len() {
				return nil, fmt.Errorf("IndexError: %s", key)
			}
			v = c.Index(n)
		default:
			return nil, fmt.Errorf("%s is not subscriptable", v.Type())
		}
	}
	return v, nil
}

// unpackBuiltin is unpack_(v, before, after), the rewrite of a starred
// assignment "a, *b, c = v": the tuple (v[0], ..., list(v[before:len-after]),
// ..., v[len-1]).
func unpackBuiltin(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var it starlark.Iterable
	var before, after int
	if err := starlark.UnpackPositionalArgs("unpack_", args, kwargs, 3, &it, &before, &after); err != nil {
		return nil, err
	}
	var items []starlark.Value
	iter := it.Iterate()
	defer iter.Done()
	var x starlark.Value
	for iter.Next(&x) {
		items = append(items, x)
	}
	if len(items) < before+after {
		return nil, fmt.Errorf("ValueError: not enough values to unpack (expected at least %d, got %d)", before+after, len(items))
	}
	out := make(starlark.Tuple, 0, before+after+1)
	out = append(out, items[:before]...)
	out = append(out, starlark.NewList(append([]starlark.Value(nil), items[before:len(items)-after]...)))
	return append(out, items[len(items)-after:]...), nil
}
