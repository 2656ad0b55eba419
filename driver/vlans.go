package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/vlan"
)

// vlanSet is the run's virtual networks: one switch per configured VLAN
// and a watcher per switch that reports a switch dying mid-run.
type vlanSet struct {
	switches []*vlan.Switch // sorted by number
	stop     chan struct{}  // closed when the run stops its switches
	watchers sync.WaitGroup
}

// startVLANs starts a switch per configured VLAN, in parallel, in the run
// directory. On error none is left running.
func (d *Driver) startVLANs(ctx context.Context) error {
	nrs := slices.Clone(d.cfg.VLANs)
	slices.Sort(nrs)
	nrs = slices.Compact(nrs)
	if len(nrs) == 0 {
		return nil
	}
	end := d.log.Nested("", "start all VLans")
	switches := make([]*vlan.Switch, len(nrs))
	errs := make([]error, len(nrs))
	var g errgroup.Group
	for i, nr := range nrs {
		g.Go(func() error {
			switches[i], errs[i] = vlan.Start(ctx, nr, d.runDir, vlan.WithLogf(d.debugf))
			return nil
		})
	}
	g.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, s := range switches {
			if s != nil {
				s.Close()
			}
		}
		end(err)
		return fmt.Errorf("starting the VLAN switches: %w", err)
	}
	for _, s := range switches {
		d.log.Info("", fmt.Sprintf("vlan %d: vde_switch pid %d, %s", s.Nr(), s.PID(), s.Env()))
	}
	d.vlans.switches = switches
	d.vlans.stop = make(chan struct{})
	for _, s := range switches {
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

// stopVLANs stops the watchers, then the switches.
func (d *Driver) stopVLANs() error {
	if d.vlans.stop == nil {
		return nil
	}
	close(d.vlans.stop)
	d.vlans.watchers.Wait()
	var (
		wg   sync.WaitGroup
		errs = make([]error, len(d.vlans.switches))
	)
	for i, s := range d.vlans.switches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// debugf logs a switch's chatter at debug level when the logger has one.
func (d *Driver) debugf(format string, args ...any) {
	if l, ok := d.log.(interface{ Debug(machine, msg string) }); ok {
		l.Debug("", fmt.Sprintf(format, args...))
	}
}

// VLANs returns the run's VLAN switches, sorted by number. Their Env is
// in every machine's hypervisor environment.
func (d *Driver) VLANs() []*vlan.Switch {
	return slices.Clone(d.vlans.switches)
}

// vlanEnv is QEMU_VDE_SOCKET_<n>=<dir> for every VLAN.
func (d *Driver) vlanEnv() []string {
	env := make([]string, 0, len(d.vlans.switches))
	for _, s := range d.vlans.switches {
		env = append(env, s.Env())
	}
	return env
}
