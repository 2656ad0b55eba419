// Package pycompat rewrites Python NixOS test scripts into Starlark source,
// token by token, before go.starlark.net parses them (with FileOptions()).
//
// The rewrite keeps every line on its line, so line numbers in errors match
// the script the user wrote; Result.Pos maps any position of the output
// back to the original (exactly for text copied unchanged, to the start of
// the construct for rewritten text). Comments, blank lines, strings and
// backslash continuations are kept.
//
// # Rewrites
//
//	with E:                      for _ in with_(E):
//	with A as a, B as b:         for a, b in with_(A, B):
//	with (A as a, B):            for a, _ in with_(A, B):
//	f"x {a} {b!r} {c:.2f}"       "x {} {!r} {}".format(a, b, fmt_(".2f", c))
//	f"{x=}"                      "x={!r}".format(x)
//	"a" f"{b}"                   ("a" + "{}".format(b))
//	assert c, m                  assert_(c, m)
//	import a, b.c as d           a = import_("a"); d = import_("b.c")
//	import a.b                   a = import_("a"); import_("a.b")
//	from m import (n, o as k)    n = import_("m", "n"); k = import_("m", "o")
//	from __future__ import x     pass
//	raise E(...) [from C]        fail(E(...))
//	x is None, x is not None     x == None, x != None
//	def f(a: T = 1, /, *, b) -> R:   def f(a = 1, *, b):
//	x: T = v  /  x: T            x = v  /  pass
//	@d1 @d2(...) def f           def f ...; then f = d1(d2(...)(f)) after the body
//	all(x for x in y)            all([x for x in y])     (any call; (x for x in y) → [...])
//	{a, b}, {x for x in y}       set([a, b]), set([x for x in y])
//	a < b < c                    (a < b and b < c)       (middle operands: names, dotted names, literals)
//	a = b = v                    a = v; b = a            (first target a plain name)
//	json.load, load              json.load_, load_       (load is a Starlark keyword)
//	1_000                        1000
//	...  (as a statement)        pass
//	"..." % x                    fstr_("...") % x       (Python's printf: flags, width, precision)
//	r.format(a), f-strings       py_(r).format(a)       (also r.decode(), r.encode(), r.expandtabs())
//	a, *b, c = v                 a, b, c = unpack_(v, 1, 1)   (plain names as targets)
//	u"x", R"x", Br"x"            "x", r"x", rb"x"
//
// String escapes are given their Python meaning: escapes Python does not
// know (\@, \$, \d, ...) keep their backslash, so it is doubled; \xHH above
// 0x7f and octal escapes above 0o177 become \u00HH; \u, \U and \N in bytes
// are literal. \a \b \f \v exist in both languages and are kept. \N{NAME}
// in a str literal is an error (Starlark has no name table; use \uXXXX).
// An f-string's !a conversion is treated as !r.
//
// A decorator application goes on the first blank or comment line after
// the def body, or else first on the next statement if that is a simple
// statement at the def's indentation, or else on a line of its own (the
// only rewrite that shifts later lines; Pos still maps them).
//
// # Unsupported constructs
//
// These are reported as *Error (matching ErrUnsupported) at their position
// with a hint: class; try/except/finally; global; nonlocal; del; yield;
// async/await; the walrus operator :=; for/else and while/else; match;
// break/continue directly inside a with block (it would leave the with
// block, not the loop); bare raise; relative imports and import *;
// chained comparisons with a non-trivial middle operand; chained
// assignment whose first target is not a name; star and dict unpacking
// outside calls, parameter lists and assignments to plain names; the ** and @ operators; Ellipsis
// outside a statement of its own; complex literals; decorators not on a
// def; \N{...} escapes.
//
// # Runtime contract
//
// The rewritten code calls these predeclared functions, which the runtime
// must provide:
//
//   - with_(cm, ...) returns an iterable that yields exactly once: the
//     value of entering cm (with one manager), or a tuple of the values
//     (with several, entered in order). The runtime enters the managers
//     (in with_ or at the first Next) and exits them, in reverse order,
//     when the iterator is Done: Starlark calls Done on every active
//     iterator however the loop is left, also when the body fails. Being a
//     loop, the block keeps Python's scoping: names bound inside stay
//     visible after it, and return inside it returns from the enclosing
//     function. Mind the order: Starlark calls Done innermost-first when
//     blocks end normally, but when a return leaves several nested blocks
//     at once, or a body fails, its deferred cleanup calls Done
//     outermost-first; the runtime keeps a stack of open blocks and, when
//     an outer one is done, exits the ones still open inside it first.
//   - assert_(cond, msg=None) fails with msg (or "assertion failed") when
//     cond is falsy.
//   - import_(module) returns the module with that dotted name;
//     import_(module, name) returns its member name (or submodule
//     module.name). `import a.b` binds a = import_("a") and also calls
//     import_("a.b") so that a missing submodule is reported at the import.
//   - fmt_(spec, value) formats value with a Python format spec (".2f",
//     ">5", ...); Starlark's str.format has no specs.
//   - fstr_(s) returns s with Python's % operator; py_(x) returns x with
//     Python's format, decode, encode and expandtabs methods (its other
//     attributes are x's own); unpack_(v, before, after) returns the
//     tuple of v's first before items, a list of the middle ones and its
//     last after items.
//   - fail (Starlark's) receives raise's argument, typically the value of
//     Exception("..."), RuntimeError("..."), etc., which the runtime
//     predeclares.
//
// Modules and objects written in Go expose a method called load as load_,
// and keyword arguments called load arrive as load_.
package pycompat
