package mock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/color"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// Snapshot files. A directory holds a complete snapshot once it has the
// manifest, which is written last.
const (
	manifestFile    = "mock-snapshot.json"
	stateFile       = "mock-state.json"
	snapshotVersion = 1
)

var (
	_ backend.Snapshotter = (*Instance)(nil)
	_ backend.Restorer    = (*Backend)(nil)
)

// manifest describes a snapshot directory: what the state file must be
// and the configuration a machine must have to restore it.
type manifest struct {
	Version  int       `json:"version"`
	Backend  string    `json:"backend"`
	Machine  string    `json:"machine"`
	Taken    time.Time `json:"taken"`
	State    string    `json:"state"`
	Size     int64     `json:"size"`
	SHA256   string    `json:"sha256"`
	Hardware Hardware  `json:"hardware"`
	// Devices are the network links' names in order (the device order).
	Devices []string `json:"devices"`
}

// savedState is everything the guest keeps. Test scripting (handlers,
// replies, recorded calls) is not guest state and is not saved.
type savedState struct {
	Version    int                     `json:"version"`
	Machine    string                  `json:"machine"`
	Hardware   Hardware                `json:"hardware"`
	Clock      int64                   `json:"clock_unix_nano"`
	Hostname   string                  `json:"hostname"`
	Boots      int                     `json:"boots"`
	Files      []savedFile             `json:"files"`
	Links      []savedLink             `json:"links"`
	Loopback   []string                `json:"loopback"`
	Systemd    map[string]savedManager `json:"systemd"`
	Ports      []string                `json:"ports"`
	UnixStream []string                `json:"unix_stream"`
	UnixDgram  []string                `json:"unix_dgram"`
	TTY        map[int]string          `json:"tty"`
	Screen     [4]uint8                `json:"screen"`
}

type savedFile struct {
	Path string      `json:"path"`
	Dir  bool        `json:"dir,omitempty"`
	Mode fs.FileMode `json:"mode"`
	Data []byte      `json:"data,omitempty"`
}

type savedLink struct {
	Name  string   `json:"name"`
	VLAN  int      `json:"vlan"`
	MAC   string   `json:"mac"`
	Up    bool     `json:"up"`
	Addrs []string `json:"addrs"`
}

type savedManager struct {
	Units map[string]savedUnit `json:"units"`
	Jobs  []savedJob           `json:"jobs,omitempty"`
	Next  int                  `json:"next"`
}

type savedUnit struct {
	Active     string            `json:"active"`
	Sub        string            `json:"sub"`
	Props      map[string]string `json:"props,omitempty"`
	StartFails bool              `json:"start_fails,omitempty"`
}

type savedJob struct {
	ID   int    `json:"id"`
	Unit string `json:"unit"`
	Kind string `json:"kind"`
}

// SetSnapshotError makes every Snapshot of the guest's instance fail
// while writing its state, as on a full disk, with an error wrapping err
// (nil lets snapshots succeed again). The instance keeps running.
func (g *Guest) SetSnapshotError(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.snapErr = err
}

func (g *Guest) snapshotError() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snapErr
}

// save captures the guest's state and the manifest's configuration.
func (g *Guest) save() (savedState, manifest) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := savedState{
		Version:  snapshotVersion,
		Machine:  g.name,
		Hardware: g.hardware,
		Clock:    g.nowLocked().UnixNano(),
		Hostname: g.hostname,
		Boots:    g.boots,
		Systemd:  map[string]savedManager{},
		TTY:      maps.Clone(g.tty),
		Screen:   [4]uint8{g.screen.R, g.screen.G, g.screen.B, g.screen.A},
	}
	for _, p := range slices.Sorted(maps.Keys(g.files)) {
		n := g.files[p]
		st.Files = append(st.Files, savedFile{Path: p, Dir: n.dir, Mode: n.mode, Data: slices.Clone(n.data)})
	}
	st.Ports = slices.Sorted(maps.Keys(g.ports))
	st.UnixStream = slices.Sorted(maps.Keys(g.unixStream))
	st.UnixDgram = slices.Sorted(maps.Keys(g.unixDgram))
	for user, s := range g.managers {
		m := savedManager{Units: map[string]savedUnit{}, Next: s.next}
		for name, u := range s.units {
			m.Units[name] = savedUnit{Active: u.active, Sub: u.sub, Props: maps.Clone(u.props), StartFails: u.startFails}
		}
		for _, j := range s.jobs {
			m.Jobs = append(m.Jobs, savedJob{ID: j.id, Unit: j.unit, Kind: j.kind})
		}
		st.Systemd[user] = m
	}
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	man := manifest{Version: snapshotVersion, Backend: "mock", Machine: g.name, State: stateFile, Hardware: g.hardware}
	for i, l := range n.links {
		st.Links = append(st.Links, savedLink{Name: l.Name, VLAN: l.VLAN, MAC: l.MAC, Up: l.Up, Addrs: prefixStrings(n.addrs[i])})
		man.Devices = append(man.Devices, l.Name)
	}
	st.Loopback = prefixStrings(n.lo)
	return st, man
}

// check reports what in st the guest could not take (a malformed file).
func (st *savedState) check(m manifest) error {
	if st.Version != snapshotVersion {
		return fmt.Errorf("format version %d, this mock reads %d", st.Version, snapshotVersion)
	}
	if st.Hardware != m.Hardware {
		return fmt.Errorf("its hardware %+v differs from the manifest's %+v", st.Hardware, m.Hardware)
	}
	if len(st.Links) != len(m.Devices) {
		return fmt.Errorf("it has %d links, the manifest %d", len(st.Links), len(m.Devices))
	}
	for i, l := range st.Links {
		if l.Name != m.Devices[i] {
			return fmt.Errorf("link %d is %q, the manifest says %q", i, l.Name, m.Devices[i])
		}
		if hw, err := net.ParseMAC(l.MAC); err != nil || len(hw) != 6 {
			return fmt.Errorf("link %s has the invalid MAC %q", l.Name, l.MAC)
		}
		if _, err := parsePrefixes(l.Addrs); err != nil {
			return fmt.Errorf("link %s: %v", l.Name, err)
		}
	}
	if _, err := parsePrefixes(st.Loopback); err != nil {
		return fmt.Errorf("lo: %v", err)
	}
	for _, f := range st.Files {
		if !strings.HasPrefix(f.Path, "/") || cleanPath(f.Path) != f.Path {
			return fmt.Errorf("invalid file path %q", f.Path)
		}
	}
	return nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid address %q", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// load replaces the guest's state with st (checked). The guest's clock
// resumes from the moment of the snapshot, as a restored VM's does.
func (g *Guest) load(st *savedState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restored = true
	g.hostname = st.Hostname
	g.clockOffset = time.Until(time.Unix(0, st.Clock))
	g.boots = st.Boots
	g.files = map[string]*fnode{}
	for _, f := range st.Files {
		g.files[f.Path] = &fnode{dir: f.Dir, mode: f.Mode, data: slices.Clone(f.Data)}
	}
	g.ports, g.unixStream, g.unixDgram = setOf(st.Ports), setOf(st.UnixStream), setOf(st.UnixDgram)
	g.tty = maps.Clone(st.TTY)
	if g.tty == nil {
		g.tty = map[int]string{}
	}
	g.screen = color.RGBA{R: st.Screen[0], G: st.Screen[1], B: st.Screen[2], A: st.Screen[3]}
	// Keep the *Systemd values (a WithGuest callback may hold them) and
	// replace what they contain.
	for _, s := range g.managers {
		s.units, s.jobs, s.next = map[string]*unit{}, nil, 0
	}
	for user, m := range st.Systemd {
		s := g.managerLocked(user)
		for name, u := range m.Units {
			props := maps.Clone(u.Props)
			if props == nil {
				props = map[string]string{}
			}
			s.units[name] = &unit{active: u.Active, sub: u.Sub, props: props, startFails: u.StartFails}
		}
		for _, j := range m.Jobs {
			s.jobs = append(s.jobs, job{id: j.ID, unit: j.Unit, kind: j.Kind})
		}
		s.next = m.Next
	}
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	// The links are the new hypervisor's (their Up state included); the
	// interfaces behind them keep the MACs and addresses the guest had.
	for i, l := range st.Links {
		n.links[i].MAC = l.MAC
		n.addrs[i], _ = parsePrefixes(l.Addrs)
	}
	n.lo, _ = parsePrefixes(st.Loopback)
}

func setOf(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// configDiff explains how the guest's configuration differs from the one
// the snapshot was taken with, or returns "".
func (g *Guest) configDiff(m manifest) string {
	hw := g.Hardware()
	var names []string
	for _, l := range g.Links() {
		names = append(names, l.Name)
	}
	var d []string
	if hw.MemoryMiB != m.Hardware.MemoryMiB {
		d = append(d, fmt.Sprintf("memory %d MiB, the snapshot has %d MiB", hw.MemoryMiB, m.Hardware.MemoryMiB))
	}
	if hw.CPUs != m.Hardware.CPUs {
		d = append(d, fmt.Sprintf("%d CPUs, the snapshot has %d", hw.CPUs, m.Hardware.CPUs))
	}
	if !slices.Equal(names, m.Devices) {
		d = append(d, fmt.Sprintf("network links [%s], the snapshot has [%s] (links must be given in the same order)",
			strings.Join(names, " "), strings.Join(m.Devices, " ")))
	}
	return strings.Join(d, "; ")
}

// pauseGate stands for the guest's vCPUs: while it is closed the guest
// writes nothing to its shell connection and runs no command.
type pauseGate struct {
	mu     sync.Mutex
	resume chan struct{} // nil while running; closed on resume
}

// pause stops the guest; it reports whether the guest was running.
func (p *pauseGate) pause() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume != nil {
		return false
	}
	p.resume = make(chan struct{})
	return true
}

// cont resumes the guest; it reports whether the guest was paused.
func (p *pauseGate) cont() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resume == nil {
		return false
	}
	close(p.resume)
	p.resume = nil
	return true
}

func (p *pauseGate) paused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.resume != nil
}

// wait returns true once the guest runs, or false if stop closes first.
func (p *pauseGate) wait(stop <-chan struct{}) bool {
	for {
		p.mu.Lock()
		ch := p.resume
		p.mu.Unlock()
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

// gatedConn is the guest's end of the shell connection: its writes wait
// while the guest is paused.
type gatedConn struct {
	net.Conn
	gate   *pauseGate
	once   sync.Once
	closed chan struct{}
}

func newGatedConn(c net.Conn, gate *pauseGate) *gatedConn {
	return &gatedConn{Conn: c, gate: gate, closed: make(chan struct{})}
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if !c.gate.wait(c.closed) {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (c *gatedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// Snapshot pauses the guest, saves its whole state (files, hostname,
// clock, interfaces and addresses, units, ports, ...) into dir and, unless
// opts.KeepPaused, resumes it. A kept-paused guest answers nothing until
// ControlCommand("cont", nil). The manifest, written last, records the
// configuration a restore must match (Hardware and the link names in
// order). On error (Guest.SetSnapshotError simulates a full disk) the
// guest runs as before and dir holds no snapshot files.
func (in *Instance) Snapshot(ctx context.Context, dir string, opts backend.SnapshotOptions) (_ *backend.Snapshot, err error) {
	name := in.spec.Name
	if in.exited() {
		return nil, in.exitedError()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mock: snapshot of %s: %w", name, err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("mock: snapshot of %s: %w", name, err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("mock: snapshot of %s: %s is not a directory (%v); create it first", name, dir, err)
	}
	in.snapMu.Lock()
	defer in.snapMu.Unlock()
	if _, err := os.Lstat(filepath.Join(dir, manifestFile)); err == nil {
		return nil, fmt.Errorf("mock: snapshot of %s: %s already holds a snapshot; use an empty directory", name, dir)
	}

	start := time.Now()
	wasRunning := in.gate.pause()
	defer func() {
		if err != nil && wasRunning {
			in.gate.cont()
		}
	}()
	st, man := in.guest.save()
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("mock: snapshot of %s: encoding the state: %w", name, err)
	}
	statePath := filepath.Join(dir, stateFile)
	if err := writeAtomic(dir, stateFile, data, in.guest.snapshotError()); err != nil {
		return nil, fmt.Errorf("mock: snapshot of %s: saving the state in %s: %w", name, dir, err)
	}
	if err := ctx.Err(); err != nil {
		os.Remove(statePath)
		return nil, fmt.Errorf("mock: snapshot of %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	man.Taken, man.Size, man.SHA256 = start, int64(len(data)), hex.EncodeToString(sum[:])
	mdata, err := json.MarshalIndent(man, "", "  ")
	if err == nil {
		err = writeAtomic(dir, manifestFile, append(mdata, '\n'), nil)
	}
	if err != nil {
		os.Remove(statePath)
		return nil, fmt.Errorf("mock: snapshot of %s: writing the manifest in %s: %w", name, dir, err)
	}
	paused := time.Since(start)
	if !opts.KeepPaused && wasRunning {
		in.gate.cont()
		paused = time.Since(start)
	}
	return &backend.Snapshot{
		Backend: "mock",
		Dir:     dir,
		Machine: name,
		Taken:   start,
		Size:    int64(len(data)),
		Paused:  paused,
	}, nil
}

// writeAtomic writes dir/name through a temporary file and a rename;
// fail, when set, makes the write fail half-way (a simulated full disk).
// On error nothing is left behind.
func writeAtomic(dir, name string, data []byte, fail error) (err error) {
	f, err := os.CreateTemp(dir, "."+name+".partial-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if fail != nil {
		f.Write(data[:len(data)/2])
		return fmt.Errorf("write %s: %w", f.Name(), fail)
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// readSnapshot reads and checks a snapshot directory. Every error wraps
// backend.ErrSnapshotMismatch.
func readSnapshot(dir string) (manifest, *savedState, error) {
	var m manifest
	again := "take the snapshot again"
	data, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return m, nil, fmt.Errorf("%w: %s holds no complete mock snapshot (its manifest %s is unreadable: %v); %s",
			backend.ErrSnapshotMismatch, dir, manifestFile, err, again)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, nil, fmt.Errorf("%w: %s: the manifest %s is malformed (%v); %s", backend.ErrSnapshotMismatch, dir, manifestFile, err, again)
	}
	if m.Backend != "mock" || m.Version != snapshotVersion {
		return m, nil, fmt.Errorf("%w: %s was written by backend %q in format %d; this is mock format %d: restore it with that backend or %s",
			backend.ErrSnapshotMismatch, dir, m.Backend, m.Version, snapshotVersion, again)
	}
	if m.State != stateFile {
		return m, nil, fmt.Errorf("%w: %s: the manifest names an unknown state file %q; %s", backend.ErrSnapshotMismatch, dir, m.State, again)
	}
	state, err := os.ReadFile(filepath.Join(dir, m.State))
	if err != nil {
		return m, nil, fmt.Errorf("%w: %s: the saved state is missing (%v); %s", backend.ErrSnapshotMismatch, dir, err, again)
	}
	if int64(len(state)) != m.Size {
		return m, nil, fmt.Errorf("%w: %s: the saved state %s has %d bytes, the manifest says %d (truncated or replaced); %s",
			backend.ErrSnapshotMismatch, dir, m.State, len(state), m.Size, again)
	}
	if sum := sha256.Sum256(state); hex.EncodeToString(sum[:]) != m.SHA256 {
		return m, nil, fmt.Errorf("%w: %s: the saved state %s is corrupt (its SHA-256 differs from the manifest's); %s",
			backend.ErrSnapshotMismatch, dir, m.State, again)
	}
	st := new(savedState)
	if err := json.Unmarshal(state, st); err != nil {
		return m, nil, fmt.Errorf("%w: %s: the saved state %s is malformed (%v); %s", backend.ErrSnapshotMismatch, dir, m.State, err, again)
	}
	if err := st.check(m); err != nil {
		return m, nil, fmt.Errorf("%w: %s: the saved state %s is malformed: %v; %s", backend.ErrSnapshotMismatch, dir, m.State, err, again)
	}
	return m, st, nil
}

// Restore starts a new instance for spec (a new pid, its own Done and
// shell; WithGuest callbacks and the start hook run as for Start) whose
// guest continues from snap: its shell is ready without a banner and all
// its state is the snapshot's, except what is not guest state (handlers
// and replies come from the callbacks; link Up states from the new
// configuration; recorded calls start empty). Restored guests share
// nothing with each other or the original. A snapshot of another backend,
// a missing, truncated or malformed file, or a configuration (Hardware,
// link names and order) other than the snapshot's gives an error wrapping
// backend.ErrSnapshotMismatch.
func (b *Backend) Restore(ctx context.Context, spec backend.Spec, snap *backend.Snapshot) (backend.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mock: restore %s: %w", spec.Name, err)
	}
	if snap == nil {
		return nil, fmt.Errorf("mock: restore %s: %w: no snapshot given", spec.Name, backend.ErrSnapshotMismatch)
	}
	if snap.Backend != "mock" {
		return nil, fmt.Errorf("mock: restore %s: %w: the snapshot in %s was taken by the %q backend; only that backend can restore it",
			spec.Name, backend.ErrSnapshotMismatch, snap.Dir, snap.Backend)
	}
	if b.startHook != nil {
		if err := b.startHook(spec); err != nil {
			return nil, fmt.Errorf("mock: restore %s: %w", spec.Name, err)
		}
	}
	m, st, err := readSnapshot(snap.Dir)
	if err != nil {
		return nil, fmt.Errorf("mock: restore %s: %w", spec.Name, err)
	}
	g := newGuest(spec.Name, b.bootDelay)
	for _, fn := range b.onGuest {
		fn(spec.Name, g)
	}
	if diff := g.configDiff(m); diff != "" {
		return nil, fmt.Errorf("mock: restore %s: %w: snapshot %s was taken from machine %q but this machine has %s; restore it on a machine configured like the original (Guest.SetHardware, Guest.SetLinks)",
			spec.Name, backend.ErrSnapshotMismatch, snap.Dir, m.Machine, diff)
	}
	g.load(st)

	b.mu.Lock()
	b.nextPID++
	pid := b.nextPID
	b.guests[spec.Name] = g
	b.restores[spec.Name]++
	b.mu.Unlock()

	inst := newInstance(spec, g, pid, true)
	if b.bare {
		return bareInstance{inst}, nil
	}
	return inst, nil
}

// Restores reports how many times the named machine was restored from a
// snapshot.
func (b *Backend) Restores(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.restores[name]
}
