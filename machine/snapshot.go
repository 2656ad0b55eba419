package machine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// Snapshot is a machine's saved state, from which new machines are
// restored (Restore, Machine.Fork). Its files live in the state directory
// of the machine it was taken from and go with it; Remove deletes them
// earlier.
type Snapshot struct {
	name   string
	origin *Machine
	snap   *backend.Snapshot
	links  []backend.Link
	// prep is what the backend did to the guest before saving it
	// (backend.SnapshotPreparer); every clone undoes it first.
	prep backend.GuestPrep
	// ifs is the guest's interfaces and addresses as saved, listed when
	// the machine is on a VLAN: every clone starts from exactly that
	// state, so its identity is fixed up in one round trip.
	ifs map[string]*guestIface
	// warm marks a warm-start entry: the machine restored from it is the
	// one it was taken of, with that machine's name and addresses.
	warm bool
}

// Name returns the snapshot's name.
func (s *Snapshot) Name() string { return s.name }

// Machine returns the name of the machine it was taken from.
func (s *Snapshot) Machine() string { return s.origin.name }

// Dir returns the directory holding the snapshot's files.
func (s *Snapshot) Dir() string { return s.snap.Dir }

// Size returns the saved state's size on disk in bytes.
func (s *Snapshot) Size() int64 { return s.snap.Size }

// Paused returns how long the machine was paused to save it.
func (s *Snapshot) Paused() time.Duration { return s.snap.Paused }

// Taken returns when the state was saved.
func (s *Snapshot) Taken() time.Time { return s.snap.Taken }

// String describes the snapshot for logs.
func (s *Snapshot) String() string {
	return fmt.Sprintf("snapshot %s of %s (%.1f MiB)", s.name, s.origin.name, float64(s.snap.Size)/(1<<20))
}

// Remove deletes the saved state. Machines already restored from it keep
// running.
func (s *Snapshot) Remove() error { return os.RemoveAll(s.snap.Dir) }

// snapshotName is what a snapshot name may be: it becomes a directory.
var snapshotName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Snapshot saves the machine's whole state now (booting it first if it is
// not up) and returns a handle new machines can be restored from; the
// machine keeps running. An empty name gets snap-<k>. When the backend's
// snapshots need the guest prepared (backend.SnapshotPreparer: QEMU
// unmounts the guest's 9p shares), that is done before the state is
// saved and undone afterwards, in the machine and in every machine
// restored from the snapshot.
func (m *Machine) Snapshot(ctx context.Context, name string) (*Snapshot, error) {
	if name == "" {
		name = fmt.Sprintf("snap-%d", m.snaps.Add(1))
	}
	if !snapshotName.MatchString(name) {
		return nil, fmt.Errorf("machine %s: snapshot name %q: use letters, digits, '.', '_' and '-' (at most 64)", m.name, name)
	}
	var snap *Snapshot
	err := m.Nested("taking "+name, func() error {
		s, err := m.snapshot(ctx, name)
		snap = s
		return err
	})
	return snap, err
}

func (m *Machine) snapshot(ctx context.Context, name string) (*Snapshot, error) {
	dir := filepath.Join(m.stateDir, "snapshots", name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("machine %s: a snapshot named %q exists already; choose another name", m.name, name)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.name, err)
	}
	s, err := m.snapshotTo(ctx, name, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// snapshotTo saves the machine into the existing directory dir.
func (m *Machine) snapshotTo(ctx context.Context, name, dir string) (*Snapshot, error) {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	sh, inst, err := m.connect(ctx)
	if err != nil {
		return nil, err
	}
	sn, ok := inst.(backend.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("machine %s: snapshots: %w (%s)", m.name, backend.ErrUnsupported, m.backend.Name())
	}
	var links []backend.Link
	if lc, ok := inst.(backend.LinkController); ok {
		if links, err = lc.Links(ctx); err != nil {
			return nil, m.backendError("listing links for the snapshot", err)
		}
		links = m.ownMACs(links)
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.commandTimeout)
	defer cancel()
	ifs, err := m.discoverInterfaces(cctx, sh, links)
	if err != nil {
		return nil, err
	}
	var prep backend.GuestPrep
	if p, ok := inst.(backend.SnapshotPreparer); ok {
		if prep, err = p.PrepareSnapshot(cctx, sh); err != nil {
			return nil, fmt.Errorf("machine %s: %w", m.name, err)
		}
	}
	release, err := sh.Hold(cctx)
	if err != nil {
		return nil, m.backendError("snapshot "+name, errors.Join(err, m.undoPrep(sh, prep)))
	}
	bs, err := sn.Snapshot(cctx, dir, backend.SnapshotOptions{})
	release()
	if uerr := m.undoPrep(sh, prep); uerr != nil {
		err = errors.Join(err, uerr)
	}
	if err != nil {
		return nil, m.backendError("snapshot "+name, err)
	}
	s := &Snapshot{name: name, origin: m, snap: bs, links: links, prep: prep, ifs: ifs}
	m.log.Info(m.name, fmt.Sprintf("%s saved: %.1f MiB, paused %s", name, float64(bs.Size)/(1<<20), bs.Paused.Round(time.Millisecond)))
	return s, nil
}

// discoverInterfaces lists the guest's interfaces and addresses when one
// of links is on a test VLAN (a clone then gets addresses of its own),
// and returns nil otherwise.
func (m *Machine) discoverInterfaces(ctx context.Context, sh *backdoor.Shell, links []backend.Link) (map[string]*guestIface, error) {
	if !slices.ContainsFunc(links, func(l backend.Link) bool { _, _, ok := vlanMAC(l.MAC); return ok && l.VLAN != 0 }) {
		return nil, nil
	}
	res, err := sh.Run(ctx, guestcmd.ListInterfaces(), backdoor.RunOptions{})
	if err != nil {
		return nil, fmt.Errorf("machine %s: listing the guest's interfaces: %w", m.name, err)
	}
	if res.Status != 0 {
		return nil, fmt.Errorf("machine %s: listing the guest's interfaces (%s): status %d: %s", m.name, guestcmd.ListInterfaces(), res.Status, strings.TrimSpace(string(res.Output)))
	}
	return parseInterfaces(string(res.Output)), nil
}

// undoPrep runs prep.Undo on the original guest after a snapshot. It
// has its own deadline: it must run even when the caller's context has
// ended.
func (m *Machine) undoPrep(sh *backdoor.Shell, prep backend.GuestPrep) error {
	if prep.Undo == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.commandTimeout)
	defer cancel()
	res, err := sh.Run(ctx, prep.Undo, backdoor.RunOptions{})
	if err == nil && res.Status != 0 {
		err = fmt.Errorf("status %d: %s", res.Status, strings.TrimSpace(string(res.Output)))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", prep.What, err)
	}
	return nil
}

// Restore creates a machine named name from snap and starts it: it has
// the configuration of the machine snap was taken from (start script,
// environment, timeouts, logger) unless opts say otherwise, its own state
// directory and disk overlays, and its own identity: the host's time, its
// name as host name, a fresh machine-id, a reseeded random number
// generator and, on each VLAN, the next free node number's MAC and
// addresses. The guest continues where the snapshot left off.
func Restore(ctx context.Context, snap *Snapshot, name string, opts ...Option) (*Machine, error) {
	if snap == nil {
		return nil, errors.New("machine: Restore needs a snapshot")
	}
	ms, err := restoreAll(ctx, snap, []string{name}, opts)
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// Fork snapshots the machine now and returns n new running machines
// restored from that snapshot, named <name>-1 … <name>-n (numbering goes
// on across calls), each with its own identity (see Restore). The machine
// itself keeps running. The caller closes the clones.
func (m *Machine) Fork(ctx context.Context, n int, opts ...Option) ([]*Machine, error) {
	if n < 1 {
		return nil, fmt.Errorf("machine %s: fork needs at least one clone, not %d", m.name, n)
	}
	snap, err := m.Snapshot(ctx, "")
	if err != nil {
		return nil, err
	}
	names := make([]string, n)
	for k := range names {
		names[k] = m.CloneName()
	}
	return restoreAll(ctx, snap, names, opts)
}

// CloneName returns the next unused clone name, <name>-<k>.
func (m *Machine) CloneName() string { return fmt.Sprintf("%s-%d", m.name, m.forks.Add(1)) }

// restoreAll restores one clone per name, in parallel. Siblings know each
// other's addresses. On error none is left running.
func restoreAll(ctx context.Context, snap *Snapshot, names []string, opts []Option) ([]*Machine, error) {
	origin := snap.origin
	if _, ok := origin.backend.(backend.Restorer); !ok {
		return nil, fmt.Errorf("machine %s: restoring snapshots: %w (%s)", origin.name, backend.ErrUnsupported, origin.backend.Name())
	}
	// A clone runs as its original does: the same start script,
	// directories, environment, log, timeouts and reboot behaviour.
	nodes := origin.nodeNumbers()
	base := []Option{func(c *config) error {
		o := origin.cfg
		c.startScript, c.sharedDir, c.outputDir = o.startScript, o.sharedDir, o.outputDir
		c.env, c.taps = slices.Clone(o.env), o.taps
		c.logger = o.logger
		c.bootTimeout, c.commandTimeout, c.heldWarning = o.bootTimeout, o.commandTimeout, o.heldWarning
		c.allowReboot = o.allowReboot
		c.nodeNumbers = nodes
		return nil
	}}
	clones := make([]*Machine, 0, len(names))
	fail := func(err error) ([]*Machine, error) {
		errs := []error{err}
		for _, c := range clones {
			errs = append(errs, c.Close())
		}
		return nil, errors.Join(errs...)
	}
	for _, name := range names {
		c, err := New(origin.backend, name, append(base, opts...)...)
		if err != nil {
			return fail(err)
		}
		clones = append(clones, c)
	}

	// Node numbers: the original's own are taken; each clone takes one.
	onVLAN := false
	if clones[0].cfg.sameAddresses {
		return restoreEach(ctx, snap, clones, nil, fail)
	}
	for _, l := range snap.links {
		if _, node, ok := vlanMAC(l.MAC); ok && l.VLAN != 0 {
			clones[0].nodeNumbers().Reserve(node)
			onVLAN = true
		}
	}
	var peers []string
	if onVLAN {
		for _, c := range clones {
			k, err := c.nodeNumbers().Allocate()
			if err != nil {
				return fail(fmt.Errorf("machine %s: %w", c.name, err))
			}
			c.node = k
			if line, ok := hostsLine(c.name, k, snap.links); ok {
				peers = append(peers, line)
			}
		}
	}

	return restoreEach(ctx, snap, clones, peers, fail)
}

// restoreEach restores the clones in parallel.
func restoreEach(ctx context.Context, snap *Snapshot, clones []*Machine, peers []string, fail func(error) ([]*Machine, error)) ([]*Machine, error) {
	origin := snap.origin
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range clones {
		g.Go(func() error {
			return c.Nested(fmt.Sprintf("restoring from %s of %s", snap.name, origin.name), func() error {
				return c.restore(gctx, snap, peers)
			})
		})
	}
	if err := g.Wait(); err != nil {
		return fail(err)
	}
	return clones, nil
}

// nodeNumbers is the machine's node number allocator.
func (m *Machine) nodeNumbers() *NodeNumbers {
	if m.cfg.nodeNumbers != nil {
		return m.cfg.nodeNumbers
	}
	return defaultNodeNumbers
}

// restore starts the machine from snap and gives it its identity.
func (m *Machine) restore(ctx context.Context, snap *Snapshot, peers []string) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	return m.restoreLocked(ctx, snap, peers)
}

// restoreLocked is restore with m.lifeMu held.
func (m *Machine) restoreLocked(ctx context.Context, snap *Snapshot, peers []string) error {
	r, ok := m.backend.(backend.Restorer)
	if !ok {
		return fmt.Errorf("machine %s: restoring snapshots: %w (%s)", m.name, backend.ErrUnsupported, m.backend.Name())
	}
	start := time.Now()
	m.mu.Lock()
	if m.closed || m.inst != nil {
		m.mu.Unlock()
		return fmt.Errorf("machine %s: restore needs a new machine that never ran", m.name)
	}
	m.mu.Unlock()
	m.console.reset()
	cw := &consoleWriter{c: m.console}
	bctx, cancel := context.WithTimeout(ctx, m.cfg.bootTimeout)
	defer cancel()
	inst, err := r.Restore(bctx, m.spec(cw), snap.snap)
	if err != nil {
		return m.backendError("restoring "+snap.name, err)
	}
	if _, err := m.adopt(inst, cw); err != nil {
		return err
	}
	loaded := time.Since(start)
	wctx, stop := watchExit(bctx, inst)
	defer stop()
	sh, err := inst.Shell(wctx)
	if err != nil {
		return m.failure(ctx, inst, nil, err, "the restored guest's root shell", start)
	}
	shellAt := time.Since(start)
	if err := m.giveIdentity(wctx, sh, snap, peers); err != nil {
		return m.failure(ctx, inst, sh, err, "giving the clone its identity", start)
	}
	m.mu.Lock()
	if m.inst != inst || m.closed {
		m.mu.Unlock()
		return fmt.Errorf("machine %s: stopped while restoring", m.name)
	}
	m.shell, m.connected = sh, true
	m.mu.Unlock()
	m.log.Info(m.name, fmt.Sprintf("restored from %s in %.2f seconds (state loaded %.2f s, shell %.2f s, identity %.2f s)",
		snap.name, time.Since(start).Seconds(), loaded.Seconds(), (shellAt-loaded).Seconds(), (time.Since(start)-shellAt).Seconds()))
	return nil
}

// giveIdentity sends the fix-up commands in one round trip: the undoing
// of the backend's snapshot preparation (QEMU: 9p shares back), clock,
// host name, machine-id, RNG, and the VLAN MACs and addresses of m's
// node number (the interfaces were listed when the snapshot was taken).
func (m *Machine) giveIdentity(ctx context.Context, sh *backdoor.Shell, snap *Snapshot, peers []string) error {
	id := identity{Hostname: m.name, Node: m.node, Now: time.Now(), Peers: peers, Undo: snap.prep.Undo}
	links := snap.links
	switch {
	case snap.warm:
		links = nil
	case m.cfg.sameAddresses:
		id.Hostname, links = snap.origin.name, nil
	}
	script, err := identityScript(id, links, snap.ifs)
	if err != nil {
		return err
	}
	res, err := sh.Run(ctx, script, backdoor.RunOptions{})
	if err != nil {
		return err
	}
	if res.Status != 0 {
		return fmt.Errorf("the identity commands failed with status %d: %s", res.Status, strings.TrimSpace(string(res.Output)))
	}
	return nil
}

// Node returns the machine's node number on the test network when a
// restore gave it one (the last byte of its VLAN addresses), else 0.
func (m *Machine) Node() int { return m.node }
