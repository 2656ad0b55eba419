package mock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start starts machine "vm" and returns its instance and guest.
func start(t *testing.T, spec backend.Spec, opts ...Option) (*Instance, *Guest) {
	t.Helper()
	var g *Guest
	opts = append(opts, scripted(), WithGuest(func(_ string, gg *Guest) { g = gg }))
	b := New(opts...)
	if spec.Name == "" {
		spec.Name = "vm"
	}
	inst, err := b.Start(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst.(*Instance), g
}

func run(t *testing.T, in *Instance, cmd string) backdoor.Result {
	t.Helper()
	ctx := testCtx(t)
	sh, err := in.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sh.Run(ctx, cmd, backdoor.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// scripted makes every guest answer the tests' own commands: "true",
// and "echo WORD" with WORD and a newline.
func scripted() Option {
	return WithGuest(func(_ string, g *Guest) {
		g.Answer("true", Reply{})
		g.Handle(func(_ context.Context, req Request) (Reply, bool) {
			word, ok := strings.CutPrefix(req.Command, "echo ")
			return Reply{Out: word + "\n"}, ok
		})
	})
}

func TestAnswers(t *testing.T) {
	var console syncBuffer
	in, g := start(t, backend.Spec{Console: &console})
	var calls atomic.Int32
	g.Answer("exact", Reply{Out: "out\n", Status: 3, Console: "to the console\n"})
	g.Answer("replaced", Reply{Out: "old"})
	g.Answer("replaced", Reply{Out: "new"})
	g.AnswerFunc("counter", func(_ context.Context, req Request) Reply {
		return Reply{Out: fmt.Sprintf("%d %v", calls.Add(1), req.Timeout)}
	})
	g.Handle(func(_ context.Context, req Request) (Reply, bool) {
		return Reply{Out: "matched " + req.Command}, strings.HasPrefix(req.Command, "match ")
	})
	g.Handle(func(_ context.Context, req Request) (Reply, bool) {
		return Reply{Out: "second"}, strings.HasPrefix(req.Command, "match")
	})
	tests := []struct {
		cmd        string
		timeout    time.Duration
		wantStatus int
		wantOut    string
	}{
		{"exact", 0, 3, "out\n"},
		{"replaced", 0, 0, "new"},
		{"counter", 0, 0, "1 0s"},
		{"counter", 2 * time.Second, 0, "2 2s"},
		{"match me", 0, 0, "matched match me"},
		{"matcher", 0, 0, "second"},
		{"exact ", 0, StatusUnscripted, ""},
		{"frobnicate --now", 0, StatusUnscripted, ""},
	}
	ctx := testCtx(t)
	sh, err := in.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		r, err := sh.Run(ctx, tt.cmd, backdoor.RunOptions{Timeout: tt.timeout})
		if err != nil || r.Status != tt.wantStatus || string(r.Output) != tt.wantOut {
			t.Errorf("%q: %d %q, %v; want %d %q", tt.cmd, r.Status, r.Output, err, tt.wantStatus, tt.wantOut)
		}
	}
	if !strings.Contains(console.String(), "to the console\n") ||
		!strings.Contains(console.String(), `mock: no answer scripted for "frobnicate --now"`) {
		t.Errorf("console %q", console.String())
	}
	want := []string{"exact", "replaced", "counter", "counter", "match me", "matcher", "exact ", "frobnicate --now"}
	if got := g.Commands(); !slices.Equal(got, want) {
		t.Errorf("Commands = %q, want %q", got, want)
	}
}

func TestHold(t *testing.T) {
	in, g := start(t, backend.Spec{})
	const hold = 100 * time.Millisecond
	g.Answer("daemon &", Reply{Out: "started\n", Hold: hold})
	start := time.Now()
	// The command's result comes once the held stdout is closed.
	if r := run(t, in, "daemon &"); r.Status != 0 || string(r.Output) != "started\n" || time.Since(start) < hold {
		t.Errorf("Run = %d %q after %v; want 0 \"started\\n\" after at least %v", r.Status, r.Output, time.Since(start), hold)
	}
}

func TestPowerOffAnswers(t *testing.T) {
	t.Run("command", func(t *testing.T) {
		in, g := start(t, backend.Spec{})
		sh, err := in.Shell(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sh.Run(testCtx(t), guestcmd.ForcePowerOff(), backdoor.RunOptions{}); err == nil {
			t.Error("a powered-off guest reported a status")
		}
		<-in.Done()
		if in.ExitErr() != nil || !slices.Equal(g.Commands(), []string{"poweroff -f"}) {
			t.Errorf("ExitErr %v, commands %q", in.ExitErr(), g.Commands())
		}
	})
	t.Run("raw", func(t *testing.T) {
		in, g := start(t, backend.Spec{})
		sh, err := in.Shell(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.SendRaw(testCtx(t), guestcmd.PowerOff()+"\n"); err != nil {
			t.Fatal(err)
		}
		<-in.Done()
		ev, err := in.WaitEvent(testCtx(t), nil)
		if in.ExitErr() != nil || err != nil || ev.Name != "SHUTDOWN" || !slices.Equal(g.RawInput(), []string{"poweroff"}) {
			t.Errorf("ExitErr %v, event %v %v, raw input %q", in.ExitErr(), ev, err, g.RawInput())
		}
	})
	t.Run("overridden", func(t *testing.T) {
		in, g := start(t, backend.Spec{})
		g.Answer(guestcmd.ForcePowerOff(), Reply{Status: 1})
		if r := run(t, in, guestcmd.ForcePowerOff()); r.Status != 1 {
			t.Errorf("status %d", r.Status)
		}
		if in.exited() {
			t.Error("an overridden power-off powered off")
		}
	})
}

func TestState(t *testing.T) {
	_, g := start(t, backend.Spec{})
	if g.State("k") != "" {
		t.Error("a new guest has state")
	}
	g.SetState("k", "v")
	if g.State("k") != "v" {
		t.Errorf("State = %q", g.State("k"))
	}
}

func TestCrash(t *testing.T) {
	in, g := start(t, backend.Spec{})
	run(t, in, "true")
	boom := errors.New("boom")
	g.Crash(boom)
	<-in.Done()
	if !errors.Is(in.ExitErr(), boom) {
		t.Errorf("ExitErr = %v", in.ExitErr())
	}
	_, err := in.Shell(testCtx(t))
	if !errors.Is(err, backend.ErrExited) {
		t.Errorf("Shell after crash: %v", err)
	}
	if err := in.Close(); err != nil {
		t.Errorf("Close after exit: %v", err)
	}
	if !strings.Contains(in.Diagnostics(), "boom") {
		t.Errorf("diagnostics %q", in.Diagnostics())
	}
}

func TestBootDelayAndBanner(t *testing.T) {
	in, _ := start(t, backend.Spec{}, WithBootDelay(time.Hour))
	ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
	defer cancel()
	_, err := in.Shell(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shell before the banner: %v", err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(in.ExitErr(), ErrTerminated) || !errors.Is(in.ExitErr(), backend.ErrExited) {
		t.Errorf("ExitErr = %v", in.ExitErr())
	}
}

func TestPowerDown(t *testing.T) {
	in, g := start(t, backend.Spec{})
	ctx := testCtx(t)
	g.IgnorePowerButton(true)
	if err := in.PowerDown(ctx); err != nil {
		t.Fatal(err)
	}
	ev, err := in.WaitEvent(ctx, nil)
	if err != nil || ev.Name != "POWERDOWN" {
		t.Fatalf("event %v, %v", ev, err)
	}
	select {
	case <-in.Done():
		t.Fatal("the guest ignored the button but exited")
	default:
	}
	g.IgnorePowerButton(false)
	if err := in.PowerDown(ctx); err != nil {
		t.Fatal(err)
	}
	<-in.Done()
	if in.ExitErr() != nil {
		t.Errorf("ExitErr = %v after a clean power-off", in.ExitErr())
	}
	ev, err = in.WaitEvent(ctx, func(ev backend.Event) bool { return ev.Name == "SHUTDOWN" })
	if err != nil || ev.Data["reason"] != "guest-shutdown" {
		t.Errorf("SHUTDOWN %v, %v", ev, err)
	}
	if _, err := in.WaitEvent(ctx, nil); !errors.Is(err, backend.ErrExited) {
		t.Errorf("WaitEvent after exit with nothing queued: %v", err)
	}
}

func TestRebootKey(t *testing.T) {
	t.Run("allowed", func(t *testing.T) {
		in, g := start(t, backend.Spec{AllowReboot: true})
		run(t, in, "true")
		ctx := testCtx(t)
		old, _ := in.Shell(ctx)
		if err := in.SendKey(ctx, "ctrl-alt-delete"); err != nil {
			t.Fatal(err)
		}
		sh, err := in.Shell(ctx)
		if err != nil || sh == old {
			t.Fatalf("Shell after reboot: same=%v, %v", sh == old, err)
		}
		<-old.Done()
		run(t, in, "true")
		if g.Boots() != 2 {
			t.Errorf("boots %d", g.Boots())
		}
	})
	t.Run("no-reboot", func(t *testing.T) {
		in, _ := start(t, backend.Spec{})
		ctx := testCtx(t)
		if err := in.SendKey(ctx, "ctrl-alt-delete"); err != nil {
			t.Fatal(err)
		}
		<-in.Done()
		ev, err := in.WaitEvent(ctx, nil)
		if err != nil || ev.Name != "SHUTDOWN" || ev.Data["reason"] != "guest-reset" {
			t.Errorf("event %v, %v", ev, err)
		}
	})
}

func TestConsoleAndBare(t *testing.T) {
	var buf syncBuffer
	b := New(WithBareInstances())
	inst, err := b.Start(testCtx(t), backend.Spec{Name: "vm", Console: &buf})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, ok := inst.(backend.KeySender); ok {
		t.Error("a bare instance has capabilities")
	}
	if _, ok := inst.(backend.LinkController); ok {
		t.Error("a bare instance controls links")
	}
	if _, ok := inst.(backend.PortForwarder); ok {
		t.Error("a bare instance forwards ports")
	}
	b.Guest("vm").ConsoleLine("hello")
	if !strings.Contains(buf.String(), "hello\n") {
		t.Errorf("console %q", buf.String())
	}
	if b.Starts("vm") != 1 || b.Name() != "mock" || b.BootTimeout() != DefaultBootTimeout {
		t.Error("backend accessors")
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
