package script

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.starlark.net/starlark"
)

// fmt_(spec, value) formats value with a Python format specification
// (the part after ':' in an f-string field, such as ".2f", ">5", "04d"
// or "x").
func fmtBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var specV, v starlark.Value
	if err := unpack("fmt_", args, kwargs, []string{"spec", "value"}, &specV, &v); err != nil {
		return nil, err
	}
	spec, err := toStr("fmt_", "spec", specV)
	if err != nil {
		return nil, err
	}
	s, err := pyFormat(spec, v)
	if err != nil {
		return nil, fmt.Errorf("format %q: %w", spec, err)
	}
	return starlark.String(s), nil
}

// formatSpec is a parsed Python format specification:
// [[fill]align][sign][z][#][0][width][,|_][.precision][type]
type formatSpec struct {
	fill     rune
	align    byte // 0 for the type's default
	sign     byte
	alt      bool
	zero     bool
	width    int
	group    byte
	prec     int // -1: not given
	typ      byte
	hasAlign bool
}

func parseSpec(s string) (formatSpec, error) {
	f := formatSpec{fill: ' ', prec: -1}
	isAlign := func(r rune) bool { return r == '<' || r == '>' || r == '=' || r == '^' }
	rs := []rune(s)
	i := 0
	if len(rs) >= 2 && isAlign(rs[1]) {
		f.fill, f.align, f.hasAlign = rs[0], byte(rs[1]), true
		i = 2
	} else if len(rs) >= 1 && isAlign(rs[0]) {
		f.align, f.hasAlign = byte(rs[0]), true
		i = 1
	}
	if i < len(rs) && (rs[i] == '+' || rs[i] == '-' || rs[i] == ' ') {
		f.sign = byte(rs[i])
		i++
	}
	if i < len(rs) && rs[i] == 'z' {
		i++
	}
	if i < len(rs) && rs[i] == '#' {
		f.alt = true
		i++
	}
	if i < len(rs) && rs[i] == '0' {
		f.zero = true
		i++
	}
	start := i
	for i < len(rs) && rs[i] >= '0' && rs[i] <= '9' {
		i++
	}
	if i > start {
		f.width, _ = strconv.Atoi(string(rs[start:i]))
	}
	if i < len(rs) && (rs[i] == ',' || rs[i] == '_') {
		f.group = byte(rs[i])
		i++
	}
	if i < len(rs) && rs[i] == '.' {
		i++
		start = i
		for i < len(rs) && rs[i] >= '0' && rs[i] <= '9' {
			i++
		}
		if i == start {
			return f, fmt.Errorf("format specifier missing precision")
		}
		f.prec, _ = strconv.Atoi(string(rs[start:i]))
	}
	if i < len(rs) {
		if i != len(rs)-1 || !strings.ContainsRune("bcdeEfFgGnosxX%", rs[i]) {
			return f, fmt.Errorf("invalid format specifier")
		}
		f.typ = byte(rs[i])
	}
	return f, nil
}

// pyFormat implements Python's format(value, spec) for strings, numbers,
// bools and None.
func pyFormat(spec string, v starlark.Value) (string, error) {
	f, err := parseSpec(spec)
	if err != nil {
		return "", err
	}
	switch x := v.(type) {
	case starlark.Bool:
		if f.typ == 0 {
			return f.pad(strOf(x), '<', ""), nil
		}
		n := 0
		if x {
			n = 1
		}
		return f.formatInt(big.NewInt(int64(n)))
	case starlark.Int:
		if strings.IndexByte("eEfFgG%", f.typ) >= 0 {
			fl, _ := new(big.Float).SetInt(x.BigInt()).Float64()
			return f.formatFloat(fl)
		}
		return f.formatInt(x.BigInt())
	case starlark.Float:
		if f.typ != 0 && strings.IndexByte("eEfFgGn%", f.typ) < 0 {
			return "", fmt.Errorf("unknown format code '%c' for object of type 'float'", f.typ)
		}
		return f.formatFloat(float64(x))
	case starlark.String:
		if f.typ != 0 && f.typ != 's' {
			return "", fmt.Errorf("unknown format code '%c' for object of type 'str'", f.typ)
		}
		s := string(x)
		if f.prec >= 0 && utf8.RuneCountInString(s) > f.prec {
			s = string([]rune(s)[:f.prec])
		}
		return f.pad(s, '<', ""), nil
	}
	if f.typ != 0 && f.typ != 's' {
		return "", fmt.Errorf("unknown format code '%c' for object of type '%s'", f.typ, v.Type())
	}
	return f.pad(strOf(v), '<', ""), nil
}

func (f formatSpec) signOf(neg bool) string {
	switch {
	case neg:
		return "-"
	case f.sign == '+':
		return "+"
	case f.sign == ' ':
		return " "
	}
	return ""
}

func (f formatSpec) formatInt(n *big.Int) (string, error) {
	if f.prec >= 0 {
		return "", fmt.Errorf("precision not allowed in integer format specifier")
	}
	neg := n.Sign() < 0
	abs := new(big.Int).Abs(n)
	var digits, prefix string
	switch f.typ {
	case 0, 'd', 'n':
		digits = abs.Text(10)
	case 'b':
		digits, prefix = abs.Text(2), "0b"
	case 'o':
		digits, prefix = abs.Text(8), "0o"
	case 'x':
		digits, prefix = abs.Text(16), "0x"
	case 'X':
		digits, prefix = strings.ToUpper(abs.Text(16)), "0X"
	case 'c':
		if !n.IsInt64() || n.Int64() < 0 || n.Int64() > unicode.MaxRune {
			return "", fmt.Errorf("%%c arg not in range(0x110000)")
		}
		return f.pad(string(rune(n.Int64())), '<', ""), nil
	default:
		return "", fmt.Errorf("unknown format code '%c' for object of type 'int'", f.typ)
	}
	if !f.alt {
		prefix = ""
	}
	if f.group != 0 {
		digits = group(digits, f.group, 3)
	}
	return f.pad(digits, '>', f.signOf(neg)+prefix), nil
}

func (f formatSpec) formatFloat(x float64) (string, error) {
	neg := math.Signbit(x) && !math.IsNaN(x)
	a := math.Abs(x)
	prec := f.prec
	var s string
	switch {
	case math.IsInf(a, 0):
		s = "inf"
	case math.IsNaN(a):
		s = "nan"
	default:
		switch f.typ {
		case 'f', 'F':
			if prec < 0 {
				prec = 6
			}
			s = strconv.FormatFloat(a, 'f', prec, 64)
		case 'e', 'E':
			if prec < 0 {
				prec = 6
			}
			s = strconv.FormatFloat(a, 'e', prec, 64)
		case 'g', 'G', 'n':
			if prec < 0 {
				prec = 6
			}
			if prec == 0 {
				prec = 1
			}
			s = strconv.FormatFloat(a, 'g', prec, 64)
		case '%':
			if prec < 0 {
				prec = 6
			}
			s = strconv.FormatFloat(a*100, 'f', prec, 64) + "%"
		default: // like repr, or 'g' with at least one decimal
			if prec < 0 {
				s = strconv.FormatFloat(a, 'g', -1, 64)
				if e := strings.IndexByte(s, 'e'); e >= 0 && a >= 1e-4 && a < 1e16 {
					s = strconv.FormatFloat(a, 'f', -1, 64)
				}
			} else {
				s = strconv.FormatFloat(a, 'g', max(prec, 1), 64)
			}
			if !strings.ContainsAny(s, ".e") {
				s += ".0"
			}
		}
	}
	if f.typ == 'E' || f.typ == 'F' || f.typ == 'G' {
		s = strings.ToUpper(s)
	}
	if f.group != 0 {
		intEnd := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if intEnd < 0 {
			intEnd = len(s)
		}
		s = group(s[:intEnd], f.group, 3) + s[intEnd:]
	}
	return f.pad(s, '>', f.signOf(neg)), nil
}

// group inserts sep every n digits from the right.
func group(digits string, sep byte, n int) string {
	if len(digits) <= n {
		return digits
	}
	var b strings.Builder
	first := len(digits) % n
	if first > 0 {
		b.WriteString(digits[:first])
	}
	for i := first; i < len(digits); i += n {
		if b.Len() > 0 {
			b.WriteByte(sep)
		}
		b.WriteString(digits[i : i+n])
	}
	return b.String()
}

// pad applies fill, alignment and width; prefix (sign, 0x) goes before
// the padding for '=' alignment.
func (f formatSpec) pad(body string, defAlign byte, prefix string) string {
	align, fill := f.align, f.fill
	if !f.hasAlign {
		align = defAlign
		if f.zero && defAlign == '>' {
			align, fill = '=', '0'
		}
	}
	n := f.width - utf8.RuneCountInString(prefix+body)
	if n <= 0 {
		return prefix + body
	}
	padding := strings.Repeat(string(fill), n)
	switch align {
	case '<':
		return prefix + body + padding
	case '^':
		left := strings.Repeat(string(fill), n/2)
		right := strings.Repeat(string(fill), n-n/2)
		return left + prefix + body + right
	case '=':
		return prefix + padding + body
	}
	return padding + prefix + body
}

// pyRepr is Python's repr() of a Starlark value, for messages that
// mirror Python's (unittest assertions).
func pyRepr(v starlark.Value) string {
	var b strings.Builder
	writeRepr(&b, v, 0)
	return b.String()
}

func writeRepr(b *strings.Builder, v starlark.Value, depth int) {
	if depth > 20 {
		b.WriteString("...")
		return
	}
	switch x := v.(type) {
	case starlark.String:
		b.WriteString(pyQuote(string(x)))
	case *starlark.List:
		b.WriteByte('[')
		for i := 0; i < x.Len(); i++ {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, x.Index(i), depth+1)
		}
		b.WriteByte(']')
	case starlark.Tuple:
		b.WriteByte('(')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth+1)
		}
		if len(x) == 1 {
			b.WriteByte(',')
		}
		b.WriteByte(')')
	case *starlark.Dict:
		b.WriteByte('{')
		for i, kv := range x.Items() {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, kv[0], depth+1)
			b.WriteString(": ")
			writeRepr(b, kv[1], depth+1)
		}
		b.WriteByte('}')
	case *starlark.Set:
		if x.Len() == 0 {
			b.WriteString("set()")
			return
		}
		b.WriteByte('{')
		i := 0
		for e := range starlark.Elements(x) {
			if i > 0 {
				b.WriteString(", ")
			}
			writeRepr(b, e, depth+1)
			i++
		}
		b.WriteByte('}')
	default:
		b.WriteString(v.String())
	}
}

// pyQuote quotes s as Python's repr does.
func pyQuote(s string) string {
	q := byte('\'')
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		q = '"'
	}
	var b strings.Builder
	b.WriteByte(q)
	for _, r := range s {
		switch {
		case r == rune(q) || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		case !unicode.IsPrint(r) && r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		case !unicode.IsPrint(r):
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// toStarlark converts decoded JSON-like Go data (QMP event payloads).
func toStarlark(v any) starlark.Value {
	switch x := v.(type) {
	case nil:
		return starlark.None
	case string:
		return starlark.String(x)
	case bool:
		return starlark.Bool(x)
	case int:
		return starlark.MakeInt(x)
	case int64:
		return starlark.MakeInt64(x)
	case uint64:
		return starlark.MakeUint64(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return starlark.MakeInt64(int64(x))
		}
		return starlark.Float(x)
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return starlark.MakeInt64(n)
		}
		f, _ := x.Float64()
		return starlark.Float(f)
	case []any:
		l := make([]starlark.Value, len(x))
		for i, e := range x {
			l[i] = toStarlark(e)
		}
		return starlark.NewList(l)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := starlark.NewDict(len(x))
		for _, k := range keys {
			d.SetKey(starlark.String(k), toStarlark(x[k]))
		}
		return d
	}
	return starlark.String(fmt.Sprint(v))
}
