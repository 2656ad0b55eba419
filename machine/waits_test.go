package machine_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// succeedsFrom answers with status 0 from the n-th run of the command on
// and 1 before it, counting runs in calls.
func succeedsFrom(n int32, calls *atomic.Int32) mock.Handler {
	return func(context.Context, mock.Request) mock.Reply {
		if calls.Add(1) < n {
			return mock.Reply{Status: 1}
		}
		return mock.Reply{}
	}
}

func TestWaitForFile(t *testing.T) {
	const name = `/tmp/it's a "file" $HOME`
	var calls atomic.Int32
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc(guestcmd.FileExists(name), succeedsFrom(3, &calls))
		g.Answer(guestcmd.FileExists("/nonexistent"), mock.Reply{Status: 1})
	})
	must(t, e.m.WaitForFile(testCtx(t), name, machine.Interval(time.Millisecond)))
	if calls.Load() != 3 {
		t.Errorf("%d probes, want 3", calls.Load())
	}
	if !e.log.has("finished", "waiting for file "+name) {
		t.Errorf("no nested block:\n%s", e.log.dump())
	}

	err := e.m.WaitForFile(testCtx(t), "/nonexistent", machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, "file /nonexistent to exist", "exited with status 1")
}

func TestWaitForPorts(t *testing.T) {
	var calls atomic.Int32
	var port80 atomic.Int32 // its status once open
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc(guestcmd.PortOpen("localhost", 80), func(context.Context, mock.Request) mock.Reply {
			if calls.Add(1) < 2 {
				return mock.Reply{Status: 1}
			}
			return mock.Reply{Status: int(port80.Load())}
		})
		g.Answer(guestcmd.PortOpen("10.0.0.2", 443), mock.Reply{})
		g.Answer(guestcmd.PortOpen("localhost", 8080), mock.Reply{Status: 1})
	})
	ctx := testCtx(t)
	fast := machine.Interval(time.Millisecond)
	must(t, e.m.WaitForOpenPort(ctx, 80, fast))
	if calls.Load() != 2 {
		t.Errorf("%d probes, want 2", calls.Load())
	}
	must(t, e.m.WaitForOpenPort(ctx, 443, machine.Addr("10.0.0.2"), fast))

	err := e.m.WaitForClosedPort(ctx, 80, machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, "TCP port localhost:80 to close")
	port80.Store(1)
	must(t, e.m.WaitForClosedPort(ctx, 80, fast))

	err = e.m.WaitForOpenPort(ctx, 8080, machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	wantErrContains(t, err, "TCP port localhost:8080 to open")
}

func TestWaitForOpenUnixSocket(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.UnixSocketOpen("/run/my app.sock", false), mock.Reply{})
		g.Answer(guestcmd.UnixSocketOpen("/run/log.sock", true), mock.Reply{})
		g.Answer(guestcmd.UnixSocketOpen("/run/log.sock", false), mock.Reply{Status: 1})
	})
	ctx := testCtx(t)
	fast := []machine.WaitOption{machine.Timeout(50 * time.Millisecond), machine.Interval(10 * time.Millisecond)}
	must(t, e.m.WaitForOpenUnixSocket(ctx, "/run/my app.sock", false, fast...))
	must(t, e.m.WaitForOpenUnixSocket(ctx, "/run/log.sock", true, fast...))
	err := e.m.WaitForOpenUnixSocket(ctx, "/run/log.sock", false, fast...)
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("a stream wait on a socket that refuses: %v", err)
	}
	wantErrContains(t, err, "unix socket /run/log.sock")
}

func TestTTY(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.TTYText(2), mock.Reply{Out: "NixOS login: \n"})
		g.Answer(guestcmd.TTYText(99), mock.Reply{Out: "stty: /dev/tty99: No such file\n", Status: 1})
		// On a real guest the journal reaches the serial console.
		g.AnswerFunc(guestcmd.DumpTTY(2), func(context.Context, mock.Request) mock.Reply {
			return mock.Reply{Console: "NixOS login:\n"}
		})
	})
	ctx := testCtx(t)
	text, err := e.m.GetTTYText(ctx, 2)
	must(t, err)
	if text != "NixOS login: \n" {
		t.Errorf("tty text %q", text)
	}
	_, err = e.m.GetTTYText(ctx, 99)
	var ce *machine.CommandError
	if !errors.As(err, &ce) || ce.Status != 1 || !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("GetTTYText of a missing terminal = %v, want a CommandError", err)
	}
	must(t, e.m.WaitUntilTTYMatches(ctx, 2, `login:\s*$`, machine.Timeout(time.Second)))

	err = e.m.WaitUntilTTYMatches(ctx, 2, "password", machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, `TTY 2 to match "password"`, "NixOS login:")
	if !e.log.has("info", "last chance to match") {
		t.Error("the last try did not log the TTY text")
	}

	must(t, e.m.DumpTTYContents(ctx, 2))
	if !strings.Contains(e.m.ConsoleLog(), "NixOS login:") {
		t.Errorf("dumped TTY text not on the console:\n%s", e.m.ConsoleLog())
	}
	if err := e.m.WaitUntilTTYMatches(ctx, 1, "(", machine.Timeout(time.Second)); err == nil {
		t.Error("a bad regexp must be an error")
	}
}
