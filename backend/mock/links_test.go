package mock

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
)

var testLinks = []backend.Link{
	{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
	{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:02", Up: true},
	{Name: "virtio-net-pci.2", VLAN: 3, MAC: "52:54:00:12:03:02", Up: false},
}

func TestLinks(t *testing.T) {
	in, g := start(t, backend.Spec{}, WithGuest(func(_ string, g *Guest) { g.SetLinks(testLinks...) }))
	ctx := testCtx(t)
	ls, err := in.Links(ctx)
	if err != nil || !slices.Equal(ls, testLinks) {
		t.Fatalf("Links = %+v, %v", ls, err)
	}
	if err := in.SetLink(ctx, "virtio-net-pci.1", false); err != nil {
		t.Fatal(err)
	}
	if err := in.SetLink(ctx, "virtio-net-pci.2", true); err != nil {
		t.Fatal(err)
	}
	err = in.SetLink(ctx, "eth1", false)
	if err == nil || !strings.Contains(err.Error(), `no network link "eth1"`) || !strings.Contains(err.Error(), "virtio-net-pci.2 (vlan 3)") {
		t.Errorf("SetLink(eth1) = %v", err)
	}
	ls, _ = in.Links(ctx)
	if ls[1].Up || !ls[2].Up || !ls[0].Up {
		t.Errorf("links after SetLink: %+v", ls)
	}
	want := []LinkCall{{"virtio-net-pci.1", false}, {"virtio-net-pci.2", true}}
	if got := g.LinkCalls(); !slices.Equal(got, want) {
		t.Errorf("LinkCalls = %+v, want %+v", got, want)
	}
	// The caller's slice is not the guest's.
	ls[0].Up = false
	if !g.Links()[0].Up {
		t.Error("Links returned the guest's own slice")
	}
}

func TestDefaultLinks(t *testing.T) {
	in, _ := start(t, backend.Spec{})
	ls, err := in.Links(testCtx(t))
	if err != nil || !slices.Equal(ls, DefaultLinks) {
		t.Errorf("Links = %+v, %v; want %+v", ls, err, DefaultLinks)
	}
}

func TestForwardPort(t *testing.T) {
	tests := []struct {
		name        string
		links       []backend.Link
		host, gst   int
		want        string
		unsupported bool
	}{
		{name: "ok", links: DefaultLinks, host: 8080, gst: 80},
		{name: "host port taken", links: DefaultLinks, host: 2222, gst: 80, want: "already forwarded"},
		{name: "bad host port", links: DefaultLinks, host: 0, gst: 80, want: "host port 0 is not a TCP port"},
		{name: "bad guest port", links: DefaultLinks, host: 1, gst: 65536, want: "guest port 65536 is not a TCP port"},
		{name: "no user network", links: testLinks[1:], host: 8080, gst: 80, want: "no user-mode network", unsupported: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, g := start(t, backend.Spec{}, WithGuest(func(_ string, g *Guest) { g.SetLinks(tt.links...) }))
			ctx := testCtx(t)
			if err := in.ForwardPort(ctx, 2222, 22); err != nil && tt.links[0].VLAN == 0 {
				t.Fatal(err)
			}
			err := in.ForwardPort(ctx, tt.host, tt.gst)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				want := []PortForward{{2222, 22}, {tt.host, tt.gst}}
				if got := g.ForwardedPorts(); !slices.Equal(got, want) {
					t.Errorf("ForwardedPorts = %+v, want %+v", got, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ForwardPort = %v, want %q", err, tt.want)
			}
			if errors.Is(err, backend.ErrUnsupported) != tt.unsupported {
				t.Errorf("errors.Is(%v, ErrUnsupported) != %v", err, tt.unsupported)
			}
		})
	}
}

func TestLinksAfterExit(t *testing.T) {
	in, g := start(t, backend.Spec{})
	ctx := testCtx(t)
	g.Crash(nil)
	<-in.Done()
	if _, err := in.Links(ctx); !errors.Is(err, backend.ErrExited) {
		t.Errorf("Links = %v", err)
	}
	if err := in.SetLink(ctx, "virtio-net-pci.0", false); !errors.Is(err, backend.ErrExited) {
		t.Errorf("SetLink = %v", err)
	}
	if err := in.ForwardPort(ctx, 8080, 80); !errors.Is(err, backend.ErrExited) {
		t.Errorf("ForwardPort = %v", err)
	}
}
