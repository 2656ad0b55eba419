package script

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/vlan"
)

// vlanName is the global under which scripts see VLAN nr.
func vlanName(nr int) string { return fmt.Sprintf("vlan%d", nr) }

// vlanValues builds `vlans` (sorted by number) and `vlan<N>` for the
// driver's switches; nil without a driver or VLANs.
func (s *Session) vlanValues() starlark.StringDict {
	if s.d == nil {
		return nil
	}
	switches := s.d.VLANs()
	if len(switches) == 0 {
		return nil
	}
	g := starlark.StringDict{}
	list := make([]starlark.Value, 0, len(switches))
	for _, sw := range switches {
		v := &vlanValue{sw: sw}
		list = append(list, v)
		g[vlanName(sw.Nr())] = v
	}
	g["vlans"] = starlark.NewList(list)
	return g
}

// vlanValue is a VLAN as scripts see it, like the NixOS driver's VLan
// object: nr, socket_dir and pid. They compare by identity.
type vlanValue struct{ sw *vlan.Switch }

var _ starlark.HasAttrs = (*vlanValue)(nil)

func (v *vlanValue) String() string        { return fmt.Sprintf("<VLan %d>", v.sw.Nr()) }
func (v *vlanValue) Type() string          { return "VLan" }
func (v *vlanValue) Freeze()               {}
func (v *vlanValue) Truth() starlark.Bool  { return starlark.True }
func (v *vlanValue) Hash() (uint32, error) { return uint32(v.sw.Nr()), nil }

var vlanAttrs = map[string]func(sw *vlan.Switch) starlark.Value{
	"nr":         func(sw *vlan.Switch) starlark.Value { return starlark.MakeInt(sw.Nr()) },
	"socket_dir": func(sw *vlan.Switch) starlark.Value { return starlark.String(sw.SocketDir()) },
	"pid":        func(sw *vlan.Switch) starlark.Value { return starlark.MakeInt(sw.PID()) },
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
		return f(v.sw), nil
	}
	return nil, noAttr(v.String(), name, v.AttrNames())
}
