package script

import (
	"slices"
	"testing"

	"github.com/vmdriver/vmdriver/api"
)

// shimGlobals are the globals the runtime adds for Python built-ins and
// the rewrite's targets; they are not part of the NixOS API table.
var shimGlobals = []string{"print", "fail", "sum", "isinstance", "with_", "assert_", "import_", "fmt_", "fstr_", "py_", "unpack_", "os", "open", "repr", "str", "max", "min", "exit", "quit"}

// TestGlobalsMatchTable: the Starlark globals are the table's, plus the
// Python shims; nothing is bound by hand beside it.
func TestGlobalsMatchTable(t *testing.T) {
	have := staticGlobalNames()
	var want []string
	for _, g := range api.Globals {
		want = append(want, g.Name)
	}
	for _, v := range api.Values {
		if v.Name != "machine" { // only with exactly one machine
			want = append(want, v.Name)
		}
	}
	for _, n := range want {
		if !slices.Contains(have, n) {
			t.Errorf("the table's global %s is not bound", n)
		}
	}
	for _, n := range have {
		if !slices.Contains(want, n) && !slices.Contains(shimGlobals, n) && !slices.Contains(exceptionNames, n) {
			t.Errorf("global %s is bound but not in the api table", n)
		}
	}
	log := newSession(Options{}).globals["log"].(*namespace)
	for _, f := range api.LogFuncs {
		if _, ok := log.attrs[f.Name]; !ok {
			t.Errorf("log.%s is not bound", f.Name)
		}
	}
	if got := len(log.attrs); got != len(api.LogFuncs) {
		t.Errorf("log has %d functions, the table %d", got, len(api.LogFuncs))
	}
}
