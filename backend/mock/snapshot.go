package mock

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
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

// Hardware is the mock's machine configuration, which a snapshot must be
// restored onto unchanged: it plays the part of QEMU's memory size and
// CPU count (the device order is the list of link names).
type Hardware struct {
	// MemoryMiB is the guest's memory size.
	MemoryMiB int `json:"memory_mib"`
	// CPUs is the guest's CPU count.
	CPUs int `json:"cpus"`
}

// DefaultHardware is a new guest's Hardware.
var DefaultHardware = Hardware{MemoryMiB: 1024, CPUs: 1}

// SetHardware sets the guest's machine configuration (call it from the
// WithGuest callback: it is what Restore compares with a snapshot's).
func (g *Guest) SetHardware(h Hardware) { g.set(func() { g.hardware = h }) }

// Hardware returns the guest's machine configuration.
func (g *Guest) Hardware() Hardware { return locked(g, func() Hardware { return g.hardware }) }

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

// savedState is what the guest keeps. Test scripting (answers, replies,
// recorded calls) is not guest state and is not saved.
type savedState struct {
	Version  int               `json:"version"`
	Machine  string            `json:"machine"`
	Hardware Hardware          `json:"hardware"`
	Boots    int               `json:"boots"`
	State    map[string]string `json:"state"`
}

// SetSnapshotError makes every Snapshot of the guest's instance fail
// while writing its state, as on a full disk, with an error wrapping err
// (nil lets snapshots succeed again). The instance keeps running.
func (g *Guest) SetSnapshotError(err error) { g.set(func() { g.snapErr = err }) }

// save captures the guest's state and the manifest's configuration, and
// the error a simulated full disk gives.
func (g *Guest) save() (savedState, manifest, error) {
	g.mu.Lock()
	st := savedState{Version: snapshotVersion, Machine: g.name, Hardware: g.hardware, Boots: g.boots, State: maps.Clone(g.state)}
	man := manifest{Version: snapshotVersion, Backend: "mock", Machine: g.name, State: stateFile, Hardware: g.hardware}
	snapErr := g.snapErr
	g.mu.Unlock()
	man.Devices = g.linkNames()
	return st, man, snapErr
}

// check reports what in st contradicts its manifest m.
func (st *savedState) check(m manifest) error {
	if st.Version != snapshotVersion {
		return fmt.Errorf("format version %d, this mock reads %d", st.Version, snapshotVersion)
	}
	if st.Hardware != m.Hardware {
		return fmt.Errorf("its hardware %+v differs from the manifest's %+v", st.Hardware, m.Hardware)
	}
	return nil
}

// load replaces the guest's state with st.
func (g *Guest) load(st *savedState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restored = true
	g.boots = st.Boots
	g.state = maps.Clone(st.State)
	if g.state == nil {
		g.state = map[string]string{}
	}
}

// linkNames lists the names of the guest's links in order.
func (g *Guest) linkNames() []string {
	var names []string
	for _, l := range g.Links() {
		names = append(names, l.Name)
	}
	return names
}

// configDiff explains how the guest's configuration differs from the one
// the snapshot was taken with, or returns "".
func (g *Guest) configDiff(m manifest) string {
	hw, names := g.Hardware(), g.linkNames()
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

// Snapshot pauses the guest, saves its state (Guest.SetState, the boot
// count) into dir and, unless opts.KeepPaused, resumes it. A kept-paused guest answers nothing until
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
	st, man, snapErr := in.guest.save()
	data, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("mock: snapshot of %s: encoding the state: %w", name, err)
	}
	statePath := filepath.Join(dir, stateFile)
	if err := writeAtomic(dir, stateFile, data, snapErr); err != nil {
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
	return &backend.Snapshot{Backend: "mock", Dir: dir, Machine: name, Taken: start, Size: int64(len(data)), Paused: paused}, nil
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
	_, err = f.Write(data)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
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
// guest continues from snap: its shell is ready without a banner and its
// state (Guest.SetState, the boot count) is the snapshot's. Answers,
// replies and link states come from the callbacks, as for a new guest;
// recorded calls start empty. Restored guests share nothing with each
// other or the original. A snapshot of another backend, a missing,
// truncated or malformed file, or a configuration (Hardware, link names
// and order) other than the snapshot's gives an error wrapping
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
	if err := b.hook(spec); err != nil {
		return nil, fmt.Errorf("mock: restore %s: %w", spec.Name, err)
	}
	m, st, err := readSnapshot(snap.Dir)
	if err != nil {
		return nil, fmt.Errorf("mock: restore %s: %w", spec.Name, err)
	}
	g := b.newGuest(spec.Name)
	if diff := g.configDiff(m); diff != "" {
		return nil, fmt.Errorf("mock: restore %s: %w: snapshot %s was taken from machine %q but this machine has %s; restore it on a machine configured like the original (Guest.SetHardware, Guest.SetLinks)",
			spec.Name, backend.ErrSnapshotMismatch, snap.Dir, m.Machine, diff)
	}
	g.load(st)
	return b.launch(spec, g, true), nil
}

// Restores reports how many times the named machine was restored from a
// snapshot.
func (b *Backend) Restores(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.restores[name]
}
