package script

import (
	"errors"
	"fmt"

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
