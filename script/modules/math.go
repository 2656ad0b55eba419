package modules

import (
	"fmt"
	"math"
	"math/big"

	libmath "go.starlark.net/lib/math"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// mathModule is Python's math: go.starlark.net/lib/math without its
// non-Python members (round, mod), with sqrt and log raising "math domain
// error" as Python does, plus inf, nan, tau, isclose, isnan, isinf, isfinite,
// trunc, log2, log10, gcd and factorial.
func mathModule() *starlarkstruct.Module {
	members := make(starlark.StringDict, len(libmath.Module.Members)+16)
	for k, v := range libmath.Module.Members {
		if k == "round" || k == "mod" {
			continue
		}
		if b, ok := v.(*starlark.Builtin); ok {
			// Rename for errors that say math.ceil rather than ceil.
			inner := b
			v = starlark.NewBuiltin("math."+k, func(thread *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
				r, err := inner.CallInternal(thread, args, kwargs)
				if err != nil {
					return nil, fmt.Errorf("math.%s: %w", k, err)
				}
				return r, nil
			})
		}
		members[k] = v
	}
	unary := func(name string, f func(float64) (float64, error)) {
		members[name] = starlark.NewBuiltin("math."+name, func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var x floatArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &x); err != nil {
				return nil, err
			}
			r, err := f(float64(x))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return starlark.Float(r), nil
		})
	}
	domain := fmt.Errorf("math domain error")
	unary("sqrt", func(x float64) (float64, error) {
		if x < 0 {
			return 0, domain
		}
		return math.Sqrt(x), nil
	})
	unary("log2", func(x float64) (float64, error) {
		if x <= 0 {
			return 0, domain
		}
		return math.Log2(x), nil
	})
	unary("log10", func(x float64) (float64, error) {
		if x <= 0 {
			return 0, domain
		}
		return math.Log10(x), nil
	})
	pred := func(name string, f func(float64) bool) {
		members[name] = starlark.NewBuiltin("math."+name, func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var x floatArg
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &x); err != nil {
				return nil, err
			}
			return starlark.Bool(f(float64(x))), nil
		})
	}
	pred("isnan", math.IsNaN)
	pred("isinf", func(x float64) bool { return math.IsInf(x, 0) })
	pred("isfinite", func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) })
	members["isclose"] = starlark.NewBuiltin("math.isclose", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var a, c floatArg
		relTol, absTol := floatArg(1e-9), floatArg(0)
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "a", &a, "b", &c, "rel_tol?", &relTol, "abs_tol?", &absTol); err != nil {
			return nil, err
		}
		if relTol < 0 || absTol < 0 {
			return nil, fmt.Errorf("%s: tolerances must be non-negative", b.Name())
		}
		x, y := float64(a), float64(c)
		if x == y {
			return starlark.True, nil
		}
		if math.IsInf(x, 0) || math.IsInf(y, 0) {
			return starlark.False, nil
		}
		diff := math.Abs(x - y)
		return starlark.Bool(diff <= math.Abs(float64(relTol)*y) || diff <= math.Abs(float64(relTol)*x) || diff <= float64(absTol)), nil
	})
	members["trunc"] = starlark.NewBuiltin("math.trunc", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var x starlark.Value
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &x); err != nil {
			return nil, err
		}
		switch v := x.(type) {
		case starlark.Int:
			return v, nil
		case starlark.Float:
			r, err := starlark.NumberToInt(starlark.Float(math.Trunc(float64(v))))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", b.Name(), err)
			}
			return r, nil
		}
		return nil, fmt.Errorf("%s: want int or float, got %s", b.Name(), x.Type())
	})
	members["gcd"] = starlark.NewBuiltin("math.gcd", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
		}
		g := new(big.Int)
		for i, a := range args {
			n, ok := a.(starlark.Int)
			if !ok {
				return nil, fmt.Errorf("%s: argument %d: want int, got %s", b.Name(), i+1, a.Type())
			}
			g.GCD(nil, nil, g, new(big.Int).Abs(n.BigInt()))
		}
		return starlark.MakeBigInt(g), nil
	})
	members["factorial"] = starlark.NewBuiltin("math.factorial", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var n int
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &n); err != nil {
			return nil, err
		}
		if n < 0 || n > 10000 {
			return nil, fmt.Errorf("%s: want 0 <= n <= 10000, got %d", b.Name(), n)
		}
		return starlark.MakeBigInt(new(big.Int).MulRange(1, int64(max(n, 1)))), nil
	})
	members["inf"] = starlark.Float(math.Inf(1))
	members["nan"] = starlark.Float(math.NaN())
	members["tau"] = starlark.Float(2 * math.Pi)
	return &starlarkstruct.Module{Name: "math", Members: members}
}

// floatArg unpacks an int or float argument as float64.
type floatArg float64

// Unpack implements starlark.Unpacker.
func (f *floatArg) Unpack(v starlark.Value) error {
	switch x := v.(type) {
	case starlark.Int, starlark.Float:
		fl, _ := starlark.AsFloat(x)
		*f = floatArg(fl)
		return nil
	}
	return fmt.Errorf("got %s, want int or float", v.Type())
}
