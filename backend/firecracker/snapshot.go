package firecracker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/sparsecopy"
)

const (
	manifestName = "firecracker.json"
	stateName    = "vmstate"
	memoryName   = "memory"
)

// manifest is what a snapshot records to check that it fits the machine
// it is restored as: Firecracker itself checks nothing before it maps the
// memory.
type manifest struct {
	Machine   string `json:"machine"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	// Disks is the number of drives (disk0, disk1, ...), each saved as
	// DRIVE.raw beside the manifest.
	Disks int `json:"disks"`
	// NICs are the VLANs of the interfaces Firecracker has (VLAN 0 ones
	// are skipped), by iface id.
	NICs map[string]int `json:"nics,omitempty"`
	// BackdoorPort is the vsock port of the guest's shell.
	BackdoorPort int `json:"backdoor_port"`
}

func newManifest(machine string, desc *backend.Description, disks int) *manifest {
	m := &manifest{Machine: machine, CPUs: desc.CPUs, MemoryMiB: desc.MemoryMiB, Disks: disks, BackdoorPort: BackdoorPort}
	for n, nic := range desc.NICs {
		if nic.VLAN != 0 {
			if m.NICs == nil {
				m.NICs = map[string]int{}
			}
			m.NICs[ifaceID(n)] = nic.VLAN
		}
	}
	return m
}

// differences lists how want (the snapshot) differs from m (the
// machine to restore).
func (m *manifest) differences(want *manifest) []string {
	var diffs []string
	if m.CPUs != want.CPUs {
		diffs = append(diffs, fmt.Sprintf("%d CPUs, the snapshot has %d", m.CPUs, want.CPUs))
	}
	if m.MemoryMiB != want.MemoryMiB {
		diffs = append(diffs, fmt.Sprintf("%d MiB of memory, the snapshot has %d", m.MemoryMiB, want.MemoryMiB))
	}
	if m.Disks != want.Disks {
		diffs = append(diffs, fmt.Sprintf("%d disks, the snapshot has %d", m.Disks, want.Disks))
	}
	if fmt.Sprint(m.NICs) != fmt.Sprint(want.NICs) {
		diffs = append(diffs, fmt.Sprintf("network interfaces %v, the snapshot has %v", m.NICs, want.NICs))
	}
	if m.BackdoorPort != want.BackdoorPort {
		diffs = append(diffs, fmt.Sprintf("backdoor on vsock port %d, the snapshot's is on %d", m.BackdoorPort, want.BackdoorPort))
	}
	return diffs
}

// Snapshot pauses the VM, saves its state, memory and frozen copies of
// its disks into dir, and resumes it unless opts.KeepPaused.
func (i *Instance) Snapshot(ctx context.Context, dir string, opts backend.SnapshotOptions) (_ *backend.Snapshot, err error) {
	if i.manifest == nil {
		return nil, errors.New("snapshot: the machine has no configuration to record")
	}
	start := time.Now()
	if err := i.api.call(ctx, "PATCH", "/vm", vmState{State: "Paused"}, nil); err != nil {
		return nil, i.apiError("pausing the VM", err)
	}
	resumed := false
	resume := func() error {
		resumed = true
		if err := i.api.call(ctx, "PATCH", "/vm", vmState{State: "Resumed"}, nil); err != nil {
			return i.apiError("resuming the VM", err)
		}
		return nil
	}
	defer func() {
		if err != nil {
			cleanDir(dir)
			if !resumed {
				if rerr := resume(); rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
		}
	}()
	for n := range i.manifest.Disks {
		src := filepath.Join(i.spec.StateDir, driveID(n)+".raw")
		if err := sparsecopy.Path(ctx, src, filepath.Join(dir, driveID(n)+".raw")); err != nil {
			return nil, fmt.Errorf("snapshot: freezing disk %d: %w", n, err)
		}
	}
	body := snapshotCreate{SnapshotType: "Full", SnapshotPath: filepath.Join(dir, stateName), MemFilePath: filepath.Join(dir, memoryName)}
	if err := i.api.call(ctx, "PUT", "/snapshot/create", body, nil); err != nil {
		return nil, i.apiError("saving the snapshot", err)
	}
	data, err := json.MarshalIndent(i.manifest, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, manifestName), append(data, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	paused := time.Since(start)
	if !opts.KeepPaused {
		if err := resume(); err != nil {
			return nil, err
		}
	}
	var size int64
	for _, name := range []string{stateName, memoryName} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			size += fi.Size()
		}
	}
	return &backend.Snapshot{Backend: "firecracker", Dir: dir, Machine: i.spec.Name, Taken: start, Size: size, Paused: paused}, nil
}

// cleanDir empties dir, leaving the directory.
func cleanDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// readManifest loads snap's manifest and checks its files are there.
func readManifest(snap *backend.Snapshot) (*manifest, error) {
	data, err := os.ReadFile(filepath.Join(snap.Dir, manifestName))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", backend.ErrSnapshotMismatch, err)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", backend.ErrSnapshotMismatch, err)
	}
	names := []string{stateName, memoryName}
	for n := range m.Disks {
		names = append(names, driveID(n)+".raw")
	}
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(snap.Dir, name)); err != nil {
			return nil, fmt.Errorf("%w: %w", backend.ErrSnapshotMismatch, err)
		}
	}
	return &m, nil
}

// Restore starts a fresh Firecracker that continues from snap: it copies
// the frozen disks into spec.StateDir, where the drives' relative paths
// recorded in the state lead, loads the snapshot before any
// configuration, with its own vsock socket and TAP devices, and resumes
// the VM.
func (b *Backend) Restore(ctx context.Context, spec backend.Spec, snap *backend.Snapshot) (backend.Instance, error) {
	if snap.Backend != b.Name() {
		return nil, fmt.Errorf("%w: it was saved by the %s backend", backend.ErrSnapshotMismatch, snap.Backend)
	}
	want, err := readManifest(snap)
	if err != nil {
		return nil, err
	}
	desc, err := backend.LoadDescription(backend.DescriptionPath(spec.StartScript))
	if err != nil {
		return nil, err
	}
	have := newManifest(spec.Name, desc, len(desc.Disks))
	if diffs := have.differences(want); len(diffs) > 0 {
		return nil, fmt.Errorf("%w: the machine has %s", backend.ErrSnapshotMismatch, strings.Join(diffs, "; "))
	}
	for n := range want.Disks {
		dst := filepath.Join(spec.StateDir, driveID(n)+".raw")
		os.Remove(dst) // an earlier start's copy
		if err := sparsecopy.Path(ctx, filepath.Join(snap.Dir, driveID(n)+".raw"), dst); err != nil {
			return nil, fmt.Errorf("copying the snapshot's disk %d: %w", n, err)
		}
	}
	taps, err := backend.CreateNamedTAPs(spec, desc, b.Name())
	if err != nil {
		return nil, err
	}
	i, err := b.launch(ctx, spec, taps)
	if err != nil {
		return nil, err
	}
	i.manifest = have
	load := snapshotLoad{
		SnapshotPath:  filepath.Join(snap.Dir, stateName),
		MemFilePath:   filepath.Join(snap.Dir, memoryName),
		VsockOverride: &vsockOverride{UDSPath: i.vsockPath},
	}
	for _, t := range taps.List() {
		load.NetworkOverrides = append(load.NetworkOverrides, networkOverride{IfaceID: ifaceID(t.Index), HostDevName: t.Device})
	}
	slices.SortFunc(load.NetworkOverrides, func(a, b networkOverride) int { return strings.Compare(a.IfaceID, b.IfaceID) })
	fail := func(err error) (backend.Instance, error) {
		i.Close()
		return nil, err
	}
	if err := i.api.call(ctx, "PUT", "/snapshot/load", load, nil); err != nil {
		return fail(i.apiError("loading the snapshot", err))
	}
	if err := i.api.call(ctx, "PATCH", "/vm", vmState{State: "Resumed"}, nil); err != nil {
		return fail(i.apiError("resuming the VM", err))
	}
	return i, nil
}
