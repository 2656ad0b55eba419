package machine_test

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// appearAfter runs fn once a command containing substr has been seen n
// times.
func appearAfter(substr string, n int32, fn func(g *mock.Guest)) func(g *mock.Guest) {
	var calls atomic.Int32
	return func(g *mock.Guest) {
		g.Handle(func(cmd string) (string, int, bool) {
			if strings.Contains(cmd, substr) && calls.Add(1) == n {
				fn(g)
			}
			return "", 0, false
		})
	}
}

func TestWaitForFile(t *testing.T) {
	const name = `/tmp/it's a "file" $HOME`
	e := started(t, appearAfter("test -e", 3, func(g *mock.Guest) { _ = g.WriteFile(name, nil) }))
	must(t, e.m.WaitForFile(testCtx(t), name, machine.Interval(time.Millisecond)))
	want := `test -e '/tmp/it'\''s a "file" $HOME'`
	if !slices.Contains(e.guest().Commands(), want) {
		t.Errorf("commands %q, want %q", e.guest().Commands(), want)
	}

	err := e.m.WaitForFile(testCtx(t), "/nonexistent", machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, "file /nonexistent to exist", "exited with status 1")
}

func TestWaitForPorts(t *testing.T) {
	e := started(t, appearAfter(": 2>/dev/null </dev/tcp/localhost/80", 2, func(g *mock.Guest) { g.OpenPort(80) }))
	ctx := testCtx(t)
	fast := machine.Interval(time.Millisecond)
	must(t, e.m.WaitForOpenPort(ctx, 80, fast))

	g := e.guest()
	g.OpenPortAt("10.0.0.2", 443)
	must(t, e.m.WaitForOpenPort(ctx, 443, machine.Addr("10.0.0.2"), fast))
	if !slices.Contains(g.Commands(), ": 2>/dev/null </dev/tcp/10.0.0.2/443") {
		t.Errorf("commands %q", g.Commands())
	}

	err := e.m.WaitForClosedPort(ctx, 80, machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, "TCP port localhost:80 to close")
	g.ClosePort(80)
	must(t, e.m.WaitForClosedPort(ctx, 80, fast))

	err = e.m.WaitForOpenPort(ctx, 8080, machine.Timeout(50*time.Millisecond), machine.Interval(10*time.Millisecond))
	wantErrContains(t, err, "TCP port localhost:8080 to open")
}

func TestWaitForOpenUnixSocket(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.OpenUnixSocket("/run/my app.sock", false)
		g.OpenUnixSocket("/run/log.sock", true)
	})
	ctx := testCtx(t)
	fast := []machine.WaitOption{machine.Timeout(50 * time.Millisecond), machine.Interval(10 * time.Millisecond)}
	must(t, e.m.WaitForOpenUnixSocket(ctx, "/run/my app.sock", false, fast...))
	must(t, e.m.WaitForOpenUnixSocket(ctx, "/run/log.sock", true, fast...))
	cmds := e.guest().Commands()
	if !slices.Contains(cmds, "nc -z -U '/run/my app.sock'") || !slices.Contains(cmds, "nc -z -uU /run/log.sock") {
		t.Errorf("commands %q", cmds)
	}
	err := e.m.WaitForOpenUnixSocket(ctx, "/run/log.sock", false, fast...)
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("a datagram socket must not satisfy a stream wait: %v", err)
	}
	wantErrContains(t, err, "unix socket /run/log.sock")
}

func TestTTY(t *testing.T) {
	e := started(t, func(g *mock.Guest) { g.SetTTY(2, "NixOS login: ") })
	ctx := testCtx(t)
	text, err := e.m.GetTTYText(ctx, 2)
	must(t, err)
	if text != "NixOS login: \n" {
		t.Errorf("tty text %q", text)
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
