package api_test

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/api"
)

var update = flag.Bool("update", false, "rewrite docs/api.md from the tables")

const docsFile = "../docs/api.md"

// TestDocsMatchTable fails when docs/api.md is not what the tables
// generate; `go test ./api -update` rewrites it.
func TestDocsMatchTable(t *testing.T) {
	want := api.Markdown()
	if *update {
		if err := os.WriteFile(docsFile, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatalf("%v (run go test ./api -update)", err)
	}
	if string(got) != want {
		t.Errorf("%s is not what the tables generate: run go test ./api -update", docsFile)
	}
}

// TestTable checks every entry is complete and consistent: one name per
// entry, a doc line, exactly one implementation, Python's parameter
// order, and defaults of the parameter's own type.
func TestTable(t *testing.T) {
	groups := map[string][]api.Method{"method": api.Methods, "global": api.Globals, "log function": api.LogFuncs}
	for group, ms := range groups {
		seen := map[string]bool{}
		if group == "method" {
			for _, a := range api.Attrs {
				seen[a.Name] = true
				if a.Doc == "" || a.Type == "" || a.Get == nil {
					t.Errorf("attribute %s: missing doc, type or getter", a.Name)
				}
			}
		}
		for _, m := range ms {
			if seen[m.Name] {
				t.Errorf("%s %s: listed twice", group, m.Name)
			}
			seen[m.Name] = true
			if m.Doc == "" {
				t.Errorf("%s %s: no doc line", group, m.Name)
			}
			impls := 0
			for _, ok := range []bool{m.Call != nil, m.Unsupported != "", m.Engine} {
				if ok {
					impls++
				}
			}
			if impls != 1 {
				t.Errorf("%s %s: want exactly one of Call, Unsupported, Engine; have %d", group, m.Name, impls)
			}
			checkParams(t, group+" "+m.Name, m.Params)
		}
		for _, m := range ms {
			if m.Alias != "" && !seen[m.Alias] {
				t.Errorf("%s %s: alias of %s, which is not in the table", group, m.Name, m.Alias)
			}
		}
	}
}

func checkParams(t *testing.T, what string, ps []api.Param) {
	t.Helper()
	names := map[string]bool{}
	optional := false
	for _, p := range ps {
		if names[p.Name] {
			t.Errorf("%s: parameter %s twice", what, p.Name)
		}
		names[p.Name] = true
		if p.Type == 0 {
			t.Errorf("%s: parameter %s has no type", what, p.Name)
		}
		if p.Deprecated != "" && !containsParam(ps, p.Deprecated) {
			t.Errorf("%s: parameter %s is deprecated for %s, which it does not have", what, p.Name, p.Deprecated)
		}
		if p.Required && (p.Variadic || p.Default != nil) {
			t.Errorf("%s: required parameter %s has a default or is variadic", what, p.Name)
		}
		if !p.KeywordOnly && !p.Variadic {
			if p.Required && optional {
				t.Errorf("%s: required parameter %s follows an optional one", what, p.Name)
			}
			optional = optional || !p.Required
		}
		if p.Default == nil {
			continue
		}
		ok := false
		switch p.Type {
		case api.Str:
			_, ok = p.Default.(string)
		case api.Int:
			_, ok = p.Default.(int)
		case api.Bool:
			_, ok = p.Default.(bool)
		case api.Seconds:
			_, ok = p.Default.(time.Duration)
		}
		if !ok {
			t.Errorf("%s: parameter %s: default %#v is not a %s", what, p.Name, p.Default, p.Type)
		}
	}
}

func containsParam(ps []api.Param, name string) bool {
	for _, p := range ps {
		if p.Name == name {
			return true
		}
	}
	return false
}

func TestSignature(t *testing.T) {
	tests := []struct {
		m    api.Method
		want string
	}{
		{api.Method{Name: "f"}, "f()"},
		{api.Method{Name: "f", Params: []api.Param{{Name: "a", Type: api.Str, Required: true}, {Name: "t", Type: api.Seconds, Default: 90 * time.Second}}}, "f(a, t=90)"},
		{api.Method{Name: "f", Params: []api.Param{{Name: "cmds", Type: api.Str, Variadic: true}, {Name: "timeout", Type: api.Seconds}}}, "f(*cmds, timeout=None)"},
		{api.Method{Name: "f", Params: []api.Param{{Name: "a", Type: api.Str}, {Name: "k", Type: api.Bool, Default: false, KeywordOnly: true}}}, "f(a=None, *, k=False)"},
		{api.Method{Name: "f", Params: []api.Param{{Name: "d", Type: api.Seconds, Default: 10 * time.Millisecond}, {Name: "s", Type: api.Str, Default: "x y"}}}, `f(d=0.01, s="x y")`},
	}
	for _, tt := range tests {
		if got := tt.m.Signature(); got != tt.want {
			t.Errorf("Signature() = %s, want %s", got, tt.want)
		}
	}
}

// Every NixOS Machine method an engine binds comes from the table, with
// its Python signature.
func ExampleLookup() {
	m, _ := api.Lookup("wait_for_open_port")
	fmt.Println(m.Signature(), "->", m.Returns)
	// Output: wait_for_open_port(port, addr="localhost", timeout=900) -> None
}
