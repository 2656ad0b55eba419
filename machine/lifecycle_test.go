package machine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

func TestStartIsAsyncAndIdempotent(t *testing.T) {
	e := newEnv(t, func(g *mock.Guest) { g.SetNoBanner(true) })
	ctx := testCtx(t)
	if e.m.Booted() || e.m.PID() != 0 {
		t.Fatal("a new machine must not be running")
	}
	// The guest never becomes ready, so Start returning proves it does
	// not wait for the boot.
	must(t, e.m.Start(ctx))
	must(t, e.m.Start(ctx))
	if n := e.b.Starts("m1"); n != 1 {
		t.Errorf("Starts = %d, want 1 (Start of a running machine is a no-op)", n)
	}
	if !e.m.Booted() || e.m.Connected() || e.m.IsUp() {
		t.Errorf("Booted=%v Connected=%v IsUp=%v, want true false false", e.m.Booted(), e.m.Connected(), e.m.IsUp())
	}
	if e.m.PID() != e.guest().Instance().PID() || e.m.PID() == 0 {
		t.Errorf("PID = %d, want the instance's %d", e.m.PID(), e.guest().Instance().PID())
	}
	if e.m.Instance() == nil {
		t.Error("Instance() = nil while running")
	}
	if !e.log.has("info", "starting vm") || !e.log.has("info", "mock running (pid ") {
		t.Errorf("missing start messages in log:\n%s", e.log.dump())
	}
}

func TestCommandStartsAndConnects(t *testing.T) {
	e := newEnv(t, nil)
	out, err := e.m.Succeed(testCtx(t), "echo hi")
	must(t, err)
	if out != "hi\n" {
		t.Errorf("output %q, want %q", out, "hi\n")
	}
	if !e.m.IsUp() {
		t.Error("IsUp false after a command")
	}
	for _, want := range []string{"waiting for the VM to finish booting", "must succeed: echo hi"} {
		if !e.log.has("nested", want) {
			t.Errorf("no nested block %q", want)
		}
	}
	if !e.log.has("info", "(connecting took ") || !e.log.has("info", "connected to guest root shell") {
		t.Errorf("no connect messages:\n%s", e.log.dump())
	}
	if !e.log.has("serial", "connecting to host...") {
		t.Error("serial lines are not logged")
	}
}

func TestSpecFromOptions(t *testing.T) {
	var got backend.Spec
	state := filepath.Join(t.TempDir(), "state")
	shared := t.TempDir()
	e := newEnvWith(t, nil, []mock.Option{mock.WithStartHook(func(s backend.Spec) error {
		got = s
		return nil
	})},
		machine.WithStartScript("/nowhere/run-m1-vm"),
		machine.WithStateDir(state),
		machine.WithSharedDir(shared),
		machine.WithEnv("A=1", "B=two words"),
		machine.WithAllowReboot(),
	)
	must(t, e.m.Start(testCtx(t)))
	if got.Name != "m1" || got.StartScript != "/nowhere/run-m1-vm" || got.StateDir != state ||
		got.SharedDir != shared || !slices.Equal(got.Env, []string{"A=1", "B=two words"}) || !got.AllowReboot ||
		got.Console == nil || got.Logf == nil {
		t.Errorf("spec = %+v", got)
	}
	if e.m.StateDir() != state || e.m.SharedDir() != shared || e.m.OutputDir() != e.out {
		t.Errorf("dirs: state %s shared %s out %s", e.m.StateDir(), e.m.SharedDir(), e.m.OutputDir())
	}
	fi, err := os.Stat(state)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v, want 0700", fi.Mode().Perm())
	}
	must(t, e.m.Close())
	if !exists(state) {
		t.Error("Close removed a state directory the caller chose")
	}
}

func TestStateDirLifetime(t *testing.T) {
	tests := []struct {
		name     string
		opts     []machine.Option
		wantKept bool
	}{
		{"default is removed", nil, false},
		{"kept with WithKeepState", []machine.Option{machine.WithKeepState()}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := machine.New(mock.New(), "m", tt.opts...)
			must(t, err)
			dir := m.StateDir()
			t.Cleanup(func() { os.RemoveAll(dir) })
			fi, err := os.Stat(dir)
			must(t, err)
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("mode %v, want 0700", fi.Mode().Perm())
			}
			if !strings.HasPrefix(m.SharedDir(), dir) || !exists(m.SharedDir()) {
				t.Errorf("default shared dir %s is not inside the state dir", m.SharedDir())
			}
			must(t, m.Close())
			must(t, m.Close()) // idempotent
			if exists(dir) != tt.wantKept {
				t.Errorf("state dir exists = %v, want %v", exists(dir), tt.wantKept)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	boom := errors.New("boom")
	b := mock.New(mock.WithStartHook(func(backend.Spec) error { return boom }))
	m, err := machine.Start(testCtx(t), b, "bad")
	if m != nil || !errors.Is(err, boom) {
		t.Fatalf("Start = %v, %v; want nil and an error wrapping boom", m, err)
	}
	wantErrContains(t, err, "machine bad", "mock")
}

func TestClosedMachine(t *testing.T) {
	e := started(t, nil)
	g := e.guest()
	must(t, e.m.Close())
	select {
	case <-g.Done():
	default:
		t.Error("Close left the hypervisor running")
	}
	_, err := e.m.Succeed(testCtx(t), "true")
	if !errors.Is(err, machine.ErrClosed) {
		t.Errorf("command after Close: %v, want ErrClosed", err)
	}
	if err := e.m.Start(testCtx(t)); !errors.Is(err, machine.ErrClosed) {
		t.Errorf("Start after Close: %v, want ErrClosed", err)
	}
}

func TestShutdownThenStartAgain(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	first := e.guest()
	first.ConsoleLine("first boot marker")
	must(t, e.m.Shutdown(ctx))
	if !slices.Contains(first.RawInput(), guestcmd.PowerOff()) {
		t.Errorf("raw input %q, want poweroff", first.RawInput())
	}
	if e.m.Booted() || e.m.PID() != 0 || e.m.Instance() != nil {
		t.Error("machine still counts as running after Shutdown")
	}
	if first.Boots() != 1 {
		t.Errorf("boots = %d", first.Boots())
	}
	must(t, e.m.Shutdown(ctx)) // no-op when stopped
	must(t, e.m.Start(ctx))
	if _, err := e.m.Succeed(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	if e.b.Starts("m1") != 2 || e.guest() == first {
		t.Errorf("Starts = %d, want a second instance", e.b.Starts("m1"))
	}
	if strings.Contains(e.m.ConsoleLog(), "first boot marker") {
		t.Error("ConsoleLog keeps lines from before the last start")
	}
	if !slices.Contains(e.m.ConsoleTail(), "first boot marker") {
		t.Error("ConsoleTail lost lines across the restart")
	}
}

func TestCrashAndRestart(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	g := e.guest()
	must(t, e.m.Crash(ctx))
	if !errors.Is(g.Instance().ExitErr(), mock.ErrKilled) {
		t.Errorf("ExitErr = %v, want killed", g.Instance().ExitErr())
	}
	if e.m.Booted() {
		t.Error("Booted after Crash")
	}
	if !e.log.has("info", "forced crash") {
		t.Error("no forced crash message")
	}
	// Like the NixOS driver, the next command boots the machine again.
	_, err := e.m.Succeed(ctx, "true")
	must(t, err)
	if e.b.Starts("m1") != 2 {
		t.Errorf("Starts = %d, want 2", e.b.Starts("m1"))
	}
}

func TestHalt(t *testing.T) {
	t.Run("poweroff -f", func(t *testing.T) {
		e := started(t, nil)
		g := e.guest()
		must(t, e.m.Halt(testCtx(t)))
		if !slices.Contains(g.Commands(), guestcmd.ForcePowerOff()) {
			t.Errorf("commands %q, want poweroff -f", g.Commands())
		}
		if g.Instance().ExitErr() != nil {
			t.Errorf("ExitErr = %v, want a clean power-off", g.Instance().ExitErr())
		}
		if e.m.Booted() {
			t.Error("Booted after Halt")
		}
	})
	t.Run("killed when poweroff is ignored", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) { g.Answer(guestcmd.ForcePowerOff(), mock.Reply{}) })
		g := e.guest()
		must(t, e.m.Halt(testCtx(t), machine.Timeout(50*time.Millisecond)))
		if !errors.Is(g.Instance().ExitErr(), mock.ErrKilled) {
			t.Errorf("ExitErr = %v, want killed", g.Instance().ExitErr())
		}
		if !e.log.has("warn", "killing it") {
			t.Errorf("no warning about the kill:\n%s", e.log.dump())
		}
	})
}

func TestRebootWithAllowReboot(t *testing.T) {
	e := started(t, nil, machine.WithAllowReboot())
	ctx := testCtx(t)
	g := e.guest()
	// The guest's disk survives the reboot: a marker in its state.
	g.AnswerFunc(guestcmd.FileExists("/etc/marker"), func(context.Context, mock.Request) mock.Reply {
		if g.State("/etc/marker") == "" {
			return mock.Reply{Status: 1}
		}
		return mock.Reply{}
	})
	g.SetState("/etc/marker", "x")
	must(t, e.m.Reboot(ctx))
	if !slices.Contains(g.Keys(), "ctrl-alt-delete") {
		t.Errorf("keys %q", g.Keys())
	}
	if e.m.Connected() {
		t.Error("still connected right after Reboot")
	}
	if _, err := e.m.Succeed(ctx, guestcmd.FileExists("/etc/marker")); err != nil {
		t.Fatal(err)
	}
	if g.Boots() != 2 || e.b.Starts("m1") != 1 {
		t.Errorf("boots %d starts %d, want 2 and 1", g.Boots(), e.b.Starts("m1"))
	}
	ev, err := e.m.WaitForQMPEvent(ctx, func(ev backend.Event) bool { return ev.Name == "RESET" }, machine.Timeout(time.Second))
	must(t, err)
	if ev.Data["reason"] != "guest-reset" {
		t.Errorf("RESET data %v", ev.Data)
	}
	if n := e.log.count("nested", "waiting for the VM to finish booting"); n != 2 {
		t.Errorf("connected %d times, want 2", n)
	}
}

func TestRebootWithoutAllowReboot(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	must(t, e.m.Reboot(ctx))
	if e.m.Booted() {
		t.Error("hypervisor still runs after a reboot without AllowReboot")
	}
	if _, err := e.m.Succeed(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	if e.b.Starts("m1") != 2 {
		t.Errorf("Starts = %d, want 2 (a fresh start)", e.b.Starts("m1"))
	}
}

func TestBootTimeout(t *testing.T) {
	e := newEnv(t, func(g *mock.Guest) { g.SetNoBanner(true) }, machine.WithBootTimeout(100*time.Millisecond))
	_, err := e.m.Succeed(testCtx(t), "true")
	if !errors.Is(err, machine.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	var we *machine.WaitError
	if !errors.As(err, &we) || we.Machine != "m1" || !slices.Contains(we.Console, "connecting to host...") {
		t.Fatalf("err = %#v, want a WaitError with the console lines", err)
	}
	wantErrContains(t, err, "root shell", "timed out after", "connecting to host...")
}

// blockingGuest answers "block" by signalling started and then waiting
// until the guest goes away.
func blockingGuest(started chan<- struct{}) func(g *mock.Guest) {
	return func(g *mock.Guest) {
		g.AnswerFunc("block", func(ctx context.Context, _ mock.Request) mock.Reply {
			close(started)
			<-ctx.Done()
			return mock.Reply{}
		})
	}
}

func TestHypervisorDiesMidCommand(t *testing.T) {
	startedCh := make(chan struct{})
	e := started(t, blockingGuest(startedCh))
	g := e.guest()
	g.ConsoleLine("kernel: about to die")
	ctx := testCtx(t)
	errc := make(chan error, 1)
	go func() {
		_, err := e.m.Succeed(ctx, "block")
		errc <- err
	}()
	<-startedCh
	g.Crash(nil)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		t.Fatal("command hangs after the hypervisor died")
	}
	if !errors.Is(err, backend.ErrExited) || !errors.Is(err, mock.ErrCrashed) || errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v, want ErrExited and the crash, not a timeout", err)
	}
	wantErrContains(t, err, "machine m1", "pid 5", "block", "crashed", "kernel: about to die")

	// No silent restart: the next command reports the same exit.
	_, err = e.m.Succeed(ctx, "true")
	if !errors.Is(err, backend.ErrExited) {
		t.Errorf("next command: %v, want ErrExited", err)
	}
	if e.b.Starts("m1") != 1 {
		t.Error("a crashed machine was restarted implicitly")
	}
	// An explicit Start replaces the dead hypervisor.
	must(t, e.m.Start(ctx))
	_, err = e.m.Succeed(ctx, "true")
	must(t, err)
}

func TestCommandOnCrashedMachine(t *testing.T) {
	e := started(t, nil)
	e.guest().Crash(errors.New("segfault"))
	<-e.guest().Done()
	_, err := e.m.Execute(testCtx(t), "true")
	if !errors.Is(err, backend.ErrExited) {
		t.Fatalf("err = %v, want ErrExited", err)
	}
	wantErrContains(t, err, "segfault", "m1")
}

func TestWaitForShutdown(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	err := e.m.WaitForShutdown(ctx, machine.Timeout(50*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v, want a timeout (nobody powered it off)", err)
	}
	wantErrContains(t, err, "power off")
	e.guest().PowerOff()
	must(t, e.m.WaitForShutdown(ctx))
	if e.m.Booted() {
		t.Error("Booted after WaitForShutdown")
	}
	must(t, e.m.WaitForShutdown(ctx)) // nothing to wait for
}
