package modules

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	libjson "go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// jsonModule is Python's json: loads, dumps, load and dump. load is also
// exported as load_ because `load` is a Starlark keyword (the script rewrite
// turns json.load into json.load_).
func (m *Modules) jsonModule() *starlarkstruct.Module {
	mod := module("json", map[string]builtinFunc{
		"loads": jsonLoads,
		"dumps": jsonDumps,
		"load":  jsonLoad,
		"dump":  jsonDump,
	}, nil)
	mod.Members["load_"] = mod.Members["load"]
	return mod
}

// jsonLoads parses a JSON document (str or bytes): objects become dicts (in
// document order), arrays lists, numbers int or float.
func jsonLoads(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s); err != nil {
		return nil, err
	}
	return decodeJSON(thread, b.Name(), s)
}

func decodeJSON(thread *starlark.Thread, fn string, s starlark.Value) (starlark.Value, error) {
	text, ok := strOrBytes(s)
	if !ok {
		return nil, fmt.Errorf("%s: the JSON object must be str or bytes, not %s", fn, s.Type())
	}
	decode := libjson.Module.Members["decode"].(*starlark.Builtin)
	v, err := decode.CallInternal(thread, starlark.Tuple{starlark.String(text)}, nil)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "json.decode: ")
		return nil, fmt.Errorf("%s: invalid JSON: %s", fn, msg)
	}
	return v, nil
}

// jsonLoad reads a file object's contents (its read method) and parses them.
func jsonLoad(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fp starlark.Value
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &fp); err != nil {
		return nil, err
	}
	data, err := callMethod(thread, b.Name(), fp, "read")
	if err != nil {
		return nil, err
	}
	return decodeJSON(thread, b.Name(), data)
}

// jsonDump writes dumps(obj, ...) to a file object through its write method.
func jsonDump(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 2 {
		return nil, fmt.Errorf("%s: want 2 positional arguments (obj, fp), got %d", b.Name(), len(args))
	}
	s, err := dumpsValue(thread, b.Name(), args[0], kwargs)
	if err != nil {
		return nil, err
	}
	if _, err := callMethod(thread, b.Name(), args[1], "write", starlark.String(s)); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

func jsonDumps(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want 1 positional argument (obj), got %d", b.Name(), len(args))
	}
	s, err := dumpsValue(thread, b.Name(), args[0], kwargs)
	if err != nil {
		return nil, err
	}
	return starlark.String(s), nil
}

// dumpsValue encodes v as json.dumps does with these keyword options.
func dumpsValue(thread *starlark.Thread, fn string, v starlark.Value, kwargs []starlark.Tuple) (string, error) {
	opts, err := unpackDumpOptions(fn, kwargs)
	if err != nil {
		return "", err
	}
	return opts.encode(thread, fn, v)
}

// callMethod calls recv.name(args...).
func callMethod(thread *starlark.Thread, fn string, recv starlark.Value, name string, args ...starlark.Value) (starlark.Value, error) {
	ha, ok := recv.(starlark.HasAttrs)
	if !ok {
		return nil, fmt.Errorf("%s: %s has no %s method", fn, recv.Type(), name)
	}
	meth, err := ha.Attr(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	if meth == nil {
		return nil, fmt.Errorf("%s: %s has no %s method", fn, recv.Type(), name)
	}
	return starlark.Call(thread, meth, args, nil)
}

// dumpOptions are json.dumps's keyword arguments.
type dumpOptions struct {
	indent      string
	pretty      bool // indent was given (not None)
	itemSep     string
	keySep      string
	sortKeys    bool
	ensureASCII bool
	allowNaN    bool
	def         starlark.Callable
}

func unpackDumpOptions(fn string, kwargs []starlark.Tuple) (*dumpOptions, error) {
	var (
		indent, separators, def starlark.Value
		sortKeys                bool
		ensureASCII             = true
		allowNaN                = true
		skipKeys                bool
		checkCircular           = true
	)
	if err := starlark.UnpackArgs(fn, nil, kwargs,
		"indent??", &indent, "separators??", &separators, "sort_keys?", &sortKeys,
		"ensure_ascii?", &ensureASCII, "allow_nan?", &allowNaN, "default??", &def,
		"skipkeys?", &skipKeys, "check_circular?", &checkCircular); err != nil {
		return nil, err
	}
	o := &dumpOptions{itemSep: ", ", keySep: ": ", sortKeys: sortKeys, ensureASCII: ensureASCII, allowNaN: allowNaN}
	if skipKeys {
		return nil, fmt.Errorf("%s: skipkeys=True is not supported", fn)
	}
	switch x := indent.(type) {
	case nil:
	case starlark.Int:
		n, ok := x.Int64()
		if !ok || n > 1000 {
			return nil, fmt.Errorf("%s: indent %s is too large", fn, x)
		}
		o.pretty, o.indent, o.itemSep = true, strings.Repeat(" ", int(max(n, 0))), ","
	case starlark.String:
		o.pretty, o.indent, o.itemSep = true, string(x), ","
	default:
		return nil, fmt.Errorf("%s: indent must be int, str or None, not %s", fn, indent.Type())
	}
	if separators != nil {
		seq, ok := separators.(starlark.Indexable)
		if !ok || seq.Len() != 2 {
			return nil, fmt.Errorf("%s: separators must be an (item_separator, key_separator) pair, not %s", fn, separators)
		}
		is, ok1 := seq.Index(0).(starlark.String)
		ks, ok2 := seq.Index(1).(starlark.String)
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%s: separators must be strings, got %s", fn, separators)
		}
		o.itemSep, o.keySep = string(is), string(ks)
	}
	if def != nil {
		c, ok := def.(starlark.Callable)
		if !ok {
			return nil, fmt.Errorf("%s: default must be callable, not %s", fn, def.Type())
		}
		o.def = c
	}
	return o, nil
}

// encode renders v the way Python's json.dumps does, byte for byte.
func (o *dumpOptions) encode(thread *starlark.Thread, fn string, v starlark.Value) (string, error) {
	e := &jsonEncoder{opts: o, thread: thread}
	if err := e.value(v, 0); err != nil {
		return "", fmt.Errorf("%s: %w", fn, err)
	}
	return e.buf.String(), nil
}

type jsonEncoder struct {
	opts   *dumpOptions
	thread *starlark.Thread
	buf    strings.Builder
	path   []unsafe.Pointer // containers being encoded, to detect cycles
}

func (e *jsonEncoder) newline(depth int) {
	if e.opts.pretty {
		e.buf.WriteByte('\n')
		for range depth {
			e.buf.WriteString(e.opts.indent)
		}
	}
}

func (e *jsonEncoder) enter(p unsafe.Pointer) error {
	for _, q := range e.path {
		if q == p {
			return fmt.Errorf("circular reference detected")
		}
	}
	e.path = append(e.path, p)
	return nil
}

func (e *jsonEncoder) leave() { e.path = e.path[:len(e.path)-1] }

func (e *jsonEncoder) value(v starlark.Value, depth int) error {
	switch x := v.(type) {
	case starlark.NoneType:
		e.buf.WriteString("null")
	case starlark.Bool:
		if x {
			e.buf.WriteString("true")
		} else {
			e.buf.WriteString("false")
		}
	case starlark.Int:
		e.buf.WriteString(x.String())
	case starlark.Float:
		s, err := e.float(float64(x))
		if err != nil {
			return err
		}
		e.buf.WriteString(s)
	case starlark.String:
		e.str(string(x))
	case *starlark.List:
		if err := e.enter(unsafe.Pointer(x)); err != nil {
			return err
		}
		defer e.leave()
		return e.array(x, depth)
	case starlark.Tuple:
		return e.array(x, depth)
	case *starlark.Dict:
		if err := e.enter(unsafe.Pointer(x)); err != nil {
			return err
		}
		defer e.leave()
		return e.object(x.Items(), depth)
	default:
		if e.opts.def != nil {
			if len(e.path) > 100 {
				return fmt.Errorf("default function recursion too deep")
			}
			e.path = append(e.path, nil)
			defer e.leave()
			r, err := starlark.Call(e.thread, e.opts.def, starlark.Tuple{v}, nil)
			if err != nil {
				return err
			}
			return e.value(r, depth)
		}
		return fmt.Errorf("Object of type %s is not JSON serializable", v.Type())
	}
	return nil
}

func (e *jsonEncoder) array(x starlark.Indexable, depth int) error {
	if x.Len() == 0 {
		e.buf.WriteString("[]")
		return nil
	}
	e.buf.WriteByte('[')
	for i := range x.Len() {
		if i > 0 {
			e.buf.WriteString(e.opts.itemSep)
		}
		e.newline(depth + 1)
		if err := e.value(x.Index(i), depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.buf.WriteByte(']')
	return nil
}

func (e *jsonEncoder) object(items []starlark.Tuple, depth int) error {
	if len(items) == 0 {
		e.buf.WriteString("{}")
		return nil
	}
	if e.opts.sortKeys {
		items = slices.Clone(items)
		var sortErr error
		slices.SortStableFunc(items, func(a, b starlark.Tuple) int {
			lt, err := starlark.Compare(syntax.LT, a[0], b[0])
			if err != nil && sortErr == nil {
				sortErr = fmt.Errorf("sort_keys: %w", err)
			}
			if lt {
				return -1
			}
			if gt, _ := starlark.Compare(syntax.GT, a[0], b[0]); gt {
				return 1
			}
			return 0
		})
		if sortErr != nil {
			return sortErr
		}
	}
	e.buf.WriteByte('{')
	for i, kv := range items {
		if i > 0 {
			e.buf.WriteString(e.opts.itemSep)
		}
		e.newline(depth + 1)
		key, err := e.key(kv[0])
		if err != nil {
			return err
		}
		e.str(key)
		e.buf.WriteString(e.opts.keySep)
		if err := e.value(kv[1], depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.buf.WriteByte('}')
	return nil
}

// key converts a dict key as Python does: str as is; int, float, bool and None
// to their JSON spelling.
func (e *jsonEncoder) key(k starlark.Value) (string, error) {
	switch x := k.(type) {
	case starlark.String:
		return string(x), nil
	case starlark.Int:
		return x.String(), nil
	case starlark.Float:
		return e.float(float64(x))
	case starlark.Bool:
		if x {
			return "true", nil
		}
		return "false", nil
	case starlark.NoneType:
		return "null", nil
	}
	return "", fmt.Errorf("keys must be str, int, float, bool or None, not %s", k.Type())
}

func (e *jsonEncoder) float(f float64) (string, error) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		if !e.opts.allowNaN {
			return "", fmt.Errorf("out of range float values are not JSON compliant: %v", f)
		}
		if math.IsNaN(f) {
			return "NaN", nil
		}
		if f > 0 {
			return "Infinity", nil
		}
		return "-Infinity", nil
	}
	return pyFloatRepr(f), nil
}

// str writes a JSON string literal with Python's escaping: \uXXXX in lower-case
// hex, and with ensure_ascii every character outside space..tilde escaped
// (UTF-16 surrogate pairs above U+FFFF). Invalid UTF-8 becomes U+FFFD.
func (e *jsonEncoder) str(s string) {
	const hex = "0123456789abcdef"
	u := func(r rune) {
		e.buf.WriteString(`\u`)
		e.buf.WriteByte(hex[r>>12&0xf])
		e.buf.WriteByte(hex[r>>8&0xf])
		e.buf.WriteByte(hex[r>>4&0xf])
		e.buf.WriteByte(hex[r&0xf])
	}
	e.buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			e.buf.WriteString(`\"`)
		case '\\':
			e.buf.WriteString(`\\`)
		case '\n':
			e.buf.WriteString(`\n`)
		case '\r':
			e.buf.WriteString(`\r`)
		case '\t':
			e.buf.WriteString(`\t`)
		case '\b':
			e.buf.WriteString(`\b`)
		case '\f':
			e.buf.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				u(r)
			case r < 0x7f || !e.opts.ensureASCII:
				e.buf.WriteRune(r)
			case r > 0xffff:
				r -= 0x10000
				u(0xd800 | (r>>10)&0x3ff)
				u(0xdc00 | r&0x3ff)
			default:
				u(r)
			}
		}
	}
	e.buf.WriteByte('"')
}

// pyFloatRepr formats f like Python's repr(float): the shortest digits that
// round-trip, positional notation for exponents in [-4, 16), otherwise
// scientific with at least two exponent digits.
func pyFloatRepr(f float64) string {
	if math.IsInf(f, 0) {
		if f > 0 {
			return "inf"
		}
		return "-inf"
	}
	if math.IsNaN(f) {
		return "nan"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // -d.ddde±XX
	mant, expStr, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%se%s%02d", mant, sign, exp)
}
