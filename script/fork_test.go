package script_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// runForked runs src with forked subtests, jobs at a time.
func (e *env) runForked(src string, jobs int) error {
	e.t.Helper()
	opts := e.opts(src)
	opts.ForkSubtests, opts.Jobs = true, jobs
	return script.Run(testCtx(e.t), opts)
}

// forkScript has a set-up, three subtests of which the third fails, and a
// tail. Run one job at a time, the subtests run in order, so the second
// would see the first one's file if they shared a machine.
var forkScript = lines(
	`start_all()`,
	`machine.succeed("echo base > /tmp/setup")`,
	`first = machines[0]`,
	`def has(path):`,
	`    return machine.execute("test -e " + path)[0] == 0`,
	`print("set-up", machine.state_dir)`,
	``,
	`with subtest("one"):`,
	`    assert has("/tmp/setup"), "set-up's file is missing"`,
	`    machine.succeed("echo 1 > /tmp/one")`,
	`    assert has("/tmp/one"), "a function from set-up does not act on the clone"`,
	`    first.succeed("test -e /tmp/one")`,
	`    machines[0].succeed("test -e /tmp/one")`,
	`    assert machine == first and machine.name == "machine"`,
	`    print("one", machine.state_dir)`,
	`with subtest("two"):`,
	`    assert has("/tmp/setup"), "set-up's file is missing"`,
	`    assert not has("/tmp/one"), "two sees the file one wrote"`,
	`    machine.succeed("echo 2 > /tmp/two")`,
	`    print("two", machine.state_dir)`,
	`with subtest("three"):`,
	`    print("three", machine.state_dir)`,
	`    machine.succeed("test -e /tmp/two")`,
	``,
	`machine.succeed("test -e /tmp/setup")`,
	`machine.fail("test -e /tmp/one")`,
	`print("tail", machine.state_dir)`,
)

func TestForkedSubtests(t *testing.T) {
	e := machines(t, "machine")
	err := e.runForked(forkScript, 1)
	if !errors.Is(err, script.ErrSubtestsFailed) || !strings.Contains(err.Error(), `1 of 3 ("three")`) {
		t.Fatalf("err = %v, want ErrSubtestsFailed naming three", err)
	}
	got := e.log.All("subtest", "subtest-ok", "subtest-fail")
	want := []string{"subtest||one", "subtest-ok||one", "subtest||two", "subtest-ok||two", "subtest||three", "subtest-fail||three"}
	if !slices.Equal(got, want) {
		t.Errorf("subtests:\n got %q\nwant %q", got, want)
	}
	fails := e.rep.Failures()
	if len(fails) != 1 {
		t.Fatalf("failures = %+v, want 1", fails)
	}
	if f := fails[0]; !strings.HasPrefix(f.Msg, `Test "three" failed with error: "machine `) ||
		f.Loc == nil || f.Loc.Line != 23 || !strings.Contains(f.Loc.Source, "/tmp/two") {
		t.Errorf("failure = %q at %+v, want three's at line 23", f.Msg, f.Loc)
	}
	// Every part saw its own machine: set-up and tail the original, each
	// subtest a clone of its own.
	dirs := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(e.stdout.String()), "\n") {
		part, dir, _ := strings.Cut(l, " ")
		dirs[part] = dir
	}
	if dirs["set-up"] == "" || dirs["tail"] != dirs["set-up"] {
		t.Errorf("set-up ran on %q, the tail on %q: want the same machine", dirs["set-up"], dirs["tail"])
	}
	seen := map[string]string{}
	for _, part := range []string{"set-up", "one", "two", "three"} {
		dir := dirs[part]
		if dir == "" {
			t.Errorf("%s printed no state directory: %q", part, e.stdout.String())
			continue
		}
		if other, dup := seen[dir]; dup {
			t.Errorf("%s and %s ran on the same machine (%s)", other, part, dir)
		}
		seen[dir] = part
	}
}

// TestForkedSubtestsInParallel runs the subtests side by side into a
// report.Logger (a script.Brancher): each subtest's lines form one block,
// and the JUnit report has every subtest with its outcome.
func TestForkedSubtestsInParallel(t *testing.T) {
	var out bytes.Buffer
	log := report.New(report.Options{Out: &out, JUnit: true})
	e := newEnv(t, envConfig{machines: []string{"machine"}, logger: log})
	opts := e.opts(forkScript)
	opts.Logger, opts.Reporter = log, log
	opts.ForkSubtests, opts.Jobs = true, 3
	err := script.Run(testCtx(t), opts)
	if !errors.Is(err, script.ErrSubtestsFailed) {
		t.Fatalf("err = %v, want ErrSubtestsFailed", err)
	}
	log.Close()

	// Lines of a subtest block are indented under it until its end.
	var open string
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "subtest: "):
			if open != "" {
				t.Fatalf("subtest %s starts inside %s:\n%s", line, open, out.String())
			}
			open = strings.TrimPrefix(line, "subtest: ")
		case strings.HasPrefix(line, "(finished: subtest: "), strings.HasPrefix(line, "(failed: subtest: "):
			if !strings.Contains(line, "subtest: "+open+",") {
				t.Fatalf("%q ends inside %s", line, open)
			}
			open = ""
		case open != "" && line != "" && !strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "!!! "):
			t.Fatalf("line %q inside subtest %s is not part of it:\n%s", line, open, out.String())
		}
	}

	var junit bytes.Buffer
	if err := log.WriteJUnit(&junit); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
			SystemOut string `xml:"system-out"`
		} `xml:"testsuite>testcase"`
	}
	if err := xml.Unmarshal(junit.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	outcome := map[string]bool{}
	var order []string
	for _, c := range doc.Cases {
		outcome[c.Name] = c.Failure == nil
		order = append(order, c.Name)
	}
	// Merged in script order, whichever finished first.
	if got := strings.Join(order, ","); got != "one,two,three" {
		t.Errorf("junit cases in order %s, want one,two,three", got)
	}
	var logOrder []string
	for _, line := range strings.Split(out.String(), "\n") {
		if name, ok := strings.CutPrefix(line, "subtest: "); ok {
			logOrder = append(logOrder, name)
		}
	}
	if got := strings.Join(logOrder, ","); got != "one,two,three" {
		t.Errorf("log blocks in order %s, want one,two,three", got)
	}
	if len(doc.Cases) != 3 || !outcome["one"] || !outcome["two"] || outcome["three"] {
		t.Errorf("junit cases %+v, want one and two passed, three failed", doc.Cases)
	}
	if !regexp.MustCompile(`(?m)^!!! .*test\.py:23`).MatchString(out.String()) {
		t.Errorf("no failure at test.py:23 in the log:\n%s", out.String())
	}
}

func TestForkedSetUpFailure(t *testing.T) {
	e := machines(t, "machine")
	err := e.runForked(lines(
		`machine.succeed("false")`,
		`with subtest("never"):`,
		`    pass`,
	), 2)
	var se *script.ScriptError
	if !errors.As(err, &se) || se.Location.Line != 1 {
		t.Fatalf("err = %v, want a script error at line 1", err)
	}
	if got := e.log.All("subtest"); len(got) != 0 {
		t.Errorf("subtests ran after set-up failed: %q", got)
	}
}

func TestForkedStatementBetweenSubtests(t *testing.T) {
	e := machines(t, "machine")
	err := e.runForked(lines(
		`start_all()`,
		`with subtest("a"):`,
		`    pass`,
		`machine.succeed("true")`,
		`with subtest("b"):`,
		`    pass`,
	), 2)
	var se *script.ScriptError
	if !errors.As(err, &se) || !errors.Is(err, script.ErrBetweenSubtests) || se.Location.Line != 4 || se.Location.Col != 1 {
		t.Fatalf("err = %v, want ErrBetweenSubtests at 4:1", err)
	}
	if n := e.b.Starts("machine"); n != 0 {
		t.Errorf("machine started %d times before the error", n)
	}
}

func TestForkedWithoutSubtests(t *testing.T) {
	e := machines(t, "machine")
	if err := e.runForked(lines(`machine.succeed("true")`), 2); err != nil {
		t.Fatal(err)
	}
	if !e.log.Has("warn", "nothing to fork") {
		t.Errorf("no warning: %q", e.log.All())
	}
	if got := e.commands("machine"); !slices.Equal(got, []string{"true"}) {
		t.Errorf("commands = %q", got)
	}
}

// TestForkedGlobalTimeout: the global timeout stops every subtest thread,
// even ones stuck in pure computation.
func TestForkedGlobalTimeout(t *testing.T) {
	e := newEnv(t, envConfig{machines: []string{"machine"}, globalTimeout: 200 * time.Millisecond})
	err := e.runForked(lines(
		`with subtest("a"):`,
		`    while True:`,
		`        pass`,
		`with subtest("b"):`,
		`    while True:`,
		`        pass`,
		`with subtest("c"):`,
		`    pass`,
	), 2)
	if !errors.Is(err, driver.ErrGlobalTimeout) || strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("err = %v, want ErrGlobalTimeout with every subtest stopped", err)
	}
	for _, name := range []string{"a", "b"} {
		if e.log.Count("subtest-fail", name) != 1 {
			t.Errorf("subtest %s not reported failed: %q", name, e.log.All("subtest", "subtest-ok", "subtest-fail"))
		}
	}
}

// TestForkedGlobals: subtests see set-up's globals frozen, and what they
// bind is their own.
func TestForkedGlobals(t *testing.T) {
	e := machines(t, "machine")
	err := e.runForked(lines(
		`import os`,
		`data = {"k": [1]}`,
		`def first():`,
		`    return data["k"][0]`,
		`with subtest("rebinds"):`,
		`    data = {"own": True}`,
		`    assert first() == 1, "set-up's function sees the subtest's data"`,
		`    os.environ["VMD_FORK"] = "set"`,
		`with subtest("mutates"):`,
		`    data["k"].append(2)`,
		`assert data == {"k": [1]}, "the tail sees a subtest's data"`,
	), 1)
	if !errors.Is(err, script.ErrSubtestsFailed) || !strings.Contains(err.Error(), `1 of 2 ("mutates")`) {
		t.Fatalf("err = %v, want only mutates failed", err)
	}
	fails := e.rep.Failures()
	if len(fails) != 1 || !strings.Contains(fails[0].Msg, "frozen") || !strings.Contains(fails[0].Msg, "change a copy") {
		t.Errorf("failures = %+v, want mutates' with the frozen hint", fails)
	}
}
