package script

import (
	"math"
	"testing"

	"go.starlark.net/starlark"
)

func TestPyFormat(t *testing.T) {
	big := starlark.MakeInt(1).Lsh(70)
	tests := []struct {
		spec string
		v    starlark.Value
		want string
	}{
		{"", starlark.String("x"), "x"},
		{">5", starlark.String("ab"), "   ab"},
		{"<5", starlark.MakeInt(7), "7    "},
		{"^7", starlark.String("mid"), "  mid  "},
		{"*^7", starlark.String("mid"), "**mid**"},
		{".2", starlark.String("abcdef"), "ab"},
		{"5", starlark.String("ab"), "ab   "},
		{"5", starlark.MakeInt(42), "   42"},
		{"04d", starlark.MakeInt(7), "0007"},
		{"04d", starlark.MakeInt(-7), "-007"},
		{"+d", starlark.MakeInt(7), "+7"},
		{" d", starlark.MakeInt(7), " 7"},
		{"x", starlark.MakeInt(255), "ff"},
		{"X", starlark.MakeInt(255), "FF"},
		{"#x", starlark.MakeInt(255), "0xff"},
		{"#06x", starlark.MakeInt(255), "0x00ff"},
		{"o", starlark.MakeInt(8), "10"},
		{"b", starlark.MakeInt(5), "101"},
		{"c", starlark.MakeInt(65), "A"},
		{",", starlark.MakeInt(1234567), "1,234,567"},
		{"_d", starlark.MakeInt(-1234), "-1_234"},
		{"d", big, "1180591620717411303424"},
		{".2f", starlark.Float(3.14159), "3.14"},
		{".0f", starlark.Float(2.5), "2"},
		{"8.3f", starlark.Float(-3.14159), "  -3.142"},
		{"08.3f", starlark.Float(-3.14159), "-003.142"},
		{".2f", starlark.MakeInt(3), "3.00"},
		{"f", starlark.Float(1), "1.000000"},
		{"e", starlark.Float(12345.678), "1.234568e+04"},
		{".2E", starlark.Float(0.000123), "1.23E-04"},
		{"g", starlark.Float(1234567), "1.23457e+06"},
		{"g", starlark.Float(0.5), "0.5"},
		{".1%", starlark.Float(0.256), "25.6%"},
		{"", starlark.Float(1), "1.0"},
		{"", starlark.Float(0.1), "0.1"},
		{"", starlark.Float(1e20), "1e+20"},
		{".3", starlark.Float(2), "2.0"},
		{",.2f", starlark.Float(1234567.891), "1,234,567.89"},
		{"f", starlark.Float(math.Inf(-1)), "-inf"},
		{"", starlark.True, "True"},
		{"d", starlark.True, "1"},
		{">6", starlark.None, "  None"},
	}
	for _, tt := range tests {
		got, err := pyFormat(tt.spec, tt.v)
		if err != nil || got != tt.want {
			t.Errorf("format(%v, %q) = %q, %v; want %q", tt.v, tt.spec, got, err, tt.want)
		}
	}
	for _, bad := range []struct {
		spec string
		v    starlark.Value
	}{
		{"d", starlark.String("x")},
		{"d", starlark.Float(1.5)},
		{".2d", starlark.MakeInt(1)},
		{"q", starlark.MakeInt(1)},
		{"5.", starlark.MakeInt(1)},
		{"c", starlark.MakeInt(-1)},
	} {
		if got, err := pyFormat(bad.spec, bad.v); err == nil {
			t.Errorf("format(%v, %q) = %q, want an error", bad.v, bad.spec, got)
		}
	}
}

func TestPyRepr(t *testing.T) {
	tests := []struct {
		v    starlark.Value
		want string
	}{
		{starlark.String("a"), `'a'`},
		{starlark.String("it's"), `"it's"`},
		{starlark.String(`both ' and "`), `'both \' and "'`},
		{starlark.String("tab\there\x01é"), `'tab\there\x01é'`},
		{starlark.String(`back\slash`), `'back\\slash'`},
		{starlark.Tuple{starlark.MakeInt(1)}, `(1,)`},
		{starlark.Tuple{}, `()`},
		{starlark.NewList([]starlark.Value{starlark.None, starlark.False, starlark.Float(1.5)}), `[None, False, 1.5]`},
	}
	for _, tt := range tests {
		if got := pyRepr(tt.v); got != tt.want {
			t.Errorf("pyRepr(%v) = %s, want %s", tt.v, got, tt.want)
		}
	}
	set := starlark.NewSet(2)
	set.Insert(starlark.MakeInt(1))
	if got := pyRepr(set); got != "{1}" {
		t.Errorf("set repr = %s", got)
	}
	if got := pyRepr(starlark.NewSet(0)); got != "set()" {
		t.Errorf("empty set repr = %s", got)
	}
}

func TestNearest(t *testing.T) {
	cands := []string{"wait_for_unit", "wait_for_file", "wait_until_fails", "succeed", "timeout", "start_all"}
	tests := []struct{ in, want string }{
		{"wait_for_unti", "wait_for_unit"},
		{"Wait_For_Unit", "wait_for_unit"},
		{"timout", "timeout"},
		{"sucess", "succeed"},
		{"start_al", "start_all"},
		{"completely_different", ""},
		{"x", ""},
	}
	for _, tt := range tests {
		if got := nearest(tt.in, cands); got != tt.want {
			t.Errorf("nearest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPyRegex(t *testing.T) {
	tests := []struct{ in, want string }{
		{`(?P<name>\w+)`, `(?P<name>\w+)`},
		{`end\Z`, `end\z`},
		{`a\\Z`, `a\\Z`},
		{`\d+\.\d+`, `\d+\.\d+`},
	}
	for _, tt := range tests {
		if got, err := pyRegex(tt.in); err != nil || got != tt.want {
			t.Errorf("pyRegex(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{`(a)\1`, `(?P<x>a)(?P=x)`, `a(?=b)`, `(?<!a)b`, `(unclosed`} {
		if _, err := pyRegex(bad); err == nil {
			t.Errorf("pyRegex(%q) succeeded", bad)
		}
	}
}

func TestUnpack(t *testing.T) {
	s := func(v string) starlark.Value { return starlark.String(v) }
	kw := func(k string, v starlark.Value) starlark.Tuple { return starlark.Tuple{starlark.String(k), v} }
	var a, b, c starlark.Value
	names := []string{"a", "b?", "*", "c?"}
	if err := unpack("f", starlark.Tuple{s("1")}, []starlark.Tuple{kw("c", s("3"))}, names, &a, &b, &c); err != nil {
		t.Fatal(err)
	}
	if a != s("1") || b != nil || c != s("3") {
		t.Errorf("got %v %v %v", a, b, c)
	}
	errs := []struct {
		args   starlark.Tuple
		kwargs []starlark.Tuple
		want   string
	}{
		{nil, nil, "f: missing argument for a"},
		{starlark.Tuple{s("1"), s("2"), s("3")}, nil, "f: got 3 positional arguments, want at most 2"},
		{starlark.Tuple{s("1")}, []starlark.Tuple{kw("a", s("1"))}, "f: got multiple values for argument a"},
		{starlark.Tuple{s("1")}, []starlark.Tuple{kw("cc", s("1"))}, `f: unexpected keyword argument "cc" (did you mean c?)`},
		{starlark.Tuple{s("1")}, []starlark.Tuple{kw("zzzzzz", s("1"))}, `f: unexpected keyword argument "zzzzzz" (it takes a, b, c)`},
	}
	for _, tt := range errs {
		err := unpack("f", tt.args, tt.kwargs, names, &a, &b, &c)
		if err == nil || err.Error() != tt.want {
			t.Errorf("unpack(%v, %v) = %v, want %q", tt.args, tt.kwargs, err, tt.want)
		}
	}
	var rest, opt starlark.Value
	if err := unpack("g", starlark.Tuple{s("x"), s("y")}, nil, []string{"*args", "opt?"}, &rest, &opt); err != nil {
		t.Fatal(err)
	}
	if rest.(starlark.Tuple).Len() != 2 || opt != nil {
		t.Errorf("rest = %v, opt = %v", rest, opt)
	}
}

func TestToDuration(t *testing.T) {
	tests := []struct {
		v      starlark.Value
		want   float64 // seconds
		ok     bool
		hasErr bool
	}{
		{nil, 900, true, false},
		{starlark.None, 0, false, false},
		{starlark.MakeInt(5), 5, true, false},
		{starlark.Float(0.25), 0.25, true, false},
		{starlark.True, 0, false, true},
		{starlark.MakeInt(-1), 0, false, true},
		{starlark.String("5"), 0, false, true},
	}
	for _, tt := range tests {
		d, ok, err := toDuration("f", "timeout", tt.v, 900e9)
		if (err != nil) != tt.hasErr || ok != tt.ok || d.Seconds() != tt.want {
			t.Errorf("toDuration(%v) = %v, %v, %v", tt.v, d, ok, err)
		}
	}
}
