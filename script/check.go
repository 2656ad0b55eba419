package script

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

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
