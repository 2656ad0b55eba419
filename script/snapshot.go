package script

import (
	"errors"
	"fmt"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/machine"
)

// snapshotValue is a machine snapshot in a script: what m.snapshot()
// returns and create_machine(snapshot=…) takes.
type snapshotValue struct {
	snap *machine.Snapshot
}

var _ starlark.HasAttrs = (*snapshotValue)(nil)

func (v *snapshotValue) String() string {
	return fmt.Sprintf("<Snapshot '%s' of %s>", v.snap.Name(), v.snap.Machine())
}
func (v *snapshotValue) Type() string          { return "Snapshot" }
func (v *snapshotValue) Freeze()               {}
func (v *snapshotValue) Truth() starlark.Bool  { return starlark.True }
func (v *snapshotValue) Hash() (uint32, error) { return starlark.String(v.snap.Dir()).Hash() }

var snapshotAttrs = []string{"dir", "machine", "name", "paused", "size"}

// AttrNames lists the snapshot's attributes.
func (v *snapshotValue) AttrNames() []string { return snapshotAttrs }

// Attr returns an attribute: name, machine (the name of the machine it
// was taken from), size (bytes), paused (seconds) and dir.
func (v *snapshotValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "name":
		return starlark.String(v.snap.Name()), nil
	case "machine":
		return starlark.String(v.snap.Machine()), nil
	case "size":
		return starlark.MakeInt64(v.snap.Size()), nil
	case "paused":
		return starlark.Float(v.snap.Paused().Seconds()), nil
	case "dir":
		return starlark.String(v.snap.Dir()), nil
	}
	return nil, noAttr("Snapshot", name, snapshotAttrs)
}

// mSnapshot is m.snapshot(name=None).
func mSnapshot(c *call) (starlark.Value, error) {
	var nameV starlark.Value
	if err := c.unpack([]string{"name?"}, &nameV); err != nil {
		return nil, err
	}
	name, err := toOptStr(c.fn, "name", nameV, "")
	if err != nil {
		return nil, err
	}
	snap, err := c.mv.s.d.Snapshot(c.ctx, c.m, name)
	if err != nil {
		return nil, err
	}
	return &snapshotValue{snap: snap}, nil
}

// mFork is m.fork(n): n running clones taken from one snapshot.
func mFork(c *call) (starlark.Value, error) {
	var nV starlark.Value
	if err := c.unpack([]string{"n"}, &nV); err != nil {
		return nil, err
	}
	n, ok := nV.(starlark.Int)
	k, exact := n.Int64()
	if !ok || !exact || k < 1 || k > 64 {
		return nil, fmt.Errorf("%s: n must be a whole number from 1 to 64, got %s", c.fn, nV)
	}
	clones, err := c.mv.s.d.Fork(c.ctx, c.m, int(k))
	if err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(clones))
	for i, m := range clones {
		out[i] = c.mv.s.machineValue(m)
	}
	return starlark.NewList(out), nil
}

// restoreSnapshot is create_machine(snapshot=…).
func (s *Session) restoreSnapshot(th *starlark.Thread, v starlark.Value, name string) (starlark.Value, error) {
	sv, ok := v.(*snapshotValue)
	if !ok {
		return nil, fmt.Errorf("create_machine: snapshot must be what machine.snapshot() returned, not %s", v.Type())
	}
	ctx, err := contextOf(th)
	if err != nil {
		return nil, err
	}
	m, err := s.d.Restore(ctx, sv.snap, name)
	if err != nil {
		return nil, err
	}
	return s.machineValue(m), nil
}

var errNoStart = errors.New("create_machine: give a start_command, or snapshot= to restore a machine from a snapshot")
