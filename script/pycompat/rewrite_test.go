package pycompat

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

type rewriteCase struct {
	name    string
	in      string
	want    string
	shifted bool // the rewrite had to add a line (decorator with no room)
}

func runRewriteCases(t *testing.T, tests []rewriteCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Rewrite("test.py", []byte(tt.in))
			if err != nil {
				t.Fatalf("Rewrite: %v", err)
			}
			if got := string(res.Source); got != tt.want {
				t.Errorf("Rewrite(%q)\n got: %q\nwant: %q\n--- got:\n%s", tt.in, got, tt.want, got)
			}
			if _, err := FileOptions().Parse("out.star", res.Source, 0); err != nil {
				t.Errorf("output does not parse: %v\n%s", err, res.Source)
			}
			if err := Check("test.py", []byte(tt.in)); err != nil {
				t.Errorf("Check: %v", err)
			}
			in, out := strings.Count(tt.in, "\n"), strings.Count(string(res.Source), "\n")
			if in != out && !tt.shifted {
				t.Errorf("line count changed: %d lines in, %d out", in, out)
			}
		})
	}
}

func TestRewriteWith(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"plain", "with subtest(\"a\"):\n    x = 1\nprint(x)\n",
			"for _ in with_(subtest(\"a\")):\n    x = 1\nprint(x)\n", false},
		{"as", "with open(p) as f:\n    data = f.read()\n",
			"for f in with_(open(p)):\n    data = f.read()\n", false},
		{"two items", "with A as a, B as b:\n  pass\n",
			"for a, b in with_(A, B):\n  pass\n", false},
		{"mixed items", "with A, B as b:\n  pass\n",
			"for _, b in with_(A, B):\n  pass\n", false},
		{"tuple target", "with A as (a, b):\n  pass\n",
			"for (a, b) in with_(A):\n  pass\n", false},
		{"parenthesised items", "with (\n  A as a,\n  B,\n):\n  pass\n",
			"for a, _ in with_(\n  A,\n  B,\n):\n  pass\n", false},
		{"parenthesised expression", "with (machine.nested(\"x\")):\n  pass\n",
			"for _ in with_((machine.nested(\"x\"))):\n  pass\n", false},
		{"multi-line call", "with subtest(\n    \"long name\"\n) as s:\n    pass\n",
			"for s in with_(subtest(\n    \"long name\"\n)):\n    pass\n", false},
		{"inline body", "with subtest(\"x\"): machine.succeed(\"true\")\n",
			"for _ in with_(subtest(\"x\")): machine.succeed(\"true\")\n", false},
		{"nested", "with a:\n    with b as c:\n        pass\n",
			"for _ in with_(a):\n    for c in with_(b):\n        pass\n", false},
		{"in def with return", "def f():\n    with subtest('a'):\n        return 1\n",
			"def f():\n    for _ in with_(subtest('a')):\n        return 1\n", false},
		{"loop inside with may break", "with a:\n  for i in x:\n    break\n",
			"for _ in with_(a):\n  for i in x:\n    break\n", false},
		{"tabs", "if x:\n\twith a:\n\t\tpass\n", "if x:\n\tfor _ in with_(a):\n\t\tpass\n", false},
		{"comment after colon", "with a:  # enter\n    pass\n", "for _ in with_(a):  # enter\n    pass\n", false},
	})
}

func TestRewriteFString(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"simple", `x = f"a {b} c"` + "\n", `x = py_("a {} c").format(b)` + "\n", false},
		{"single quotes", `x = f'{a}-{b}'` + "\n", `x = py_('{}-{}').format(a, b)` + "\n", false},
		{"no fields", `x = f"plain {{x}}"` + "\n", `x = "plain {x}"` + "\n", false},
		{"braces kept with fields", `x = f"{{{a}}}"` + "\n", `x = py_("{{{}}}").format(a)` + "\n", false},
		{"conversions", `x = f"{a!r} {b!s} {c!a}"` + "\n", `x = py_("{!r} {!s} {!r}").format(a, b, c)` + "\n", false},
		{"spec", `x = f"{v:.2f} {n:>5}"` + "\n", `x = py_("{} {}").format(fmt_(".2f", v), fmt_(">5", n))` + "\n", false},
		{"spec with conversion", `x = f"{x!r:>10}"` + "\n", `x = py_("{}").format(fmt_(">10", repr(x)))` + "\n", false},
		{"nested spec field", `x = f"{g:>{w}}"` + "\n", `x = py_("{}").format(fmt_(py_(">{}").format(w), g))` + "\n", false},
		{"debug", `x = f"{a=} {b = }"` + "\n", `x = py_("a={!r} b = {!r}").format(a, b)` + "\n", false},
		{"debug with spec", `x = f"{a=:.1f}"` + "\n", `x = py_("a={}").format(fmt_(".1f", a))` + "\n", false},
		{"other quotes inside", `x = f"{d['k']} {' '.join(l)}"` + "\n", `x = py_("{} {}").format(d['k'], ' '.join(l))` + "\n", false},
		{"same quotes inside (3.12)", `x = f"{d["k"]}"` + "\n", `x = py_("{}").format(d["k"])` + "\n", false},
		{"nested f-string", `x = f"{f'{a}!'}"` + "\n", `x = py_("{}").format(py_('{}!').format(a))` + "\n", false},
		{"operators inside", `x = f"{a != b} {n + 1} {c if c else 'none'}"` + "\n",
			`x = py_("{} {} {}").format(a != b, n + 1, c if c else 'none')` + "\n", false},
		{"dict literal inside", `x = f"{ {'a': 1}['a'] }"` + "\n", `x = py_("{}").format( {'a': 1}['a'])` + "\n", false},
		{"tuple inside", `x = f"{a, b}"` + "\n", `x = py_("{}").format((a, b))` + "\n", false},
		{"call with f-string arg", `machine.succeed(f"echo {x} > /tmp/{name}")` + "\n",
			`machine.succeed(py_("echo {} > /tmp/{}").format(x, name))` + "\n", false},
		{"raw", `x = rf"\d+{x}\." + Rf"{y}\s"` + "\n", `x = py_(r"\d+{}\.").format(x) + py_(r"{}\s").format(y)` + "\n", false},
		{"escape before field", `x = f"\{x}"` + "\n", `x = py_("\\{}").format(x)` + "\n", false},
		{"escapes in literal", `x = f"\$HOME/{p}\n"` + "\n", `x = py_("\\$HOME/{}\n").format(p)` + "\n", false},
		{"triple quoted", "x = f\"\"\"a {b}\n  c {d +\n e} \\@\n\"\"\"\ny = 1\n",
			"x = py_(\"\"\"a {}\n  c {} \\\\@\n\"\"\").format(b, d +\n e)\ny = 1\n", false},
		{"triple quoted with quotes", "x = f'''say \"{w}\"\n'''\n", "x = py_('''say \"{}\"\n''').format(w)\n", false},
		{"walrus-like spec", `x = f"{x:=10}"` + "\n", `x = py_("{}").format(fmt_("=10", x))` + "\n", false},
		{"method on result", `x = f"{a}".upper()` + "\n", `x = py_("{}").format(a).upper()` + "\n", false},
		{"inline body then more lines", "if x: f\"{a}\"\ny = 1\n", "if x: py_(\"{}\").format(a)\ny = 1\n", false},
		{"is None inside field", `x = f"{a is None}"` + "\n", `x = py_("{}").format(a == None)` + "\n", false},
	})
}

func TestRewriteConcat(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"plain", `x = "a" "b"` + "\n", `x = ("a" + "b")` + "\n", false},
		{"with f-string", `x = "a" f"{b}" 'c'` + "\n", `x = ("a" + py_("{}").format(b) + 'c')` + "\n", false},
		{"format binds to all", `x = "a {}" "b {}".format(1, 2)` + "\n", `x = py_(("a {}" + "b {}")).format(1, 2)` + "\n", false},
		{"percent binds to all", `x = "%s" "-%s" % (a, b)` + "\n", `x = ("%s" + "-%s") % (a, b)` + "\n", false},
		{"multi-line with comment", "x = (\"a\"  # c1\n     \"b\")\n", "x = ((\"a\" +  # c1\n     \"b\"))\n", false},
		{"backslash continuation", "y = \"a\" \\\n    \"b\"\n", "y = (\"a\" + \\\n    \"b\")\n", false},
		{"call argument", "machine.succeed(\n    \"a \"\n    f\"{b}\"\n)\n", "machine.succeed(\n    (\"a \" +\n    py_(\"{}\").format(b))\n)\n", false},
	})
}

func TestRewriteStatements(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"assert", "assert x == 1\n", "assert_(x == 1)\n", false},
		{"assert message", "assert x == 1, \"msg\"\n", "assert_(x == 1, \"msg\")\n", false},
		{"assert multi-line", "assert (\n    a\n), f\"bad {a}\"\n", "assert_((\n    a\n), py_(\"bad {}\").format(a))\n", false},
		{"assert inline", "if x: assert y\n", "if x: assert_(y)\n", false},
		{"assert after semicolon", "x = 1; assert x\n", "x = 1; assert_(x)\n", false},
		{"import", "import json\n", "json = import_(\"json\")\n", false},
		{"import several", "import json, os.path as p, a.b\n",
			"json = import_(\"json\"); p = import_(\"os.path\"); a = import_(\"a\"); import_(\"a.b\")\n", false},
		{"from import", "from shlex import quote, split as sp\n",
			"quote = import_(\"shlex\", \"quote\"); sp = import_(\"shlex\", \"split\")\n", false},
		{"from import parenthesised", "from m import (a,\n  b as c,  # hi\n)\nx = 1\n",
			"a = import_(\"m\", \"a\"); c = import_(\"m\", \"b\")\n  # hi\n\nx = 1\n", false},
		{"from dotted", "from urllib.parse import urlencode\n", "urlencode = import_(\"urllib.parse\", \"urlencode\")\n", false},
		{"future", "from __future__ import annotations\n", "pass\n", false},
		{"import in def", "def f():\n    import re\n    return re\n", "def f():\n    re = import_(\"re\")\n    return re\n", false},
		{"raise", "raise Exception(\"x\")\n", "fail(Exception(\"x\"))\n", false},
		{"raise from", "raise RuntimeError(f\"bad {x}\") from e\n", "fail(RuntimeError(py_(\"bad {}\").format(x)))\n", false},
		{"raise name", "raise TimeoutError\n", "fail(TimeoutError)\n", false},
		{"is", "if x is None and y is not None: pass\n", "if x == None and y != None: pass\n", false},
		{"is not in expression", "ok = a is not b\n", "ok = a != b\n", false},
		{"ellipsis statement", "def f():\n  ...\n", "def f():\n  pass\n", false},
		{"chained assignment", "a = b = 3\n", "a = 3; b = a\n", false},
		{"chained assignment three", "a = b.x = c[0] = f(\n  1)\n", "a = f(\n  1); b.x = a; c[0] = a\n", false},
		{"lambda default is not chained", "f = lambda a=1: a\n", "f = lambda a=1: a\n", false},
		{"print end", "print(\"x\", end=\"\")\nprint(a, b, sep=\",\")\n", "print(\"x\", end=\"\")\nprint(a, b, sep=\",\")\n", false},
		{"lambda and percent", "f = lambda x: \"%s!\" % x\n", "f = lambda x: fstr_(\"%s!\") % x\n", false},
		{"keywords in strings untouched", "x = \"with a as b: import c; assert d is None\"\n",
			"x = \"with a as b: import c; assert d is None\"\n", false},
		{"comments and blank lines", "# top\n\nx = 1  # one\n\n\n# end\n", "# top\n\nx = 1  # one\n\n\n# end\n", false},
		{"no trailing newline", "assert x", "assert_(x)", false},
		{"empty", "", "", false},
		{"only comments", "# a\n\n   # b\n", "# a\n\n   # b\n", false},
		{"crlf", "x = 1\r\nassert x\r\n", "x = 1\nassert_(x)\n", false},
	})
}

func TestRewriteAnnotations(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"params and return", "def f(a: int, b: Dict[str, int] = {}) -> None:\n    pass\n",
			"def f(a, b = {}):\n    pass\n", false},
		{"positional-only and keyword-only", "def f(a, /, b, *, c: str = \"x\"):\n    pass\n",
			"def f(a, b, *, c = \"x\"):\n    pass\n", false},
		{"positional-only last", "def f(a, b, /):\n    pass\n", "def f(a, b):\n    pass\n", false},
		{"star args", "def f(*args: str, **kw: Any) -> \"Machine\":\n    pass\n",
			"def f(*args, **kw):\n    pass\n", false},
		{"multi-line signature", "def f(\n    a: int,\n    b: str = \"x\",\n) -> Dict[\n    str, int]:\n    return a\n",
			"def f(\n    a,\n    b = \"x\",\n):\n\n    return a\n", false},
		{"lambda default kept", "def f(cb=lambda: 0, n: int = 1):\n    pass\n", "def f(cb=lambda: 0, n = 1):\n    pass\n", false},
		{"variable", "x: int = 3\n", "x = 3\n", false},
		{"variable without value", "def f():\n    y: str\n    return 1\n", "def f():\n    pass\n    return 1\n", false},
		{"attribute target", "self.x: List[int] = []\n", "self.x = []\n", false},
		{"dict statement is not an annotation", "d[\"a\"] = {1: 2}\n", "d[\"a\"] = {1: 2}\n", false},
	})
}

func TestRewriteDecorators(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"blank line after body", "@polling_condition\ndef f():\n    pass\n\nx = 1\n",
			"\ndef f():\n    pass\nf = polling_condition(f)\nx = 1\n", false},
		{"comment line after body", "@d\ndef f():\n    pass\n    # done\nx = 1\n",
			"\ndef f():\n    pass\nf = d(f)  # done\nx = 1\n", false},
		{"two decorators, next statement simple", "@a\n@b(interval=3)\ndef f():\n    pass\nx = 1\n",
			"\n\ndef f():\n    pass\nf = a(b(interval=3)(f)); x = 1\n", false},
		{"at end of file", "@a\ndef f():\n    pass", "\ndef f():\n    pass\nf = a(f)\n", true},
		{"at end of file with newline", "@a\ndef f():\n    pass\n", "\ndef f():\n    pass\nf = a(f)\n", true},
		{"next is compound", "@a\ndef f():\n    pass\nwith x:\n    pass\n",
			"\ndef f():\n    pass\nf = a(f)\nfor _ in with_(x):\n    pass\n", true},
		{"nested block, dedent", "if True:\n    @a\n    def f():\n        pass\nx = 1\n",
			"if True:\n    \n    def f():\n        pass\n    f = a(f)\nx = 1\n", true},
		{"next is decorator", "@a\ndef f():\n    pass\n@b\ndef g():\n    pass\n\n",
			"\ndef f():\n    pass\nf = a(f)\ndef g():\n    pass\ng = b(g)\n", false},
		{"multi-line decorator", "@polling_condition(\n    interval=5,  # slow\n)\ndef f():\n    return True\n\n",
			"\n  # slow\n\ndef f():\n    return True\nf = polling_condition(interval=5,)(f)\n", false},
		{"decorator with f-string", "@polling_condition(description=f\"{m} up\")\ndef f():\n    pass\n\n",
			"\ndef f():\n    pass\nf = polling_condition(description=py_(\"{} up\").format(m))(f)\n", false},
		{"inner and outer", "@a\ndef f():\n    @b\n    def g():\n        pass\n\n    return g\n\n",
			"\ndef f():\n    \n    def g():\n        pass\n    g = b(g)\n    return g\nf = a(f)\n", false},
		{"inline body", "@a\ndef f(): pass\n\nx = 1\n", "\ndef f(): pass\nf = a(f)\nx = 1\n", false},
	})
}

func TestRewriteExpressions(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"genexp all", "y = all(x for x in z)\n", "y = all([x for x in z])\n", false},
		{"genexp sum", "q = sum(len(x) for x in y if x)\n", "q = sum([len(x) for x in y if x])\n", false},
		{"genexp join", "z = \"\".join(c for c in s)\n", "z = \"\".join([c for c in s])\n", false},
		{"genexp bare", "g = (x for x in y)\n", "g = [x for x in y]\n", false},
		{"list comprehension untouched", "l = [x for x in y]\n", "l = [x for x in y]\n", false},
		{"dict comprehension untouched", "d = {k: v for k, v in y}\n", "d = {k: v for k, v in y}\n", false},
		{"set literal", "s = {1, 2}\n", "s = set([1, 2])\n", false},
		{"set comprehension", "t = {x for x in y}\n", "t = set([x for x in y])\n", false},
		{"empty dict", "e = {}\n", "e = {}\n", false},
		{"load attribute", "x = json.load(f)\n", "x = json.load_(f)\n", false},
		{"load name", "def load(p):\n    return p\nload(load=1)\n", "def load_(p):\n    return p\nload_(load_=1)\n", false},
		{"number underscores", "x = 1_000 + 0x_ff\n", "x = 1000 + 0xff\n", false},
		{"chained comparison", "x = a < b < c\n", "x = (a < b and b < c)\n", false},
		{"chained comparison under not", "y = not 0 <= n.x < 10\n", "y = not (0 <= n.x and n.x < 10)\n", false},
		{"chained comparison in condition", "if 0 < len(x) <= 3: pass\n", "if (0 < len(x) and len(x) <= 3): pass\n", false},
		{"chained comparison with subscript", "ok = 1 <= d[\"a\"].b[0] < 5\n", "ok = (1 <= d[\"a\"].b[0] and d[\"a\"].b[0] < 5)\n", false},
		{"chained equality", "ok = a == b == \"x\"\n", "ok = (a == b and b == \"x\")\n", false},
		{"chain in call", "f(a, 1 < x < 2)\n", "f(a, (1 < x and x < 2))\n", false},
		{"not in is one operator", "if x not in y and a in b: pass\n", "if x not in y and a in b: pass\n", false},
		{"comprehension in", "l = [x for x in y if x in z]\n", "l = [x for x in y if x in z]\n", false},
		{"unpacking in calls and defs", "f(*a, **k)\nlambda *a, **k: 1\ndef g(*a, **k): pass\n",
			"f(*a, **k)\nlambda *a, **k: 1\ndef g(*a, **k): pass\n", false},
		{"multiplication", "x = a * b * (c * 2)\n", "x = a * b * (c * 2)\n", false},
	})
}

func TestRewriteStrings(t *testing.T) {
	runRewriteCases(t, []rewriteCase{
		{"unknown escapes", `s = '\@ \$ \d \. \n \t'` + "\n", `s = '\\@ \\$ \\d \\. \n \t'` + "\n", false},
		{"escapes both languages know", `s = "\a\b\f\v\0\x41\u00e9\U0001F600\\\"'"` + "\n", `s = "\a\b\f\v\0\x41\u00e9\U0001F600\\\"'"` + "\n", false},
		{"non-ascii hex and octal", `s = '\xe9 \351 \x7f'` + "\n", `s = '\u00e9 \u00e9 \x7f'` + "\n", false},
		{"bytes", `b = b'\x80\u1234\@'` + "\n", `b = b'\x80\\u1234\\@'` + "\n", false},
		{"raw untouched", `r = r'\d+\.\@' + rb'\d'` + "\n", `r = r'\d+\.\@' + rb'\d'` + "\n", false},
		{"prefixes", `x = u'abc' + U"d" + BR'x' + Rb'y' + R'z'` + "\n", `x = 'abc' + "d" + rb'x' + rb'y' + r'z'` + "\n", false},
		{"triple quoted", "s = \"\"\"\n  echo \\$x\n\"\"\"\n", "s = \"\"\"\n  echo \\\\$x\n\"\"\"\n", false},
		{"continuation in string", "s = 'a\\\nb'\n", "s = 'a\\\nb'\n", false},
	})
}

func TestRewriteUnsupported(t *testing.T) {
	tests := []struct {
		name, in  string
		construct string
		line, col int
		hint      string
	}{
		{"class", "x = 1\nclass A:\n  pass\n", "class", 2, 1, "functions and dicts"},
		{"decorated class", "@d\nclass A: pass\n", "class", 2, 1, "functions"},
		{"try", "try:\n  pass\nexcept E:\n  pass\n", "try/except", 1, 1, "machine.execute()"},
		{"try in def", "def f():\n    try:\n        pass\n    finally:\n        pass\n", "try/except", 2, 5, "machine.execute()"},
		{"global", "def f():\n    global x\n", "global", 2, 5, "return the value"},
		{"nonlocal", "def f():\n    def g():\n        nonlocal x\n", "nonlocal", 3, 9, "dict or list"},
		{"del", "del d[\"a\"]\n", "del", 1, 1, "d.pop(key)"},
		{"yield", "def f():\n    yield 1\n", "yield", 2, 5, "return a list"},
		{"yield expression", "def f():\n    x = (yield)\n", "yield", 2, 10, "return a list"},
		{"async def", "async def f():\n    pass\n", "async/await", 1, 1, "directly"},
		{"await", "def f():\n    await g()\n", "async/await", 2, 5, "directly"},
		{"walrus", "while (n := n - 1):\n  pass\n", "assignment expression (:=)", 1, 10, "line of its own"},
		{"for else", "for x in y:\n  pass\nelse:\n  pass\n", "for/else", 3, 1, "flag"},
		{"while else", "while x:\n  pass\nelse:\n  pass\n", "while/else", 3, 1, "flag"},
		{"match", "match x:\n  case 1:\n    pass\n", "match statement", 1, 1, "if/elif"},
		{"match as a name is fine", "", "", 0, 0, ""},
		{"break in with", "for i in x:\n    with a:\n        break\n", "break inside with", 3, 9, "flag"},
		{"continue in with inline", "for i in x:\n    with a: continue\n", "continue inside with", 2, 13, "flag"},
		{"bare raise", "def f():\n    raise\n", "bare raise", 2, 5, "fail(...)"},
		{"relative import", "from . import x\n", "relative import", 1, 6, "absolute"},
		{"star import", "from os import *\n", "import *", 1, 16, "from os import a, b"},
		{"chained comparison with call", "x = a < f(b) < c\n", "chained comparison", 1, 5, "variable"},
		{"chained assignment to attribute", "a.b = c = 1\n", "chained assignment", 1, 1, "b = a"},
		{"star unpacking in list", "x = [*a]\n", "star unpacking (*x)", 1, 6, "concatenation"},
		{"star unpacking in a for target", "for a, *b in c:\n    pass\n", "star unpacking (*x)", 1, 8, "concatenation"},
		{"dict unpacking", "x = {**a, 'b': 1}\n", "dict unpacking (**d)", 1, 6, "d.update"},
		{"power", "x = 2 ** 3\n", "the ** operator", 1, 7, "math.pow"},
		{"matmul", "x = a @ b\n", "the @ operator", 1, 7, "function"},
		{"ellipsis value", "x = ...\n", "Ellipsis (...)", 1, 5, "None"},
		{"complex", "x = 1j\n", "complex number", 1, 5, "floats"},
		{"decorator on assignment", "@d\nx = 1\n", "decorator on anything but def", 1, 1, "def"},
		{"decorator at end", "@d\n", "decorator on anything but def", 1, 1, "def"},
		{"N escape", "x = 'a' + \"\\N{EM DASH}\"\n", `\N{...} escape`, 1, 12, `\uXXXX`},
		{"non-ascii before error", "x = 'é'; y = (z := 1)\n", "assignment expression (:=)", 1, 17, "line of its own"},
	}
	for _, tt := range tests {
		if tt.construct == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			_, err := Rewrite("s.py", []byte(tt.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Rewrite(%q) = %v, want *Error", tt.in, err)
			}
			if e.Construct != tt.construct || e.Line != tt.line || e.Col != tt.col || e.Filename != "s.py" {
				t.Errorf("got %s %d:%d %q, want %s %d:%d", e.Construct, e.Line, e.Col, e.Filename, tt.construct, tt.line, tt.col)
			}
			if !strings.Contains(e.Msg, tt.hint) {
				t.Errorf("message %q does not contain %q", e.Msg, tt.hint)
			}
			want := "s.py:" + itoa(tt.line) + ":" + itoa(tt.col) + ": " + tt.construct + " is not supported: "
			if !strings.HasPrefix(e.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), want)
			}
			if !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrSyntax) {
				t.Errorf("errors.Is: ErrUnsupported %v, ErrSyntax %v", errors.Is(err, ErrUnsupported), errors.Is(err, ErrSyntax))
			}
			if err := Check("s.py", []byte(tt.in)); err == nil || err.Error() != e.Error() {
				t.Errorf("Check = %v, want the rewrite error", err)
			}
		})
	}
}

func TestMatchAsName(t *testing.T) {
	src := "match = re.search(\"a\", s)\nif match:\n    case = match.group(0)\n"
	if err := Check("m.py", []byte(src)); err != nil {
		t.Fatal(err)
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in  string
		line, col int
		msg       string
	}{
		{"unterminated string", "x = 1\ny = 'abc\n", 2, 5, "unterminated string"},
		{"unterminated triple", "x = \"\"\"abc\n", 1, 5, "unterminated string"},
		{"never closed", "f(a,\n  b\n", 1, 2, "never closed"},
		{"unmatched", "x = 1)\n", 1, 6, "unmatched"},
		{"bad character", "x = 1 $ 2\n", 1, 7, "unexpected character"},
		{"f-string single brace", "x = f\"a } b\"\n", 1, 9, "single '}'"},
		{"f-string empty field", "x = f\"a {} b\"\n", 1, 9, "empty expression"},
		// Errors found by Starlark's parser after the rewrite, mapped back.
		{"starlark parse error", "assert x\nwith a:\n    y = (1 +)\n", 3, 13, "got ')'"},
		// Starlark reports this one just past the offending token.
		{"starlark parse error after f-string", "x = f\"{a}\" + 1 1\n", 1, 17, "got int literal"},
		{"starlark resolve error", "x = 1\nbreak\n", 2, 1, "break not in a loop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check("e.py", []byte(tt.in))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%q) = %v, want *Error", tt.in, err)
			}
			if e.Construct != ConstructSyntax || e.Line != tt.line || e.Col != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %q (%s %d:%d), want syntax error at %d:%d containing %q", e.Msg, e.Construct, e.Line, e.Col, tt.line, tt.col, tt.msg)
			}
			if !errors.Is(err, ErrSyntax) || errors.Is(err, ErrUnsupported) {
				t.Errorf("errors.Is: ErrSyntax %v, ErrUnsupported %v", errors.Is(err, ErrSyntax), errors.Is(err, ErrUnsupported))
			}
			if want := "e.py:" + itoa(tt.line) + ":" + itoa(tt.col) + ": syntax error: "; !strings.HasPrefix(e.Error(), want) {
				t.Errorf("Error() = %q, want prefix %q", e.Error(), want)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
