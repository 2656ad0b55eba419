package qemu

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/vmdriver/vmdriver/backend"
)

// Network links.
//
// QEMU reports its NICs and what each is plugged into through the HMP
// command `info network` (QMP has no equivalent that names the peer), so
// that text is parsed here. The line formats, from QEMU 7.2:
//
//	virtio-net-pci.1: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:01:02
//	 \ vlan1: index=0,type=vde,sock=/tmp/vde1.ctl[000]
//	hub 0
//	 \ hub0port1: #net336: index=0,type=user,net=10.0.2.0,restrict=off
//	user.0: index=0,type=user,net=10.0.2.0,restrict=on
//	 \ hub0port0: virtio-net-pci.1: index=0,type=nic,model=virtio-net-pci,macaddr=...
//	lonely: index=0,type=socket,
//
// QEMU has no query for a link's state either (set_link only sets it),
// so the instance remembers what SetLink set; a link starts up.

// linkState is what SetLink set, by NIC name. The zero value is ready.
type linkState struct {
	mu   sync.Mutex
	down map[string]bool
}

func (s *linkState) set(name string, up bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down == nil {
		s.down = map[string]bool{}
	}
	if up {
		delete(s.down, name)
	} else {
		s.down[name] = true
	}
}

func (s *linkState) up(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.down[name]
}

// netClient is one net client in `info network`: a NIC or a netdev.
type netClient struct {
	name string
	typ  string // "nic", "user", "vde", "socket", "hubport", ...
	mac  string // NICs only
	// restricted is a user-mode netdev's restrict=on.
	restricted bool
}

// nicInfo is one NIC and what it is plugged into.
type nicInfo struct {
	netClient
	// peer is the netdev the NIC is plugged into; nil when it hangs off a
	// hub (see hub) or has no peer.
	peer *netClient
	// hub is the number of the hub the NIC is on, or -1.
	hub int
}

// netInfo is the parsed `info network`.
type netInfo struct {
	nics []nicInfo
	// hubs lists the non-NIC members of every hub.
	hubs map[int][]netClient
	// unattached lists top-level netdevs without a NIC.
	unattached []netClient
}

// parseClient parses "NAME: k=v,k=v,...".
func parseClient(s string) (netClient, bool) {
	name, rest, ok := strings.Cut(strings.TrimSpace(s), ": ")
	if !ok || name == "" {
		return netClient{}, false
	}
	c := netClient{name: name}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "type":
			c.typ = v
		case "macaddr":
			c.mac = strings.ToLower(v)
		case "restrict":
			c.restricted = v == "on"
		}
	}
	return c, c.typ != ""
}

// hubHeader matches "hub N".
var hubHeader = regexp.MustCompile(`^hub (\d+)$`)

// parseInfoNetwork parses the output of HMP `info network`. Lines it
// does not understand are skipped, so a newer QEMU's additions do no
// harm.
func parseInfoNetwork(out string) netInfo {
	info := netInfo{hubs: map[int][]netClient{}}
	const (
		none = iota
		inNIC
		inHub
		inOther
	)
	ctx, hub := none, -1
	for _, line := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		child, isChild := strings.CutPrefix(line, " \\ ")
		if !isChild {
			if m := hubHeader.FindStringSubmatch(line); m != nil {
				hub, _ = strconv.Atoi(m[1])
				ctx = inHub
				continue
			}
			c, ok := parseClient(line)
			switch {
			case !ok:
				ctx = none
			case c.typ == "nic":
				info.nics = append(info.nics, nicInfo{netClient: c, hub: -1})
				ctx = inNIC
			default:
				info.unattached = append(info.unattached, c)
				ctx = inOther
			}
			continue
		}
		switch ctx {
		case inNIC:
			if c, ok := parseClient(child); ok {
				last := &info.nics[len(info.nics)-1]
				last.peer = &c
			}
		case inHub:
			// " \ hubNportM: PEER: k=v,..." names the port's peer.
			_, rest, ok := strings.Cut(child, ": ")
			if !ok {
				continue
			}
			c, ok := parseClient(rest)
			if !ok {
				continue
			}
			if c.typ == "nic" {
				info.nics = append(info.nics, nicInfo{netClient: c, hub: hub})
			} else {
				info.hubs[hub] = append(info.hubs[hub], c)
			}
		}
	}
	return info
}

// network returns the netdev a NIC's traffic goes to: its peer, or for
// a NIC on a hub the hub's user-mode member if it has one, else its
// first other member. ok is false for a NIC plugged into nothing.
func (info netInfo) network(n nicInfo) (netClient, bool) {
	if n.peer != nil {
		return *n.peer, true
	}
	if n.hub < 0 {
		return netClient{}, false
	}
	members := info.hubs[n.hub]
	for _, c := range members {
		if c.typ == "user" {
			return c, true
		}
	}
	if len(members) > 0 {
		return members[0], true
	}
	// A hub of NICs only is still a LAN of its own.
	return netClient{name: fmt.Sprintf("hub%d", n.hub), typ: "hub"}, true
}

// userNetdev returns the id of the first user-mode netdev.
func (info netInfo) userNetdev() (string, bool) {
	for _, n := range info.nics {
		if c, ok := info.network(n); ok && c.typ == "user" {
			return c.name, true
		}
	}
	for _, c := range info.unattached {
		if c.typ == "user" {
			return c.name, true
		}
	}
	return "", false
}

// nixosVLAN reads the VLAN number out of a MAC address that follows the
// NixOS scheme 52:54:00:12:VV:NN (VV the VLAN, NN the node). QEMU's own
// default addresses, 52:54:00:12:34:56 and up, are not read as VLAN 52.
func nixosVLAN(mac string) (int, bool) {
	rest, ok := strings.CutPrefix(strings.ToLower(mac), "52:54:00:12:")
	if !ok || len(rest) != 5 || rest[2] != ':' {
		return 0, false
	}
	vv, err1 := strconv.ParseUint(rest[:2], 16, 8)
	nn, err2 := strconv.ParseUint(rest[3:], 16, 8)
	if err1 != nil || err2 != nil || vv == 0 || (vv == 0x34 && nn >= 0x56) {
		return 0, false
	}
	return int(vv), true
}

// linkOf is one NIC as a link, with the netdev it is plugged into.
type linkOf struct {
	link   backend.Link
	netdev string
}

// links turns the parsed NICs into links: NICs on the user-mode network
// are VLAN 0; every other connected NIC is a VLAN link whose number comes
// from its NixOS-style MAC address or else from its position among the
// VLAN links (1, 2, ...). NICs plugged into nothing are left out.
func (info netInfo) links(state *linkState) []linkOf {
	var out []linkOf
	ordinal := 0
	for _, n := range info.nics {
		c, ok := info.network(n)
		if !ok {
			continue
		}
		l := backend.Link{Name: n.name, MAC: n.mac, Up: state.up(n.name)}
		if c.typ == "user" {
			l.Restricted = c.restricted
		} else {
			ordinal++
			l.VLAN = ordinal
			if v, ok := nixosVLAN(n.mac); ok {
				l.VLAN = v
			}
		}
		out = append(out, linkOf{link: l, netdev: c.name})
	}
	return out
}

// netInfo runs and parses `info network`.
func (i *Instance) netInfo(ctx context.Context) (netInfo, error) {
	out, err := i.MonitorCommand(ctx, "info network")
	if err != nil {
		return netInfo{}, err
	}
	return parseInfoNetwork(out), nil
}

// Links lists the machine's NICs that are plugged into a network, in
// QEMU's order: user-mode (NAT) NICs as VLAN 0, all others (vde, socket,
// stream, dgram, tap, ...) as VLAN links. Up is what SetLink last set
// (QEMU cannot be asked); links start up.
func (i *Instance) Links(ctx context.Context) ([]backend.Link, error) {
	info, err := i.netInfo(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing network links: %w", err)
	}
	ls := info.links(&i.links)
	out := make([]backend.Link, len(ls))
	for k, l := range ls {
		out[k] = l.link
	}
	return out, nil
}

// SetLink plugs (up) or unplugs the cable of a link (QMP set_link). name
// is a link's Name or the id of the netdev it is plugged into.
func (i *Instance) SetLink(ctx context.Context, name string, up bool) error {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("invalid link name %q: use a name from Links", name)
	}
	info, err := i.netInfo(ctx)
	if err != nil {
		return fmt.Errorf("setting link %s: %w", name, err)
	}
	ls := info.links(&i.links)
	nic := ""
	for _, l := range ls {
		if l.link.Name == name || l.netdev == name {
			nic = l.link.Name
			break
		}
	}
	if nic == "" {
		return fmt.Errorf("no network link %q; its links are: %s", name, describeLinks(ls))
	}
	if err := i.execute(ctx, "set_link", map[string]any{"name": nic, "up": up}, nil); err != nil {
		return err
	}
	i.links.set(nic, up)
	return nil
}

// describeLinks lists links for messages.
func describeLinks(ls []linkOf) string {
	if len(ls) == 0 {
		return "none"
	}
	parts := make([]string, len(ls))
	for k, l := range ls {
		net := "user-mode network"
		if l.link.VLAN != 0 {
			net = fmt.Sprintf("vlan %d", l.link.VLAN)
		}
		parts[k] = fmt.Sprintf("%s (netdev %s, %s)", l.link.Name, l.netdev, net)
	}
	return strings.Join(parts, ", ")
}

// ForwardPort forwards TCP port hostPort on every host address to
// guestPort in the guest through the user-mode network (HMP
// hostfwd_add, as the NixOS driver does).
func (i *Instance) ForwardPort(ctx context.Context, hostPort, guestPort int) error {
	if err := checkPort("host", hostPort); err != nil {
		return err
	}
	if err := checkPort("guest", guestPort); err != nil {
		return err
	}
	info, err := i.netInfo(ctx)
	if err != nil {
		return fmt.Errorf("forwarding port %d: %w", hostPort, err)
	}
	id, ok := info.userNetdev()
	if !ok {
		return fmt.Errorf("forwarding host port %d: there is no user-mode network (-netdev user) to forward through: %w",
			hostPort, backend.ErrUnsupported)
	}
	rule := fmt.Sprintf("tcp::%d-:%d", hostPort, guestPort)
	cmd := "hostfwd_add " + rule
	if !strings.HasPrefix(id, "#") { // an anonymous netdev has no usable id
		cmd = "hostfwd_add " + id + " " + rule
	}
	out, err := i.MonitorCommand(ctx, cmd)
	if err != nil {
		return err
	}
	// hostfwd_add answers nothing on success and an error text otherwise.
	if out = strings.TrimSpace(out); out != "" {
		msg := fmt.Sprintf("forwarding host port %d to guest port %d: %s", hostPort, guestPort, out)
		if strings.Contains(out, "Could not set up") {
			msg += fmt.Sprintf(" (is host port %d already in use?)", hostPort)
		}
		return errors.New(msg)
	}
	return nil
}

// checkPort checks a TCP port number.
func checkPort(which string, port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("%s port %d is not a TCP port (1-65535)", which, port)
	}
	return nil
}
