package script

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/machine"
)

// bind decodes a call's arguments by the table's parameters (package
// api): Python's rules for positional, keyword, keyword-only and *rest
// parameters, one message shape for every mistake (with a spelling hint
// over the parameter names), and each value converted to the Go value
// its Type names. Absent optional parameters take their Default; None
// takes the Default too for Str, Int and TTY parameters (as the NixOS
// driver's `x or default`), and is held as nil otherwise.
func (s *Session) bind(th *starlark.Thread, fn string, params []api.Param, args starlark.Tuple, kwargs []starlark.Tuple) (api.Args, error) {
	raw := make([]starlark.Value, len(params))
	set := make([]bool, len(params))

	// Positional arguments.
	pi := 0
	for ai := 0; ai < len(args); ai++ {
		for pi < len(params) && params[pi].KeywordOnly {
			pi++
		}
		if pi >= len(params) {
			return api.Args{}, fmt.Errorf("%s: got %d positional arguments, want at most %d", fn, len(args), countPositional(params))
		}
		if params[pi].Variadic {
			raw[pi], set[pi] = append(starlark.Tuple(nil), args[ai:]...), true
			break
		}
		raw[pi], set[pi] = args[ai], true
		pi++
	}

	// Keyword arguments.
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		j := -1
		for i, p := range params {
			if p.Name == k && !p.Variadic {
				j = i
				break
			}
		}
		if j < 0 {
			return api.Args{}, unexpectedKeyword(fn, k, params)
		}
		if set[j] {
			return api.Args{}, fmt.Errorf("%s: got multiple values for argument %s", fn, k)
		}
		raw[j], set[j] = kv[1], true
	}

	a := api.NewArgs(fn)
	for i, p := range params {
		if !set[i] {
			if p.Required {
				return api.Args{}, fmt.Errorf("%s: missing argument for %s", fn, p.Name)
			}
			if p.Variadic {
				a.Set(p.Name, []any(nil), false)
			} else {
				a.Set(p.Name, p.Default, false)
			}
			continue
		}
		v, err := s.decode(th, fn, p, raw[i])
		if err != nil {
			return api.Args{}, err
		}
		a.Set(p.Name, v, true)
	}
	return a, nil
}

func countPositional(params []api.Param) int {
	n := 0
	for _, p := range params {
		if p.KeywordOnly || p.Variadic {
			break
		}
		n++
	}
	return n
}

func unexpectedKeyword(fn, k string, params []api.Param) error {
	var cands []string
	for _, p := range params {
		if !p.Variadic {
			cands = append(cands, p.Name)
		}
	}
	msg := fmt.Sprintf("%s: unexpected keyword argument %q", fn, k)
	switch n := nearest(k, cands); {
	case n != "":
		msg += fmt.Sprintf(" (did you mean %s?)", n)
	case len(cands) > 0:
		msg += " (it takes " + strings.Join(cands, ", ") + ")"
	default:
		msg += " (it takes no arguments)"
	}
	return fmt.Errorf("%s", msg)
}

// decode converts one passed argument to the Go value its Type names.
func (s *Session) decode(th *starlark.Thread, fn string, p api.Param, v starlark.Value) (any, error) {
	if p.Variadic {
		items := v.(starlark.Tuple)
		out := make([]any, len(items))
		for i, item := range items {
			if p.Type == api.Any {
				out[i] = item
				continue
			}
			x, err := s.decode(th, fn, api.Param{Name: p.Name, Type: p.Type, Required: true}, item)
			if err != nil {
				return nil, fmt.Errorf("%s: for %s %d: got %s, want %s", fn, strings.TrimSuffix(p.Name, "s"), i+1, item.Type(), goalOf(p.Type))
			}
			out[i] = x
		}
		return out, nil
	}
	if v == starlark.None {
		if p.Type == api.Any {
			return v, nil
		}
		if x, ok := p.NoneValue(); ok {
			return x, nil
		}
	}
	switch p.Type {
	case api.Str:
		return toStr(fn, p.Name, v)
	case api.Int:
		return toInt(fn, p.Name, v)
	case api.Bool:
		return bool(v.Truth()), nil
	case api.Seconds:
		d, _, err := toDuration(fn, p.Name, v, 0)
		return d, err
	case api.Regex:
		str, err := toStr(fn, p.Name, v)
		if err != nil {
			return nil, err
		}
		re, err := pyRegex(str)
		if err != nil {
			return nil, fmt.Errorf("%s: for parameter %s: %w", fn, p.Name, err)
		}
		return re, nil
	case api.TTY:
		return toTTY(fn, p.Name, v)
	case api.Function:
		if _, ok := v.(starlark.Callable); !ok {
			return nil, typeError(fn, p.Name, v, "a function")
		}
		return api.Func(func(args ...any) (bool, error) {
			in := make(starlark.Tuple, len(args))
			for i, x := range args {
				in[i] = s.toValue(x)
			}
			out, err := s.call(th, v, in, nil)
			if err != nil {
				return false, err
			}
			return bool(out.Truth()), nil
		}), nil
	case api.Text:
		return strOf(v), nil
	case api.Snapshot:
		sv, ok := v.(*snapshotValue)
		if !ok {
			return nil, fmt.Errorf("%s: %s must be what machine.snapshot() returned, not %s", fn, p.Name, v.Type())
		}
		return sv.snap, nil
	}
	return v, nil // api.Any
}

func goalOf(t api.Type) string {
	switch t {
	case api.Str:
		return "string"
	case api.Function:
		return "a function"
	}
	return t.String()
}

// toValue converts a Go call's result (package api's result types) to a
// Starlark value.
func (s *Session) toValue(v any) starlark.Value {
	switch x := v.(type) {
	case starlark.Value:
		return x
	case api.Tuple:
		t := make(starlark.Tuple, len(x))
		for i, e := range x {
			t[i] = s.toValue(e)
		}
		return t
	case api.Dict:
		d := starlark.NewDict(len(x))
		for _, it := range x {
			d.SetKey(starlark.String(it.Key), s.toValue(it.Value))
		}
		return d
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		return toStarlark(m)
	case []any:
		l := make([]starlark.Value, len(x))
		for i, e := range x {
			l[i] = s.toValue(e)
		}
		return starlark.NewList(l)
	case *machine.Machine:
		return s.machineValue(x)
	case []*machine.Machine:
		l := make([]starlark.Value, len(x))
		for i, m := range x {
			l[i] = s.machineValue(m)
		}
		return starlark.NewList(l)
	case *machine.Snapshot:
		return &snapshotValue{snap: x}
	case api.Block:
		return &nestedCM{msg: x.Msg, open: x.Open}
	}
	return toStarlark(v)
}

// anyParams turns a compact parameter list into api.Params of type Any,
// for the Python built-ins the runtime adds (print, sum, ...) that are
// not part of the NixOS API: "name?" is optional, "*" starts
// keyword-only parameters, "*name" collects the remaining positional
// arguments.
func anyParams(spec ...string) []api.Param {
	var ps []api.Param
	kwOnly := false
	for _, n := range spec {
		p := api.Param{Type: api.Any, Required: true, KeywordOnly: kwOnly}
		switch {
		case n == "*":
			kwOnly = true
			continue
		case strings.HasPrefix(n, "*"):
			p.Name, p.Variadic, p.Required, p.KeywordOnly = n[1:], true, false, false
			kwOnly = true
		case strings.HasSuffix(n, "?"):
			p.Name, p.Required = n[:len(n)-1], false
		default:
			p.Name = n
		}
		ps = append(ps, p)
	}
	return ps
}

// unpack binds a built-in's arguments (anyParams' spec in names) to
// vals, one per parameter other than "*": an absent one stays nil, so
// callers tell "not given" from an explicit None; *rest is a
// starlark.Tuple.
func unpack(fn string, args starlark.Tuple, kwargs []starlark.Tuple, names []string, vals ...*starlark.Value) error {
	params := anyParams(names...)
	a, err := (*Session)(nil).bind(nil, fn, params, args, kwargs)
	if err != nil {
		return err
	}
	for i, p := range params {
		*vals[i] = nil
		if !a.Given(p.Name) {
			continue
		}
		if p.Variadic {
			rest := starlark.Tuple{}
			for _, x := range a.List(p.Name) {
				rest = append(rest, x.(starlark.Value))
			}
			*vals[i] = rest
			continue
		}
		*vals[i] = a.Value(p.Name).(starlark.Value)
	}
	return nil
}

// noArgs checks that a call has no arguments.
func noArgs(fn string, args starlark.Tuple, kwargs []starlark.Tuple) error {
	return unpack(fn, args, kwargs, nil)
}

func isNone(v starlark.Value) bool { return v == nil || v == starlark.None }

func typeError(fn, param string, v starlark.Value, want string) error {
	return fmt.Errorf("%s: for parameter %s: got %s, want %s", fn, param, v.Type(), want)
}

// toStr converts a required string argument.
func toStr(fn, param string, v starlark.Value) (string, error) {
	s, ok := v.(starlark.String)
	if !ok {
		return "", typeError(fn, param, v, "string")
	}
	return string(s), nil
}

// toOptStr converts an optional string argument (None or absent: def).
func toOptStr(fn, param string, v starlark.Value, def string) (string, error) {
	if isNone(v) {
		return def, nil
	}
	return toStr(fn, param, v)
}

// toInt converts an integer argument.
func toInt(fn, param string, v starlark.Value) (int, error) {
	if _, ok := v.(starlark.Bool); ok {
		return 0, typeError(fn, param, v, "int")
	}
	i, ok := v.(starlark.Int)
	if !ok {
		return 0, typeError(fn, param, v, "int")
	}
	n, ok := i.Int64()
	if !ok || n > math.MaxInt32 || n < math.MinInt32 {
		return 0, fmt.Errorf("%s: for parameter %s: %s is out of range", fn, param, i)
	}
	return int(n), nil
}

// toBool converts a flag with Python truthiness (absent: def).
func toBool(v starlark.Value, def bool) bool {
	if v == nil {
		return def
	}
	return bool(v.Truth())
}

// toTTY converts a virtual terminal number given as int or string.
func toTTY(fn, param string, v starlark.Value) (int, error) {
	if s, ok := v.(starlark.String); ok {
		n, err := strconv.Atoi(strings.TrimSpace(string(s)))
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s: for parameter %s: %q is not a terminal number", fn, param, string(s))
		}
		return n, nil
	}
	n, err := toInt(fn, param, v)
	if err != nil {
		return 0, typeError(fn, param, v, "int or string")
	}
	if n < 0 {
		return 0, fmt.Errorf("%s: for parameter %s: %d is not a terminal number", fn, param, n)
	}
	return n, nil
}

// toDuration converts a duration argument: a number of seconds or a
// timedelta. Absent gives def with ok=true; None gives ok=false (no
// limit); bool is rejected like the NixOS driver does.
func toDuration(fn, param string, v starlark.Value, def time.Duration) (d time.Duration, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return def, true, nil
	case starlark.NoneType:
		return 0, false, nil
	case starlark.Bool:
		return 0, false, typeError(fn, param, v, "a number of seconds or a timedelta")
	case starlark.Int:
		n, ok := x.Int64()
		if !ok || n > math.MaxInt64/int64(time.Second) {
			return 0, false, fmt.Errorf("%s: for parameter %s: %s seconds is out of range", fn, param, x)
		}
		d = time.Duration(n) * time.Second
	case starlark.Float:
		f := float64(x) * float64(time.Second)
		if math.IsNaN(f) || f > math.MaxInt64 || f < math.MinInt64 {
			return 0, false, fmt.Errorf("%s: for parameter %s: %v seconds is out of range", fn, param, x)
		}
		d = time.Duration(f)
	default:
		var ok bool
		d, ok = asDuration(v)
		if !ok {
			return 0, false, typeError(fn, param, v, "a number of seconds or a timedelta")
		}
	}
	if d < 0 {
		return 0, false, fmt.Errorf("%s: for parameter %s: negative duration %s", fn, param, d)
	}
	return d, true, nil
}
