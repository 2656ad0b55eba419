package modules

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// fileOptions are the dialect options the runtime uses.
var fileOptions = &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}

// newModules returns Modules for one test, closed when the test ends.
func newModules(t *testing.T, h Host) *Modules {
	t.Helper()
	m := New(h)
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// execScript runs src the way the runtime will: import_ resolves modules through
// Lookup, open is predeclared, with_ drives __enter__/__exit__. extra adds
// predeclared names (e.g. a temp dir).
func execScript(t *testing.T, m *Modules, src string, extra starlark.StringDict) (starlark.StringDict, error) {
	t.Helper()
	predeclared := starlark.StringDict{
		"import_": starlark.NewBuiltin("import_", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if len(args) == 0 || len(args) > 2 {
				return nil, fmt.Errorf("import_: want 1 or 2 arguments")
			}
			name := string(args[0].(starlark.String))
			mod := m.Lookup(name)
			if mod == nil {
				return nil, fmt.Errorf("import_: no module named %s", name)
			}
			if len(args) == 1 {
				return mod, nil
			}
			member := string(args[1].(starlark.String))
			if sub := m.Lookup(name + "." + member); sub != nil {
				return sub, nil
			}
			v, err := mod.(starlark.HasAttrs).Attr(member)
			if err != nil || v == nil {
				return nil, fmt.Errorf("import_: cannot import name %s from %s", member, name)
			}
			return v, nil
		}),
		"open":  m.Open(),
		"with_": starlark.NewBuiltin("with_", withBuiltin(t)),
	}
	for k, v := range extra {
		predeclared[k] = v
	}
	var out strings.Builder
	thread := &starlark.Thread{Name: t.Name(), Print: func(_ *starlark.Thread, msg string) { out.WriteString(msg + "\n") }}
	globals, err := starlark.ExecFileOptions(fileOptions, thread, "test.star", src, predeclared)
	if out.Len() > 0 {
		t.Logf("script output:\n%s", out.String())
	}
	return globals, err
}

// withBuiltin is the runtime's with_(cm): an iterable of one element that
// calls cm.__enter__() on the first Next and cm.__exit__() in Done.
func withBuiltin(t *testing.T) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
	return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var cm starlark.HasAttrs
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &cm); err != nil {
			return nil, err
		}
		return &withValue{t: t, thread: thread, cm: cm}, nil
	}
}

type withValue struct {
	t      *testing.T
	thread *starlark.Thread
	cm     starlark.HasAttrs
}

func (w *withValue) String() string        { return "with_(...)" }
func (w *withValue) Type() string          { return "with" }
func (w *withValue) Freeze()               {}
func (w *withValue) Truth() starlark.Bool  { return true }
func (w *withValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable") }
func (w *withValue) Iterate() starlark.Iterator {
	return &withIterator{w: w}
}

type withIterator struct {
	w       *withValue
	mu      sync.Mutex
	entered bool
}

func (it *withIterator) Next(p *starlark.Value) bool {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.entered {
		return false
	}
	it.entered = true
	enter, err := it.w.cm.Attr("__enter__")
	if err != nil || enter == nil {
		it.w.t.Errorf("with_: %s has no __enter__ (%v)", it.w.cm.Type(), err)
		return false
	}
	v, err := starlark.Call(it.w.thread, enter, nil, nil)
	if err != nil {
		it.w.t.Errorf("with_: __enter__: %v", err)
		return false
	}
	*p = v
	return true
}

func (it *withIterator) Done() {
	it.mu.Lock()
	defer it.mu.Unlock()
	if !it.entered {
		return
	}
	exit, err := it.w.cm.Attr("__exit__")
	if err != nil || exit == nil {
		it.w.t.Errorf("with_: %s has no __exit__ (%v)", it.w.cm.Type(), err)
		return
	}
	if _, err := starlark.Call(it.w.thread, exit, starlark.Tuple{starlark.None, starlark.None, starlark.None}, nil); err != nil {
		it.w.t.Errorf("with_: __exit__: %v", err)
	}
}

// snippet is one table-driven Starlark case: src sets res; want is repr(res)
// (or, with a "str:" prefix, the contents of a str res), or wantErr a
// substring of the error.
type snippet struct {
	name    string
	src     string
	want    string
	wantErr string
}

func runSnippets(t *testing.T, cases []snippet, extra func(t *testing.T) starlark.StringDict) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newModules(t, Host{})
			var ex starlark.StringDict
			if extra != nil {
				ex = extra(t)
			}
			globals, err := execScript(t, m, c.src, ex)
			if c.wantErr != "" {
				if err == nil {
					t.Fatalf("no error; res = %v, want error containing %q", globals["res"], c.wantErr)
				}
				if !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			res, ok := globals["res"]
			if !ok {
				t.Fatalf("snippet does not set res")
			}
			got := res.String()
			if want, ok := strings.CutPrefix(c.want, "str:"); ok {
				// Compare a str result's contents rather than its repr.
				s, isStr := res.(starlark.String)
				if !isStr {
					t.Fatalf("res = %s (%s), want a str", res, res.Type())
				}
				got, c.want = string(s), want
			}
			if got != c.want {
				t.Errorf("res = %s\nwant  %s", got, c.want)
			}
		})
	}
}
