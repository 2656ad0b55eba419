package script

import (
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
