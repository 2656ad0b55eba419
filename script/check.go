package script

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/script/modules"
	"go.starlark.net/resolve"
	"go.starlark.net/syntax"
)

// checkMethods resolves the methods a resolved script calls on its
// machines' globals (names: pythonized machine names, and `machine` when
// it is the one-machine alias) against the API table: a name the table
// lacks is an error with the closest one suggested, and a method
// vmdriver does not support yet is an error saying what it lacks, so a
// script learns both before a machine boots. Local variables that shadow
// a machine's name are left alone.
func checkMethods(r *rewritten, f *syntax.File, machines map[string]bool) error {
	var errs []error
	syntax.Walk(f, func(n syntax.Node) bool {
		if call, ok := n.(*syntax.CallExpr); ok {
			if err := checkRegexArg(r, call, machines); err != nil {
				errs = append(errs, err)
			}
			return true
		}
		dot, ok := n.(*syntax.DotExpr)
		if !ok {
			return true
		}
		id, ok := dot.X.(*syntax.Ident)
		if !ok || !machines[id.Name] {
			return true
		}
		if b, ok := id.Binding.(*resolve.Binding); !ok || b.Scope != resolve.Predeclared {
			return true
		}
		name := dot.Name.Name
		var msg string
		if meth, ok := machineMethods[name]; ok {
			if meth.Unsupported == "" {
				return true
			}
			msg = fmt.Sprintf("%s: not supported yet (%s)", name, meth.Unsupported)
		} else if _, ok := machineAttrs[name]; ok {
			return true
		} else {
			msg = noAttr("machine "+id.Name, name, machineAttrNames).Error()
		}
		errs = append(errs, &ScriptError{Msg: msg, Location: r.mapPos(dot.Name.NamePos), Err: errors.New(msg)})
		return true
	})
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// reFuncs are the functions of module re whose first argument is a
// pattern.
var reFuncs = map[string]bool{"compile": true, "search": true, "match": true, "fullmatch": true, "findall": true,
	"finditer": true, "sub": true, "subn": true, "split": true}

// checkRegexArg reports a literal regular expression that cannot run
// here (RE2 has no backreferences or lookaround): passed to a function of
// module re, or as the pattern of a machine method. A script that check
// accepts must not fail for it at run time; CPython can run it.
func checkRegexArg(r *rewritten, call *syntax.CallExpr, machines map[string]bool) error {
	dot, ok := call.Fn.(*syntax.DotExpr)
	if !ok || len(call.Args) == 0 {
		return nil
	}
	id, ok := dot.X.(*syntax.Ident)
	if !ok {
		return nil
	}
	// The literal patterns the call passes, and how each is checked.
	var patterns []*syntax.Literal
	check := pyRegexCheck
	switch {
	case id.Name == "re" && reFuncs[dot.Name.Name]:
		patterns, check = literalArgs(call, func(i int, name string) bool { return i == 0 || name == "pattern" }), modules.CheckPattern
	case machines[id.Name]:
		meth, ok := machineMethods[dot.Name.Name]
		if !ok {
			return nil
		}
		patterns = literalArgs(call, func(i int, name string) bool {
			for k, p := range meth.Params {
				if p.Type == api.Regex && (k == i || p.Name == name) {
					return true
				}
			}
			return false
		})
	}
	for _, lit := range patterns {
		err := check(lit.Value.(string))
		if err == nil {
			continue
		}
		msg := fmt.Sprintf("%s.%s: %v", id.Name, dot.Name.Name, err)
		if errors.Is(err, modules.ErrUnsupportedPattern) || strings.Contains(err.Error(), "not supported") {
			msg += ": Go's regular expressions (RE2) cannot run it; run the script on CPython (--python)"
			err = ErrNeedsPython
		}
		return &ScriptError{Msg: msg, Location: r.mapPos(lit.TokenPos), Err: fmt.Errorf("%s: %w", msg, err)}
	}
	return nil
}

func pyRegexCheck(p string) error {
	_, err := pyRegex(p)
	return err
}

// literalArgs returns the string literals among call's arguments that
// want accepts, by position (keyword arguments have position -1) or by
// name.
func literalArgs(call *syntax.CallExpr, want func(i int, name string) bool) []*syntax.Literal {
	var out []*syntax.Literal
	pos := 0
	for _, a := range call.Args {
		name, val, i := "", a, -1
		if bin, ok := a.(*syntax.BinaryExpr); ok && bin.Op == syntax.EQ {
			if kw, ok := bin.X.(*syntax.Ident); ok {
				name, val = kw.Name, bin.Y
			}
		} else {
			i = pos
			pos++
		}
		if lit, ok := val.(*syntax.Literal); ok && lit.Token == syntax.STRING && want(i, name) {
			out = append(out, lit)
		}
	}
	return out
}

// Accepts reports whether this engine can run a script: nil when
// CheckWith accepts it and every module it imports is one the runtime
// has, else why not (a *ScriptError, or several joined). vmdriver runs a
// script this engine refuses on CPython (package script/cpython) when an
// interpreter is at hand.
func Accepts(filename string, src []byte, opts CheckOptions) error {
	if err := CheckWith(filename, src, opts); err != nil {
		return err
	}
	r, err := rewrite(filename, src)
	if err != nil {
		return err
	}
	f, err := fileOptions.Parse(filename, r.source, 0)
	if err != nil {
		return r.compileError(err, universeNames)
	}
	have := staticModuleNames()
	var errs []error
	syntax.Walk(f, func(n syntax.Node) bool {
		call, ok := n.(*syntax.CallExpr)
		if !ok || !isIdent(call.Fn, "import_") || len(call.Args) == 0 {
			return true
		}
		lit, ok := call.Args[0].(*syntax.Literal)
		if !ok || lit.Token != syntax.STRING {
			return true
		}
		name, _ := lit.Value.(string)
		if !slices.Contains(have, name) {
			msg := fmt.Sprintf("no module named %q in the Starlark runtime (it has %s)", name, strings.Join(have, ", "))
			errs = append(errs, &ScriptError{Msg: msg, Location: r.mapPos(lit.TokenPos), Err: errors.New(msg)})
		}
		return true
	})
	return errors.Join(errs...)
}

// staticModuleNames are the modules scripts can import on this engine.
var staticModuleNames = sync.OnceValue(func() []string { return newSession(Options{}).mods.set.Names() })
