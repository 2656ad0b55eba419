// Package faketap is a stand-in for a run's TAP networks (vlan.Bridges)
// in unit tests of backends: it records which devices a backend makes,
// opens, removes and sets down, and runs Do's function in place. It makes
// no device, so it needs no root.
package faketap

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
)

// Networks implements backend.TAPNetworks.
type Networks struct {
	mu      sync.Mutex
	created []string
	removed []string
	down    map[string]bool
	dos     int
	// Fail, when set, makes CreateTAP fail with it.
	Fail error
}

// CreateTAP names a device tap-MACHINE-VLAN and records it.
func (n *Networks) CreateTAP(machine string, vlan int) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.Fail != nil {
		return "", n.Fail
	}
	name := fmt.Sprintf("tap-%s-%d", machine, vlan)
	n.created = append(n.created, name)
	return name, nil
}

// OpenTAP is CreateTAP with /dev/null standing in for the device.
func (n *Networks) OpenTAP(machine string, vlan int) (*os.File, string, error) {
	name, err := n.CreateTAP(machine, vlan)
	if err != nil {
		return nil, "", err
	}
	f, err := os.Open(os.DevNull)
	return f, name, err
}

// RemoveTAP records the removal; a device never created is an error.
func (n *Networks) RemoveTAP(name string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Contains(n.created, name) || slices.Contains(n.removed, name) {
		return errors.New("faketap: removing " + name + ", which is not there")
	}
	n.removed = append(n.removed, name)
	return nil
}

// SetLink records the device's state.
func (n *Networks) SetLink(name string, up bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !slices.Contains(n.created, name) {
		return errors.New("faketap: no device " + name)
	}
	if n.down == nil {
		n.down = map[string]bool{}
	}
	n.down[name] = !up
	return nil
}

// Do runs f and counts the call.
func (n *Networks) Do(f func() error) error {
	n.mu.Lock()
	n.dos++
	n.mu.Unlock()
	return f()
}

// Created returns the devices made so far.
func (n *Networks) Created() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.created)
}

// Removed returns the devices removed so far.
func (n *Networks) Removed() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.removed)
}

// Down reports whether SetLink left name down.
func (n *Networks) Down(name string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down[name]
}

// Dos counts the calls of Do: the processes started inside.
func (n *Networks) Dos() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.dos
}
