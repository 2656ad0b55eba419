package machine_test

import (
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

func TestSendMonitorCommand(t *testing.T) {
	e := newEnv(t, func(g *mock.Guest) { g.SetMonitorReply("info status", "VM status: running") })
	ctx := testCtx(t)
	out, err := e.m.SendMonitorCommand(ctx, "info status")
	must(t, err)
	if out != "VM status: running" {
		t.Errorf("reply %q", out)
	}
	if got := e.guest().MonitorCommands(); !slices.Equal(got, []string{"info status"}) {
		t.Errorf("monitor commands %q", got)
	}
}

func TestControlCommand(t *testing.T) {
	e := newEnv(t, func(g *mock.Guest) { g.SetControlReply("query-name", map[string]any{"name": "m1"}) })
	ctx := testCtx(t)
	out, err := e.m.ControlCommand(ctx, "query-name", nil)
	must(t, err)
	if out.(map[string]any)["name"] != "m1" {
		t.Errorf("reply %v", out)
	}
	_, err = e.m.ControlCommand(ctx, "set_link", map[string]any{"name": "nic1", "up": false})
	must(t, err)
	calls := e.guest().ControlCommands()
	if len(calls) != 2 || calls[1].Command != "set_link" || calls[1].Args["up"] != false {
		t.Errorf("calls %+v", calls)
	}
}

func TestWaitForQMPEvent(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	g := e.guest()
	g.EmitEvent("NIC_RX_FILTER_CHANGED", nil)
	g.EmitEvent("BLOCK_IO_ERROR", map[string]any{"device": "vda"})
	ev, err := e.m.WaitForQMPEvent(ctx, func(ev backend.Event) bool { return ev.Name == "BLOCK_IO_ERROR" }, machine.Timeout(time.Second))
	must(t, err)
	if ev.Data["device"] != "vda" {
		t.Errorf("event %+v", ev)
	}

	// The timeout is honoured even when no event ever arrives.
	_, err = e.m.WaitForQMPEvent(ctx, nil, machine.Timeout(50*time.Millisecond))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	wantErrContains(t, err, "QMP event")

	// A power-off reports SHUTDOWN, readable after the hypervisor exited.
	_, err = e.m.Execute(ctx, "poweroff", machine.NoCheckReturn())
	must(t, err)
	<-g.Done()
	ev, err = e.m.WaitForQMPEvent(ctx, func(ev backend.Event) bool { return ev.Name == "SHUTDOWN" }, machine.Timeout(time.Second))
	must(t, err)
	if ev.Data["guest"] != true {
		t.Errorf("SHUTDOWN data %v", ev.Data)
	}
}

func TestPowerDownEvents(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	must(t, e.m.Instance().PowerDown(ctx))
	var names []string
	for range 2 {
		ev, err := e.m.WaitForQMPEvent(ctx, nil, machine.Timeout(time.Second))
		must(t, err)
		names = append(names, ev.Name)
	}
	if !slices.Equal(names, []string{"POWERDOWN", "SHUTDOWN"}) {
		t.Errorf("events %q", names)
	}
	must(t, e.m.WaitForShutdown(ctx))
}

func TestScreenshot(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	sub := t.TempDir()
	tests := []struct{ name, want string }{
		{"login", filepath.Join(e.out, "login.png")},
		{"login.jpg", filepath.Join(e.out, "login.jpg")},
		{sub + "/screen", sub + "/screen.png"},
		{"my shot", filepath.Join(e.out, "my shot.png")},
	}
	for _, tt := range tests {
		path, err := e.m.Screenshot(ctx, tt.name)
		must(t, err)
		if path != tt.want {
			t.Errorf("Screenshot(%q) = %q, want %q", tt.name, path, tt.want)
		}
		f, err := os.Open(path)
		must(t, err)
		_, err = png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s is not a PNG: %v", path, err)
		}
	}
	if !e.log.has("finished", "making screenshot "+filepath.Join(e.out, "login.png")) {
		t.Error("no nested block")
	}
}

func TestSendKeyAndChars(t *testing.T) {
	e := started(t, nil)
	ctx := testCtx(t)
	must(t, e.m.SendKey(ctx, "ctrl-alt-f1"))
	must(t, e.m.SendKey(ctx, "A", machine.Delay(0)))
	must(t, e.m.SendChars(ctx, "a1-_ !\n\tZ?", machine.Delay(0)))
	want := []string{"ctrl-alt-f1", "shift-a", "a", "1", "0x0C", "shift-0x0C", "spc", "shift-0x02", "ret", "tab", "shift-z", "shift-0x35"}
	if got := e.guest().Keys(); !slices.Equal(got, want) {
		t.Errorf("keys %q\nwant %q", got, want)
	}
	if !e.log.has("info", `sending key "ctrl-alt-f1"`) || e.log.has("info", `sending key "shift-z"`) {
		t.Error("SendKey must log its key and SendChars must not log each one")
	}
	if !e.log.has("nested", `sending keys "a1-_ !\n\tZ?"`) {
		t.Errorf("log:\n%s", e.log.dump())
	}
}

func TestKeyName(t *testing.T) {
	tests := map[string]string{
		"a": "a", "Q": "shift-q", "\n": "ret", " ": "spc", "=": "0x0D", "\"": "shift-0x28",
		"ret": "ret", "alt-f2": "alt-f2", "é": "é",
	}
	for in, want := range tests {
		if got := machine.KeyName(in); got != want {
			t.Errorf("KeyName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnsupportedCapabilities(t *testing.T) {
	e := newEnvWith(t, nil, []mock.Option{mock.WithBareInstances()})
	ctx := testCtx(t)
	calls := map[string]func() error{
		"monitor": func() error { _, err := e.m.SendMonitorCommand(ctx, "info"); return err },
		"control": func() error { _, err := e.m.ControlCommand(ctx, "query-status", nil); return err },
		"event": func() error {
			_, err := e.m.WaitForQMPEvent(ctx, nil, machine.Timeout(time.Second))
			return err
		},
		"console": func() error { return e.m.SendConsole(ctx, "x") },
		"reboot":  func() error { return e.m.Reboot(ctx) },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, backend.ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			wantErrContains(t, err, "machine m1", "mock backend")
		})
	}
	// Commands still work: the shell is not optional.
	_, err := e.m.Succeed(ctx, "true")
	must(t, err)
}

// TestNoDisplayBackend: a backend without screenshots (Firecracker,
// cloud-hypervisor) has no display device, so screenshots and keys go to
// the guest's X server, as on a QEMU machine built with --no-vga.
func TestNoDisplayBackend(t *testing.T) {
	e := newEnvWith(t, func(g *mock.Guest) {
		g.Answer(guestcmd.ScreenDump(), mock.Reply{Status: 1})
		g.Answer(guestcmd.XType("a", 0), mock.Reply{})
	}, []mock.Option{mock.WithBareInstances()})
	ctx := testCtx(t)
	_, err := e.m.Screenshot(ctx, "x")
	wantErrContains(t, err, "the machine has no display device", "xwd")
	if err := e.m.SendKey(ctx, "a"); err != nil {
		t.Fatalf("SendKey = %v, want xdotool in the guest", err)
	}
	if cmds := e.guest().Commands(); !slices.Contains(cmds, guestcmd.ScreenDump()) || !slices.Contains(cmds, guestcmd.XType("a", 0)) {
		t.Errorf("guest commands %q lack the X screen dump and xdotool", cmds)
	}
}

func TestCapabilityOnExitedMachine(t *testing.T) {
	e := started(t, nil)
	e.guest().Crash(nil)
	<-e.guest().Done()
	err := e.m.SendKey(testCtx(t), "a")
	if !errors.Is(err, backend.ErrExited) {
		t.Errorf("err = %v, want ErrExited", err)
	}
}
