package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// envDiskImage is the nixpkgs start scripts' variable naming the
// machine's root disk image.
const envDiskImage = "NIX_DISK_IMAGE"

// Restore starts spec's start script with QEMU waiting for an incoming
// migration, checks that the machine it describes matches the snapshot,
// loads the saved state and resumes the guest. Each disk of the snapshot
// gets a fresh qcow2 overlay in spec.StateDir, at the path the original
// had relative to its own state directory (NIX_DISK_IMAGE is pointed at
// it when the spec sets that variable), so clones never share a writable
// layer.
func (b *Backend) Restore(ctx context.Context, spec backend.Spec, snap *backend.Snapshot) (backend.Instance, error) {
	m, err := readManifest(snap, b.Name())
	if err != nil {
		return nil, err
	}
	if m.Compressed {
		if _, err := hosttools.Path(zstdBinary); err != nil {
			return nil, fmt.Errorf("the snapshot is compressed: %w", err)
		}
	}
	stateDir, err := filepath.Abs(spec.StateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	if len(m.Disks) > 0 {
		if _, err := hosttools.Path(qemuImg); err != nil {
			return nil, fmt.Errorf("restoring a machine with disks needs %s: %w", qemuImg, err)
		}
	}
	spec.Env = append([]string(nil), spec.Env...)
	for _, d := range m.Disks {
		overlay, err := overlayPath(d.Path, m.StateDir, stateDir)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(overlay), 0o700); err != nil {
			return nil, err
		}
		os.Remove(overlay)
		if err := runTool(ctx, qemuImg, "create", "-q", "-f", "qcow2", "-b", d.Frozen, "-F", d.Format, overlay); err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Device, err)
		}
		for k, kv := range spec.Env {
			if strings.HasPrefix(kv, envDiskImage+"=") {
				spec.Env[k] = envDiskImage + "=" + overlay
			}
		}
	}

	ram := ramPlan{mib: m.RAMMiB}
	if m.RAMMiB > 0 {
		// QEMU would refuse a memory backend of another size than -m with
		// a less helpful message than the hardware check's.
		env := append([]string{"QEMU_OPTS=" + os.Getenv("QEMU_OPTS")}, spec.Env...)
		if mib, _ := scriptMemoryMiB(spec.StartScript, env); mib > 0 && mib != m.RAMMiB {
			return nil, fmt.Errorf("%w: snapshot %s was taken from machine %q but this machine has memory %d MiB, the snapshot has %d MiB; restore it with the start script it was taken with",
				backend.ErrSnapshotMismatch, snap.Dir, m.Machine, mib, m.RAMMiB)
		}
	}
	if m.RAMFile != "" {
		if ram.frozen, err = frozenRAM(ctx, snap.Dir, stateDir); err != nil {
			return nil, fmt.Errorf("the snapshot's guest RAM: %w", err)
		}
	}
	began := time.Now()
	inst, err := b.start(ctx, spec, true, ram)
	if err != nil {
		return nil, wrapLockError(err, m)
	}
	spawned := time.Since(began)
	if err := inst.loadSnapshot(ctx, snap.Dir, m); err != nil {
		inst.Close()
		return nil, err
	}
	inst.logf("qemu: snapshot %s loaded %s after the spawn (%s to the control socket)",
		filepath.Base(snap.Dir), time.Since(began).Round(time.Millisecond), spawned.Round(time.Millisecond))
	return inst, nil
}

// overlayPath is where a clone whose state directory is cloneDir keeps its
// copy of the disk the original had at path (with state directory
// origDir): the same place relative to the state directory, or the same
// file name in the state directory for a disk that lived elsewhere.
func overlayPath(path, origDir, cloneDir string) (string, error) {
	if rel, err := filepath.Rel(origDir, path); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
		return filepath.Join(cloneDir, rel), nil
	}
	base := filepath.Base(path)
	if base == "." || base == "/" {
		return "", fmt.Errorf("disk path %q has no file name", path)
	}
	return filepath.Join(cloneDir, base), nil
}

// lockHint explains QEMU refusing a disk that another QEMU holds.
const lockHint = "the start script opened a disk another machine is using; a restored machine needs its own: let the start script take its disk from " +
	envDiskImage + " or from a path relative to its working directory"

// wrapLockError explains QEMU refusing a disk that another QEMU holds (it
// says so on stderr): the start script opened the original's disk
// instead of the clone's.
func wrapLockError(err error, m manifest) error {
	if len(m.Disks) == 0 {
		return err
	}
	const refusal = `Failed to get "write" lock`
	// QEMU exited at start, with its reason on stderr: a hint of the
	// error itself (not a wrapper's, which errors.As could find).
	if be, ok := err.(*backend.Error); ok && slices.ContainsFunc(be.Stderr, func(l string) bool { return strings.Contains(l, refusal) }) {
		e := *be
		if e.Hint != "" {
			e.Hint += "; "
		}
		e.Hint += lockHint
		return &e
	}
	if !strings.Contains(err.Error(), refusal) {
		return err
	}
	return fmt.Errorf("%w\n(%s)", err, lockHint)
}

// loadSnapshot checks the waiting QEMU against the manifest, feeds it the
// saved state and resumes the guest.
func (i *Instance) loadSnapshot(ctx context.Context, dir string, m manifest) error {
	have, err := i.hardware(ctx)
	if err != nil {
		return err
	}
	diff, extra := m.Hardware.compare(have)
	if diff != "" {
		return fmt.Errorf("%w: snapshot %s was taken from machine %q but this machine has %s; restore it with the start script it was taken with",
			backend.ErrSnapshotMismatch, dir, m.Machine, diff)
	}
	if len(extra) > 0 {
		i.logf("qemu: this machine has PCI devices the snapshot lacks (%s); the restored guest will not see them", strings.Join(extra, ", "))
	}

	if m.IgnoreShared || m.RAMFile != "" {
		// The stream was saved so (it lacks the RAM when a RAM file
		// holds it): this QEMU loads it likewise.
		if err := i.setIgnoreShared(ctx); err != nil {
			return err
		}
	}
	statePath := filepath.Join(dir, m.State)
	var (
		feed *os.File // what QEMU reads the stream from
		zst  *compressor
	)
	if m.Compressed {
		r, w, err := os.Pipe()
		if err != nil {
			return err
		}
		if zst, err = startCompressor([]string{"-d", "-c", "-q", statePath}, nil, w); err != nil {
			r.Close()
			return err
		}
		feed = r
	} else {
		f, err := os.Open(statePath)
		if err != nil {
			return err
		}
		feed = f
	}
	// zstd's complaint explains a failed load; being killed because QEMU
	// stopped reading does not.
	stopHelper := func(grace time.Duration) error {
		if err := zst.stop(grace); err != nil && !errors.Is(err, errZstdKilled) {
			return fmt.Errorf("%s: %w", zstdBinary, err)
		}
		return nil
	}
	defer stopHelper(0)

	fail := func(err error) error {
		// A failed load makes QEMU exit, with its reason on stderr.
		i.waitDone(pipeGrace)
		herr := stopHelper(time.Second)
		select {
		case <-i.exited:
			e := i.ended("loading snapshot "+dir, "QEMU")
			e.Err = backend.ErrSnapshotMismatch
			if herr != nil {
				e.Err = fmt.Errorf("%w: %v", backend.ErrSnapshotMismatch, herr)
			}
			e.Stderr = i.stderr.Lines(tailLines)
			return e
		default:
		}
		if herr != nil {
			err = fmt.Errorf("%w (%v)", err, herr)
		}
		return err
	}

	c, err := i.client()
	if err != nil {
		feed.Close()
		return err
	}
	err = c.ExecuteWithFiles(ctx, "getfd", map[string]any{"fdname": migrateFD}, nil, feed)
	feed.Close()
	if err != nil {
		return fail(fmt.Errorf("passing the snapshot to QEMU: %w", err))
	}
	if err := i.execute(ctx, "migrate-incoming", map[string]any{"uri": "fd:" + migrateFD}, nil); err != nil {
		return fail(fmt.Errorf("loading snapshot %s: %w", dir, err))
	}
	if err := i.awaitMigration(ctx, "loading snapshot "+dir); err != nil {
		return fail(err)
	}
	if err := i.execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resuming the restored guest: %w", err)
	}
	return nil
}
