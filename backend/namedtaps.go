package backend

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// NamedTAP is one VLAN NIC of a machine on a TAP device its hypervisor
// opens by name.
type NamedTAP struct {
	// Index is the NIC's index in the machine's description.
	Index int
	// NIC is the description's NIC.
	NIC NICDescription
	// Device is the TAP device's name.
	Device string
}

// LinkName is the NIC's name in Links: eth<Index>, the guest's name for
// it when the description's NICs are all there.
func (t NamedTAP) LinkName() string { return fmt.Sprintf("eth%d", t.Index) }

// NamedTAPs are the TAP devices of one hypervisor process that opens
// them by name (Firecracker, cloud-hypervisor): created on Spec.TAPs for
// every VLAN NIC of the machine's description before the process starts,
// which Start runs inside the TAP networks' namespace, and removed by
// Remove once it has ended. They also give the machine link control: a
// link set down is its TAP device down, which the bridge then ignores.
type NamedTAPs struct {
	nets TAPNetworks
	taps []NamedTAP

	mu      sync.Mutex
	down    map[string]bool
	removed bool
}

// CreateNamedTAPs creates the TAP devices of desc's VLAN NICs for the
// hypervisor named hypervisor. NICs on VLAN 0 (user-mode networking,
// which such hypervisors lack) get none. A VLAN NIC without TAP networks
// is ErrUnsupported, saying to use them.
func CreateNamedTAPs(spec Spec, desc *Description, hypervisor string) (_ *NamedTAPs, err error) {
	t := &NamedTAPs{nets: spec.TAPs, down: map[string]bool{}}
	defer func() {
		if err != nil {
			t.Remove()
		}
	}()
	for i, nic := range desc.NICs {
		if nic.VLAN == 0 {
			continue
		}
		if spec.TAPs == nil {
			return nil, Unsupported(fmt.Sprintf("%s's NIC %d is on VLAN %d, but the machine has no TAP networks: VDE switches are unsupported by %s, whose VLAN NICs are TAP devices; start the driver with --net tap (and --vlans including %d)", spec.Name, i, nic.VLAN, hypervisor, nic.VLAN))
		}
		dev, err := spec.TAPs.CreateTAP(spec.Name, nic.VLAN)
		if err != nil {
			return nil, err
		}
		t.taps = append(t.taps, NamedTAP{Index: i, NIC: nic, Device: dev})
	}
	return t, nil
}

// List returns the NICs and their devices, in description order.
func (t *NamedTAPs) List() []NamedTAP { return slices.Clone(t.taps) }

// Start runs start, which starts the hypervisor process, inside the TAP
// networks' namespace when the machine has TAP devices (so the process
// finds them by name), else where the caller is.
func (t *NamedTAPs) Start(start func() error) error {
	if len(t.taps) == 0 || t.nets == nil {
		return start()
	}
	return t.nets.Do(start)
}

// Remove removes the devices; call it once the hypervisor has ended. It
// may be called more than once.
func (t *NamedTAPs) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.removed {
		return nil
	}
	t.removed = true
	var errs []error
	for _, tap := range t.taps {
		errs = append(errs, t.nets.RemoveTAP(tap.Device))
	}
	return errors.Join(errs...)
}

// Links lists the VLAN NICs as links, with the state SetLink gave them.
func (t *NamedTAPs) Links() []Link {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Link, len(t.taps))
	for k, tap := range t.taps {
		out[k] = Link{Name: tap.LinkName(), VLAN: tap.NIC.VLAN, MAC: tap.NIC.MAC, Up: !t.down[tap.Device]}
	}
	return out
}

// SetLink brings the NIC called name (a Links name or its device) up or
// down.
func (t *NamedTAPs) SetLink(name string, up bool) error {
	i := slices.IndexFunc(t.taps, func(tap NamedTAP) bool { return tap.LinkName() == name || tap.Device == name })
	if i < 0 {
		names := make([]string, len(t.taps))
		for k, tap := range t.taps {
			names[k] = fmt.Sprintf("%s (vlan %d, %s)", tap.LinkName(), tap.NIC.VLAN, tap.Device)
		}
		if len(names) == 0 {
			names = []string{"none"}
		}
		return fmt.Errorf("no network link %q; its links are: %s", name, fmt.Sprint(names))
	}
	dev := t.taps[i].Device
	if err := t.nets.SetLink(dev, up); err != nil {
		return err
	}
	t.mu.Lock()
	t.down[dev] = !up
	t.mu.Unlock()
	return nil
}
