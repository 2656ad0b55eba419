package script

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// unpack binds a call's arguments to parameters named as in the NixOS
// driver. A name ending in "?" is optional; "*" starts keyword-only
// parameters; "*name" collects the remaining positional arguments into a
// starlark.Tuple. vals has one pointer per name other than "*". An
// optional parameter that was not passed stays nil (so callers tell "not
// given" from an explicit None).
//
// It exists instead of starlark.UnpackArgs to give the same error
// messages everywhere, with a spelling hint over all parameter names.
func unpack(fn string, args starlark.Tuple, kwargs []starlark.Tuple, names []string, vals ...*starlark.Value) error {
	type param struct {
		name     string
		optional bool
		kwOnly   bool
		rest     bool
		val      *starlark.Value
	}
	params := make([]param, 0, len(vals))
	kwOnly := false
	i := 0
	for _, n := range names {
		if n == "*" {
			kwOnly = true
			continue
		}
		p := param{kwOnly: kwOnly, val: vals[i]}
		i++
		switch {
		case strings.HasPrefix(n, "*"):
			p.name, p.rest, p.optional = n[1:], true, true
			kwOnly = true
		case strings.HasSuffix(n, "?"):
			p.name, p.optional = n[:len(n)-1], true
		default:
			p.name = n
		}
		*p.val = nil
		params = append(params, p)
	}
	set := make([]bool, len(params))

	// Positional arguments.
	pi := 0
	for ai := 0; ai < len(args); ai++ {
		for pi < len(params) && params[pi].kwOnly && !params[pi].rest {
			pi++
		}
		if pi >= len(params) {
			return fmt.Errorf("%s: got %d positional arguments, want at most %d", fn, len(args), countPositional(names))
		}
		p := &params[pi]
		if p.rest {
			rest := append(starlark.Tuple(nil), args[ai:]...)
			*p.val = rest
			set[pi] = true
			break
		}
		*p.val = args[ai]
		set[pi] = true
		pi++
	}

	// Keyword arguments.
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		found := false
		for j := range params {
			if params[j].name != k || params[j].rest {
				continue
			}
			if set[j] {
				return fmt.Errorf("%s: got multiple values for argument %s", fn, k)
			}
			*params[j].val = kv[1]
			set[j] = true
			found = true
			break
		}
		if !found {
			var cands []string
			for _, p := range params {
				if !p.rest {
					cands = append(cands, p.name)
				}
			}
			msg := fmt.Sprintf("%s: unexpected keyword argument %q", fn, k)
			if n := nearest(k, cands); n != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", n)
			} else if len(cands) > 0 {
				msg += " (it takes " + strings.Join(cands, ", ") + ")"
			} else {
				msg += " (it takes no arguments)"
			}
			return fmt.Errorf("%s", msg)
		}
	}
	for j, p := range params {
		if !p.optional && !set[j] {
			return fmt.Errorf("%s: missing argument for %s", fn, p.name)
		}
	}
	return nil
}

func countPositional(names []string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, "*") {
			break
		}
		n++
	}
	return n
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
