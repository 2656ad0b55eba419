package machine_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// vlanGuest puts the guest on VLAN 1 as node 1, like a NixOS test
// machine.
func vlanGuest(g *mock.Guest) {
	g.SetLinks(
		backend.Link{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
		backend.Link{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:01", Up: true},
	)
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

func TestFork(t *testing.T) {
	nodes := machine.NewNodeNumbers(1, 2)
	e := started(t, vlanGuest, machine.WithNodeNumbers(nodes))
	ctx := testCtx(t)
	_, err := e.m.Succeed(ctx, "echo set-up > /root/base")
	must(t, err)

	clones, err := e.m.Fork(ctx, 3)
	must(t, err)
	closeAll(t, clones)
	if len(clones) != 3 {
		t.Fatalf("Fork(3) gave %d machines", len(clones))
	}
	for k, c := range clones {
		name := fmt.Sprintf("m1-%d", k+1)
		// Everything a clone needs, in one round trip: its guest got one
		// command before the test's own.
		if g := e.b.Guest(name); g == nil || len(g.Commands()) != 1 || !strings.Contains(g.Commands()[0], "echo "+name+" > /proc/sys/kernel/hostname\n") {
			var cmds []string
			if g != nil {
				cmds = g.Commands()
			}
			t.Errorf("%s: the restore sent %d commands, want one that gives the identity: %q", name, len(cmds), cmds)
		}
		if c.Name() != name {
			t.Errorf("clone %d named %q, want %q", k, c.Name(), name)
		}
		// Node 1 is the original's, 2 was reserved: clones take 3, 4, 5.
		if c.Node() != k+3 {
			t.Errorf("%s: node %d, want %d", name, c.Node(), k+3)
		}
		out, err := c.Succeed(ctx, "hostname; cat /root/base; cat /etc/hostname")
		must(t, err)
		if want := name + "\nset-up\n" + name + "\n"; out != want {
			t.Errorf("%s: %q, want %q", name, out, want)
		}
		addrs, err := c.Succeed(ctx, "ip -o addr")
		must(t, err)
		ip := fmt.Sprintf("192.168.1.%d/24", k+3)
		if !strings.Contains(addrs, ip) || strings.Contains(addrs, "192.168.1.1/24") {
			t.Errorf("%s: addresses %q, want %s instead of 192.168.1.1", name, addrs, ip)
		}
		links, err := c.Succeed(ctx, "ip -o link")
		must(t, err)
		if mac := fmt.Sprintf("52:54:00:12:01:%02x", k+3); !strings.Contains(links, mac) {
			t.Errorf("%s: links %q lack %s", name, links, mac)
		}
		hosts, err := c.Succeed(ctx, "cat /etc/hosts")
		must(t, err)
		for j := range clones {
			if line := fmt.Sprintf("192.168.1.%d m1-%d", j+3, j+1); !strings.Contains(hosts, line) {
				t.Errorf("%s: /etc/hosts lacks %q", name, line)
			}
		}
		if g := e.b.Guest(name); g == nil || len(g.URandomWrites()) == 0 {
			t.Errorf("%s: the RNG was not reseeded", name)
		}
		_, err = c.Succeed(ctx, "echo "+name+" > /root/own")
		must(t, err)
	}
	for _, c := range clones {
		out, err := c.Succeed(ctx, "cat /root/own")
		must(t, err)
		if out != c.Name()+"\n" {
			t.Errorf("%s sees %q", c.Name(), out)
		}
	}
	if _, err := e.m.Fail(ctx, "cat /root/own"); err != nil {
		t.Errorf("the original sees a clone's file: %v", err)
	}
	if out, _ := e.m.Succeed(ctx, "hostname"); out != "m1\n" {
		t.Errorf("original hostname %q", out)
	}

	// A clone forks like any machine: its clone takes over its own
	// addresses, not the original's.
	grand, err := clones[0].Fork(ctx, 1)
	must(t, err)
	closeAll(t, grand)
	if addrs, err := grand[0].Succeed(ctx, "ip -o addr"); err != nil || !strings.Contains(addrs, "192.168.1.6/24") || strings.Contains(addrs, "192.168.1.3/24") {
		t.Errorf("clone of a clone: %q, %v; want 192.168.1.6 instead of 192.168.1.3", addrs, err)
	}
	must(t, grand[0].Close())

	// Numbering goes on; closed clones give their node numbers back.
	must(t, clones[1].Close())
	more, err := e.m.Fork(ctx, 1)
	must(t, err)
	closeAll(t, more)
	if more[0].Name() != "m1-4" || more[0].Node() != 4 {
		t.Errorf("next clone %s node %d, want m1-4 node 4", more[0].Name(), more[0].Node())
	}
}

func TestRestoreSameAddresses(t *testing.T) {
	e := started(t, vlanGuest)
	ctx := testCtx(t)
	snap, err := e.m.Snapshot(ctx, "keep")
	must(t, err)
	if snap.Name() != "keep" || snap.Machine() != "m1" || snap.Size() <= 0 {
		t.Errorf("snapshot %v: name %q machine %q size %d", snap, snap.Name(), snap.Machine(), snap.Size())
	}
	c, err := machine.Restore(ctx, snap, "m1-copy", machine.WithSameAddresses())
	must(t, err)
	closeAll(t, []*machine.Machine{c})
	out, err := c.Succeed(ctx, "hostname; ip -o addr")
	must(t, err)
	if !strings.HasPrefix(out, "m1\n") || !strings.Contains(out, "192.168.1.1/24") {
		t.Errorf("clone with the same addresses: %q", out)
	}
	if c.Node() != 0 {
		t.Errorf("node %d, want none", c.Node())
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
