package machine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// The commands of logPrep's preparation and of its undo.
const (
	prepCommand = "prepare the guest"
	prepUndo    = "undo the preparation\n"
)

// prepLog records, across guests, the preparation steps they ran.
type prepLog struct {
	mu    sync.Mutex
	steps []string
}

func (l *prepLog) add(step string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.steps = append(l.steps, step)
}

func (l *prepLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.steps, " ")
}

// backend is a mock whose guests answer the preparation and its undo
// (alone, or opening a clone's fix-up) and log them in l.
func (l *prepLog) backend() *mock.Backend {
	return mock.New(mock.WithGuest(baseAnswers), mock.WithGuest(func(_ string, g *mock.Guest) {
		g.AnswerFunc(prepCommand, func(context.Context, mock.Request) mock.Reply { l.add("prepared"); return mock.Reply{} })
		g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
			if !strings.HasPrefix(req.Command, prepUndo) {
				return mock.Reply{}, false
			}
			l.add("undone")
			return mock.Reply{}, true
		})
		g.Answer("false\n", mock.Reply{Status: 1})
	}), mock.WithGuest(baseMatchers))
}

// logPrep prepares a guest with prepCommand; its undo is prepUndo.
func logPrep(ctx context.Context, sh *backdoor.Shell) (backend.GuestPrep, error) {
	if _, err := sh.Run(ctx, prepCommand, backdoor.RunOptions{}); err != nil {
		return backend.GuestPrep{}, err
	}
	return backend.GuestPrep{Undo: prepUndo, What: "putting it back"}, nil
}

// TestSnapshotPreparation: the machine asks the backend to prepare the
// guest before saving it, undoes the preparation on the original after
// the save, and first thing on every clone.
func TestSnapshotPreparation(t *testing.T) {
	var log prepLog
	b := log.backend()
	m := newPrepMachine(t, b, logPrep)
	ctx := testCtx(t)
	clones, err := m.Fork(ctx, 2)
	must(t, err)
	closeAll(t, clones)
	if got, want := log.String(), "prepared undone undone undone"; got != want {
		t.Errorf("steps %q, want %q: prepared once, undone on the original and both clones", got, want)
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
	var log prepLog
	b := log.backend()
	opts := []machine.Option{machine.WithWarm(t.TempDir())}
	cold := newPrepMachine(t, b, logPrep, opts...)
	must(t, cold.Close())
	if got := log.String(); got != "prepared undone" {
		t.Fatalf("after the cold boot that saved the warm entry, steps %q", got)
	}
	newPrepMachine(t, b, logPrep, opts...)
	if b.Restores("prep") != 1 {
		t.Fatalf("the second start was not warm (%d restores)", b.Restores("prep"))
	}
	if got := log.String(); got != "prepared undone undone" {
		t.Errorf("after the warm start, steps %q; want the undo run once more", got)
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
			var log prepLog
			m := newPrepMachine(t, log.backend(), tt.prep)
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
