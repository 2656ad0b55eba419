package machine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
)

// ErrNoVLAN is wrapped by the errors of Block and Unblock on a machine
// that has no VLAN network link (only the user-mode network, or none).
var ErrNoVLAN = errors.New("machine has no VLAN network link")

// Links lists the machine's network links (starting the machine if
// needed): VLAN 0 is the user-mode (NAT) network, the others are the
// virtual LANs shared with other machines.
func (m *Machine) Links(ctx context.Context) ([]backend.Link, error) {
	if err := m.beforeCommand(ctx); err != nil {
		return nil, err
	}
	lc, _, err := capability[backend.LinkController](ctx, m, "list network links")
	if err != nil {
		return nil, err
	}
	ls, err := lc.Links(ctx)
	if err != nil {
		return nil, m.backendError("listing network links", err)
	}
	return m.ownMACs(ls), nil
}

// ownMACs corrects the VLAN MACs of a restored machine: the hypervisor
// reports the MACs its command line gave (the original's), while the
// clone's guest uses its own node number's.
func (m *Machine) ownMACs(ls []backend.Link) []backend.Link {
	if m.node == 0 {
		return ls
	}
	for i, l := range ls {
		if vlan, _, ok := vlanMAC(l.MAC); ok && l.VLAN != 0 {
			ls[i].MAC = nodeMAC(vlan, m.node)
		}
	}
	return ls
}

// Block unplugs the cable of every VLAN link of the machine, so the
// other machines can no longer reach it; the user-mode network (VLAN 0)
// stays up. Unlike the NixOS driver, which cuts only the first VLAN NIC
// (virtio-net-pci.1), it cuts all of them, so a machine on several VLANs
// is really isolated. A machine without VLAN links is an error wrapping
// ErrNoVLAN.
func (m *Machine) Block(ctx context.Context) error {
	return m.setVLANLinks(ctx, false)
}

// Unblock plugs the cable of every VLAN link back in (see Block).
func (m *Machine) Unblock(ctx context.Context) error {
	return m.setVLANLinks(ctx, true)
}

// setVLANLinks sets every VLAN link up or down. It tries every link even
// when one fails and reports all failures.
func (m *Machine) setVLANLinks(ctx context.Context, up bool) error {
	what, verb := "block", "unplugging"
	if up {
		what, verb = "unblock", "plugging in"
	}
	if err := m.beforeCommand(ctx); err != nil {
		return err
	}
	lc, _, err := capability[backend.LinkController](ctx, m, what)
	if err != nil {
		return err
	}
	all, err := lc.Links(ctx)
	if err != nil {
		return m.backendError(what+": listing network links", err)
	}
	var vlans []backend.Link
	for _, l := range all {
		if l.VLAN != 0 {
			vlans = append(vlans, l)
		}
	}
	if len(vlans) == 0 {
		return fmt.Errorf("machine %s: %s: %w (its links: %s); put it on a VLAN (virtualisation.vlans) to cut it off from the others",
			m.name, what, ErrNoVLAN, describeLinks(all))
	}
	return m.Nested(fmt.Sprintf("%s the network cable of %s", verb, describeLinks(vlans)), func() error {
		var errs []error
		for _, l := range vlans {
			if err := lc.SetLink(ctx, l.Name, up); err != nil {
				errs = append(errs, m.backendError(fmt.Sprintf("%s: link %s (vlan %d)", what, l.Name, l.VLAN), err))
			}
		}
		return errors.Join(errs...)
	})
}

// describeLinks lists links for messages: "virtio-net-pci.1 (vlan 1)".
func describeLinks(ls []backend.Link) string {
	if len(ls) == 0 {
		return "none"
	}
	parts := make([]string, len(ls))
	for k, l := range ls {
		if l.VLAN == 0 {
			parts[k] = l.Name + " (user-mode network)"
		} else {
			parts[k] = fmt.Sprintf("%s (vlan %d)", l.Name, l.VLAN)
		}
	}
	return strings.Join(parts, ", ")
}

// ForwardPort forwards TCP port hostPort on the host to guestPort in the
// guest through the user-mode network (for interactive use, as the NixOS
// driver's forward_port; its defaults 8080 and 80 belong to the caller).
func (m *Machine) ForwardPort(ctx context.Context, hostPort, guestPort int) error {
	return m.Nested(fmt.Sprintf("forwarding host port %d to guest port %d", hostPort, guestPort), func() error {
		if err := m.beforeCommand(ctx); err != nil {
			return err
		}
		pf, _, err := capability[backend.PortForwarder](ctx, m, "forward port")
		if err != nil {
			return err
		}
		if err := pf.ForwardPort(ctx, hostPort, guestPort); err != nil {
			return m.backendError(fmt.Sprintf("forwarding host port %d to guest port %d", hostPort, guestPort), err)
		}
		return nil
	})
}
