package script

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/script/modules"
)

// builtinFunc is a global or method implementation.
type builtinFunc func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error)

// builtin wraps fn so that with-blocks left early are settled (as
// success: control came back to Go without an error) before it runs.
func (s *Session) builtin(name string, fn builtinFunc) *starlark.Builtin {
	return starlark.NewBuiltin(name, func(th *starlark.Thread, _ *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if err := s.resolvePending(th, nil); err != nil {
			return nil, err
		}
		return fn(th, args, kwargs)
	})
}

// buildGlobals assembles the predeclared names, as the NixOS driver's
// test_symbols does: the general symbols, then machines (which win on a
// name clash), then VLANs.
func (s *Session) buildGlobals() starlark.StringDict {
	g := starlark.StringDict{
		"log":        s.logObject(),
		"t":          s.assertions(),
		"print":      s.builtin("print", s.print),
		"repr":       s.builtin("repr", reprBuiltin),
		"str":        s.builtin("str", strBuiltin),
		"max":        s.builtin("max", extremum("max")),
		"min":        s.builtin("min", extremum("min")),
		"exit":       starlark.NewBuiltin("exit", modules.Exit),
		"quit":       starlark.NewBuiltin("quit", modules.Exit),
		"fail":       s.builtin("fail", failBuiltin),
		"sum":        s.builtin("sum", sumBuiltin),
		"isinstance": s.builtin("isinstance", isinstanceBuiltin),
		"with_":      s.builtin("with_", s.with),
		"assert_":    s.builtin("assert_", assertBuiltin),
		"import_":    s.builtin("import_", s.importBuiltin),
		"fmt_":       s.builtin("fmt_", fmtBuiltin),
		"fstr_":      s.builtin("fstr_", fstrBuiltin),
		"py_":        s.builtin("py_", pyBuiltin),
		"unpack_":    s.builtin("unpack_", unpackBuiltin),
		"vlans":      starlark.NewList(nil),
	}
	for i := range api.Globals {
		if !api.Globals[i].Engine {
			g[api.Globals[i].Name] = s.apiBuiltin(&api.Globals[i])
		}
	}
	// The engine's own: language more than run.
	g["test_script"] = s.builtin("test_script", s.testScript)
	g["subtest"] = s.builtin("subtest", s.subtest)
	g["polling_condition"] = s.builtin("polling_condition", s.pollingCondition)
	for _, name := range exceptionNames {
		g[name] = s.builtin(name, exceptionBuiltin(name))
	}
	if os, err := s.mods.lookup("os"); err == nil {
		g["os"] = os
	}
	if s.mods.open != nil {
		g["open"] = s.mods.open
	}
	var machines []starlark.Value
	if s.d != nil {
		for _, m := range s.d.Machines() {
			mv := s.machineValue(m)
			machines = append(machines, mv)
			g[driver.PythonName(m.Name())] = mv
		}
	}
	g["machines"] = starlark.NewList(machines)
	if len(machines) == 1 {
		if _, taken := g["machine"]; !taken {
			g["machine"] = &machineAlias{mv: machines[0].(*machineValue), once: &s.aliased}
		}
	}
	g["driver"] = s.driverObject(machines)
	for name, v := range s.vlanGlobals() {
		g[name] = v
	}
	return g
}

// vlanGlobals is the hook for `vlans` and `vlan<N>` once the driver has
// VLANs: it returns the globals to add (vlans included, replacing the
// empty list).
func (s *Session) vlanGlobals() starlark.StringDict { return s.vlanValues() }

// staticGlobalNames are the names every run has, machines aside.
var staticGlobalNames = sync.OnceValue(func() []string {
	var names []string
	for k := range newSession(Options{}).globals {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
})

// machineValue returns the one script value of m.
func (s *Session) machineValue(m *machine.Machine) *machineValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.values == nil {
		s.values = map[*machine.Machine]*machineValue{}
	}
	if mv, ok := s.values[m]; ok {
		return mv
	}
	mv := &machineValue{s: s, m: m}
	s.values[m] = mv
	return mv
}

// testScript runs the configured test script again, in a log block (for
// the REPL).
func (s *Session) testScript(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if _, err := s.bind(th, "test_script", engineGlobal("test_script").Params, args, kwargs); err != nil {
		return nil, err
	}
	st := stateOf(th)
	if st == nil {
		return nil, ErrNoContext
	}
	if s.opts.Source == nil {
		return nil, errors.New("test_script: no test script is configured")
	}
	if st.testScript {
		return nil, errors.New("test_script: the test script is already running; it cannot run itself")
	}
	// In a REPL the script shares the REPL's namespace, as in the NixOS
	// driver: it sees the REPL's names, and the REPL sees the script's.
	predeclared := s.globals
	if st.repl != nil {
		predeclared = st.repl
	}
	r, prog, err := s.compileWith(s.opts.Filename, s.opts.Source, predeclared)
	if err != nil {
		return nil, err
	}
	prev := st.script
	st.script, st.testScript = r, true
	defer func() { st.script, st.testScript = prev, false }()
	end := s.logOf(th).Nested("", "run the VM test script")
	defined, err := prog.Init(th, predeclared)
	if rerr := s.resolvePending(th, err); err == nil {
		err = rerr
	}
	if st.repl != nil {
		for k, v := range defined {
			st.repl[k] = v
		}
	}
	end(err)
	if err != nil {
		return nil, err
	}
	return starlark.None, nil
}

func (s *Session) subtest(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	a, err := s.bind(th, "subtest", engineGlobal("subtest").Params, args, kwargs)
	if err != nil {
		return nil, err
	}
	return &subtestCM{s: s, name: a.Str("name")}, nil
}

// print(*args, sep=" ", end="\n", file=None, flush=False) writes to the
// run's stdout, or to file (sys.stdout, sys.stderr, an open file).
func (s *Session) print(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var rest, sepV, endV, fileV, flushV starlark.Value
	if err := unpack("print", args, kwargs, []string{"*args", "sep?", "end?", "file?", "flush?"}, &rest, &sepV, &endV, &fileV, &flushV); err != nil {
		return nil, err
	}
	sep, err := toOptStr("print", "sep", sepV, " ")
	if err != nil {
		return nil, err
	}
	end, err := toOptStr("print", "end", endV, "\n")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	if rest != nil {
		for i, v := range rest.(starlark.Tuple) {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(strOf(v))
		}
	}
	b.WriteString(end)
	switch f := fileV.(type) {
	case nil, starlark.NoneType:
		return starlark.None, s.writeStdout(b.String())
	case *modules.Stream:
		return starlark.None, f.Write(b.String())
	case starlark.HasAttrs:
		// An open file: call its write method.
		w, err := f.Attr("write")
		if err != nil || w == nil {
			return nil, fmt.Errorf("print: for parameter file: %s has no write method", f.Type())
		}
		_, err = starlark.Call(th, w, starlark.Tuple{starlark.String(b.String())}, nil)
		return starlark.None, err
	}
	return nil, typeError("print", "file", fileV, "a file such as sys.stderr")
}

// strOf is Python's str(): strings unquoted, containers with their
// elements as Python's repr shows them ('q', not "q").
func strOf(v starlark.Value) string {
	if s, ok := starlark.AsString(v); ok {
		return s
	}
	switch v.(type) {
	case *starlark.List, starlark.Tuple, *starlark.Dict, *starlark.Set:
		return pyRepr(v)
	}
	return v.String()
}

// reprBuiltin is Python's repr(): single quotes, sets as {1, 2}.
func reprBuiltin(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := unpack("repr", args, kwargs, []string{"object"}, &v); err != nil {
		return nil, err
	}
	return starlark.String(pyRepr(v)), nil
}

// strBuiltin is Python's str(): str(x) as strOf, str() the empty string.
func strBuiltin(_ *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v starlark.Value
	if err := unpack("str", args, kwargs, []string{"object?"}, &v); err != nil {
		return nil, err
	}
	if v == nil {
		return starlark.String(""), nil
	}
	if b, ok := v.(starlark.Bytes); ok {
		return starlark.String(pyRepr(b)), nil
	}
	return starlark.String(strOf(v)), nil
}

// extremum is Python's min or max: Starlark's, plus default= for an
// empty iterable.
func extremum(name string) builtinFunc {
	return func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var def starlark.Value
		rest := kwargs[:0:0]
		for _, kv := range kwargs {
			if string(kv[0].(starlark.String)) == "default" {
				def = kv[1]
				continue
			}
			rest = append(rest, kv)
		}
		if def != nil {
			if len(args) != 1 {
				return nil, fmt.Errorf("%s: default= needs exactly one iterable argument", name)
			}
			if it, ok := args[0].(starlark.Iterable); ok {
				iter := it.Iterate()
				var x starlark.Value
				empty := !iter.Next(&x)
				iter.Done()
				if empty {
					return def, nil
				}
			}
		}
		return starlark.Call(th, starlark.Universe[name], args, rest)
	}
}

// fail(*args, sep=" ") ends the script with the message; it replaces
// Starlark's fail so that `raise X("m")`, rewritten as fail(X("m")),
// reads "X: m".
func failBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var rest, sepV starlark.Value
	if err := unpack("fail", args, kwargs, []string{"*args", "sep?"}, &rest, &sepV); err != nil {
		return nil, err
	}
	sep, err := toOptStr("fail", "sep", sepV, " ")
	if err != nil {
		return nil, err
	}
	var parts []string
	if rest != nil {
		for _, v := range rest.(starlark.Tuple) {
			parts = append(parts, strOf(v))
		}
	}
	msg := strings.Join(parts, sep)
	if msg == "" {
		msg = "Exception"
	}
	return nil, errors.New(msg)
}

// exceptionNames are the Python exception types a script may raise.
var exceptionNames = []string{"Exception", "RuntimeError", "AssertionError", "ValueError", "TypeError", "KeyError", "TimeoutError"}

// exceptionBuiltin returns X(*args): the string "X: args", which
// fail() turns into the script's error message.
func exceptionBuiltin(name string) builtinFunc {
	return func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword arguments", name)
		}
		switch len(args) {
		case 0:
			return starlark.String(name), nil
		case 1:
			return starlark.String(name + ": " + strOf(args[0])), nil
		}
		return starlark.String(name + ": " + pyRepr(args)), nil
	}
}

// assert_(cond, msg=None) is the rewrite of Python's assert statement.
func assertBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cond, msg starlark.Value
	if err := unpack("assert_", args, kwargs, []string{"cond", "msg?"}, &cond, &msg); err != nil {
		return nil, err
	}
	if cond.Truth() {
		return starlark.None, nil
	}
	if isNone(msg) {
		return nil, errors.New("AssertionError")
	}
	return nil, errors.New("AssertionError: " + strOf(msg))
}

// import_(module, member=None) is the rewrite of import statements.
func (s *Session) importBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var modV, memberV starlark.Value
	if err := unpack("import", args, kwargs, []string{"module", "member?"}, &modV, &memberV); err != nil {
		return nil, err
	}
	name, err := toStr("import", "module", modV)
	if err != nil {
		return nil, err
	}
	member, err := toOptStr("import", "member", memberV, "")
	if err != nil {
		return nil, err
	}
	mod, err := s.mods.lookup(name)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if member == "" {
		return mod, nil
	}
	if ha, ok := mod.(starlark.HasAttrs); ok {
		if v, err := ha.Attr(member); err == nil && v != nil {
			return v, nil
		}
		if sub, err := s.mods.lookup(name + "." + member); err == nil {
			return sub, nil
		}
		hint := ""
		if n := nearest(member, ha.AttrNames()); n != "" {
			hint = " (did you mean " + n + "?)"
		}
		return nil, fmt.Errorf("import: module %s has no member %q%s", name, member, hint)
	}
	return nil, fmt.Errorf("import: module %s has no member %q", name, member)
}

// sum(iterable, start=0).
func sumBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var seq, start starlark.Value
	if err := unpack("sum", args, kwargs, []string{"iterable", "start?"}, &seq, &start); err != nil {
		return nil, err
	}
	if start == nil {
		start = starlark.MakeInt(0)
	}
	it, ok := seq.(starlark.Iterable)
	if !ok {
		return nil, typeError("sum", "iterable", seq, "an iterable")
	}
	iter := it.Iterate()
	defer iter.Done()
	acc := start
	var x starlark.Value
	for iter.Next(&x) {
		var err error
		if acc, err = starlark.Binary(syntax.PLUS, acc, x); err != nil {
			return nil, fmt.Errorf("sum: %w", err)
		}
	}
	return acc, nil
}

// isinstance(value, type) for the builtin conversion functions that
// stand for Python's types (str, int, float, bool, list, dict, tuple),
// or a tuple of them.
func isinstanceBuiltin(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var v, typ starlark.Value
	if err := unpack("isinstance", args, kwargs, []string{"value", "type"}, &v, &typ); err != nil {
		return nil, err
	}
	types := starlark.Tuple{typ}
	if t, ok := typ.(starlark.Tuple); ok {
		types = t
	}
	for _, t := range types {
		b, ok := t.(*starlark.Builtin)
		want, known := pyTypes[builtinName(b, ok)]
		if !known {
			return nil, fmt.Errorf("isinstance: %s is not a type (use str, int, float, bool, list, dict or tuple)", t)
		}
		if v.Type() == want || (want == "int" && v.Type() == "bool") {
			return starlark.True, nil
		}
	}
	return starlark.False, nil
}

func builtinName(b *starlark.Builtin, ok bool) string {
	if !ok || b.Receiver() != nil {
		return ""
	}
	return b.Name()
}

var pyTypes = map[string]string{"str": "string", "int": "int", "float": "float", "bool": "bool", "list": "list", "dict": "dict", "tuple": "tuple"}

// namespace is an object with fixed attributes (log, driver, t).
type namespace struct {
	name  string
	attrs starlark.StringDict
}

func (n *namespace) String() string        { return "<" + n.name + ">" }
func (n *namespace) Type() string          { return n.name }
func (n *namespace) Freeze()               { n.attrs.Freeze() }
func (n *namespace) Truth() starlark.Bool  { return starlark.True }
func (n *namespace) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: %s", n.name) }
func (n *namespace) AttrNames() []string   { return n.attrs.Keys() }

func (n *namespace) Attr(name string) (starlark.Value, error) {
	if v, ok := n.attrs[name]; ok {
		return v, nil
	}
	return nil, noAttr(n.name, name, n.attrs.Keys())
}

// noAttr is the error for a misspelt attribute or method.
func noAttr(what, name string, have []string) error {
	msg := fmt.Sprintf("%s has no attribute or method %q", what, name)
	if n := nearest(name, have); n != "" {
		msg += " (did you mean " + n + "?)"
	}
	return errors.New(msg)
}

// logObject is `log`: the table's log functions, writing to the calling
// thread's log (a forked subtest's own).
func (s *Session) logObject() *namespace {
	attrs := starlark.StringDict{}
	for i := range api.LogFuncs {
		attrs[api.LogFuncs[i].Name] = s.apiBuiltin(&api.LogFuncs[i])
	}
	return &namespace{name: "log", attrs: attrs}
}

// engineGlobal is the table's entry of a global the engine implements.
func engineGlobal(name string) *api.Method {
	for i := range api.Globals {
		if g := &api.Globals[i]; g.Name == name && g.Engine {
			return g
		}
	}
	panic("api: no engine global " + name)
}

// driverObject is `driver`.
func (s *Session) driverObject(machines []starlark.Value) *namespace {
	out := ""
	if s.d != nil {
		out = s.d.OutputDir()
	}
	return &namespace{name: "driver", attrs: starlark.StringDict{
		"out_dir":  starlark.String(out),
		"machines": starlark.NewList(machines),
	}}
}
