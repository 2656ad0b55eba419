package script

import (
	"fmt"
	"hash/fnv"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
)

// machineValue is a machine as scripts see it: the NixOS driver's
// Machine API over a *machine.Machine.
//
// In a forked subtest (Options.ForkSubtests) the same value acts on the
// subtest's clone of the machine: methods look the machine up in their
// thread's fork (forkOf), so a function defined in set-up acts on the
// clones when a subtest calls it. Data attributes (booted, pid, ...)
// have no thread to look at; a forked subtest's own globals therefore
// name clone-bound values (clone set), which read the clone's.
type machineValue struct {
	s *Session
	// m is the machine the value names: for a clone-bound value, the
	// original it was cloned from.
	m *machine.Machine
	// clone, if set, is the forked subtest's clone the value acts on.
	clone *machine.Machine
}

// Machines are equal when they name the same machine: a forked subtest's
// clone-bound value equals the original's.
var (
	_ starlark.HasAttrs   = (*machineValue)(nil)
	_ starlark.Comparable = (*machineValue)(nil)
)

func (mv *machineValue) String() string       { return fmt.Sprintf("<Machine '%s'>", mv.m.Name()) }
func (mv *machineValue) Type() string         { return "Machine" }
func (mv *machineValue) Freeze()              {}
func (mv *machineValue) Truth() starlark.Bool { return starlark.True }
func (mv *machineValue) Hash() (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(mv.m.Name()))
	return h.Sum32(), nil
}

// CompareSameType supports == and != only.
func (mv *machineValue) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	same := mv.m == namedMachine(y)
	switch op {
	case syntax.EQL:
		return same, nil
	case syntax.NEQ:
		return !same, nil
	}
	return false, fmt.Errorf("%s %s %s: machines are not ordered", mv.Type(), op, y.Type())
}

// namedMachine is the machine a Machine value names (the original, for a
// clone-bound value), or nil.
func namedMachine(v starlark.Value) *machine.Machine {
	switch v := v.(type) {
	case *machineValue:
		return v.m
	case *machineAlias:
		return v.mv.m
	}
	return nil
}

// on returns the machine the value acts on in thread th.
func (mv *machineValue) on(th *starlark.Thread) *machine.Machine {
	if mv.clone != nil {
		return mv.clone
	}
	if fs := forkOf(th); fs != nil {
		if c := fs.clones[mv.m.Name()]; c != nil {
			return c
		}
	}
	return mv.m
}

// machineMethods are the table's Machine methods by name.
var machineMethods = func() map[string]*api.Method {
	ms := make(map[string]*api.Method, len(api.Methods))
	for i := range api.Methods {
		ms[api.Methods[i].Name] = &api.Methods[i]
	}
	return ms
}()

// machineAttrs are the table's data attributes by name.
var machineAttrs = func() map[string]*api.Attr {
	as := make(map[string]*api.Attr, len(api.Attrs))
	for i := range api.Attrs {
		as[api.Attrs[i].Name] = &api.Attrs[i]
	}
	return as
}()

// machineAttrNames lists the attributes and methods, sorted.
var machineAttrNames = func() []string {
	names := make([]string, 0, len(api.Attrs)+len(api.Methods))
	for _, a := range api.Attrs {
		names = append(names, a.Name)
	}
	for _, m := range api.Methods {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	return names
}()

// AttrNames lists the attributes and methods.
func (mv *machineValue) AttrNames() []string { return machineAttrNames }

// Attr returns an attribute or a bound method; a misspelt name gets the
// closest one suggested.
func (mv *machineValue) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		// A clone keeps its original's name for the script.
		return starlark.String(mv.m.Name()), nil
	}
	if a, ok := machineAttrs[name]; ok {
		m := mv.m
		if mv.clone != nil {
			m = mv.clone
		}
		return mv.s.toValue(a.Get(m)), nil
	}
	meth, ok := machineMethods[name]
	if !ok {
		return nil, noAttr(fmt.Sprintf("machine %s", mv.m.Name()), name, mv.AttrNames())
	}
	return mv.s.builtin(name, func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return mv.s.callAPI(th, meth, mv.on(th), args, kwargs)
	}).BindReceiver(mv), nil
}

// callAPI calls a method or global of the table: unsupported ones fail
// saying what is missing; deprecated parameters log a warning.
func (s *Session) callAPI(th *starlark.Thread, meth *api.Method, m *machine.Machine, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if meth.Unsupported != "" {
		return nil, fmt.Errorf("%s: not supported yet (%s)", meth.Name, meth.Unsupported)
	}
	a, err := s.bind(th, meth.Name, meth.Params, args, kwargs)
	if err != nil {
		return nil, err
	}
	ctx, err := contextOf(th)
	if err != nil {
		return nil, err
	}
	s.warnDeprecated(th, meth, a)
	v, err := meth.Call(ctx, &api.Request{Machine: m, Env: threadEnv{s: s, th: th}, Args: a})
	if err != nil {
		return nil, err
	}
	return s.toValue(v), nil
}

// warnDeprecated logs a warning for each deprecated parameter passed.
func (s *Session) warnDeprecated(th *starlark.Thread, meth *api.Method, a api.Args) {
	for _, p := range meth.Params {
		if p.Deprecated != "" && a.Given(p.Name) {
			s.logOf(th).Warn("", fmt.Sprintf("%s: %s is deprecated, use %s", meth.Name, p.Name, p.Deprecated))
		}
	}
}

// apiBuiltin is a global of the table as a Starlark builtin.
func (s *Session) apiBuiltin(meth *api.Method) *starlark.Builtin {
	return s.builtin(meth.Name, func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		return s.callAPI(th, meth, nil, args, kwargs)
	})
}

// threadEnv is api.Env for the calling thread: in a forked subtest, the
// subtest's clones and log.
type threadEnv struct {
	s  *Session
	th *starlark.Thread
}

func (e threadEnv) Driver() *driver.Driver       { return e.s.d }
func (e threadEnv) Machines() []*machine.Machine { return e.s.machinesOf(e.th) }
func (e threadEnv) Logger() driver.Logger        { return e.s.logOf(e.th) }

func (e threadEnv) SetSerialOutput(on bool) {
	log, rep := e.s.log, e.s.opts.Reporter
	if fs := forkOf(e.th); fs != nil {
		log, rep = fs.log, fs.rep
	}
	switch {
	case rep != nil:
		rep.SetSerialOutput(on)
	default:
		if l, ok := log.(interface{ SetSerialOutput(bool) }); ok {
			l.SetSerialOutput(on)
		}
	}
}

// machineAlias is the implicit `machine` of a single-machine test: the
// machine under another name that warns, once, that it is deprecated.
type machineAlias struct {
	mv   *machineValue
	once interface{ Do(func()) }
}

var (
	_ starlark.HasAttrs   = (*machineAlias)(nil)
	_ starlark.Comparable = (*machineAlias)(nil)
)

func (a *machineAlias) String() string        { return a.mv.String() }
func (a *machineAlias) Type() string          { return a.mv.Type() }
func (a *machineAlias) Freeze()               {}
func (a *machineAlias) Truth() starlark.Bool  { return starlark.True }
func (a *machineAlias) Hash() (uint32, error) { return a.mv.Hash() }
func (a *machineAlias) AttrNames() []string   { return a.mv.AttrNames() }

// CompareSameType compares the machine the alias names.
func (a *machineAlias) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return a.mv.CompareSameType(op, y, depth)
}

func (a *machineAlias) Attr(name string) (starlark.Value, error) {
	a.once.Do(func() {
		a.mv.s.log.Warn("", AliasWarning(a.mv.m.Name()))
	})
	return a.mv.Attr(name)
}

// pyRegex translates a Python regular expression to Go's syntax.
var pyRegex = api.Regexp
