package machine_test

import (
	"context"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// TestSwitchRoot: the initrd's shell waits for initrd.target, starts the
// switch without waiting, and the next command runs on stage 2's shell.
func TestSwitchRoot(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.UnitProperty("initrd.target", "ActiveState", ""), mock.Reply{Out: "ActiveState=active\n"})
		// The switch ends the initrd's shell; stage 2 prints a new banner.
		g.AnswerFunc(guestcmd.SwitchRoot(), func(context.Context, mock.Request) mock.Reply {
			go g.Reboot()
			return mock.Reply{}
		})
	}, machine.WithAllowReboot()) // the mock's new banner is a reboot's; QEMU keeps running
	ctx := testCtx(t)
	g := e.guest()
	boots := g.Boots()
	must(t, e.m.SwitchRoot(ctx))
	if got := g.Boots(); got != boots+1 {
		t.Fatalf("boots %d, want %d: the switch did not wait for stage 2", got, boots+1)
	}
	if _, err := e.m.Succeed(ctx, "true"); err != nil {
		t.Fatalf("a command after switch_root: %v", err)
	}
	if !e.log.has("nested", "run switch-root") || !e.log.has("nested", "waiting for unit initrd.target") {
		t.Errorf("log:\n%s", e.log.dump())
	}
}
