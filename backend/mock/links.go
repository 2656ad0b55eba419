package mock

import (
	"context"
	"fmt"
	"slices"
	"strings"

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

// SetLinks replaces the guest's network links (call it from the WithGuest
// callback for the first boot). Their Up fields are the initial states.
func (g *Guest) SetLinks(links ...backend.Link) { g.set(func() { g.links = slices.Clone(links) }) }

// Links returns the guest's network links with their current state.
func (g *Guest) Links() []backend.Link {
	return locked(g, func() []backend.Link { return slices.Clone(g.links) })
}

// LinkCalls returns every successful SetLink call, in order.
func (g *Guest) LinkCalls() []LinkCall {
	return locked(g, func() []LinkCall { return slices.Clone(g.calls) })
}

// ForwardedPorts returns every successful ForwardPort call, in order.
func (g *Guest) ForwardedPorts() []PortForward {
	return locked(g, func() []PortForward { return slices.Clone(g.forwards) })
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
	g := in.guest
	g.mu.Lock()
	defer g.mu.Unlock()
	k := slices.IndexFunc(g.links, func(l backend.Link) bool { return l.Name == name })
	if k < 0 {
		names := make([]string, len(g.links))
		for j, l := range g.links {
			names[j] = fmt.Sprintf("%s (vlan %d)", l.Name, l.VLAN)
		}
		list := strings.Join(names, ", ")
		if list == "" {
			list = "none"
		}
		return fmt.Errorf("mock: no network link %q; its links are: %s", name, list)
	}
	g.links[k].Up = up
	g.calls = append(g.calls, LinkCall{Name: name, Up: up})
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
			return fmt.Errorf("mock: %s port %d is not a TCP port (1-65535)", p.which, p.port)
		}
	}
	g := in.guest
	g.mu.Lock()
	defer g.mu.Unlock()
	if !slices.ContainsFunc(g.links, func(l backend.Link) bool { return l.VLAN == 0 }) {
		return fmt.Errorf("mock: there is no user-mode network to forward host port %d through: %w", hostPort, backend.ErrUnsupported)
	}
	if slices.ContainsFunc(g.forwards, func(f PortForward) bool { return f.HostPort == hostPort }) {
		return fmt.Errorf("mock: could not set up host forwarding rule 'tcp::%d-:%d': host port %d is already forwarded", hostPort, guestPort, hostPort)
	}
	g.forwards = append(g.forwards, PortForward{HostPort: hostPort, GuestPort: guestPort})
	return nil
}
