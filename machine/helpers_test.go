package machine_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// testTimeout bounds every blocking call of a test; the calls under test
// use much shorter per-call timeouts.
const testTimeout = 30 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// entry is one logged message.
type entry struct {
	kind, machine, msg string
}

// recLogger records everything a machine logs.
type recLogger struct {
	mu      sync.Mutex
	entries []entry
}

func (l *recLogger) add(kind, machine, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, entry{kind, machine, msg})
}

func (l *recLogger) Info(machine, msg string)    { l.add("info", machine, msg) }
func (l *recLogger) Warn(machine, msg string)    { l.add("warn", machine, msg) }
func (l *recLogger) Serial(machine, line string) { l.add("serial", machine, line) }
func (l *recLogger) Nested(machine, msg string) func(error) {
	l.add("nested", machine, msg)
	return func(err error) {
		if err != nil {
			l.add("failed", machine, msg)
		} else {
			l.add("finished", machine, msg)
		}
	}
}

// has reports whether an entry of kind contains substr.
func (l *recLogger) has(kind, substr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.ContainsFunc(l.entries, func(e entry) bool {
		return e.kind == kind && strings.Contains(e.msg, substr)
	})
}

// count counts entries of kind containing substr.
func (l *recLogger) count(kind, substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if e.kind == kind && strings.Contains(e.msg, substr) {
			n++
		}
	}
	return n
}

func (l *recLogger) dump() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.entries {
		fmt.Fprintf(&b, "%s %s: %s\n", e.kind, e.machine, e.msg)
	}
	return b.String()
}

// env is a machine on a mock backend.
type env struct {
	t   *testing.T
	b   *mock.Backend
	m   *machine.Machine
	log *recLogger
	out string // output directory
}

// guest returns the guest of the machine's latest start.
func (e *env) guest() *mock.Guest {
	e.t.Helper()
	g := e.b.Guest(e.m.Name())
	if g == nil {
		e.t.Fatal("the machine was never started")
	}
	return g
}

// newEnv creates (but does not start) machine "m1" on a mock backend;
// setup scripts each new guest.
func newEnv(t *testing.T, setup func(g *mock.Guest), opts ...machine.Option) *env {
	t.Helper()
	return newEnvWith(t, setup, nil, opts...)
}

func newEnvWith(t *testing.T, setup func(g *mock.Guest), bopts []mock.Option, opts ...machine.Option) *env {
	t.Helper()
	e := &env{t: t, log: &recLogger{}, out: t.TempDir()}
	bopts = append([]mock.Option{mock.WithGuest(baseAnswers)}, bopts...)
	if setup != nil {
		bopts = append(bopts, mock.WithGuest(func(_ string, g *mock.Guest) { setup(g) }))
	}
	bopts = append(bopts, mock.WithGuest(baseMatchers))
	e.b = mock.New(bopts...)
	opts = append([]machine.Option{
		machine.WithLogger(e.log),
		machine.WithOutputDir(e.out),
		machine.WithBootTimeout(5 * time.Second),
		machine.WithCommandTimeout(10 * time.Second),
	}, opts...)
	m, err := machine.New(e.b, "m1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("log:\n%s", e.log.dump())
		}
	})
	return e
}

// baseAnswers scripts what every test guest answers (a test's own
// answers replace them): the tests' own "true" and "false", what a
// snapshot asks (there are no 9p mounts), and the settling of a warm
// start.
func baseAnswers(_ string, g *mock.Guest) {
	g.Answer("true", mock.Reply{})
	g.Answer("false", mock.Reply{Status: 1})
	g.Answer(guestcmd.ListMounts9p(), mock.Reply{})
	g.Answer(guestcmd.Settle(), mock.Reply{})
}

// baseMatchers answers, after a test's own matchers, "echo WORD" and a
// clone's identity fix-up (recognised by the host name it sets; kept in
// the guest's state "fixup").
func baseMatchers(name string, g *mock.Guest) {
	g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
		word, ok := strings.CutPrefix(req.Command, "echo ")
		return mock.Reply{Out: word + "\n"}, ok && !strings.ContainsAny(word, "<>|;&")
	})
	g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
		if !strings.Contains(req.Command, guestcmd.SetHostname(name)) {
			return mock.Reply{}, false
		}
		g.SetState("fixup", req.Command)
		return mock.Reply{}, true
	})
}

// started is newEnv plus Start and a first command, so the shell is up.
func started(t *testing.T, setup func(g *mock.Guest), opts ...machine.Option) *env {
	t.Helper()
	e := newEnv(t, setup, opts...)
	if _, err := e.m.Succeed(testCtx(t), "true"); err != nil {
		t.Fatal(err)
	}
	return e
}

// must fails the test on err.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// wantErrContains checks err is non-nil and mentions every substring.
func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
