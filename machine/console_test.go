package machine_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

func TestConsoleLines(t *testing.T) {
	e := started(t, nil)
	g := e.guest()
	g.ConsoleText("partial ")
	g.ConsoleText("line\r\n")
	g.ConsoleText("trailing blanks   \t\n")
	g.ConsoleText("bad \xff byte\n")
	g.ConsoleLine("")
	g.ConsoleText("unterminated")
	want := []string{"partial line", "trailing blanks", "bad  byte", ""}
	lines := strings.Split(e.m.ConsoleLog(), "\n")
	if got := lines[len(lines)-len(want):]; !slices.Equal(got, want) {
		t.Errorf("console lines %q, want %q", got, want)
	}
	if !e.log.has("serial", "partial line") {
		t.Error("serial line not logged")
	}
	// The hypervisor's exit flushes the unterminated line.
	g.Crash(nil)
	<-g.Done()
	err := e.m.WaitForConsoleText(testCtx(t), "^unterminated$|\nunterminated$", machine.Timeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
}

func TestConsoleTail(t *testing.T) {
	e := started(t, nil)
	for i := range 30 {
		e.guest().ConsoleLine(fmt.Sprintf("line %d", i))
	}
	tail := e.m.ConsoleTail()
	if len(tail) != 20 || tail[0] != "line 10" || tail[19] != "line 29" {
		t.Errorf("tail = %q", tail)
	}
}

func TestWaitForConsoleText(t *testing.T) {
	e := started(t, nil)
	g := e.guest()
	ctx := testCtx(t)
	short := machine.Timeout(50 * time.Millisecond)

	// A line that arrives after the wait began wakes it.
	errc := make(chan error, 1)
	go func() { errc <- e.m.WaitForConsoleText(ctx, `Reached target (Multi-User|Graphical)`) }()
	g.ConsoleLine("systemd[1]: Reached target Multi-User System.")
	must(t, <-errc)
	if !strings.Contains(e.m.ConsoleLog(), "Reached target Multi-User") {
		t.Error("the matching text is not in ConsoleLog")
	}

	// Lines are joined with "\n": no match across the join.
	g.ConsoleLine("foo")
	g.ConsoleLine("bar")
	err := e.m.WaitForConsoleText(ctx, "foobar", short)
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("foobar matched across a line boundary: %v", err)
	}
	wantErrContains(t, err, `console text matching "foobar"`, "foo", "bar")
	must(t, e.m.WaitForConsoleText(ctx, `foo\nbar`, short))

	// A match consumes its lines: the same text does not match again,
	// but new text does.
	err = e.m.WaitForConsoleText(ctx, "bar", short)
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("consumed text matched again: %v", err)
	}
	g.ConsoleLine("login: bar")
	must(t, e.m.WaitForConsoleText(ctx, "(?m)^login: bar$", short))

	// Lines printed before the call (after the last match) count.
	g.ConsoleLine("early bird")
	must(t, e.m.WaitForConsoleText(ctx, "early", short))

	if err := e.m.WaitForConsoleText(ctx, "(", short); err == nil || errors.Is(err, machine.ErrTimeout) {
		t.Errorf("bad regexp: %v", err)
	}
}

func TestWaitForConsoleTextMachineExits(t *testing.T) {
	e := started(t, nil)
	g := e.guest()
	errc := make(chan error, 1)
	go func() { errc <- e.m.WaitForConsoleText(testCtx(t), "never printed") }()
	g.ConsoleLine("kernel panic")
	g.Crash(nil)
	err := <-errc
	if !errors.Is(err, backend.ErrExited) {
		t.Fatalf("err = %v, want ErrExited", err)
	}
	wantErrContains(t, err, "never printed", "kernel panic")
}

func TestWaitForConsoleTextCancel(t *testing.T) {
	e := started(t, nil)
	ctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	err := e.m.WaitForConsoleText(ctx, "x")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestSendConsole(t *testing.T) {
	e := started(t, nil)
	must(t, e.m.SendConsole(testCtx(t), "root\n"))
	if got := string(e.guest().ConsoleInput()); got != "root\n" {
		t.Errorf("console input %q", got)
	}
}

// fakeTB is enough of testing.TB for StartT: it records Logf, Fatalf,
// Errorf and cleanups.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	logs     []string
	errs     []string
	cleanups []func()
}

func (f *fakeTB) Helper()                  {}
func (f *fakeTB) Context() context.Context { return context.Background() }
func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	panic("fatal")
}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}
func (f *fakeTB) logged(s string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.ContainsFunc(f.logs, func(l string) bool { return strings.Contains(l, s) })
}

func TestStartT(t *testing.T) {
	tb := &fakeTB{}
	rec := &recLogger{}
	b := mock.New(mock.WithGuest(baseAnswers), mock.WithGuest(baseMatchers))
	m := machine.StartT(tb, b, "web", machine.WithLogger(rec))
	_, err := m.Succeed(testCtx(t), "true")
	must(t, err)
	b.Guest("web").ConsoleLine("hello from the console")
	if !tb.logged("web # hello from the console") || !tb.logged("web: starting vm") {
		t.Errorf("t.Logf got %q", tb.logs)
	}
	if !rec.has("serial", "hello from the console") {
		t.Error("WithLogger no longer receives the log")
	}
	if len(tb.cleanups) != 1 {
		t.Fatalf("%d cleanups registered, want 1", len(tb.cleanups))
	}
	tb.runCleanups()
	select {
	case <-b.Guest("web").Done():
	default:
		t.Error("cleanup did not close the machine")
	}
	if len(tb.errs) != 0 {
		t.Errorf("errors: %q", tb.errs)
	}
}

func TestStartTFailure(t *testing.T) {
	tb := &fakeTB{}
	b := mock.New(mock.WithStartHook(func(backend.Spec) error { return errors.New("no hypervisor") }))
	func() {
		defer func() {
			if recover() == nil {
				t.Error("StartT did not fail the test")
			}
		}()
		machine.StartT(tb, b, "web", machine.WithStartScript("/nix/store/x y/bin/run-web-vm"), machine.WithEnv("QEMU_OPTS=-m 512"))
	}()
	if len(tb.errs) != 1 || !strings.Contains(tb.errs[0], "no hypervisor") {
		t.Errorf("errors %q", tb.errs)
	}
	// How to try it by hand, copy-pasteable.
	if want := `to start machine web by hand: 'QEMU_OPTS=-m 512' vmdriver eval-file -I --start-scripts '/nix/store/x y/bin/run-web-vm'`; !tb.logged(want) {
		t.Errorf("logs %q, want %q", tb.logs, want)
	}
	// The cleanup was registered before the start, and removes the state.
	if len(tb.cleanups) != 1 {
		t.Fatalf("%d cleanups registered, want 1", len(tb.cleanups))
	}
	tb.runCleanups()
}
