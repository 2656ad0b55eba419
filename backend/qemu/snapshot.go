package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/sparsecopy"
)

// A snapshot directory holds the migration stream of a stopped guest and
// a manifest. Disks are not in the stream: once it is saved, each
// writable disk layer is copied to a frozen file next to it, and clones
// get their own qcow2 overlays on top of those frozen layers.
//
// The stream goes through a file descriptor QEMU gets over QMP (getfd +
// migrate fd:), not an exec: URI: QEMU signals an exec: helper that has
// not exited when the migration ends, which can cut a compressor short,
// and our own helper process lets us wait for it and quote its errors.
const (
	manifestFile    = "manifest.json"
	stateRaw        = "state.bin"
	stateZstd       = "state.zst"
	manifestVersion = 1
	// zstdBinary compresses the stream when installed (Debian: zstd).
	zstdBinary = "zstd"
	// qemuImg creates the copy-on-write layers (Debian: qemu-utils).
	qemuImg = "qemu-img"
	// migrateFD is the name the stream's descriptor gets in QEMU.
	migrateFD = "vmdriver-migration"
	// pollMin and pollMax bound the query-migrate polling interval.
	pollMin = 2 * time.Millisecond
	pollMax = 20 * time.Millisecond
)

// manifest describes a snapshot directory.
type manifest struct {
	Version    int        `json:"version"`
	Backend    string     `json:"backend"`
	Machine    string     `json:"machine"`
	Taken      time.Time  `json:"taken"`
	State      string     `json:"state"`
	Compressed bool       `json:"compressed"`
	Size       int64      `json:"size"`
	Paused     string     `json:"paused"`
	QEMU       string     `json:"qemu"`
	Hardware   hardware   `json:"hardware"`
	Disks      []snapDisk `json:"disks,omitempty"`
	// StateDir is the original machine's state directory, so a disk that
	// lived there is recreated at the same place in a clone's.
	StateDir string `json:"state_dir"`
	// RAMMiB is the size of the driver's memory backend (ram.go), 0 when
	// the machine had QEMU's default RAM; RAMFile, when set, names the
	// frozen RAM in the snapshot directory, which the stream then lacks.
	RAMMiB  int64  `json:"ram_mib,omitempty"`
	RAMFile string `json:"ram_file,omitempty"`
	// IgnoreShared says the stream was saved with the x-ignore-shared
	// capability on, which the loading QEMU must match.
	IgnoreShared bool `json:"ignore_shared,omitempty"`
}

// hardware is what QEMU needs to be identical for a migration stream to
// load.
type hardware struct {
	MachineType string `json:"machine_type"`
	MemoryBytes int64  `json:"memory_bytes"`
	CPUs        int    `json:"cpus"`
	// PCI lists the PCI functions in bus order ("00:02.0 1af4:1003").
	// Devices added after these load, but a different order does not.
	PCI []string `json:"pci"`
}

// snapDisk is one writable disk frozen by a snapshot.
type snapDisk struct {
	// Device is QEMU's drive id (the BlockBackend name, "root").
	Device string `json:"device"`
	// Path is where the machine had the disk: clones get their overlay at
	// the same place relative to their state directory.
	Path string `json:"path"`
	// Frozen is the immutable layer the clones' overlays sit on: a file
	// in the snapshot directory, named relative to it in the manifest so
	// the directory can be moved (a warm-start cache entry).
	Frozen string `json:"frozen"`
	// Format is Frozen's image format.
	Format string `json:"format"`
}

// blockInfo is the part of query-block's answer we use.
type blockInfo struct {
	Device   string `json:"device"`
	Inserted *struct {
		File  string `json:"file"`
		RO    bool   `json:"ro"`
		Drv   string `json:"drv"`
		Image struct {
			Filename            string `json:"filename"`
			Format              string `json:"format"`
			VirtualSize         int64  `json:"virtual-size"`
			BackingFilename     string `json:"backing-filename"`
			FullBackingFilename string `json:"full-backing-filename"`
			BackingFormat       string `json:"backing-filename-format"`
		} `json:"image"`
	} `json:"inserted"`
}

var _ backend.Snapshotter = (*Instance)(nil)
var _ backend.Restorer = (*Backend)(nil)

// Snapshot stops the guest, freezes its writable disks, streams its state
// into dir (through zstd when installed) and writes the manifest, then
// resumes the guest unless opts.KeepPaused. On error the guest is
// resumed (if it was running) and dir holds no manifest.
func (i *Instance) Snapshot(ctx context.Context, dir string, opts backend.SnapshotOptions) (_ *backend.Snapshot, err error) {
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot directory: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("snapshot directory %s is not a directory (%v)", dir, err)
	}
	i.snapMu.Lock()
	defer i.snapMu.Unlock()

	var status struct {
		Running bool   `json:"running"`
		Status  string `json:"status"`
	}
	if err := i.execute(ctx, "query-status", nil, &status); err != nil {
		return nil, err
	}
	hw, err := i.hardware(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if status.Running {
		if err := i.execute(ctx, "stop", nil, nil); err != nil {
			return nil, err
		}
	}
	resume := func() error {
		if !status.Running {
			return nil
		}
		// cont also reactivates the disks a completed migration left
		// inactive; a bounded context of its own, because ctx may be
		// what ended.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		return i.execute(cctx, "cont", nil, nil)
	}
	defer func() {
		if err != nil {
			if rerr := resume(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("resuming the machine after the failed snapshot: %w", rerr))
			}
		}
	}()

	blocks, err := i.writableDisks(ctx)
	if err != nil {
		return nil, err
	}
	if i.ramLive != nil {
		// The RAM is copied from its file below, not streamed.
		if err := i.setIgnoreShared(ctx); err != nil {
			return nil, err
		}
	}
	statePath, compressed, err := i.saveState(ctx, dir)
	if err != nil {
		return nil, err
	}
	disks, err := i.freezeDisks(ctx, blocks, dir)
	if err != nil {
		os.Remove(statePath)
		for _, d := range disks {
			os.Remove(d.Frozen)
		}
		return nil, err
	}
	fi, err := os.Stat(statePath)
	if err != nil {
		os.Remove(statePath)
		return nil, fmt.Errorf("snapshot state: %w", err)
	}
	var savedRAM string
	if i.ramLive != nil {
		if err := sparsecopy.File(ctx, i.ramLive, filepath.Join(dir, ramFile)); err != nil {
			os.Remove(statePath)
			for _, d := range disks {
				os.Remove(d.Frozen)
			}
			return nil, fmt.Errorf("freezing the guest RAM: %w", err)
		}
		savedRAM = ramFile
	}
	paused := time.Since(start)
	if !opts.KeepPaused {
		if err := resume(); err != nil {
			os.Remove(statePath)
			return nil, fmt.Errorf("resuming after the snapshot: %w", err)
		}
		paused = time.Since(start)
	}
	i.mu.Lock()
	ver := ""
	if i.qmp != nil {
		v := i.qmp.Version()
		ver = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
	}
	i.mu.Unlock()
	m := manifest{
		Version:      manifestVersion,
		Backend:      i.backendName(),
		Machine:      i.name,
		Taken:        start,
		State:        filepath.Base(statePath),
		Compressed:   compressed,
		Size:         fi.Size(),
		Paused:       paused.String(),
		QEMU:         ver,
		Hardware:     hw,
		Disks:        relativeFrozen(disks),
		StateDir:     i.stateDir,
		RAMMiB:       i.ramMiB,
		RAMFile:      savedRAM,
		IgnoreShared: i.ignoreShared,
	}
	if err := writeManifest(dir, m); err != nil {
		os.Remove(statePath)
		return nil, err
	}
	return &backend.Snapshot{
		Backend:    i.backendName(),
		Dir:        dir,
		Machine:    i.name,
		Taken:      start,
		Size:       fi.Size(),
		Compressed: compressed,
		Paused:     paused,
	}, nil
}

// setIgnoreShared turns on the x-ignore-shared migration capability: RAM
// in a shared file is not streamed (the snapshot keeps the file).
func (i *Instance) setIgnoreShared(ctx context.Context) error {
	if i.ignoreShared {
		return nil
	}
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": true}}
	if err := i.execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return err
	}
	i.ignoreShared = true
	return nil
}

// hardware asks QEMU for what a restore must match.
func (i *Instance) hardware(ctx context.Context) (hardware, error) {
	var hw hardware
	if err := i.execute(ctx, "qom-get", map[string]any{"path": "/machine", "property": "type"}, &hw.MachineType); err != nil {
		return hw, err
	}
	hw.MachineType = strings.TrimSuffix(hw.MachineType, "-machine")
	var mem struct {
		Base int64 `json:"base-memory"`
	}
	if err := i.execute(ctx, "query-memory-size-summary", nil, &mem); err != nil {
		return hw, err
	}
	hw.MemoryBytes = mem.Base
	var cpus []json.RawMessage
	if err := i.execute(ctx, "query-cpus-fast", nil, &cpus); err != nil {
		return hw, err
	}
	hw.CPUs = len(cpus)
	var buses []pciBus
	if err := i.execute(ctx, "query-pci", nil, &buses); err != nil {
		return hw, err
	}
	hw.PCI = pciList(buses)
	return hw, nil
}

// pciBus is the part of query-pci's answer we use.
type pciBus struct {
	Bus     int         `json:"bus"`
	Devices []pciDevice `json:"devices"`
}

type pciDevice struct {
	Bus      int `json:"bus"`
	Slot     int `json:"slot"`
	Function int `json:"function"`
	ID       struct {
		Vendor int `json:"vendor"`
		Device int `json:"device"`
	} `json:"id"`
	QdevID    string `json:"qdev_id"`
	PCIBridge *struct {
		Devices []pciDevice `json:"devices"`
	} `json:"pci_bridge"`
}

func pciList(buses []pciBus) []string {
	var out []string
	var walk func(devs []pciDevice)
	walk = func(devs []pciDevice) {
		for _, d := range devs {
			out = append(out, fmt.Sprintf("%02x:%02x.%d %04x:%04x", d.Bus, d.Slot, d.Function, d.ID.Vendor, d.ID.Device))
			if d.PCIBridge != nil {
				walk(d.PCIBridge.Devices)
			}
		}
	}
	for _, b := range buses {
		walk(b.Devices)
	}
	return out
}

// compare explains how have differs from the snapshot's want, or returns
// "" when a stream saved on want loads on have. extra reports PCI
// functions have adds after want's (they load, but the guest will not
// see them).
func (want hardware) compare(have hardware) (diff string, extra []string) {
	var d []string
	if want.MachineType != have.MachineType {
		d = append(d, fmt.Sprintf("machine type %s, the snapshot has %s", have.MachineType, want.MachineType))
	}
	if want.MemoryBytes != have.MemoryBytes {
		d = append(d, fmt.Sprintf("memory %d MiB, the snapshot has %d MiB", have.MemoryBytes>>20, want.MemoryBytes>>20))
	}
	if want.CPUs != have.CPUs {
		d = append(d, fmt.Sprintf("%d CPUs, the snapshot has %d", have.CPUs, want.CPUs))
	}
	for k, w := range want.PCI {
		if k >= len(have.PCI) {
			d = append(d, fmt.Sprintf("no PCI device %s (the snapshot has %d PCI functions, this machine %d)", w, len(want.PCI), len(have.PCI)))
			break
		}
		if have.PCI[k] != w {
			d = append(d, fmt.Sprintf("PCI device %s where the snapshot has %s (devices must be given in the same order)", have.PCI[k], w))
			break
		}
	}
	if len(have.PCI) > len(want.PCI) && len(d) == 0 {
		extra = have.PCI[len(want.PCI):]
	}
	return strings.Join(d, "; "), extra
}

// freezeDisks copies every writable disk layer, once the migration has
// completed (QEMU has flushed the disks and holds no cached metadata),
// into the snapshot directory dir as disk-<device>.<format>: the copy is
// the frozen layer the clones' overlays sit on, while the machine goes on
// with its own file. A relative backing file name in the copy's header is
// made absolute, so the directory holds everything and can move. Disk
// layers of test machines are small overlays, so the copy costs little.
func (i *Instance) freezeDisks(ctx context.Context, blocks []blockInfo, dir string) ([]snapDisk, error) {
	var disks []snapDisk
	for _, b := range blocks {
		if b.Inserted == nil || b.Inserted.RO {
			continue
		}
		path := b.Inserted.File
		if strings.HasPrefix(path, "json:") || !filepath.IsAbs(path) {
			return disks, fmt.Errorf("disk %s (%s) is not a plain file path; snapshots need file-backed disks: %w", b.Device, path, backend.ErrUnsupported)
		}
		format := b.Inserted.Image.Format
		if format == "" {
			format = b.Inserted.Drv
		}
		frozen := filepath.Join(dir, "disk-"+fileSafe(b.Device)+"."+fileSafe(format))
		if err := sparsecopy.Path(ctx, path, frozen); err != nil {
			return disks, fmt.Errorf("freezing disk %s: %w", b.Device, err)
		}
		disks = append(disks, snapDisk{Device: b.Device, Path: path, Frozen: frozen, Format: format})
		img := b.Inserted.Image
		if img.BackingFilename != "" && !filepath.IsAbs(img.BackingFilename) && !strings.HasPrefix(img.BackingFilename, "json:") {
			args := []string{"rebase", "-u", "-b", img.FullBackingFilename}
			if img.BackingFormat != "" {
				args = append(args, "-F", img.BackingFormat)
			}
			if err := runTool(ctx, qemuImg, append(args, frozen)...); err != nil {
				return disks, fmt.Errorf("freezing disk %s: %w", b.Device, err)
			}
		}
	}
	return disks, nil
}

// writableDisks returns the writable disks of query-block's answer,
// checking up front that they can be frozen.
func (i *Instance) writableDisks(ctx context.Context) ([]blockInfo, error) {
	var blocks []blockInfo
	if err := i.execute(ctx, "query-block", nil, &blocks); err != nil {
		return nil, err
	}
	var out []blockInfo
	for _, b := range blocks {
		if b.Inserted == nil || b.Inserted.RO {
			continue
		}
		if _, err := hosttools.Path(qemuImg); err != nil {
			return nil, fmt.Errorf("snapshots of machines with disks need %s: %w", qemuImg, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// saveState streams the stopped guest's state into dir and returns the
// file's path. The file appears under its final name only once complete.
func (i *Instance) saveState(ctx context.Context, dir string) (path string, compressed bool, err error) {
	_, lookErr := hosttools.Path(zstdBinary)
	compressed = lookErr == nil
	name := stateRaw
	if compressed {
		name = stateZstd
	}
	final := filepath.Join(dir, name)
	tmp := final + ".partial"
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()

	var (
		feed *os.File // what QEMU writes the stream into
		zst  *compressor
	)
	if compressed {
		r, w, err := os.Pipe()
		if err != nil {
			return "", false, err
		}
		if zst, err = startCompressor([]string{"-1", "-q", "-f", "-o", tmp}, r, nil); err != nil {
			w.Close()
			return "", false, err
		}
		feed = w
	} else {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return "", false, err
		}
		feed = f
	}
	// The stream ends when QEMU closes its copy of feed; zstd then
	// finishes the file.
	waitHelper := func() error { return zst.stop(30 * time.Second) }

	c, err := i.client()
	if err != nil {
		feed.Close()
		waitHelper()
		return "", false, err
	}
	err = c.ExecuteWithFiles(ctx, "getfd", map[string]any{"fdname": migrateFD}, nil, feed)
	// QEMU has its own copy now; ours would keep the pipe open.
	feed.Close()
	if err != nil {
		waitHelper()
		return "", false, fmt.Errorf("passing the snapshot file to QEMU: %w", err)
	}
	// A stopped guest does not dirty memory, so the stream is one pass;
	// no bandwidth limit should slow it (7.2 defaults to 32 MiB/s).
	_ = i.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil)
	if err := i.execute(ctx, "migrate", map[string]any{"uri": "fd:" + migrateFD}, nil); err != nil {
		_ = i.execute(context.WithoutCancel(ctx), "closefd", map[string]any{"fdname": migrateFD}, nil)
		waitHelper()
		return "", false, fmt.Errorf("starting the snapshot: %w", err)
	}
	merr := i.awaitMigration(ctx, "saving the snapshot")
	herr := waitHelper()
	if merr != nil {
		if herr != nil {
			// The compressor's reason (a full disk) comes first; QEMU
			// only saw its pipe close.
			return "", false, fmt.Errorf("writing the snapshot: %v (then %v)", herr, merr)
		}
		return "", false, merr
	}
	if herr != nil {
		return "", false, fmt.Errorf("compressing the snapshot: %w", herr)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", false, err
	}
	return final, compressed, nil
}

// awaitMigration polls query-migrate until the migration completed
// (nil), failed or was cancelled (error with QEMU's reason). When ctx
// ends first it cancels the migration. It returns early if QEMU exits.
func (i *Instance) awaitMigration(ctx context.Context, what string) error {
	interval := pollMin
	for {
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := i.execute(ctx, "query-migrate", nil, &st); err != nil {
			if ctx.Err() != nil {
				i.cancelMigration()
				return fmt.Errorf("%s: %w", what, ctx.Err())
			}
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			desc := st.ErrorDesc
			if desc == "" {
				desc = "QEMU gave no reason"
			}
			return fmt.Errorf("%s: migration %s: %s", what, st.Status, desc)
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			i.cancelMigration()
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-i.exited:
			t.Stop()
			return i.exitError(what, nil)
		case <-t.C:
		}
		interval = min(interval*2, pollMax)
	}
}

// cancelMigration stops a running migration, bounded on its own.
func (i *Instance) cancelMigration() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = i.execute(ctx, "migrate_cancel", nil, nil)
}

// writeManifest writes m atomically, last, so a directory with a manifest
// holds a complete snapshot.
func writeManifest(dir string, m manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, manifestFile+".partial")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the snapshot manifest: %w", err)
	}
	return os.Rename(tmp, filepath.Join(dir, manifestFile))
}

// readManifest reads and checks a snapshot directory for the backend
// called backendName ("qemu" or "microvm": a -M pc state does not load
// into a microvm QEMU, nor the other way round).
func readManifest(snap *backend.Snapshot, backendName string) (manifest, error) {
	var m manifest
	if snap == nil {
		return m, fmt.Errorf("%w: no snapshot given", backend.ErrSnapshotMismatch)
	}
	if snap.Backend != "" && snap.Backend != backendName {
		return m, fmt.Errorf("%w: the snapshot was taken by the %s backend; only it can restore it, not %s", backend.ErrSnapshotMismatch, snap.Backend, backendName)
	}
	data, err := os.ReadFile(filepath.Join(snap.Dir, manifestFile))
	if err != nil {
		return m, fmt.Errorf("%w: %s is not a complete snapshot (no readable %s): %v", backend.ErrSnapshotMismatch, snap.Dir, manifestFile, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%w: %s: malformed %s: %v", backend.ErrSnapshotMismatch, snap.Dir, manifestFile, err)
	}
	if m.Backend != backendName || m.Version != manifestVersion {
		return m, fmt.Errorf("%w: %s was written by backend %q, format %d; this is %s format %d", backend.ErrSnapshotMismatch, snap.Dir, m.Backend, m.Version, backendName, manifestVersion)
	}
	if m.State != stateRaw && m.State != stateZstd {
		return m, fmt.Errorf("%w: %s: the manifest names an unknown state file %q", backend.ErrSnapshotMismatch, snap.Dir, m.State)
	}
	fi, err := os.Stat(filepath.Join(snap.Dir, m.State))
	if err != nil {
		return m, fmt.Errorf("%w: %s: the saved state is missing: %v", backend.ErrSnapshotMismatch, snap.Dir, err)
	}
	if fi.Size() != m.Size {
		return m, fmt.Errorf("%w: %s: the saved state %s has %d bytes, the manifest says %d (truncated or replaced; take the snapshot again)",
			backend.ErrSnapshotMismatch, snap.Dir, m.State, fi.Size(), m.Size)
	}
	if m.RAMFile != "" {
		fi, err := os.Stat(filepath.Join(snap.Dir, m.RAMFile))
		if err != nil || fi.Size() != m.RAMMiB<<20 {
			return m, fmt.Errorf("%w: %s: the frozen guest RAM %s is missing or not %d MiB (%v); take the snapshot again",
				backend.ErrSnapshotMismatch, snap.Dir, m.RAMFile, m.RAMMiB, err)
		}
	}
	for k, d := range m.Disks {
		if !filepath.IsAbs(d.Frozen) {
			d.Frozen = filepath.Join(snap.Dir, d.Frozen)
			m.Disks[k].Frozen = d.Frozen
		}
		if _, err := os.Stat(d.Frozen); err != nil {
			return m, fmt.Errorf("%w: %s: the frozen layer of disk %s is gone (was the machine it was taken from removed?): %v",
				backend.ErrSnapshotMismatch, snap.Dir, d.Device, err)
		}
	}
	return m, nil
}

// runTool runs a host tool, bounded by ctx, quoting its stderr on error.
func runTool(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	bin, err := hosttools.Path(name)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// fileSafe maps s to a file name part: letters, digits, '-' and '_' stay,
// anything else becomes '_'.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

// relativeFrozen returns disks with each frozen layer named relative to
// the snapshot directory, for the manifest.
func relativeFrozen(disks []snapDisk) []snapDisk {
	out := slices.Clone(disks)
	for k := range out {
		out[k].Frozen = filepath.Base(out[k].Frozen)
	}
	return out
}
