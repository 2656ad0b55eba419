package vmtest

import (
	"slices"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/images"
)

func TestParseNodes(t *testing.T) {
	tests := []struct {
		nodes []string
		names []string
		vlans []int
		err   string
	}{
		{nodes: []string{"a"}, names: []string{"a"}},
		{nodes: []string{"server:2", "client:1,2"}, names: []string{"server", "client"}, vlans: []int{1, 2}},
		{nodes: []string{"a:1,"}, names: []string{"a"}, vlans: []int{1}},
		{nodes: nil, err: "at least one node"},
		{nodes: []string{"a", "a:1"}, err: `node "a:1": want a unique NAME`},
		{nodes: []string{":1"}, err: `node ":1": want a unique NAME`},
		{nodes: []string{"a:x"}, err: `VLAN "x" is not a positive number`},
		{nodes: []string{"a:0"}, err: `VLAN "0" is not a positive number`},
	}
	for _, tt := range tests {
		names, vlans, err := parseNodes(tt.nodes)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseNodes(%q) = %v, want an error containing %q", tt.nodes, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(names, tt.names) || !slices.Equal(vlans, tt.vlans) {
			t.Errorf("parseNodes(%q) = %q, %v, %v; want %q, %v", tt.nodes, names, vlans, err, tt.names, tt.vlans)
		}
	}
}

func TestBadOptions(t *testing.T) {
	c := &config{}
	for _, o := range []Option{WithName(""), WithName("a:1"), WithBackend(nil), WithCacheDir(""), WithPackages()} {
		if err := o(c); err == nil {
			t.Errorf("option accepted a bad value: %+v", c)
		}
	}
}

// TestMinimal boots the minimal guest in one call.
func TestMinimal(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	m := Minimal(t, WithName("tiny"))
	out, err := m.Succeed(t.Context(), "hostname")
	if err != nil {
		t.Fatal(err)
	}
	if out != "tiny\n" {
		t.Errorf("hostname = %q, want tiny", out)
	}
}

// TestNetwork: two nodes on a VLAN of their own reach each other by the
// addresses the image plan gives them (nodes numbered by sorted name).
func TestNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	ms := Network(t, images.Minimal, []string{"server:1", "client:1"})
	// Before any packet: the client cannot reach the host's networks, by
	// QEMU's report and its own.
	links, err := ms["client"].Links(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.VLAN == 0 && !l.Restricted {
			t.Fatalf("client's user-mode link %s is not restricted", l.Name)
		}
	}
	routes, err := ms["client"].Succeed(t.Context(), "ip route; ip -6 route")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range strings.Split(routes, "\n") {
		if strings.HasPrefix(r, "default") {
			t.Fatalf("client has a default route: %q", r)
		}
	}
	// client is node 1, server node 2.
	if _, err := ms["client"].Succeed(t.Context(), "ping -c 1 -W 10 192.168.1.2"); err != nil {
		t.Fatal(err)
	}
	if out, err := ms["server"].Succeed(t.Context(), "ip -o -4 addr show dev eth1"); err != nil || !strings.Contains(out, "192.168.1.2/24") {
		t.Errorf("server's eth1: %q, %v", out, err)
	}
}
