package pycompat

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"go.starlark.net/lib/json"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Test doubles of the runtime's builtins, following the contract in the
// package documentation.

type recorder struct {
	log  []string
	open []*withIterator // with blocks entered and not yet exited, innermost last
}

func (r *recorder) add(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

// fakeCM is a context manager: entering logs and yields value.
type fakeCM struct {
	name  string
	value starlark.Value
	fn    starlark.Callable // polling conditions wrap a function
}

func (c *fakeCM) String() string        { return "<cm " + c.name + ">" }
func (c *fakeCM) Type() string          { return "cm" }
func (c *fakeCM) Freeze()               {}
func (c *fakeCM) Truth() starlark.Bool  { return starlark.True }
func (c *fakeCM) Hash() (uint32, error) { return 0, errors.New("unhashable") }

// withIterable is with_'s result: it yields once, entering on the first
// Next and exiting (in reverse order) in Done.
type withIterable struct {
	rec *recorder
	cms []*fakeCM
}

func (w *withIterable) String() string        { return "<with>" }
func (w *withIterable) Type() string          { return "with" }
func (w *withIterable) Freeze()               {}
func (w *withIterable) Truth() starlark.Bool  { return starlark.True }
func (w *withIterable) Hash() (uint32, error) { return 0, errors.New("unhashable") }
func (w *withIterable) Iterate() starlark.Iterator {
	return &withIterator{w: w}
}

type withIterator struct {
	w       *withIterable
	entered int
	yielded bool
}

// Starlark calls Done innermost-first when a loop ends normally, but when
// a function returns from inside nested loops, or the body fails, its
// deferred cleanup calls Done outermost-first. The double (like the real
// runtime must) keeps a stack of open blocks and, when an outer block is
// done, first exits the blocks still open inside it.

func (it *withIterator) Next(p *starlark.Value) bool {
	if it.yielded {
		return false
	}
	it.yielded = true
	it.w.rec.open = append(it.w.rec.open, it)
	var vals starlark.Tuple
	for _, cm := range it.w.cms {
		it.w.rec.add("enter %s", cm.name)
		it.entered++
		vals = append(vals, cm.value)
	}
	if len(vals) == 1 {
		*p = vals[0]
	} else {
		*p = vals
	}
	return true
}

func (it *withIterator) Done() {
	open := it.w.rec.open
	for i := len(open) - 1; i >= 0; i-- {
		if open[i] == it {
			for j := len(open) - 1; j >= i; j-- {
				open[j].exit()
			}
			it.w.rec.open = open[:i]
			return
		}
	}
}

func (it *withIterator) exit() {
	for i := it.entered - 1; i >= 0; i-- {
		it.w.rec.add("exit %s", it.w.cms[i].name)
	}
	it.entered = 0
}

func builtins(rec *recorder) starlark.StringDict {
	b := func(name string, fn func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)) *starlark.Builtin {
		return starlark.NewBuiltin(name, func(_ *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return fn(args, kwargs)
		})
	}
	jsonMod := &starlarkstruct.Module{Name: "json", Members: starlark.StringDict{
		"loads": json.Module.Members["decode"],
		"dumps": json.Module.Members["encode"],
		"load_": b("load_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return starlark.String("loaded " + args[0].(starlark.String).GoString()), nil
		}),
	}}
	var pollingCondition *starlark.Builtin
	pollingCondition = b("polling_condition", func(args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(args) == 0 { // @polling_condition(interval=...)
			return pollingCondition, nil
		}
		fn := args[0].(starlark.Callable)
		return &fakeCM{name: "condition " + fn.Name(), value: starlark.None, fn: fn}, nil
	})
	return starlark.StringDict{
		"with_": b("with_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			w := &withIterable{rec: rec}
			for _, a := range args {
				cm, ok := a.(*fakeCM)
				if !ok {
					return nil, fmt.Errorf("with_: %s is not a context manager", a.Type())
				}
				w.cms = append(w.cms, cm)
			}
			return w, nil
		}),
		"subtest": b("subtest", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return &fakeCM{name: "subtest " + args[0].(starlark.String).GoString(), value: starlark.None}, nil
		}),
		"cm": b("cm", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return &fakeCM{name: args[0].(starlark.String).GoString(), value: args[1]}, nil
		}),
		"log": b("log", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			parts := make([]string, len(args))
			for i, a := range args {
				if s, ok := a.(starlark.String); ok {
					parts[i] = s.GoString()
				} else {
					parts[i] = a.String()
				}
			}
			rec.add("%s", strings.Join(parts, " "))
			return starlark.None, nil
		}),
		"assert_": b("assert_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			if args[0].Truth() {
				return starlark.None, nil
			}
			if len(args) > 1 {
				return nil, fmt.Errorf("assertion failed: %s", args[1])
			}
			return nil, errors.New("assertion failed")
		}),
		"import_": b("import_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			if mod := args[0].(starlark.String).GoString(); mod != "json" {
				return nil, fmt.Errorf("no module named %s", mod)
			}
			if len(args) == 1 {
				return jsonMod, nil
			}
			return jsonMod.Attr(args[1].(starlark.String).GoString())
		}),
		"fmt_": b("fmt_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return fakeFormat(args[0].(starlark.String).GoString(), args[1])
		}),
		// The runtime's fstr_ and py_ give Python's % and methods; the
		// receiver itself stands in for them here.
		"fstr_": b("fstr_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) { return args[0], nil }),
		"py_":   b("py_", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) { return args[0], nil }),
		"Exception": b("Exception", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return starlark.String("Exception: " + args[0].(starlark.String).GoString()), nil
		}),
		"tag": b("tag", func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			name := args[0].(starlark.String).GoString()
			return b("tag_"+name, func(args starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
				inner := args[0].(starlark.Callable)
				rec.add("apply %s", name)
				return b(name, func(_ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
					v, err := starlark.Call(&starlark.Thread{}, inner, nil, nil)
					if err != nil {
						return nil, err
					}
					return starlark.String(v.(starlark.String).GoString() + "|" + name), nil
				}), nil
			}), nil
		}),
		"polling_condition": pollingCondition,
	}
}

// fakeFormat supports the specs the tests use: .Nf, >N, <N.
func fakeFormat(spec string, v starlark.Value) (starlark.Value, error) {
	switch {
	case strings.HasPrefix(spec, ".") && strings.HasSuffix(spec, "f"):
		f, ok := starlark.AsFloat(v)
		if !ok {
			return nil, fmt.Errorf("fmt_: %s is not a number", v.Type())
		}
		return starlark.String(fmt.Sprintf("%"+spec, f)), nil
	case strings.HasPrefix(spec, ">") || strings.HasPrefix(spec, "<"):
		n, err := strconv.Atoi(spec[1:])
		if err != nil {
			return nil, err
		}
		s := v.String()
		if str, ok := v.(starlark.String); ok {
			s = str.GoString()
		}
		if spec[0] == '<' {
			n = -n
		}
		return starlark.String(fmt.Sprintf("%*s", n, s)), nil
	}
	return nil, fmt.Errorf("fmt_: unsupported spec %q", spec)
}

// run rewrites and executes src against the doubles.
func run(t *testing.T, src string) (starlark.StringDict, *recorder, *Result, error) {
	t.Helper()
	res, err := Rewrite("script.py", []byte(src))
	if err != nil {
		t.Fatalf("Rewrite: %v", err)
	}
	rec := &recorder{}
	th := &starlark.Thread{Name: "test"}
	th.SetMaxExecutionSteps(1_000_000) // the budget stands in for a deadline
	globals, err := starlark.ExecFileOptions(FileOptions(), th, "script.py", res.Source, builtins(rec))
	return globals, rec, res, err
}

func TestExecWithScoping(t *testing.T) {
	tests := []struct {
		name, src string
		log       []string
	}{
		{"name bound in with is visible after it", `
with subtest("one"):
    token = "abc"
log("after", token)
`, []string{"enter subtest one", "exit subtest one", "after abc"}},
		{"return inside with inside def", `
def find():
    for i in range(5):
        with subtest("s%d" % i):
            if i == 1:
                return i
    return -1
log("found", str(find()))
`, []string{"enter subtest s0", "exit subtest s0", "enter subtest s1", "exit subtest s1", "found 1"}},
		{"several managers enter in order and exit in reverse", `
with cm("x", 1) as a, cm("y", 2) as b:
    log("body", str(a + b))
`, []string{"enter x", "enter y", "body 3", "exit y", "exit x"}},
		{"parenthesised managers", `
with (
    cm("x", 1) as a,
    subtest("t"),
):
    log("a", str(a))
`, []string{"enter x", "enter subtest t", "a 1", "exit subtest t", "exit x"}},
		{"subtests carry a value to the next one", `
with subtest("create"):
    data = json.loads('{"id": 7}')
with subtest("use"):
    log("id", str(data["id"]))
`, []string{"enter subtest create", "exit subtest create", "enter subtest use", "id 7", "exit subtest use"}},
		{"polling condition decorator and with", `
@polling_condition
def foo_running():
    return True

@polling_condition(interval=3)
def bar_running():
    return True

with foo_running, bar_running:
    log("inside")
`, []string{"enter condition foo_running", "enter condition bar_running", "inside", "exit condition bar_running", "exit condition foo_running"}},
		{"return from nested with blocks exits inner first", `
def f():
    with subtest("a"):
        with subtest("b"):
            return 1
f()
log("after")
`, []string{"enter subtest a", "enter subtest b", "exit subtest b", "exit subtest a", "after"}},
		{"decorators apply bottom-up", `
@tag("a")
@tag("b")
def f():
    return "f"
log(f())
`, []string{"apply b", "apply a", "f|b|a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src
			if strings.Contains(src, "json") {
				src = "import json\n" + src
			}
			_, rec, res, err := run(t, src)
			if err != nil {
				t.Fatalf("exec: %v\n%s", err, res.Source)
			}
			if got, want := strings.Join(rec.log, "\n"), strings.Join(tt.log, "\n"); got != want {
				t.Errorf("log:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestExecWithExitsOnFailure(t *testing.T) {
	_, rec, _, err := run(t, `
with subtest("a"):
    with subtest("b"):
        fail("boom")
log("not reached")
`)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v, want boom", err)
	}
	want := "enter subtest a,enter subtest b,exit subtest b,exit subtest a"
	if got := strings.Join(rec.log, ","); got != want {
		t.Errorf("log %s, want %s", got, want)
	}
}

func TestExecValues(t *testing.T) {
	tests := []struct {
		name, src string
		want      string // repr of the global x
	}{
		{"f-string", "n = 3.14159\ns = \"q\"\nx = f\"{n:.2f}|{s!r}|{{lit}}|{n=}|{s:>3}\"\n", `"3.14|\"q\"|{lit}|n=3.14159|  q"`},
		{"f-string with nested quotes", "d = {\"k\": [1, 2]}\nx = f\"{d['k'][1]}-{' '.join(['a', 'b'])}\"\n", `"2-a b"`},
		{"implicit concatenation and percent", "x = \"%s-\" \"%s\" % (1, 2)\n", `"1-2"`},
		{"unknown escapes keep the backslash", "x = len(\"\\d\\$\") == 4 and \"\\d\"[0] == \"\\\\\"\n", "True"},
		{"non-ascii hex escape", "x = \"\\xe9\" == \"é\"\n", "True"},
		{"set literal", "s = {1, 2}\nx = 2 in s and 3 not in s\n", "True"},
		{"chained comparison", "x = [v for v in range(10) if 2 < v <= 4]\n", "[3, 4]"},
		{"generator as argument", "x = all(v > 0 for v in [1, 2]) and \"\".join(c for c in [\"a\", \"b\"]) == \"ab\"\n", "True"},
		{"is None", "v = None\nx = v is None and 1 is not None\n", "True"},
		{"import", "import json\nx = json.loads('{\"a\": [1, 2]}')[\"a\"][1]\n", "2"},
		{"from import", "from json import loads as l, dumps\nx = dumps(l('[1]'))\n", `"[1]"`},
		{"load attribute", "import json\nx = json.load(\"f\")\n", `"loaded f"`},
		{"annotations", "def f(a: int, /, b: str = \"x\", *, c: int = 3) -> str:\n    r: str = \"%s%s%d\" % (a, b, c)\n    return r\nx = f(1, c=4)\n", `"1x4"`},
		{"chained assignment shares the value", "a = b = [1]\nb.append(2)\nx = a\n", "[1, 2]"},
		{"ellipsis body", "def f():\n    ...\nx = f()\n", "None"},
		{"assert passes", "assert 1 == 1, \"fine\"\nx = 1\n", "1"},
		{"with binds value", "with cm(\"c\", 5) as v:\n    pass\nx = v\n", "5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, _, res, err := run(t, tt.src)
			if err != nil {
				t.Fatalf("exec: %v\n%s", err, res.Source)
			}
			if got := g["x"].String(); got != tt.want {
				t.Errorf("x = %s, want %s\n%s", got, tt.want, res.Source)
			}
		})
	}
}

// scriptFrame returns the innermost call frame in the script.
func scriptFrame(t *testing.T, err error) starlark.CallFrame {
	t.Helper()
	var ee *starlark.EvalError
	if !errors.As(err, &ee) {
		t.Fatalf("err = %v, want *starlark.EvalError", err)
	}
	for i := 0; i < len(ee.CallStack); i++ {
		if f := ee.CallStack.At(i); f.Pos.Filename() == "script.py" {
			return f
		}
	}
	t.Fatalf("no script frame in %v", ee.Backtrace())
	return starlark.CallFrame{}
}

func TestExecErrorPositions(t *testing.T) {
	tests := []struct {
		name, src string
		msg       string
		line, col int // in the original script
	}{
		{"inside an f-string field", "x = 1\nwith subtest(\"s\"):\n    y = f\"value: {x + 'a'}\"\n", "unknown binary op", 3, 21},
		{"after an f-string on the same line", "x = f\"{1}{2}\" + 1\n", "unknown binary op", 1, 15},
		{"failed assert", "def check(v):\n    assert v > 1, \"too small\"\ncheck(5)\ncheck(0)\n", "too small", 2, 5},
		{"raise", "if True:\n    raise Exception(\"bad\")\n", "Exception: bad", 2, 5},
		{"after a decorator that needed a new line", "if True:\n    @tag(\"a\")\n    def f():\n        return \"f\"\nx = f()\ny = 1 + \"s\"\n", "unknown binary op", 6, 7},
		{"in a with target", "with subtest(\"a\") as v, 3 as w:\n    pass\n", "not a context manager", 1, 6},
		{"after non-ascii text", "s = \"é\"; t = f\"{s}\" + 1\n", "unknown binary op", 1, 21},
		{"in a chained comparison", "x = None\ny = 1 < x < 3\n", "not implemented", 2, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, res, err := run(t, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %q\n%s", err, tt.msg, res.Source)
			}
			f := scriptFrame(t, err)
			line, col := res.Pos(int(f.Pos.Line), int(f.Pos.Col))
			if line != tt.line || col != tt.col {
				t.Errorf("error at output %d:%d maps to %d:%d, want %d:%d\n%s", f.Pos.Line, f.Pos.Col, line, col, tt.line, tt.col, res.Source)
			}
		})
	}
}
