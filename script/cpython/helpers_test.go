package cpython_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/script/cpython"
)

// testTimeout bounds every test's blocking calls.
const testTimeout = 60 * time.Second

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// python is the interpreter the tests run (skipped, or failed under
// VMDRIVER_REQUIRE_VM, when python3 is missing).
func python(t testing.TB) string {
	t.Helper()
	return testenv.NeedCommand(t, "python3")
}

// env is a driver on the mock backend with a recording logger and
// reporter.
type env struct {
	t      *testing.T
	b      *mock.Backend
	d      *driver.Driver
	log    *testenv.Log
	rep    *testenv.Reporter
	stdout *bytes.Buffer
	global time.Duration
}

func newEnv(t *testing.T, names ...string) *env {
	return newEnvWith(t, 0, nil, names...)
}

func newEnvWith(t *testing.T, global time.Duration, guest func(string, *mock.Guest), names ...string) *env {
	t.Helper()
	e := &env{t: t, log: &testenv.Log{}, rep: &testenv.Reporter{}, stdout: &bytes.Buffer{}, global: global}
	opts := []mock.Option{mock.WithGuest(guestAnswers)}
	if guest != nil {
		opts = append(opts, mock.WithGuest(guest))
	}
	e.b = mock.New(opts...)
	dc := driver.Config{OutputDir: t.TempDir(), GlobalTimeout: global}
	for _, n := range names {
		dc.Machines = append(dc.Machines, driver.MachineConfig{Name: n, StartScript: "/nonexistent/run-" + n + "-vm"})
	}
	d, err := driver.New(t.Context(), dc, driver.WithBackend(e.b), driver.WithLogger(e.log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e.d = d
	return e
}

func (e *env) opts(src string) script.Options {
	return script.Options{Driver: e.d, Filename: "test.py", Source: []byte(src), Stdout: e.stdout, Reporter: e.rep}
}

// run runs src on CPython.
func (e *env) run(src string) error {
	e.t.Helper()
	return cpython.Run(testCtx(e.t), cpython.Options{Options: e.opts(src), Python: python(e.t)})
}

// mustRun runs src on CPython and fails the test on error.
func (e *env) mustRun(src string) {
	e.t.Helper()
	if err := e.run(src); err != nil {
		e.t.Fatalf("script failed: %v\n%s", err, traceback(err))
	}
}

// scriptErr runs src on CPython, requires a *ScriptError and returns it.
func (e *env) scriptErr(src string) *script.ScriptError {
	e.t.Helper()
	err := e.run(src)
	var se *script.ScriptError
	if !errors.As(err, &se) {
		e.t.Fatalf("want a *ScriptError, got %T: %v", err, err)
	}
	return se
}

func traceback(err error) string {
	var se *script.ScriptError
	if errors.As(err, &se) {
		return se.Traceback()
	}
	return ""
}

// guestAnswers scripts what the guests of these tests answer: true,
// false, exit N, echo WORDS, sleep, the driver's sync, and files the
// scripts write with `echo X > F` and read with `cat F`.
func guestAnswers(name string, g *mock.Guest) {
	for _, c := range []string{"true", "sync", guestcmd.ListMounts9p(), guestcmd.Settle()} {
		g.Answer(c, mock.Reply{})
	}
	g.Answer("false", mock.Reply{Status: 1})
	for n := 1; n < 10; n++ {
		g.Answer(fmt.Sprintf("exit %d", n), mock.Reply{Status: n})
	}
	g.Answer("hostname", mock.Reply{Out: name + "\n"})
	g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
		if words, ok := strings.CutPrefix(req.Command, "echo "); ok {
			if text, file, ok := strings.Cut(words, " > "); ok {
				g.SetState(file, text+"\n")
				return mock.Reply{}, true
			}
			return mock.Reply{Out: words + "\n"}, true
		}
		if file, ok := strings.CutPrefix(req.Command, "cat "); ok {
			st := 0
			if g.State(file) == "" {
				st = 1
			}
			return mock.Reply{Out: g.State(file), Status: st}, true
		}
		// A clone's identity fix-up sets its own host name, or its
		// original's for a forked subtest.
		origin, _, _ := strings.Cut(name, "-")
		return mock.Reply{}, strings.HasPrefix(req.Command, "sleep ") ||
			strings.Contains(req.Command, guestcmd.SetHostname(name)) || strings.Contains(req.Command, guestcmd.SetHostname(origin))
	})
}

// lines joins script lines.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
