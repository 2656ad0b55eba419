package script

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/driver"
)

// vlanName is the global under which scripts see VLAN nr.
func vlanName(nr int) string { return fmt.Sprintf("vlan%d", nr) }

// vlanValues builds `vlans` (sorted by number) and `vlan<N>` for the
// driver's switches; nil without a driver or VLANs.
func (s *Session) vlanValues() starlark.StringDict {
	if s.d == nil {
		return nil
	}
	vlans := s.d.VLANs()
	if len(vlans) == 0 {
		return nil
	}
	g := starlark.StringDict{}
	list := make([]starlark.Value, 0, len(vlans))
	for _, v := range vlans {
		val := &vlanValue{v: v}
		list = append(list, val)
		g[vlanName(v.Nr)] = val
	}
	g["vlans"] = starlark.NewList(list)
	return g
}

// vlanValue is a VLAN as scripts see it, like the NixOS driver's VLan
// object: nr, socket_dir and pid (the last two empty and 0 on TAP
// networks, which have bridge instead). They compare by identity.
type vlanValue struct{ v driver.VLAN }

var _ starlark.HasAttrs = (*vlanValue)(nil)

func (v *vlanValue) String() string        { return fmt.Sprintf("<VLan %d>", v.v.Nr) }
func (v *vlanValue) Type() string          { return "VLan" }
func (v *vlanValue) Freeze()               {}
func (v *vlanValue) Truth() starlark.Bool  { return starlark.True }
func (v *vlanValue) Hash() (uint32, error) { return uint32(v.v.Nr), nil }

var vlanAttrs = map[string]func(v driver.VLAN) starlark.Value{
	"nr":         func(v driver.VLAN) starlark.Value { return starlark.MakeInt(v.Nr) },
	"socket_dir": func(v driver.VLAN) starlark.Value { return starlark.String(v.SocketDir) },
	"pid":        func(v driver.VLAN) starlark.Value { return starlark.MakeInt(v.PID) },
	"kind":       func(v driver.VLAN) starlark.Value { return starlark.String(v.Kind) },
	"bridge":     func(v driver.VLAN) starlark.Value { return starlark.String(v.Bridge) },
}

func (v *vlanValue) AttrNames() []string {
	names := make([]string, 0, len(vlanAttrs))
	for k := range vlanAttrs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func (v *vlanValue) Attr(name string) (starlark.Value, error) {
	if f, ok := vlanAttrs[name]; ok {
		return f(v.v), nil
	}
	return nil, noAttr(v.String(), name, v.AttrNames())
}
