package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/machine"
)

// suiteState is what ForkAll keeps between calls: one snapshot per
// machine that was running at the first call.
type suiteState struct {
	once  sync.Once
	err   error
	snaps map[string]*machine.Snapshot
}

// Fork snapshots m now and returns n new running machines restored from
// that snapshot, named <name>-1 … <name>-n (numbering continues across
// calls), each with its own host name, clock, machine-id, RNG state and,
// on each VLAN, the next free node number's MAC and addresses. m keeps
// running. The clones are released with the run.
func (d *Driver) Fork(ctx context.Context, m *machine.Machine, n int) ([]*machine.Machine, error) {
	if err := d.open(); err != nil {
		return nil, err
	}
	clones, err := m.Fork(ctx, n, d.cloneOptions()...)
	if err != nil {
		return nil, err
	}
	d.adopt(clones...)
	return clones, nil
}

// Snapshot saves m's state now under name (snap-<k> when empty).
func (d *Driver) Snapshot(ctx context.Context, m *machine.Machine, name string) (*machine.Snapshot, error) {
	if err := d.open(); err != nil {
		return nil, err
	}
	return m.Snapshot(ctx, name)
}

// Restore starts one new machine from snap (create_machine(snapshot=…)),
// with its own identity as Fork gives it. An empty name gets the next
// <origin>-<k>.
func (d *Driver) Restore(ctx context.Context, snap *machine.Snapshot, name string) (*machine.Machine, error) {
	if err := d.open(); err != nil {
		return nil, err
	}
	if snap == nil {
		return nil, errors.New("restore: no snapshot given")
	}
	if name == "" {
		origin := d.Machine(snap.Machine())
		if origin == nil {
			for _, m := range d.allMachines() {
				if m.Name() == snap.Machine() {
					origin = m
				}
			}
		}
		if origin == nil {
			return nil, fmt.Errorf("restore: the machine %s that snapshot %s was taken from is not part of this run", snap.Machine(), snap.Name())
		}
		name = origin.CloneName()
	}
	if d.nameTaken(name) {
		return nil, fmt.Errorf("restore: a machine named %q exists already; choose another name", name)
	}
	m, err := machine.Restore(ctx, snap, name, d.cloneOptions()...)
	if err != nil {
		return nil, err
	}
	d.adopt(m)
	return m, nil
}

// ForkAll gives a forked subtest its own copy of every machine of the
// run. Each machine that is running is snapshotted (once per driver, on
// the first call; later calls reuse those snapshots) and restored as a
// clone that keeps the original's host name and addresses, on VLAN
// switches of its own so that subtests cannot reach each other; a machine
// never started becomes a fresh, unstarted machine of the same start
// script. The map is keyed by the original machine's name. Clones log to
// log. release closes every machine and switch ForkAll made; it is safe to
// call more than once, and Close releases anything left.
func (d *Driver) ForkAll(ctx context.Context, log Logger) (machines map[string]*machine.Machine, release func() error, err error) {
	if err := d.open(); err != nil {
		return nil, nil, err
	}
	d.suite.once.Do(func() { d.suite.snaps, d.suite.err = d.snapshotRunning(ctx) })
	if d.suite.err != nil {
		return nil, nil, d.suite.err
	}
	var (
		mu   sync.Mutex
		made []*machine.Machine
		nets networks
	)
	var releaseOnce sync.Once
	var releaseErr error
	release = func() error {
		releaseOnce.Do(func() {
			var errs []error
			for _, m := range made {
				errs = append(errs, m.Close())
			}
			errs = append(errs, nets.close())
			d.forget(made...)
			releaseErr = errors.Join(errs...)
		})
		return releaseErr
	}
	// Switches of its own, so clones keep their addresses without
	// meeting the originals or other subtests.
	nets, err = d.privateVLANs(ctx)
	if err != nil {
		return nil, nil, errors.Join(err, release())
	}
	netOpts := nets.machineOptions()
	opts := append([]machine.Option{
		machine.WithLogger(log),
		machine.WithSameAddresses(),
	}, netOpts...)
	originals := d.Machines()
	machines = make(map[string]*machine.Machine, len(originals))
	g, gctx := errgroup.WithContext(ctx)
	for _, orig := range originals {
		snap := d.suite.snaps[orig.Name()]
		g.Go(func() error {
			var (
				m   *machine.Machine
				err error
			)
			if snap == nil {
				m, err = d.freshLike(orig, log, netOpts)
			} else {
				m, err = machine.Restore(gctx, snap, orig.CloneName(), opts...)
			}
			if err != nil {
				return err
			}
			mu.Lock()
			made = append(made, m)
			machines[orig.Name()] = m
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, errors.Join(err, release())
	}
	d.adopt(made...)
	return machines, release, nil
}

// snapshotRunning snapshots every configured machine that is running.
func (d *Driver) snapshotRunning(ctx context.Context) (map[string]*machine.Snapshot, error) {
	snaps := map[string]*machine.Snapshot{}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	for _, m := range d.Machines() {
		if !m.Booted() {
			continue
		}
		g.Go(func() error {
			s, err := m.Snapshot(gctx, "after-set-up")
			if err != nil {
				return err
			}
			mu.Lock()
			snaps[m.Name()] = s
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return snaps, nil
}

// freshLike makes an unstarted machine with orig's start script, for a
// forked subtest, on the subtest's own networks.
func (d *Driver) freshLike(orig *machine.Machine, log Logger, netOpts []machine.Option) (*machine.Machine, error) {
	opts := append(slices.Clone(d.machineOpts),
		machine.WithStartScript(orig.StartScript()),
		machine.WithSharedDir(d.sharedDir),
		machine.WithOutputDir(d.cfg.OutputDir),
		machine.WithLogger(log),
		machine.WithNodeNumbers(d.nodes),
	)
	return machine.New(d.backend, orig.CloneName(), append(opts, netOpts...)...)
}

// privateVLANs starts networks of its own for a forked subtest: a switch
// per configured VLAN in a directory of its own, or bridges in a network
// namespace of its own.
func (d *Driver) privateVLANs(ctx context.Context) (networks, error) {
	if len(d.cfg.VLANs) == 0 {
		return networks{}, nil
	}
	dir, err := os.MkdirTemp(d.runDir, "fork")
	if err != nil {
		return networks{}, err
	}
	n, err := d.startNetworks(ctx, dir)
	if err != nil {
		return networks{}, fmt.Errorf("starting the VLANs of a forked subtest: %w", err)
	}
	return n, nil
}

// cloneOptions are the options of clones made by Fork and Restore.
func (d *Driver) cloneOptions() []machine.Option {
	return []machine.Option{machine.WithNodeNumbers(d.nodes)}
}

// open fails once the driver is closed.
func (d *Driver) open() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("the driver is closed")
	}
	return nil
}

// adopt makes machines part of the run (released with it).
func (d *Driver) adopt(ms ...*machine.Machine) {
	d.mu.Lock()
	d.extra = append(d.extra, ms...)
	d.mu.Unlock()
}

// forget drops released machines from the run.
func (d *Driver) forget(ms ...*machine.Machine) {
	d.mu.Lock()
	d.extra = slices.DeleteFunc(d.extra, func(m *machine.Machine) bool { return slices.Contains(ms, m) })
	d.mu.Unlock()
}

// nameTaken reports whether a machine of the run has name.
func (d *Driver) nameTaken(name string) bool {
	for _, m := range d.allMachines() {
		if m.Name() == name {
			return true
		}
	}
	return false
}
