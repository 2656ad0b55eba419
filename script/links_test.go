package script_test

import (
	"slices"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
)

// vlanGuest puts every guest on VLANs 1 and 2 besides the user-mode
// network, as a NixOS node 1 with virtualisation.vlans = [ 1 2 ].
func vlanGuest(_ string, g *mock.Guest) {
	g.SetLinks(
		backend.Link{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true, Restricted: true},
		backend.Link{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:01", Up: true},
		backend.Link{Name: "virtio-net-pci.2", VLAN: 2, MAC: "52:54:00:12:02:01", Up: true},
	)
}

// TestLinkMethods checks block, unblock, links and forward_port.
func TestLinkMethods(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, e *env)
	}{
		{"links", lines(
			`ls = server.links()`,
			`assert type(ls) == "list"`,
			`assert [l["vlan"] for l in ls] == [0, 1, 2], ls`,
			`assert ls[1] == {"name": "virtio-net-pci.1", "vlan": 1, "mac": "52:54:00:12:01:01", "up": True, "restricted": False}, ls[1]`,
			`assert [l["restricted"] for l in ls] == [True, False, False], ls`,
			`assert all([l["up"] for l in ls])`,
		), nil},
		{"block and unblock", lines(
			`server.block()`,
			`ls = server.links()`,
			`assert [l["up"] for l in ls] == [True, False, False], ls`,
			`server.unblock()`,
			`assert [l["up"] for l in server.links()] == [True, True, True]`,
		), func(t *testing.T, e *env) {
			want := []mock.LinkCall{
				{Name: "virtio-net-pci.1", Up: false}, {Name: "virtio-net-pci.2", Up: false},
				{Name: "virtio-net-pci.1", Up: true}, {Name: "virtio-net-pci.2", Up: true},
			}
			if got := e.guest("server").LinkCalls(); !slices.Equal(got, want) {
				t.Errorf("SetLink calls %+v, want %+v", got, want)
			}
			got := e.log.All("open")
			want2 := []string{
				"open|server|unplugging the network cable of virtio-net-pci.1 (vlan 1), virtio-net-pci.2 (vlan 2)",
				"open|server|plugging in the network cable of virtio-net-pci.1 (vlan 1), virtio-net-pci.2 (vlan 2)",
			}
			if !containsInOrder(got, want2) {
				t.Errorf("log = %q, want in order %q", got, want2)
			}
		}},
		{"forward_port", lines(
			`server.forward_port()`,
			`server.forward_port(2222, 22)`,
			`server.forward_port(guest_port=443, host_port=8443)`,
			`server.forward_port(9090)`,
		), func(t *testing.T, e *env) {
			want := []mock.PortForward{{HostPort: 8080, GuestPort: 80}, {HostPort: 2222, GuestPort: 22}, {HostPort: 8443, GuestPort: 443}, {HostPort: 9090, GuestPort: 80}}
			if got := e.guest("server").ForwardedPorts(); !slices.Equal(got, want) {
				t.Errorf("forwards %+v, want %+v", got, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{machines: []string{"server"}, guest: vlanGuest})
			e.mustRun(tt.src)
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}
