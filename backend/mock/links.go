package mock

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vmdriver/vmdriver/backend"
)

// DefaultLinks are a new guest's network links: eth0 on the user-mode
// network, restricted as the project's start scripts make it, and no
// VLAN link. Guest.SetLinks replaces them.
var DefaultLinks = []backend.Link{
	{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true, Restricted: true},
}

// LinkCall is one recorded successful SetLink call.
type LinkCall struct {
	Name string
	Up   bool
}

// PortForward is one recorded successful ForwardPort call.
type PortForward struct {
	HostPort, GuestPort int
}

// netState is a guest's network links, the addresses of its interfaces
// and its port forwards. Link i is the guest's interface eth<i>; its MAC
// is the interface's.
type netState struct {
	mu       sync.Mutex
	links    []backend.Link
	addrs    [][]netip.Prefix // addrs[i]: eth<i>'s addresses
	lo       []netip.Prefix
	calls    []LinkCall
	forwards []PortForward
}

func newNetState() *netState {
	n := &netState{}
	n.setLinksLocked(DefaultLinks)
	return n
}

// setLinksLocked replaces the links and gives every interface the
// addresses NixOS would configure for it.
func (n *netState) setLinksLocked(links []backend.Link) {
	n.links = slices.Clone(links)
	n.addrs = make([][]netip.Prefix, len(links))
	for i, l := range links {
		n.addrs[i] = defaultAddrs(l)
	}
	n.lo = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8"), netip.MustParsePrefix("::1/128")}
}

// SetLinks replaces the guest's network links (call it from the WithGuest
// callback for the first boot). Their Up fields are the initial states.
// Link i is the guest's eth<i>, with the addresses NixOS gives it: the
// user-mode link (VLAN 0) has 10.0.2.15/24; a link whose MAC is
// 52:54:00:12:VV:NN has 192.168.VV.NN/24 and 2001:db8:VV::NN/64 (VV and NN
// in decimal); every link has its EUI-64 link-local fe80:: address.
func (g *Guest) SetLinks(links ...backend.Link) {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	g.net.setLinksLocked(links)
}

// Links returns the guest's network links with their current state.
func (g *Guest) Links() []backend.Link {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	return slices.Clone(g.net.links)
}

// LinkCalls returns every successful SetLink call, in order.
func (g *Guest) LinkCalls() []LinkCall {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	return slices.Clone(g.net.calls)
}

// ForwardedPorts returns every successful ForwardPort call, in order.
func (g *Guest) ForwardedPorts() []PortForward {
	g.net.mu.Lock()
	defer g.net.mu.Unlock()
	return slices.Clone(g.net.forwards)
}

// Links returns the guest's network links (Guest.SetLinks).
func (in *Instance) Links(ctx context.Context) ([]backend.Link, error) {
	if in.exited() {
		return nil, in.exitedError()
	}
	return in.guest.Links(), nil
}

// SetLink sets the named link's state and records the call; an unknown
// name is an error that lists the links.
func (in *Instance) SetLink(ctx context.Context, name string, up bool) error {
	if in.exited() {
		return in.exitedError()
	}
	n := in.guest.net
	n.mu.Lock()
	defer n.mu.Unlock()
	k := slices.IndexFunc(n.links, func(l backend.Link) bool { return l.Name == name })
	if k < 0 {
		names := make([]string, len(n.links))
		for j, l := range n.links {
			names[j] = fmt.Sprintf("%s (vlan %d)", l.Name, l.VLAN)
		}
		list := strings.Join(names, ", ")
		if list == "" {
			list = "none"
		}
		return fmt.Errorf("mock: %s: no network link %q; its links are: %s", in.spec.Name, name, list)
	}
	n.links[k].Up = up
	n.calls = append(n.calls, LinkCall{Name: name, Up: up})
	return nil
}

// ForwardPort records a forward like QEMU's hostfwd_add: it needs a
// user-mode link (VLAN 0), and a host port can be forwarded only once.
func (in *Instance) ForwardPort(ctx context.Context, hostPort, guestPort int) error {
	if in.exited() {
		return in.exitedError()
	}
	for _, p := range []struct {
		which string
		port  int
	}{{"host", hostPort}, {"guest", guestPort}} {
		if p.port < 1 || p.port > 65535 {
			return fmt.Errorf("mock: %s: %s port %d is not a TCP port (1-65535)", in.spec.Name, p.which, p.port)
		}
	}
	n := in.guest.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.ContainsFunc(n.links, func(l backend.Link) bool { return l.VLAN == 0 }) {
		return fmt.Errorf("mock: %s: there is no user-mode network to forward host port %d through: %w", in.spec.Name, hostPort, backend.ErrUnsupported)
	}
	if slices.ContainsFunc(n.forwards, func(f PortForward) bool { return f.HostPort == hostPort }) {
		return fmt.Errorf("mock: %s: could not set up host forwarding rule 'tcp::%d-:%d': host port %d is already forwarded", in.spec.Name, hostPort, guestPort, hostPort)
	}
	n.forwards = append(n.forwards, PortForward{HostPort: hostPort, GuestPort: guestPort})
	return nil
}
