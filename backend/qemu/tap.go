package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/vmdriver/vmdriver/backend"
)

// tapScriptMarker is the variable a start script reads to put a VLAN NIC
// on an inherited TAP device; scripts without it (nixpkgs', or built by
// a vmdriver before TAP networks) only know VDE switches.
const tapScriptMarker = "QEMU_TAP_FD_"

// tapPlan is the TAP devices of one QEMU start: one per VLAN NIC of the
// machine's description, inherited by QEMU from fd first on.
type tapPlan struct {
	files []*os.File
	// fds maps the description's NIC index to QEMU's descriptor.
	fds map[int]int
	// env is QEMU_TAP_FD_<vlan>=<fd> per NIC, for start scripts.
	env []string
	// names are the devices, for the log.
	names []string
}

// machineDescription loads the description of spec's machine when the
// start needs it: always for microvm (QEMU's command line is built from
// it), and for TAP networks (its VLAN NICs), where a start script must
// also be one that takes TAP devices. Otherwise it returns nil.
func machineDescription(spec backend.Spec, microvm bool) (*backend.Description, error) {
	descPath := backend.DescriptionPath(spec.StartScript)
	switch {
	case microvm:
	case spec.TAPs == nil:
		return nil, nil
	default:
		script, err := os.ReadFile(spec.StartScript)
		if err != nil {
			return nil, fmt.Errorf("start script: %w", err)
		}
		if !bytes.Contains(script, []byte(tapScriptMarker)) {
			return nil, fmt.Errorf("start script %s cannot put its NICs on TAP devices (it does not read %s<n>; only scripts from `vmdriver image build` do): use VDE switches (--net vde), or rebuild the machine with vmdriver image build", spec.StartScript, tapScriptMarker)
		}
		if _, err := os.Stat(descPath); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("TAP networks need the machine's description %s beside its start script, to know its VLAN NICs: rebuild the machine with vmdriver image build, or use VDE switches (--net vde)", descPath)
		}
	}
	return backend.LoadDescription(descPath)
}

// openTAPs opens a TAP device on spec.TAPs for every VLAN NIC of desc
// (machineDescription's). QEMU gets them as descriptors first, first+1,
// ...; a start script finds each in QEMU_TAP_FD_<vlan>. Without TAP
// networks it returns an empty plan.
func openTAPs(spec backend.Spec, desc *backend.Description, microvm bool, first int) (p tapPlan, err error) {
	if spec.TAPs == nil {
		return tapPlan{}, nil
	}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	p.fds = map[int]int{}
	seen := map[int]bool{}
	for i, nic := range desc.NICs {
		if nic.VLAN == 0 {
			continue
		}
		if seen[nic.VLAN] && !microvm {
			return p, fmt.Errorf("%s has two NICs on VLAN %d: a start script takes one TAP device per VLAN", desc.Name, nic.VLAN)
		}
		seen[nic.VLAN] = true
		f, name, err := spec.TAPs.OpenTAP(spec.Name, nic.VLAN)
		if err != nil {
			return p, err
		}
		fd := first + len(p.files)
		p.files = append(p.files, f)
		p.fds[i] = fd
		p.env = append(p.env, fmt.Sprintf("%s%d=%d", tapScriptMarker, nic.VLAN, fd))
		p.names = append(p.names, fmt.Sprintf("%s (vlan %d, fd %d)", name, nic.VLAN, fd))
	}
	return p, nil
}

// close closes the driver's copies of the devices: after QEMU started,
// its own keep them; before, the devices go.
func (p tapPlan) close() {
	for _, f := range p.files {
		f.Close()
	}
}
