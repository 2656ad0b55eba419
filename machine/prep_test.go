package machine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// prepBackend wraps the mock so that its instances need the guest
// prepared for a snapshot (backend.SnapshotPreparer), as QEMU's do.
type prepBackend struct {
	backend.Backend
	prep func(ctx context.Context, sh *backdoor.Shell) (backend.GuestPrep, error)
}

func (b *prepBackend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	inst, err := b.Backend.Start(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &prepInstance{Instance: inst, b: b}, nil
}

func (b *prepBackend) Restore(ctx context.Context, spec backend.Spec, snap *backend.Snapshot) (backend.Instance, error) {
	inst, err := b.Backend.(backend.Restorer).Restore(ctx, spec, snap)
	if err != nil {
		return nil, err
	}
	return &prepInstance{Instance: inst, b: b}, nil
}

func (b *prepBackend) WarmKey(spec backend.Spec) (string, error) {
	return b.Backend.(backend.WarmKeyer).WarmKey(spec)
}

type prepInstance struct {
	backend.Instance
	b *prepBackend
}

func (i *prepInstance) Snapshot(ctx context.Context, dir string, opts backend.SnapshotOptions) (*backend.Snapshot, error) {
	return i.Instance.(backend.Snapshotter).Snapshot(ctx, dir, opts)
}

func (i *prepInstance) PrepareSnapshot(ctx context.Context, sh *backdoor.Shell) (backend.GuestPrep, error) {
	return i.b.prep(ctx, sh)
}

// newPrepMachine starts machine "prep" on a prepBackend over b.
func newPrepMachine(t *testing.T, b *mock.Backend, prep func(context.Context, *backdoor.Shell) (backend.GuestPrep, error), opts ...machine.Option) *machine.Machine {
	t.Helper()
	opts = append([]machine.Option{machine.WithBootTimeout(5 * time.Second), machine.WithCommandTimeout(10 * time.Second)}, opts...)
	m, err := machine.New(&prepBackend{Backend: b, prep: prep}, "prep", opts...)
	must(t, err)
	t.Cleanup(func() { m.Close() })
	_, err = m.Succeed(testCtx(t), "true")
	must(t, err)
	return m
}

// prepUndo is what logPrep's preparation leaves to undo.
const prepUndo = "echo undone >> /tmp/shared/prep.log\n"

// logPrep prepares a guest by logging so into /tmp/shared/prep.log; its
// undo logs too.
func logPrep(ctx context.Context, sh *backdoor.Shell) (backend.GuestPrep, error) {
	if _, err := sh.Run(ctx, "echo prepared >> /tmp/shared/prep.log", backdoor.RunOptions{}); err != nil {
		return backend.GuestPrep{}, err
	}
	return backend.GuestPrep{Undo: prepUndo, What: "putting it back"}, nil
}

// TestSnapshotPreparation: the machine asks the backend to prepare the
// guest before saving it, undoes the preparation on the original after
// the save, and first thing on every clone.
func TestSnapshotPreparation(t *testing.T) {
	b := mock.New()
	m := newPrepMachine(t, b, logPrep)
	ctx := testCtx(t)
	clones, err := m.Fork(ctx, 2)
	must(t, err)
	closeAll(t, clones)
	logged, err := os.ReadFile(filepath.Join(m.SharedDir(), "prep.log"))
	must(t, err)
	if got, want := string(logged), "prepared\nundone\nundone\nundone\n"; got != want {
		t.Errorf("prep.log = %q, want %q: prepared once, undone on the original and both clones", got, want)
	}
	for _, c := range clones {
		cmds := b.Guest(c.Name()).Commands()
		if len(cmds) == 0 || !strings.HasPrefix(cmds[0], prepUndo) {
			t.Errorf("%s: the first command does not start with the undo script: %q", c.Name(), cmds)
		}
	}
}

// TestWarmStartUndoesPreparation: a warm entry keeps the preparation, and
// the warm start undoes it first thing.
func TestWarmStartUndoesPreparation(t *testing.T) {
	b := mock.New()
	shared, warm := t.TempDir(), t.TempDir()
	opts := []machine.Option{machine.WithSharedDir(shared), machine.WithWarm(warm)}
	cold := newPrepMachine(t, b, logPrep, opts...)
	must(t, cold.Close())
	if got, _ := os.ReadFile(filepath.Join(shared, "prep.log")); string(got) != "prepared\nundone\n" {
		t.Fatalf("after the cold boot that saved the warm entry, prep.log = %q", got)
	}
	newPrepMachine(t, b, logPrep, opts...)
	if b.Restores("prep") != 1 {
		t.Fatalf("the second start was not warm (%d restores)", b.Restores("prep"))
	}
	if got, _ := os.ReadFile(filepath.Join(shared, "prep.log")); string(got) != "prepared\nundone\nundone\n" {
		t.Errorf("after the warm start, prep.log = %q; want the undo run once more", got)
	}
}

// TestSnapshotPreparationErrors: a failed preparation or undo fails the
// snapshot with a message naming the machine once.
func TestSnapshotPreparationErrors(t *testing.T) {
	busy := errors.New("unmounting the share (is a process using it?): status 1: busy")
	tests := []struct {
		name string
		prep func(context.Context, *backdoor.Shell) (backend.GuestPrep, error)
		want []string
		is   error
	}{
		{"prepare fails", func(context.Context, *backdoor.Shell) (backend.GuestPrep, error) {
			return backend.GuestPrep{}, busy
		}, []string{"machine prep: unmounting the share (is a process using it?): status 1: busy"}, busy},
		{"undo fails", func(context.Context, *backdoor.Shell) (backend.GuestPrep, error) {
			return backend.GuestPrep{Undo: "false\n", What: "mounting the share again"}, nil
		}, []string{"machine prep: snapshot s: mounting the share again: status 1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newPrepMachine(t, mock.New(), tt.prep)
			_, err := m.Snapshot(testCtx(t), "s")
			wantErrContains(t, err, tt.want...)
			if n := strings.Count(err.Error(), "machine prep"); n != 1 {
				t.Errorf("the machine is named %d times in %q", n, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			if _, err := os.Stat(filepath.Join(m.StateDir(), "snapshots", "s")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the failed snapshot's directory is left: %v", err)
			}
		})
	}
}
