package machine

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// A restored clone starts as an exact copy of its original: same clock
// (stopped at the snapshot), host name, MACs, addresses, machine-id and
// random number generator state. The driver gives it its own before
// handing it out, through the guest shell, with commands that work on
// busybox and on full distributions alike.

// guestIface is one interface as the guest lists it.
type guestIface struct {
	Dev   string
	MAC   string
	Addrs []netip.Prefix
}

// parseInterfaces reads guestcmd.ListInterfaces's output.
func parseInterfaces(out string) map[string]*guestIface {
	ifs := map[string]*guestIface{}
	get := func(dev string) *guestIface {
		dev = strings.TrimSuffix(dev, ":")
		if at := strings.IndexByte(dev, '@'); at > 0 {
			dev = dev[:at]
		}
		g := ifs[dev]
		if g == nil {
			g = &guestIface{Dev: dev}
			ifs[dev] = g
		}
		return g
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(strings.ReplaceAll(sc.Text(), `\`, " "))
		if len(f) < 3 || !strings.HasSuffix(f[0], ":") {
			continue
		}
		switch {
		case strings.HasSuffix(f[1], ":"): // a link line
			g := get(f[1])
			for k := 2; k+1 < len(f); k++ {
				if f[k] == "link/ether" {
					g.MAC = strings.ToLower(f[k+1])
				}
			}
		case f[2] == "inet" || f[2] == "inet6":
			if len(f) < 4 {
				continue
			}
			if p, err := netip.ParsePrefix(f[3]); err == nil {
				g := get(f[1])
				g.Addrs = append(g.Addrs, p)
			}
		}
	}
	return ifs
}

// vlanMAC splits a NixOS test network MAC 52:54:00:12:VV:NN into its VLAN
// and node number.
func vlanMAC(mac string) (vlan, node int, ok bool) {
	rest, found := strings.CutPrefix(strings.ToLower(mac), "52:54:00:12:")
	if !found || len(rest) != 5 || rest[2] != ':' {
		return 0, 0, false
	}
	v, err1 := strconv.ParseUint(rest[:2], 16, 8)
	n, err2 := strconv.ParseUint(rest[3:], 16, 8)
	if err1 != nil || err2 != nil || v == 0 || n == 0 {
		return 0, 0, false
	}
	return int(v), int(n), true
}

// nodeMAC is the NixOS test network MAC of node on vlan.
func nodeMAC(vlan, node int) string { return fmt.Sprintf("52:54:00:12:%02x:%02x", vlan, node) }

// linkLocal is the EUI-64 IPv6 link-local address of mac.
func linkLocal(mac string) (netip.Prefix, error) {
	hw := strings.ReplaceAll(mac, ":", "")
	b, err := hex.DecodeString(hw)
	if err != nil || len(b) != 6 {
		return netip.Prefix{}, fmt.Errorf("bad MAC %q", mac)
	}
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15] = b[0]^0x02, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]
	return netip.PrefixFrom(netip.AddrFrom16(a), 64), nil
}

// renumber returns p with the node part changed from old to new when p is
// the node's address on a NixOS test VLAN (192.168.V.old, or
// 2001:db8:V::old as NixOS writes it), and false otherwise.
func renumber(p netip.Prefix, old, new int) (netip.Prefix, bool) {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		if b[0] == 192 && b[1] == 168 && int(b[3]) == old {
			b[3] = byte(new)
			return netip.PrefixFrom(netip.AddrFrom4(b), p.Bits()), true
		}
		return p, false
	}
	s := a.String()
	suffix := "::" + strconv.Itoa(old)
	if strings.HasPrefix(s, "2001:db8:") && strings.HasSuffix(s, suffix) {
		na, err := netip.ParseAddr(strings.TrimSuffix(s, suffix) + "::" + strconv.Itoa(new))
		if err == nil {
			return netip.PrefixFrom(na, p.Bits()), true
		}
	}
	return p, false
}

// identity is what a clone is given.
type identity struct {
	Hostname string
	Node     int // 0 when the machine has no VLAN link
	Now      time.Time
	// Peers are /etc/hosts lines for the clone and its siblings.
	Peers []string
	// Undo is the guest script that undoes the backend's preparation
	// for the snapshot (backend.GuestPrep.Undo); it runs first.
	Undo string
}

// identityScript builds the guest commands that give a clone id. links
// are the original's links; ifs is what the guest listed.
func identityScript(id identity, links []backend.Link, ifs map[string]*guestIface) (string, error) {
	var sb strings.Builder
	if id.Undo != "" {
		sb.WriteString(strings.TrimRight(id.Undo, "\n") + "\n")
	}
	sb.WriteString(guestcmd.SetClock(id.Now))
	sb.WriteString(guestcmd.SetHostname(id.Hostname))
	machineID := make([]byte, 16)
	seed := make([]byte, 64)
	rand.Read(machineID)
	rand.Read(seed)
	sb.WriteString(guestcmd.SetMachineID(hex.EncodeToString(machineID)))
	// Host randomness for the pool. The reseed itself needs no command:
	// the hypervisor changed the VM generation ID (QEMU: vmgenid), and
	// the guest kernel reseeded on seeing it, before this runs.
	sb.WriteString(guestcmd.AddEntropy(hex.EncodeToString(seed)))

	byMAC := map[string]*guestIface{}
	for _, g := range ifs {
		if g.MAC != "" {
			byMAC[g.MAC] = g
		}
	}
	for _, l := range links {
		vlan, old, ok := vlanMAC(l.MAC)
		if !ok || l.VLAN == 0 {
			continue
		}
		if id.Node == 0 {
			return "", errors.New("no node number for a machine on a VLAN")
		}
		g := byMAC[strings.ToLower(l.MAC)]
		if g == nil {
			return "", fmt.Errorf("the guest has no interface with MAC %s (VLAN %d); cannot give the clone its own address", l.MAC, vlan)
		}
		mac := nodeMAC(vlan, id.Node)
		sb.WriteString(guestcmd.SetMAC(g.Dev, mac))
		oldLL, _ := linkLocal(g.MAC)
		newLL, _ := linkLocal(mac)
		for _, p := range g.Addrs {
			if p == oldLL {
				sb.WriteString(guestcmd.ReplaceAddr(g.Dev, p, newLL))
			} else if np, ok := renumber(p, old, id.Node); ok {
				sb.WriteString(guestcmd.ReplaceAddr(g.Dev, p, np))
			}
		}
		sb.WriteString(guestcmd.FlushNeighbours(g.Dev))
	}
	for _, line := range id.Peers {
		sb.WriteString(guestcmd.AddHost(line))
	}
	return sb.String(), nil
}

// hostsLine is the /etc/hosts line of a clone numbered node: its first
// VLAN address, as the NixOS test framework lists machines.
func hostsLine(name string, node int, links []backend.Link) (string, bool) {
	for _, l := range links {
		if vlan, _, ok := vlanMAC(l.MAC); ok && l.VLAN != 0 {
			return fmt.Sprintf("192.168.%d.%d %s", vlan, node, name), true
		}
	}
	return "", false
}

// maxNode is the largest node number: the last byte of addresses and
// MACs, with 0 and 255 taken.
const maxNode = 254

// ErrNoNodeNumbers is wrapped by errors reporting that every node number
// of the test network is in use.
var ErrNoNodeNumbers = errors.New("all 254 node numbers of the test network are in use")

// NodeNumbers hands out the node numbers of a test network (the last byte
// of a machine's VLAN addresses and MACs, 1..254). Clones take the lowest
// free number and give it back when closed. It is safe for concurrent
// use; a driver shares one among all its machines.
type NodeNumbers struct {
	mu   sync.Mutex
	used [maxNode + 1]bool
}

// NewNodeNumbers returns an allocator with reserved marked as taken
// (the numbers of the configured machines).
func NewNodeNumbers(reserved ...int) *NodeNumbers {
	n := &NodeNumbers{}
	for _, r := range reserved {
		n.Reserve(r)
	}
	return n
}

// Reserve marks k as taken (numbers outside 1..254 are ignored).
func (n *NodeNumbers) Reserve(k int) {
	if k < 1 || k > maxNode {
		return
	}
	n.mu.Lock()
	n.used[k] = true
	n.mu.Unlock()
}

// Allocate takes the lowest free number.
func (n *NodeNumbers) Allocate() (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for k := 1; k <= maxNode; k++ {
		if !n.used[k] {
			n.used[k] = true
			return k, nil
		}
	}
	return 0, ErrNoNodeNumbers
}

// Release gives k back.
func (n *NodeNumbers) Release(k int) {
	if k < 1 || k > maxNode {
		return
	}
	n.mu.Lock()
	n.used[k] = false
	n.mu.Unlock()
}

// defaultNodeNumbers serves machines made without WithNodeNumbers.
var defaultNodeNumbers = NewNodeNumbers()
