package machine_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// vlanGuest puts the guest on VLAN 1, like a NixOS test machine, and
// answers the listing of its interfaces: eth1 has the MAC and addresses
// of node 1, or of the node whose MAC the clone's identity fix-up (its
// state "fixup") gave it.
func vlanGuest(g *mock.Guest) {
	g.SetLinks(
		backend.Link{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
		backend.Link{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:01", Up: true},
	)
	g.AnswerFunc(guestcmd.ListInterfaces(), func(context.Context, mock.Request) mock.Reply {
		n := fixedNode(g)
		return mock.Reply{Out: fmt.Sprintf(`1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\    link/ether 52:54:00:12:01:%02x brd ff:ff:ff:ff:ff:ff
3: eth1    inet 192.168.1.%d/24 brd 192.168.1.255 scope global eth1\       valid_lft forever preferred_lft forever
3: eth1    inet6 fe80::5054:ff:fe12:1%02x/64 scope link \       valid_lft forever preferred_lft forever
`, n, n, n)}
	})
}

// fixedNode is the node whose MAC the guest's identity fix-up gave eth1,
// or 1 (the original's).
func fixedNode(g *mock.Guest) int {
	for n := 2; n < 255; n++ {
		if strings.Contains(g.State("fixup"), guestcmd.SetMAC("eth1", fmt.Sprintf("52:54:00:12:01:%02x", n))) {
			return n
		}
	}
	return 1
}

func closeAll(t *testing.T, ms []*machine.Machine) {
	t.Cleanup(func() {
		for _, m := range ms {
			if err := m.Close(); err != nil {
				t.Errorf("closing %s: %v", m.Name(), err)
			}
		}
	})
}

// fixups returns the identity fix-ups the named machine's guest got.
func (e *env) fixups(name string) []string {
	var out []string
	if g := e.b.Guest(name); g != nil {
		for _, c := range g.Commands() {
			if strings.Contains(c, guestcmd.SetHostname(name)) {
				out = append(out, c)
			}
		}
	}
	return out
}

func TestFork(t *testing.T) {
	nodes := machine.NewNodeNumbers(1, 2)
	e := started(t, vlanGuest, machine.WithNodeNumbers(nodes))
	m := e.m
	ctx := testCtx(t)

	clones, err := m.Fork(ctx, 3)
	must(t, err)
	closeAll(t, clones)
	if len(clones) != 3 {
		t.Fatalf("Fork(3) gave %d machines", len(clones))
	}
	for k, c := range clones {
		name := fmt.Sprintf("m1-%d", k+1)
		if c.Name() != name {
			t.Errorf("clone %d named %q, want %q", k, c.Name(), name)
		}
		// Node 1 is the original's, 2 was reserved: clones take 3, 4, 5.
		node := k + 3
		if c.Node() != node {
			t.Errorf("%s: node %d, want %d", name, c.Node(), node)
		}
		// Everything a clone needs, in one round trip: its guest got one
		// command, which gives it its identity.
		g := e.b.Guest(name)
		if cmds := g.Commands(); len(cmds) != 1 || len(e.fixups(name)) != 1 {
			t.Fatalf("%s: the restore sent %q, want one command that gives the identity", name, cmds)
		}
		fix := g.Commands()[0]
		mac := fmt.Sprintf("52:54:00:12:01:%02x", node)
		want := []string{
			guestcmd.SetHostname(name),
			guestcmd.SetMAC("eth1", mac),
			guestcmd.ReplaceAddr("eth1", netip.MustParsePrefix("192.168.1.1/24"), netip.MustParsePrefix(fmt.Sprintf("192.168.1.%d/24", node))),
			guestcmd.ReplaceAddr("eth1", netip.MustParsePrefix("fe80::5054:ff:fe12:101/64"), netip.MustParsePrefix(fmt.Sprintf("fe80::5054:ff:fe12:1%02x/64", node))),
			guestcmd.FlushNeighbours("eth1"),
		}
		for j := range clones {
			want = append(want, guestcmd.AddHost(fmt.Sprintf("192.168.1.%d m1-%d", j+3, j+1)))
		}
		for _, w := range want {
			if !strings.Contains(fix, w) {
				t.Errorf("%s: the fix-up lacks %q:\n%s", name, w, fix)
			}
		}
		if n := fixedNode(g); n != node {
			t.Errorf("%s: the fix-up set the MAC of node %d, want %d", name, n, node)
		}
	}
	if n := len(e.fixups("m1")); n != 0 {
		t.Errorf("the original got %d identity fix-ups", n)
	}

	// A clone forks like any machine: its clone takes over its own
	// addresses, not the original's.
	grand, err := clones[0].Fork(ctx, 1)
	must(t, err)
	closeAll(t, grand)
	fix := e.fixups("m1-1-1")
	wantAddr := guestcmd.ReplaceAddr("eth1", netip.MustParsePrefix("192.168.1.3/24"), netip.MustParsePrefix("192.168.1.6/24"))
	if len(fix) != 1 || !strings.Contains(fix[0], wantAddr) {
		t.Errorf("clone of a clone: fix-up %q, want one with %q", fix, wantAddr)
	}
	must(t, grand[0].Close())

	// Numbering goes on; closed clones give their node numbers back.
	must(t, clones[1].Close())
	more, err := m.Fork(ctx, 1)
	must(t, err)
	closeAll(t, more)
	if more[0].Name() != "m1-4" || more[0].Node() != 4 {
		t.Errorf("next clone %s node %d, want m1-4 node 4", more[0].Name(), more[0].Node())
	}
}

// TestForkState: a clone starts from the state its original had when
// forked, and then goes its own way.
func TestForkState(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc("cat /root/own", func(context.Context, mock.Request) mock.Reply {
			return mock.Reply{Out: g.State("own")}
		})
	})
	e.guest().SetState("own", "original")
	ctx := testCtx(t)
	clones, err := e.m.Fork(ctx, 2)
	must(t, err)
	closeAll(t, clones)
	for _, c := range clones {
		if out, err := c.Succeed(ctx, "cat /root/own"); err != nil || out != "original" {
			t.Errorf("%s sees %q, %v", c.Name(), out, err)
		}
		e.b.Guest(c.Name()).SetState("own", c.Name())
	}
	for _, m := range append(clones, e.m) {
		want := m.Name()
		if m == e.m {
			want = "original"
		}
		if out, err := m.Succeed(ctx, "cat /root/own"); err != nil || out != want {
			t.Errorf("%s sees %q, %v; want %q", m.Name(), out, err, want)
		}
	}
}

func TestRestoreSameAddresses(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		vlanGuest(g)
		// The copy keeps the original's host name.
		g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
			return mock.Reply{}, strings.Contains(req.Command, guestcmd.SetHostname("m1"))
		})
	})
	ctx := testCtx(t)
	snap, err := e.m.Snapshot(ctx, "keep")
	must(t, err)
	if snap.Name() != "keep" || snap.Machine() != "m1" || snap.Size() <= 0 {
		t.Errorf("snapshot %v: name %q machine %q size %d", snap, snap.Name(), snap.Machine(), snap.Size())
	}
	c, err := machine.Restore(ctx, snap, "m1-copy", machine.WithSameAddresses())
	must(t, err)
	closeAll(t, []*machine.Machine{c})
	// The copy keeps the original's host name and addresses.
	cmds := e.b.Guest("m1-copy").Commands()
	if len(cmds) != 1 || !strings.Contains(cmds[0], guestcmd.SetHostname("m1")) || strings.Contains(cmds[0], guestcmd.FlushNeighbours("eth1")) {
		t.Errorf("the copy's fix-up %q, want the original's host name and no address change", cmds)
	}
	if c.Node() != 0 {
		t.Errorf("node %d, want none", c.Node())
	}
}

// TestRestoreFixupFails: a fix-up the guest fails fails the restore and
// leaves nothing running.
func TestRestoreFixupFails(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
			return mock.Reply{Out: "date: cannot set date\n", Status: 1}, strings.Contains(req.Command, guestcmd.SetHostname("m1-1"))
		})
	})
	_, err := e.m.Fork(testCtx(t), 1)
	wantErrContains(t, err, "m1-1", "identity", "status 1", "cannot set date")
	g := e.b.Guest("m1-1")
	if g == nil {
		t.Fatal("the clone never started")
	}
	select {
	case <-g.Done():
	default:
		t.Error("the failed clone still runs")
	}
}

func TestSnapshotErrors(t *testing.T) {
	ctx := testCtx(t)
	t.Run("bad name", func(t *testing.T) {
		e := started(t, nil)
		_, err := e.m.Snapshot(ctx, "../x")
		wantErrContains(t, err, `snapshot name "../x"`)
	})
	t.Run("name taken", func(t *testing.T) {
		e := started(t, nil)
		_, err := e.m.Snapshot(ctx, "a")
		must(t, err)
		_, err = e.m.Snapshot(ctx, "a")
		wantErrContains(t, err, `"a" exists already`)
	})
	t.Run("disk full", func(t *testing.T) {
		e := started(t, nil)
		e.guest().SetSnapshotError(syscall.ENOSPC)
		_, err := e.m.Snapshot(ctx, "")
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("error %v does not wrap ENOSPC", err)
		}
		if _, err := e.m.Succeed(ctx, "true"); err != nil {
			t.Errorf("the machine does not answer after the failed snapshot: %v", err)
		}
	})
	t.Run("fork of zero", func(t *testing.T) {
		e := started(t, nil)
		_, err := e.m.Fork(ctx, 0)
		wantErrContains(t, err, "at least one clone")
	})
	t.Run("no snapshot support", func(t *testing.T) {
		e := newEnvWith(t, nil, []mock.Option{mock.WithBareInstances()})
		_, err := e.m.Snapshot(ctx, "")
		if !errors.Is(err, backend.ErrUnsupported) {
			t.Errorf("error %v does not wrap ErrUnsupported", err)
		}
	})
	t.Run("nil snapshot", func(t *testing.T) {
		_, err := machine.Restore(ctx, nil, "x")
		wantErrContains(t, err, "needs a snapshot")
	})
}

func TestNodeNumbers(t *testing.T) {
	n := machine.NewNodeNumbers(1, 3)
	var got []int
	for range 3 {
		k, err := n.Allocate()
		must(t, err)
		got = append(got, k)
	}
	if fmt.Sprint(got) != "[2 4 5]" {
		t.Errorf("allocated %v, want [2 4 5]", got)
	}
	n.Release(4)
	if k, _ := n.Allocate(); k != 4 {
		t.Errorf("after release got %d, want 4", k)
	}
	for {
		if _, err := n.Allocate(); err != nil {
			if !errors.Is(err, machine.ErrNoNodeNumbers) {
				t.Errorf("exhausted: %v", err)
			}
			break
		}
	}
}
