package cloudhypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/sparsecopy"
)

// manifest records what a snapshot was taken of, to check that a machine
// it is restored as fits.
type manifest struct {
	Backend   string `json:"backend"`
	Machine   string `json:"machine"`
	CPUs      int    `json:"cpus"`
	MemoryMiB int    `json:"memory_mib"`
	Disks     int    `json:"disks"`
	VLANs     []int  `json:"vlans"`
}

func manifestOf(b *Backend, desc *backend.Description) manifest {
	m := manifest{Backend: b.Name(), Machine: desc.Name, CPUs: desc.CPUs, MemoryMiB: desc.MemoryMiB, Disks: len(desc.Disks), VLANs: []int{}}
	for _, nic := range desc.NICs {
		if nic.VLAN != 0 {
			m.VLANs = append(m.VLANs, nic.VLAN)
		}
	}
	return m
}

// fits names how want differs from m, or returns nil.
func (m manifest) fits(want manifest) error {
	switch {
	case m.Backend != want.Backend:
		return fmt.Errorf("%w: taken by backend %q", backend.ErrSnapshotMismatch, m.Backend)
	case m.CPUs != want.CPUs:
		return fmt.Errorf("%w: %d cpus, the machine has %d", backend.ErrSnapshotMismatch, m.CPUs, want.CPUs)
	case m.MemoryMiB != want.MemoryMiB:
		return fmt.Errorf("%w: %d MiB of memory, the machine has %d", backend.ErrSnapshotMismatch, m.MemoryMiB, want.MemoryMiB)
	case m.Disks != want.Disks:
		return fmt.Errorf("%w: %d disks, the machine has %d", backend.ErrSnapshotMismatch, m.Disks, want.Disks)
	case !slices.Equal(m.VLANs, want.VLANs):
		return fmt.Errorf("%w: nics on vlans %v, the machine's are on %v", backend.ErrSnapshotMismatch, m.VLANs, want.VLANs)
	}
	return nil
}

// Snapshot pauses the VM (vm.pause), saves it with vm.snapshot into
// dir/state, copies each disk's copy-on-write layer frozen into dir, and
// resumes the VM (vm.resume) unless opts.KeepPaused.
func (i *Instance) Snapshot(ctx context.Context, dir string, opts backend.SnapshotOptions) (_ *backend.Snapshot, err error) {
	start := time.Now()
	if err := i.api(ctx, "vm.pause", nil); err != nil {
		return nil, err
	}
	paused := true
	defer func() {
		if paused && (err != nil || !opts.KeepPaused) {
			if rerr := i.api(ctx, "vm.resume", nil); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}
		if err != nil {
			clearDir(dir)
		}
	}()
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if err := i.api(ctx, "vm.snapshot", map[string]any{"destination_url": "file://" + state}); err != nil {
		return nil, err
	}
	for k, d := range i.disks {
		if err := sparsecopy.Path(ctx, d, filepath.Join(dir, fmt.Sprintf("disk%d.qcow2", k))); err != nil {
			return nil, fmt.Errorf("freezing disk %d: %w", k, err)
		}
	}
	data, err := json.Marshal(manifestOf(i.b, i.desc))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), data, 0o600); err != nil {
		return nil, fmt.Errorf("snapshot manifest: %w", err)
	}
	pausedFor := time.Since(start)
	if !opts.KeepPaused {
		paused = false
		if err := i.api(ctx, "vm.resume", nil); err != nil {
			return nil, err
		}
	}
	return &backend.Snapshot{
		Backend: i.b.Name(), Dir: dir, Machine: i.spec.Name, Taken: start,
		Size: dirSize(state), Paused: pausedFor,
	}, nil
}

// Restore starts a fresh cloud-hypervisor for spec and restores snap into
// it (vm.restore from a copy of the saved state whose configuration
// points at this machine's own disk layers, console socket and TAP
// devices), then resumes it (vm.resume).
func (b *Backend) Restore(ctx context.Context, spec backend.Spec, snap *backend.Snapshot) (backend.Instance, error) {
	if snap.Backend != b.Name() {
		return nil, fmt.Errorf("%w: taken by backend %q", backend.ErrSnapshotMismatch, snap.Backend)
	}
	desc, err := backend.LoadDescription(backend.DescriptionPath(spec.StartScript))
	if err != nil {
		return nil, err
	}
	var m manifest
	data, err := os.ReadFile(filepath.Join(snap.Dir, "manifest.json"))
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: reading its manifest: %w", backend.ErrSnapshotMismatch, err)
	}
	if err := m.fits(manifestOf(b, desc)); err != nil {
		return nil, err
	}
	if err := ensureDir(spec.StateDir); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	var disks []string
	for k := range desc.Disks {
		frozen := filepath.Join(snap.Dir, fmt.Sprintf("disk%d.qcow2", k))
		p := filepath.Join(spec.StateDir, fmt.Sprintf("disk%d.qcow2", k))
		if _, err := os.Stat(frozen); err != nil {
			return nil, fmt.Errorf("%w: %w", backend.ErrSnapshotMismatch, err)
		}
		if err := overlay(ctx, frozen, "qcow2", p); err != nil {
			return nil, err
		}
		disks = append(disks, p)
	}
	taps, err := backend.CreateNamedTAPs(spec, desc, b.Name())
	if err != nil {
		return nil, err
	}
	src, err := b.restoreSource(ctx, spec, desc, filepath.Join(snap.Dir, "state"), disks, taps)
	if err != nil {
		taps.Remove()
		return nil, err
	}
	i, err := b.launch(ctx, spec, desc, disks, taps)
	if err != nil {
		return nil, err
	}
	if err := i.api(ctx, "vm.restore", map[string]any{"source_url": "file://" + src}); err != nil {
		i.Close()
		return nil, err
	}
	if err := i.connectConsole(ctx, true); err != nil {
		i.Close()
		return nil, err
	}
	if err := i.api(ctx, "vm.resume", nil); err != nil {
		i.Close()
		return nil, err
	}
	return i, nil
}

// restoreSource links the saved state into spec.StateDir/restore and
// rewrites its config.json (a VmConfig) for this machine.
func (b *Backend) restoreSource(ctx context.Context, spec backend.Spec, desc *backend.Description, state string, disks []string, taps *backend.NamedTAPs) (string, error) {
	dst := filepath.Join(spec.StateDir, "restore")
	if err := os.RemoveAll(dst); err != nil {
		return "", err
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return "", err
	}
	entries, err := os.ReadDir(state)
	if err != nil {
		return "", fmt.Errorf("%w: %w", backend.ErrSnapshotMismatch, err)
	}
	var cfg map[string]any
	for _, e := range entries {
		from, to := filepath.Join(state, e.Name()), filepath.Join(dst, e.Name())
		if e.Name() == "config.json" {
			data, err := os.ReadFile(from)
			if err != nil {
				return "", err
			}
			if err := json.Unmarshal(data, &cfg); err != nil {
				return "", fmt.Errorf("%w: its config.json: %w", backend.ErrSnapshotMismatch, err)
			}
			continue
		}
		if err := os.Link(from, to); err != nil {
			if err := sparsecopy.Path(ctx, from, to); err != nil {
				return "", err
			}
		}
	}
	if cfg == nil {
		return "", fmt.Errorf("%w: no config.json in %s", backend.ErrSnapshotMismatch, state)
	}
	cmdline, err := desc.CmdlineWithNet()
	if err != nil {
		return "", err
	}
	fresh := b.vmConfig(spec, desc, cmdline, disks, taps)
	for _, key := range []string{"disks", "net", "console", "serial"} {
		if v, ok := fresh[key]; ok {
			cfg[key] = v
		} else {
			delete(cfg, key)
		}
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return dst, os.WriteFile(filepath.Join(dst, "config.json"), data, 0o600)
}

// dirSize sums the sizes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// clearDir removes what dir holds, keeping dir.
func clearDir(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
