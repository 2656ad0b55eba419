package machine_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// twoVLANs is a NixOS machine (node 2) on VLANs 1 and 3.
var twoVLANs = []backend.Link{
	{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
	{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:02", Up: true},
	{Name: "virtio-net-pci.2", VLAN: 3, MAC: "52:54:00:12:03:02", Up: true},
}

func withLinks(ls ...backend.Link) func(g *mock.Guest) {
	return func(g *mock.Guest) { g.SetLinks(ls...) }
}

func TestLinks(t *testing.T) {
	e := newEnv(t, withLinks(twoVLANs...))
	ls, err := e.m.Links(testCtx(t))
	must(t, err)
	if !slices.Equal(ls, twoVLANs) {
		t.Errorf("Links = %+v", ls)
	}
	if !e.m.Booted() {
		t.Error("Links did not start the machine")
	}
}

func TestBlockUnblock(t *testing.T) {
	e := newEnv(t, withLinks(twoVLANs...))
	ctx := testCtx(t)
	must(t, e.m.Block(ctx))
	ls, err := e.m.Links(ctx)
	must(t, err)
	if !ls[0].Up || ls[1].Up || ls[2].Up {
		t.Errorf("after Block: %+v", ls)
	}
	// Every VLAN link, not only the first; never the user-mode one.
	want := []mock.LinkCall{{Name: "virtio-net-pci.1", Up: false}, {Name: "virtio-net-pci.2", Up: false}}
	if got := e.guest().LinkCalls(); !slices.Equal(got, want) {
		t.Errorf("after Block, SetLink calls %+v, want %+v", got, want)
	}
	if !e.log.has("finished", "unplugging the network cable of virtio-net-pci.1 (vlan 1), virtio-net-pci.2 (vlan 3)") {
		t.Errorf("no nested block for Block:\n%s", e.log.dump())
	}

	must(t, e.m.Unblock(ctx))
	ls, err = e.m.Links(ctx)
	must(t, err)
	if !slices.Equal(ls, twoVLANs) {
		t.Errorf("after Unblock: %+v", ls)
	}
	want = append(want, mock.LinkCall{Name: "virtio-net-pci.1", Up: true}, mock.LinkCall{Name: "virtio-net-pci.2", Up: true})
	if got := e.guest().LinkCalls(); !slices.Equal(got, want) {
		t.Errorf("after Unblock, SetLink calls %+v, want %+v", got, want)
	}
	if !e.log.has("finished", "plugging in the network cable of virtio-net-pci.1 (vlan 1)") {
		t.Errorf("no nested block for Unblock:\n%s", e.log.dump())
	}
}

func TestBlockWithoutVLAN(t *testing.T) {
	tests := []struct {
		name  string
		links []backend.Link
		want  string
	}{
		{"user-mode only", mock.DefaultLinks, "its links: virtio-net-pci.0 (user-mode network)"},
		{"no links", nil, "its links: none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withLinks(tt.links...))
			ctx := testCtx(t)
			for _, fn := range []func() error{func() error { return e.m.Block(ctx) }, func() error { return e.m.Unblock(ctx) }} {
				err := fn()
				if !errors.Is(err, machine.ErrNoVLAN) {
					t.Errorf("err = %v, want ErrNoVLAN", err)
				}
				wantErrContains(t, err, "machine m1", "has no VLAN network link", tt.want)
			}
			if got := e.guest().LinkCalls(); len(got) != 0 {
				t.Errorf("SetLink calls %+v", got)
			}
		})
	}
}

func TestForwardPort(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testCtx(t)
	must(t, e.m.ForwardPort(ctx, 8080, 80))
	if got := e.guest().ForwardedPorts(); !slices.Equal(got, []mock.PortForward{{HostPort: 8080, GuestPort: 80}}) {
		t.Errorf("forwards %+v", got)
	}
	if !e.log.has("finished", "forwarding host port 8080 to guest port 80") {
		t.Errorf("no nested block:\n%s", e.log.dump())
	}
	err := e.m.ForwardPort(ctx, 8080, 81)
	wantErrContains(t, err, "machine m1: forwarding host port 8080 to guest port 81", "already forwarded")
	if !e.log.has("failed", "forwarding host port 8080 to guest port 81") {
		t.Errorf("failure not logged:\n%s", e.log.dump())
	}
	err = e.m.ForwardPort(ctx, 0, 80)
	wantErrContains(t, err, "host port 0 is not a TCP port")
}

func TestForwardPortWithoutUserNetwork(t *testing.T) {
	e := newEnv(t, withLinks(twoVLANs[1:]...))
	err := e.m.ForwardPort(testCtx(t), 8080, 80)
	if !errors.Is(err, backend.ErrUnsupported) {
		t.Errorf("err = %v, want ErrUnsupported", err)
	}
	wantErrContains(t, err, "no user-mode network")
}

func TestLinksUnsupported(t *testing.T) {
	e := newEnvWith(t, nil, []mock.Option{mock.WithBareInstances()})
	ctx := testCtx(t)
	calls := []struct {
		name string
		fn   func() error
	}{
		{"Links", func() error { _, err := e.m.Links(ctx); return err }},
		{"Block", func() error { return e.m.Block(ctx) }},
		{"Unblock", func() error { return e.m.Unblock(ctx) }},
		{"ForwardPort", func() error { return e.m.ForwardPort(ctx, 8080, 80) }},
	}
	for _, c := range calls {
		err := c.fn()
		if !errors.Is(err, backend.ErrUnsupported) {
			t.Errorf("%s: err = %v, want ErrUnsupported", c.name, err)
		}
		wantErrContains(t, err, "the mock backend cannot do this")
	}
}

func TestLinksAfterCrash(t *testing.T) {
	e := started(t, withLinks(twoVLANs...))
	ctx := testCtx(t)
	e.guest().Crash(nil)
	<-e.guest().Done()
	if err := e.m.Block(ctx); !errors.Is(err, backend.ErrExited) {
		t.Errorf("Block after a crash = %v, want ErrExited", err)
	}
}
