package script

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/syntax"
)

// TestSplitScript cuts scripts into set-up, top-level subtests and tail;
// statements are named by the line they start on in the script as
// written.
func TestSplitScript(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		setup    []int
		subtests []string // "name@line"
		tail     []int
		// errLines are the "line:col" of statements between subtests.
		errLines []string
	}{
		{
			name: "set-up, subtests and tail",
			src: `start_all()
x = 1

with subtest("one"):
    machine.succeed("true")
with subtest("two"):  # a comment
    pass
# between subtests, comments and blank lines are fine

with subtest(name="three"):
    pass
print("done")
machine.shutdown()
`,
			setup:    []int{1, 2},
			subtests: []string{"one@4", "two@6", "three@10"},
			tail:     []int{12, 13},
		},
		{
			name:     "subtest first, no tail",
			src:      "with subtest(\"only\"):\n    pass\n",
			subtests: []string{"only@1"},
		},
		{
			name:  "no subtest at all",
			src:   "start_all()\ndef f():\n    with subtest(\"inside a def\"):\n        pass\nf()\n",
			setup: []int{1, 2, 5},
		},
		{
			name: "nested subtests stay inside their top-level one",
			src: `with subtest("outer"):
    with subtest("inner"):
        pass
    x = 2
    with subtest("inner 2"):
        pass
`,
			subtests: []string{"outer@1"},
		},
		{
			name: "subtests inside other blocks are not top-level",
			src: `if True:
    with subtest("in an if"):
        pass
with log.nested("block"):
    with subtest("in a block"):
        pass
for name in ["a", "b"]:
    with subtest(name):
        pass
`,
			setup: []int{1, 4, 7},
		},
		{
			name: "several managers, a computed name, an as-target",
			src: `with subtest("a" + "b"), log.nested("x"):
    pass
with subtest(f"n{1}") as s:
    pass
`,
			subtests: []string{"line 1@1", "line 3@3"},
		},
		{
			name: "a decorated def inside a subtest stays in it",
			src: `with subtest("deco"):
    @polling_condition
    def cond():
        return True

print(1)
`,
			subtests: []string{"deco@1"},
			tail:     []int{6},
		},
		{
			name: "statements between subtests",
			src: `start_all()
with subtest("one"):
    pass
x = 1
with subtest("two"):
    pass
  # odd comment
if x:
    pass
with subtest("three"):
    pass
y = 2
`,
			errLines: []string{"4:1", "8:1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := rewrite("t.py", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			f, err := fileOptions.Parse("t.py", r.source, 0)
			if err != nil {
				t.Fatal(err)
			}
			p, err := splitScript(r, f)
			if tt.errLines != nil {
				var got []string
				for _, e := range unjoin(err) {
					var se *ScriptError
					if !errors.As(e, &se) || !errors.Is(e, ErrBetweenSubtests) {
						t.Fatalf("error %v (%T) is not a *ScriptError for ErrBetweenSubtests", e, e)
					}
					if se.Msg != BetweenSubtests || se.Location.File != "t.py" {
						t.Errorf("error %q", se.Error())
					}
					got = append(got, fmt.Sprintf("%d:%d", se.Location.Line, se.Location.Col))
				}
				if !slices.Equal(got, tt.errLines) {
					t.Errorf("errors at %v, want %v", got, tt.errLines)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := func(stmts []syntax.Stmt) []int {
				var l []int
				for _, st := range stmts {
					l = append(l, r.mapPos(syntax.Start(st)).Line)
				}
				return l
			}
			var subs []string
			for _, s := range p.subtests {
				subs = append(subs, fmt.Sprintf("%s@%d", s.name, s.loc.Line))
			}
			if got := lines(p.setup); !slices.Equal(got, tt.setup) {
				t.Errorf("set-up starts at lines %v, want %v", got, tt.setup)
			}
			if !slices.Equal(subs, tt.subtests) {
				t.Errorf("subtests %v, want %v", subs, tt.subtests)
			}
			if got := lines(p.tail); !slices.Equal(got, tt.tail) {
				t.Errorf("tail starts at lines %v, want %v", got, tt.tail)
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

// TestCheckFork checks the names each part of a forked script uses.
func TestCheckFork(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // "line:col: message part", one per error
	}{
		{"set-up names are seen everywhere", `x = 1
def f():
    return x
with subtest("a"):
    y = f() + x
    x = 3
with subtest("b"):
    x = x + 1
print(x)
`, nil},
		{"a name from another subtest", `with subtest("a"):
    y = 1
with subtest("b"):
    print(y)
print(y)
`, []string{
			"4:11: undefined: y (it is bound only in the subtest at line 1",
			"5:7: undefined: y (it is bound only in the subtest at line 1",
		}},
		{"plain misspelling keeps its hint", `start_all()
with subtest("a"):
    strat_all()
`, []string{"3:5: undefined: strat_all (did you mean start_all?)"}},
		{"statement between subtests", `with subtest("a"):
    pass
z = 1
with subtest("b"):
    pass
`, []string{"3:1: " + BetweenSubtests}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckWith("t.py", []byte(tt.src), CheckOptions{Machines: []string{"machine"}, ForkSubtests: true})
			errs := unjoin(err)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors (%v), want %d", len(errs), err, len(tt.want))
			}
			for i, e := range errs {
				var se *ScriptError
				if !errors.As(e, &se) {
					t.Fatalf("error %v is %T, want *ScriptError", e, e)
				}
				got := fmt.Sprintf("%d:%d: %s", se.Location.Line, se.Location.Col, se.Msg)
				if !strings.HasPrefix(got, tt.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, got, tt.want[i])
				}
			}
			// Without forking, the same script passes the whole-file
			// check (the errors are the fork's own).
			if err := CheckWith("t.py", []byte(tt.src), CheckOptions{Machines: []string{"machine"}}); err != nil && tt.name != "plain misspelling keeps its hint" {
				t.Errorf("whole-file check: %v", err)
			}
		})
	}
}
