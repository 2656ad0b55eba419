package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/vlan"
)

// VLAN is one of the run's virtual networks, as scripts see it (the
// NixOS driver's VLan: nr, socket_dir, pid).
type VLAN struct {
	// Nr is the VLAN's number (1–255).
	Nr int
	// Kind is backend.VDE or backend.TAP.
	Kind string
	// SocketDir is the VDE switch's control directory (VDE networks).
	SocketDir string
	// PID is the VDE switch's process (VDE networks).
	PID int
	// Bridge is the VLAN's Linux bridge inside the run's network
	// namespace (TAP networks).
	Bridge string
}

// networks is one set of the configured VLANs: VDE switches or TAP
// bridges. The run has one; each forked subtest gets its own.
type networks struct {
	switches []*vlan.Switch // VDE, sorted by number
	bridges  *vlan.Bridges  // TAP
}

// machineOptions connect a machine's VLAN NICs to these networks.
func (n *networks) machineOptions() []machine.Option {
	if n.bridges != nil {
		return []machine.Option{machine.WithTAPs(n.bridges)}
	}
	env := make([]string, 0, len(n.switches))
	for _, s := range n.switches {
		env = append(env, s.Env())
	}
	return []machine.Option{machine.WithEnv(env...)}
}

// close stops the switches or removes the bridges' namespace.
func (n *networks) close() error {
	if n.bridges != nil {
		return n.bridges.Close()
	}
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(n.switches))
	)
	for i, s := range n.switches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// vlanSet is the run's virtual networks and a watcher per VDE switch that
// reports a switch dying mid-run.
type vlanSet struct {
	nets     networks
	stop     chan struct{} // closed when the run stops its switches
	watchers sync.WaitGroup
}

// networkKind decides the kind of the run's VLANs: the configured one if
// the backend takes it, else the backend's preferred one.
func (d *Driver) networkKind() (string, error) {
	kinds := backend.NetworkKinds(d.backend)
	if d.cfg.Network == "" {
		return kinds[0], nil
	}
	if !slices.Contains(kinds, d.cfg.Network) {
		return "", fmt.Errorf("%s networks are unsupported by %s: its VLAN NICs take %s (--net %s)", d.cfg.Network, d.backend.Name(), strings.Join(kinds, " or "), kinds[0])
	}
	return d.cfg.Network, nil
}

// startNetworks starts one network per configured VLAN, of the run's
// kind; VDE switches get their control directories in dir. On error none
// is left.
func (d *Driver) startNetworks(ctx context.Context, dir string) (networks, error) {
	nrs := slices.Clone(d.cfg.VLANs)
	slices.Sort(nrs)
	nrs = slices.Compact(nrs)
	var n networks
	if len(nrs) == 0 {
		return n, nil
	}
	if d.netKind == backend.TAP {
		b, err := vlan.StartBridges(nrs)
		if err != nil {
			return n, err
		}
		n.bridges = b
		return n, nil
	}
	switches := make([]*vlan.Switch, len(nrs))
	errs := make([]error, len(nrs))
	var g errgroup.Group
	for i, nr := range nrs {
		g.Go(func() error {
			switches[i], errs[i] = vlan.Start(ctx, nr, dir, vlan.WithLogf(d.debugf))
			return nil
		})
	}
	g.Wait()
	for _, s := range switches {
		if s != nil {
			n.switches = append(n.switches, s)
		}
	}
	if err := errors.Join(errs...); err != nil {
		n.close()
		return networks{}, err
	}
	return n, nil
}

// startVLANs starts the run's networks.
func (d *Driver) startVLANs(ctx context.Context) error {
	if len(d.cfg.VLANs) == 0 {
		return nil
	}
	end := d.log.Nested("", "start all VLans")
	n, err := d.startNetworks(ctx, d.runDir)
	if err != nil {
		end(err)
		return fmt.Errorf("starting the VLANs: %w", err)
	}
	for _, s := range n.switches {
		d.log.Info("", fmt.Sprintf("vlan %d: vde_switch pid %d, %s", s.Nr(), s.PID(), s.Env()))
	}
	if n.bridges != nil {
		d.log.Info("", n.bridges.String())
	}
	d.vlans.nets = n
	d.vlans.stop = make(chan struct{})
	for _, s := range n.switches {
		d.vlans.watchers.Add(1)
		go d.watchVLAN(s)
	}
	end(nil)
	return nil
}

// watchVLAN logs the switch's death unless the run stops first. The
// machines on that network are not stopped: their commands fail or time
// out on their own, and the script's error says so.
func (d *Driver) watchVLAN(s *vlan.Switch) {
	defer d.vlans.watchers.Done()
	select {
	case <-s.Done():
		if err := s.Err(); err != nil {
			d.log.Warn("", fmt.Sprintf("%v; machines on VLAN %d have lost that network", err, s.Nr()))
		}
	case <-d.vlans.stop:
	}
}

// stopVLANs stops the watchers, then the networks.
func (d *Driver) stopVLANs() error {
	if d.vlans.stop == nil {
		return nil
	}
	close(d.vlans.stop)
	d.vlans.watchers.Wait()
	return d.vlans.nets.close()
}

// debugf logs a switch's chatter at debug level when the logger has one.
func (d *Driver) debugf(format string, args ...any) {
	if l, ok := d.log.(interface{ Debug(machine, msg string) }); ok {
		l.Debug("", fmt.Sprintf(format, args...))
	}
}

// VLANs returns the run's VLANs, sorted by number.
func (d *Driver) VLANs() []VLAN {
	n := &d.vlans.nets
	var out []VLAN
	for _, s := range n.switches {
		out = append(out, VLAN{Nr: s.Nr(), Kind: backend.VDE, SocketDir: s.SocketDir(), PID: s.PID()})
	}
	if n.bridges != nil {
		for _, nr := range n.bridges.VLANs() {
			out = append(out, VLAN{Nr: nr, Kind: backend.TAP, Bridge: vlan.BridgeName(nr)})
		}
	}
	return out
}

// Switches returns the run's VDE switches, sorted by number (none on TAP
// networks).
func (d *Driver) Switches() []*vlan.Switch {
	return slices.Clone(d.vlans.nets.switches)
}

// Bridges returns the run's TAP networks, or nil on VDE networks.
func (d *Driver) Bridges() *vlan.Bridges { return d.vlans.nets.bridges }
