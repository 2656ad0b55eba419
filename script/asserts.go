package script

import (
	"fmt"
	"regexp"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/vmdriver/vmdriver/machine"
)

// assertionError is a failed t.assert*: the NixOS driver's
// RequestedAssertionFailed, so it wraps machine.ErrCheckFailed.
type assertionError struct{ msg string }

func (e *assertionError) Error() string { return e.msg }
func (e *assertionError) Unwrap() error { return machine.ErrCheckFailed }

// assertion is one t.assert* method: check returns "" when the assertion
// holds, else unittest's standard message.
type assertion struct {
	params []string // without the trailing msg
	check  func(args []starlark.Value) (string, error)
}

var assertions = map[string]assertion{
	"assertEqual": {[]string{"first", "second"}, func(a []starlark.Value) (string, error) {
		eq, err := starlark.Equal(a[0], a[1])
		if err != nil || eq {
			return "", err
		}
		return pyRepr(a[0]) + " != " + pyRepr(a[1]), nil
	}},
	"assertNotEqual": {[]string{"first", "second"}, func(a []starlark.Value) (string, error) {
		eq, err := starlark.Equal(a[0], a[1])
		if err != nil || !eq {
			return "", err
		}
		return pyRepr(a[0]) + " == " + pyRepr(a[1]), nil
	}},
	"assertTrue": {[]string{"expr"}, func(a []starlark.Value) (string, error) {
		if a[0].Truth() {
			return "", nil
		}
		return pyRepr(a[0]) + " is not true", nil
	}},
	"assertFalse": {[]string{"expr"}, func(a []starlark.Value) (string, error) {
		if !a[0].Truth() {
			return "", nil
		}
		return pyRepr(a[0]) + " is not false", nil
	}},
	"assertIn": {[]string{"member", "container"}, func(a []starlark.Value) (string, error) {
		in, err := starlark.Binary(syntax.IN, a[0], a[1])
		if err != nil || in.Truth() {
			return "", err
		}
		return pyRepr(a[0]) + " not found in " + pyRepr(a[1]), nil
	}},
	"assertNotIn": {[]string{"member", "container"}, func(a []starlark.Value) (string, error) {
		in, err := starlark.Binary(syntax.IN, a[0], a[1])
		if err != nil || !in.Truth() {
			return "", err
		}
		return pyRepr(a[0]) + " unexpectedly found in " + pyRepr(a[1]), nil
	}},
	"assertIsNone": {[]string{"obj"}, func(a []starlark.Value) (string, error) {
		if a[0] == starlark.None {
			return "", nil
		}
		return pyRepr(a[0]) + " is not None", nil
	}},
	"assertIsNotNone": {[]string{"obj"}, func(a []starlark.Value) (string, error) {
		if a[0] != starlark.None {
			return "", nil
		}
		return "unexpectedly None", nil
	}},
	"assertGreater":      {[]string{"a", "b"}, compare(syntax.GT, "not greater than")},
	"assertGreaterEqual": {[]string{"a", "b"}, compare(syntax.GE, "not greater than or equal to")},
	"assertLess":         {[]string{"a", "b"}, compare(syntax.LT, "not less than")},
	"assertLessEqual":    {[]string{"a", "b"}, compare(syntax.LE, "not less than or equal to")},
	"assertRegex": {[]string{"text", "expected_regex"}, func(a []starlark.Value) (string, error) {
		text, err := toStr("assertRegex", "text", a[0])
		if err != nil {
			return "", err
		}
		pat, err := toStr("assertRegex", "expected_regex", a[1])
		if err != nil {
			return "", err
		}
		goPat, err := pyRegex(pat)
		if err != nil {
			return "", fmt.Errorf("assertRegex: %w", err)
		}
		if regexp.MustCompile(goPat).MatchString(text) {
			return "", nil
		}
		return fmt.Sprintf("Regex didn't match: %s not found in %s", pyRepr(a[1]), pyRepr(a[0])), nil
	}},
	"assertCountEqual": {[]string{"first", "second"}, countEqual},
}

func compare(op syntax.Token, what string) func(a []starlark.Value) (string, error) {
	return func(a []starlark.Value) (string, error) {
		ok, err := starlark.Compare(op, a[0], a[1])
		if err != nil || ok {
			return "", err
		}
		return pyRepr(a[0]) + " " + what + " " + pyRepr(a[1]), nil
	}
}

// countEqual checks that two sequences have the same elements, in any
// order, and lists the differences like unittest does.
func countEqual(a []starlark.Value) (string, error) {
	var seqs [2][]starlark.Value
	for i, v := range a[:2] {
		it, ok := v.(starlark.Iterable)
		if !ok {
			return "", fmt.Errorf("assertCountEqual: %s is not iterable", v.Type())
		}
		for e := range starlark.Elements(it) {
			seqs[i] = append(seqs[i], e)
		}
	}
	count := func(seq []starlark.Value, x starlark.Value) (int, error) {
		n := 0
		for _, e := range seq {
			eq, err := starlark.Equal(e, x)
			if err != nil {
				return 0, err
			}
			if eq {
				n++
			}
		}
		return n, nil
	}
	var diffs []string
	var seen []starlark.Value
	for _, x := range append(append([]starlark.Value(nil), seqs[0]...), seqs[1]...) {
		dup := false
		for _, s := range seen {
			if eq, _ := starlark.Equal(s, x); eq {
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		seen = append(seen, x)
		n1, err := count(seqs[0], x)
		if err != nil {
			return "", err
		}
		n2, err := count(seqs[1], x)
		if err != nil {
			return "", err
		}
		if n1 != n2 {
			diffs = append(diffs, fmt.Sprintf("First has %d, Second has %d:  %s", n1, n2, pyRepr(x)))
		}
	}
	if len(diffs) == 0 {
		return "", nil
	}
	return "Element counts were not equal:\n" + strings.Join(diffs, "\n"), nil
}

// assertions builds `t`, the unittest.TestCase-like object.
func (s *Session) assertions() *namespace {
	attrs := starlark.StringDict{}
	for name, a := range assertions {
		params := append(append([]string(nil), a.params...), "msg?")
		attrs[name] = s.builtin(name, func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			vals := make([]starlark.Value, len(params))
			ptrs := make([]*starlark.Value, len(params))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := unpack(name, args, kwargs, params, ptrs...); err != nil {
				return nil, err
			}
			std, err := a.check(vals[:len(a.params)])
			if err != nil {
				return nil, err
			}
			if std == "" {
				return starlark.None, nil
			}
			if msg := vals[len(a.params)]; !isNone(msg) {
				std += " : " + strOf(msg)
			}
			return nil, &assertionError{msg: std}
		})
	}
	attrs["fail"] = s.builtin("fail", func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var msg starlark.Value
		if err := unpack("fail", args, kwargs, []string{"msg?"}, &msg); err != nil {
			return nil, err
		}
		if isNone(msg) {
			return nil, &assertionError{msg: "None"}
		}
		return nil, &assertionError{msg: strOf(msg)}
	})
	return &namespace{name: "t", attrs: attrs}
}
