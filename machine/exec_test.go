package machine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// runsFor answers like a command that runs for d in the guest: status
// 124 when the guest-side timeout the machine sent is shorter (without
// waiting for it).
func runsFor(d time.Duration) mock.Handler {
	return func(_ context.Context, req mock.Request) mock.Reply {
		if req.Timeout > 0 && req.Timeout < d {
			return mock.Reply{Status: 124}
		}
		return mock.Reply{}
	}
}

func TestExecute(t *testing.T) {
	tests := []struct {
		name       string
		cmd        string
		opts       []machine.ExecOption
		wantStatus int
		wantOut    string
	}{
		{"success", "echo -n hello", nil, 0, "hello"},
		{"non-zero status is no error", "exit 3", nil, 3, ""},
		{"guest-side timeout gives 124", "sleep 5", []machine.ExecOption{machine.Timeout(50 * time.Millisecond)}, 124, ""},
		{"default guest-side timeout", "sleep 5", nil, 0, ""},
		{"invalid UTF-8 is replaced", "binary", nil, 0, "a\uFFFDb"},
		{"no check output returns -2 at once", "echo ignored", []machine.ExecOption{machine.NoCheckOutput()}, -2, ""},
	}
	e := started(t, func(g *mock.Guest) {
		g.Answer("echo -n hello", mock.Reply{Out: "hello"})
		g.Answer("exit 3", mock.Reply{Status: 3})
		g.AnswerFunc("sleep 5", runsFor(5*time.Second))
		g.Answer("binary", mock.Reply{Out: "a\xffb"})
	})
	ctx := testCtx(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := e.m.Execute(ctx, tt.cmd, tt.opts...)
			must(t, err)
			if r.Status != tt.wantStatus || r.Output != tt.wantOut {
				t.Errorf("Execute(%q) = %d %q, want %d %q", tt.cmd, r.Status, r.Output, tt.wantStatus, tt.wantOut)
			}
		})
	}
	// Commands run in order, so after this one the guest has seen the
	// fire-and-forget command too.
	_, err := e.m.Succeed(ctx, "true")
	must(t, err)
	if !slices.Contains(e.guest().Commands(), "echo ignored") {
		t.Errorf("the NoCheckOutput command never arrived: %q", e.guest().Commands())
	}
}

func TestExecuteNoCheckReturnPoweroff(t *testing.T) {
	e := started(t, nil)
	r, err := e.m.Execute(testCtx(t), "poweroff", machine.NoCheckReturn())
	must(t, err)
	if r.Status != -1 {
		t.Errorf("status %d, want -1 (the machine went away before reporting one)", r.Status)
	}
	<-e.guest().Done()
}

func TestSucceedAndFail(t *testing.T) {
	e := started(t, func(g *mock.Guest) { g.Answer("broken", mock.Reply{Out: "broken output\n", Status: 2}) })
	ctx := testCtx(t)

	out, err := e.m.Succeed(ctx, "broken")
	var ce *machine.CommandError
	if !errors.As(err, &ce) || !errors.Is(err, machine.ErrCheckFailed) {
		t.Fatalf("err = %v, want a CommandError wrapping ErrCheckFailed", err)
	}
	if ce.Status != 2 || ce.Output != "broken output\n" || ce.Command != "broken" || out != "broken output\n" {
		t.Errorf("CommandError = %+v, output %q", ce, out)
	}
	wantErrContains(t, err, "command `broken` failed (exit code 2)", "broken output")
	if !e.log.has("failed", "must succeed: broken") || !e.log.has("info", "output: broken output") {
		t.Errorf("log:\n%s", e.log.dump())
	}

	out, err = e.m.Fail(ctx, "broken")
	if err != nil || out != "broken output\n" {
		t.Errorf("Fail = %q, %v", out, err)
	}
	_, err = e.m.Fail(ctx, "true")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Fatalf("err = %v, want ErrCheckFailed", err)
	}
	wantErrContains(t, err, "command `true` unexpectedly succeeded")
	if !e.log.has("nested", "must fail: true") {
		t.Error("no must fail block")
	}
}

func TestSucceedGuestTimeout(t *testing.T) {
	e := started(t, func(g *mock.Guest) { g.AnswerFunc("sleep 10", runsFor(10*time.Second)) })
	_, err := e.m.Succeed(testCtx(t), "sleep 10", machine.Timeout(20*time.Millisecond))
	var ce *machine.CommandError
	if !errors.As(err, &ce) || ce.Status != 124 {
		t.Fatalf("err = %v, want exit code 124", err)
	}
	// A guest-side timeout is the command's own failure, not a host
	// timeout.
	if errors.Is(err, machine.ErrTimeout) {
		t.Error("a guest-side timeout must not look like a host timeout")
	}
}

func TestHostDeadline(t *testing.T) {
	// A guest that never answers: only the host deadline ends the call.
	startedCh := make(chan struct{})
	e := started(t, blockingGuest(startedCh), machine.WithCommandTimeout(100*time.Millisecond))
	e.guest().ConsoleLine("the last words")
	_, err := e.m.Succeed(testCtx(t), "block")
	if !errors.Is(err, machine.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a host timeout", err)
	}
	wantErrContains(t, err, "machine m1", "command `block`", "timed out after", "the last words")
}

func TestCallerCancel(t *testing.T) {
	startedCh := make(chan struct{})
	e := started(t, blockingGuest(startedCh))
	ctx, cancel := context.WithCancel(testCtx(t))
	errc := make(chan error, 1)
	go func() {
		_, err := e.m.Execute(ctx, "block")
		errc <- err
	}()
	<-startedCh
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestHeldStdoutWarning(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Answer("daemon &", mock.Reply{Out: "started\n", Hold: 300 * time.Millisecond})
	}, machine.WithHeldStdoutWarning(20*time.Millisecond))
	out, err := e.m.Succeed(testCtx(t), "daemon &")
	must(t, err)
	if out != "started\n" {
		t.Errorf("output %q", out)
	}
	if !e.log.has("info", "holds its stdout") {
		t.Errorf("no warning about the held stdout:\n%s", e.log.dump())
	}
}

// flipper fails cmd until it has been run n times.
func flipper(cmd string, n int32, calls *atomic.Int32) func(g *mock.Guest) {
	return func(g *mock.Guest) {
		g.AnswerFunc(cmd, func(context.Context, mock.Request) mock.Reply {
			if calls.Add(1) < n {
				return mock.Reply{Out: "not yet\n", Status: 1}
			}
			return mock.Reply{Out: "ready\n"}
		})
	}
}

func TestWaitUntilSucceeds(t *testing.T) {
	var calls atomic.Int32
	e := started(t, flipper("probe", 3, &calls))
	out, err := e.m.WaitUntilSucceeds(testCtx(t), "probe", machine.Interval(time.Millisecond))
	must(t, err)
	if out != "ready\n" || calls.Load() != 3 {
		t.Errorf("output %q after %d calls, want ready after 3", out, calls.Load())
	}
	if !e.log.has("finished", "waiting for success: probe") {
		t.Error("no nested block")
	}
}

func TestWaitUntilFails(t *testing.T) {
	var calls atomic.Int32
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc("probe", func(context.Context, mock.Request) mock.Reply {
			if calls.Add(1) < 3 {
				return mock.Reply{Out: "up\n"}
			}
			return mock.Reply{Out: "down\n", Status: 1}
		})
	})
	out, err := e.m.WaitUntilFails(testCtx(t), "probe", machine.Interval(time.Millisecond))
	must(t, err)
	if out != "down\n" || calls.Load() != 3 {
		t.Errorf("output %q after %d calls", out, calls.Load())
	}
}

func TestWaitUntilTimeouts(t *testing.T) {
	tests := []struct {
		name     string
		fn       func(*machine.Machine, context.Context, string, ...machine.WaitOption) (string, error)
		cmd      string
		wantText []string
	}{
		{"succeeds", (*machine.Machine).WaitUntilSucceeds, "false", []string{"`false` to succeed", "exited with status 1"}},
		{"fails", (*machine.Machine).WaitUntilFails, "true", []string{"`true` to fail", "exited with status 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := started(t, nil)
			e.guest().ConsoleLine("console says hi")
			before := len(e.guest().Commands())
			_, err := tt.fn(e.m, testCtx(t), tt.cmd, machine.Timeout(200*time.Millisecond), machine.Interval(50*time.Millisecond))
			if !errors.Is(err, machine.ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			wantErrContains(t, err, append(tt.wantText, "timed out after", "console says hi")...)
			// Paced by the interval plus the last try: a handful of
			// attempts, not a busy loop.
			n := len(e.guest().Commands()) - before
			if n < 2 || n > 7 {
				t.Errorf("%d attempts in 200ms at a 50ms interval", n)
			}
		})
	}
}

func TestSleep(t *testing.T) {
	var timeouts []time.Duration
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc(guestcmd.Sleep(20*time.Millisecond), func(_ context.Context, req mock.Request) mock.Reply {
			timeouts = append(timeouts, req.Timeout)
			return mock.Reply{}
		})
		g.Answer(guestcmd.Sleep(time.Second), mock.Reply{Status: 130})
	})
	must(t, e.m.Sleep(testCtx(t), 20*time.Millisecond))
	// Sleeping is all the command does: the guest puts no limit on it.
	if !slices.Equal(timeouts, []time.Duration{0}) {
		t.Errorf("guest-side timeouts %v, want one sleep without one", timeouts)
	}
	err := e.m.Sleep(testCtx(t), time.Second)
	var ce *machine.CommandError
	if !errors.As(err, &ce) || ce.Status != 130 || ce.Command != guestcmd.Sleep(time.Second) {
		t.Errorf("a sleep the guest ended = %v, want a CommandError with its status", err)
	}
	wantErrContains(t, err, "command `"+guestcmd.Sleep(time.Second)+"` failed (exit code 130)")
}

func TestBeforeCommandHook(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	var runs atomic.Int32
	e.m.SetBeforeCommand(func(ctx context.Context) error {
		runs.Add(1)
		// The hook's own commands must not run the hook again.
		_, err := e.m.Succeed(ctx, "echo from-hook")
		return err
	})
	_, err := e.m.Succeed(ctx, "echo main")
	must(t, err)
	if runs.Load() != 1 {
		t.Errorf("hook ran %d times, want 1", runs.Load())
	}
	_, err = e.m.SendMonitorCommand(ctx, "info status")
	must(t, err)
	if runs.Load() != 2 {
		t.Errorf("monitor command did not run the hook (%d runs)", runs.Load())
	}

	failing := errors.New("polling condition failed")
	e.m.SetBeforeCommand(func(context.Context) error { return failing })
	_, err = e.m.Succeed(ctx, "echo never")
	if !errors.Is(err, failing) {
		t.Errorf("err = %v, want the hook's error", err)
	}
	if slices.Contains(e.guest().Commands(), "echo never") {
		t.Error("the command ran although the hook failed")
	}
	e.m.SetBeforeCommand(nil)
	_, err = e.m.Succeed(ctx, "true")
	must(t, err)
	cmds := strings.Join(e.guest().Commands(), "|")
	if !strings.Contains(cmds, "echo from-hook|echo main") {
		t.Errorf("commands %s", cmds)
	}
}
