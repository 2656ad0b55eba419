package backend

import (
	"context"
	"errors"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// ErrSnapshotMismatch is wrapped by errors reporting a snapshot that
// cannot be restored on the machine asked for: a different memory size,
// CPU count, machine type or device order, another backend, or files that
// are missing or truncated.
var ErrSnapshotMismatch = errors.New("snapshot does not fit")

// Snapshot describes a machine state saved on disk by a Snapshotter.
// Only the backend named in it can restore it.
type Snapshot struct {
	// Backend names the backend that saved it ("qemu", "mock").
	Backend string
	// Dir is the directory holding the snapshot's files.
	Dir string
	// Machine is the name of the machine it was taken from.
	Machine string
	// Taken is when the state was saved.
	Taken time.Time
	// Size is the saved state's size on disk in bytes (after compression;
	// frozen disk layers are not counted).
	Size int64
	// Compressed reports whether the state was compressed (zstd).
	Compressed bool
	// Paused is how long the guest was paused to save it.
	Paused time.Duration
}

// SnapshotOptions tune one Snapshot call.
type SnapshotOptions struct {
	// KeepPaused leaves the guest paused after saving, instead of
	// resuming it.
	KeepPaused bool
}

// Snapshotter is implemented by instances whose whole state can be saved
// while they run.
type Snapshotter interface {
	// Snapshot pauses the guest and saves its state (memory, devices and
	// a frozen copy-on-write layer of each writable disk) into dir, which
	// exists and is empty, then resumes the guest unless opts.KeepPaused.
	// The caller makes sure no guest command is in flight. On error the
	// guest runs as before and dir holds nothing restorable.
	Snapshot(ctx context.Context, dir string, opts SnapshotOptions) (*Snapshot, error)
}

// Restorer is implemented by backends that can start a machine from a
// Snapshot.
type Restorer interface {
	// Restore starts a new hypervisor for spec that continues from snap:
	// its own sockets and its own copy-on-write copies of the snapshot's
	// disks (in spec.StateDir). The guest resumes where the snapshot left
	// off, so Instance.Shell returns its shell without a banner. A
	// snapshot that cannot fit spec gives an error wrapping
	// ErrSnapshotMismatch that names the difference; on any error nothing
	// Restore started is left running.
	Restore(ctx context.Context, spec Spec, snap *Snapshot) (Instance, error)
}

// SnapshotPreparer is implemented by instances whose snapshots need the
// guest prepared first: guest state the hypervisor cannot save is put
// aside before Snapshotter.Snapshot and put back afterwards (QEMU cannot
// save a guest with a 9p share mounted, so it unmounts them).
type SnapshotPreparer interface {
	// PrepareSnapshot puts aside, through the guest's root shell sh,
	// what the snapshot cannot hold, and says how to put it back. On
	// error the guest is as it was: whatever it had put aside is back.
	PrepareSnapshot(ctx context.Context, sh *backdoor.Shell) (GuestPrep, error)
}

// GuestPrep is what SnapshotPreparer.PrepareSnapshot did to a guest. The
// caller keeps it with the snapshot (it is plain data, saved with warm
// entries).
type GuestPrep struct {
	// Undo is a guest shell script that puts back what was put aside;
	// empty when nothing was. The caller runs it on the original guest
	// once the snapshot is taken (or failed), and first thing on every
	// machine restored from the snapshot.
	Undo string
	// What says what Undo does, for error messages ("mounting the
	// guest's 9p shares again").
	What string
}
