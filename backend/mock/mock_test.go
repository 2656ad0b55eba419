package mock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
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
	opts = append(opts, WithGuest(func(_ string, gg *Guest) { g = gg }))
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

func TestLex(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ops  []bool
	}{
		{"echo a  b", []string{"echo", "a", "b"}, []bool{false, false, false}},
		{`test -e '/a b'\''c'`, []string{"test", "-e", "/a b'c"}, nil},
		{`echo "x \"y\" \$z" \|`, []string{"echo", `x "y" $z`, "|"}, []bool{false, false, false}},
		{"a | b >> c 2>&1", []string{"a", "|", "b", ">>", "c", "2>&1"}, []bool{false, true, false, true, false, true}},
		{"printf %s '' | base64 -d", []string{"printf", "%s", "", "|", "base64", "-d"}, nil},
		{"a>f 2>/dev/null <in", []string{"a", ">", "f", "2>", "/dev/null", "<", "in"}, []bool{false, true, false, true, false, true, false}},
		{"x&&y||z;w&", []string{"x", "&&", "y", "||", "z", ";", "w", "&"}, []bool{false, true, false, true, false, true, false, true}},
		{"echo a >&2 '2'>f", []string{"echo", "a", ">&2", "2", ">", "f"}, []bool{false, false, true, false, true, false}},
		{"a\nb # c\n#d\ne#f", []string{"a", "\n", "b", "\n", "\n", "e#f"}, []bool{false, true, false, true, true, false}},
		{"echo 'x\ny' a\\\nb", []string{"echo", "x\ny", "ab"}, []bool{false, false, false}},
	}
	for _, tt := range tests {
		ws, err := lex(tt.in)
		if err != nil {
			t.Fatalf("lex(%q): %v", tt.in, err)
		}
		if got := texts(ws); !slices.Equal(got, tt.want) {
			t.Errorf("lex(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for i, op := range tt.ops {
			if ws[i].op != op {
				t.Errorf("lex(%q)[%d].op = %v", tt.in, i, ws[i].op)
			}
		}
	}
	if _, err := lex("echo 'open"); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestBuiltins(t *testing.T) {
	shared := t.TempDir()
	in, g := start(t, backend.Spec{SharedDir: shared})
	if err := g.WriteFile("/etc/hosts", []byte("127.0.0.1 localhost\n")); err != nil {
		t.Fatal(err)
	}
	g.Systemd("").SetUnit("a.service", "active", "running")
	g.Systemd("").SetProperty("a.service", "MainPID", "7")
	tests := []struct {
		cmd        string
		wantStatus int
		wantOut    string
	}{
		{"echo hi there", 0, "hi there\n"},
		{"cat /etc/hosts", 0, "127.0.0.1 localhost\n"},
		{"cat /nope", 1, ""},
		{"test -e /etc/hosts", 0, ""},
		{"[ -d /etc ]", 0, ""},
		{"test -f /etc", 1, ""},
		{"mkdir -p '/opt/x y/z'", 0, ""},
		{"test -d '/opt/x y/z'", 0, ""},
		{"cp /etc/hosts '/opt/x y'", 0, ""},
		{"cat '/opt/x y/hosts'", 0, "127.0.0.1 localhost\n"},
		{"cp /etc /tmp/etc2", 1, ""},
		{"cp -r -- /etc /tmp/shared/etc", 0, ""},
		{"systemctl --no-pager show a.service --property=ActiveState", 0, "ActiveState=active\n"},
		{"systemctl --no-pager show a --property=MainPID,SubState", 0, "MainPID=7\nSubState=running\n"},
		{"systemctl --no-pager show ghost.service --property=LoadState", 0, "LoadState=not-found\n"},
		{"systemctl list-jobs --full 2>&1", 0, "No jobs running.\n"},
		{"systemctl frobnicate", 1, ""},
		{"nc -z localhost 22", 1, ""},
		{"frobnicate --now", 127, ""},
		{"echo a | grep a", 2, ""},
		{"exit 7", 7, ""},
	}
	for _, tt := range tests {
		r := run(t, in, tt.cmd)
		if r.Status != tt.wantStatus || string(r.Output) != tt.wantOut {
			t.Errorf("%s: %d %q, want %d %q", tt.cmd, r.Status, r.Output, tt.wantStatus, tt.wantOut)
		}
	}
	data, err := os.ReadFile(filepath.Join(shared, "etc", "hosts"))
	if err != nil || string(data) != "127.0.0.1 localhost\n" {
		t.Errorf("copy into the shared dir: %q, %v", data, err)
	}
	show := string(run(t, in, "systemctl --no-pager show a.service").Output)
	for _, want := range []string{"Id=a.service\n", "ActiveState=active\n", "SubState=running\n", "MainPID=7\n", "LoadState=loaded\n"} {
		if !strings.Contains(show, want) {
			t.Errorf("show output lacks %q:\n%s", want, show)
		}
	}
	if !slices.Contains(g.Commands(), "frobnicate --now") {
		t.Error("commands are not recorded")
	}
}

func TestUserSystemd(t *testing.T) {
	in, g := start(t, backend.Spec{})
	g.Systemd("alice").SetUnit("x.service", "active", "running")
	r := run(t, in, `su -l alice --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-active x.service'`)
	if r.Status != 0 || string(r.Output) != "active\n" {
		t.Errorf("user systemctl: %d %q", r.Status, r.Output)
	}
	r = run(t, in, "systemctl is-active x.service")
	if r.Status != 3 {
		t.Errorf("the system manager sees a user unit: %d %q", r.Status, r.Output)
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
	if in.ExitErr() != ErrTerminated {
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
