package images

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Limits of a build's virtual network, as in the NixOS test framework:
// node numbers are the last byte of 192.168.<vlan>.<node> and of the
// MAC, so 0 and 255 are taken.
const (
	// MaxNodes is the largest number of machines one build may name.
	MaxNodes = 254
	// MaxVLAN is the largest VLAN number (VLANs are 1..MaxVLAN).
	MaxVLAN = 255
)

// Node is one machine of a build: its name, its number within the build
// and the VLANs its NICs are on.
type Node struct {
	// Name is the machine name, which is also the guest's host name.
	Name string
	// Number is the node's number in the build: 1 for the first name in
	// sorted order (the NixOS test framework's rule). It is the last byte
	// of the node's VLAN addresses and MACs.
	Number int
	// VLANs are the VLANs of the NICs eth1..ethN, in this order. Empty
	// means user-mode networking (eth0) only.
	VLANs []int
}

// NIC is one VLAN network interface of a node.
type NIC struct {
	// Index is the NIC's 1-based position: the guest calls it eth<Index>
	// and QEMU's netdev is vlan<Index>.
	Index int
	// VLAN is the VLAN (the VDE switch) the NIC is plugged into.
	VLAN int
	// MAC is 52:54:00:12:<vlan>:<node> in lowercase hex.
	MAC string
	// Addr is 192.168.<vlan>.<node>/24.
	Addr netip.Prefix
}

// Dev is the NIC's interface name in the guest.
func (c NIC) Dev() string { return "eth" + strconv.Itoa(c.Index) }

// NICs returns the node's VLAN interfaces in order.
func (n Node) NICs() []NIC {
	nics := make([]NIC, 0, len(n.VLANs))
	for i, v := range n.VLANs {
		nics = append(nics, NIC{
			Index: i + 1,
			VLAN:  v,
			MAC:   fmt.Sprintf("52:54:00:12:%02x:%02x", v, n.Number),
			Addr:  netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(v), byte(n.Number)}), 24),
		})
	}
	return nics
}

// hostnameRE is the NixOS networking.hostName rule: one DNS label that
// also allows '_', starting and ending with a letter or digit.
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$`)

// ParseNodes parses a build's machine specs NAME[:VLAN[,VLAN...]] and
// numbers the nodes by sorted name. The result is in the order of specs.
//
// A bare NAME gets no VLAN NICs (unlike the NixOS default of VLAN 1), so
// single machines keep the user-mode network only; "NAME:" with an empty
// list is an error. Errors wrap ErrBadOptions.
func ParseNodes(specs []string) ([]Node, error) {
	if len(specs) == 0 {
		return nil, fmt.Errorf("%w: no machine names given", ErrBadOptions)
	}
	if len(specs) > MaxNodes {
		return nil, fmt.Errorf("%w: %d machines given, but one build numbers at most %d (the last byte of 192.168.VLAN.NODE): split the machines over several builds and output directories", ErrBadOptions, len(specs), MaxNodes)
	}
	nodes := make([]Node, 0, len(specs))
	seen := map[string]bool{}
	for _, spec := range specs {
		n, err := parseNode(spec)
		if err != nil {
			return nil, err
		}
		if seen[n.Name] {
			return nil, fmt.Errorf("%w: machine %q given twice: list each machine once, with all its VLANs (%s:1,2)", ErrBadOptions, n.Name, n.Name)
		}
		seen[n.Name] = true
		nodes = append(nodes, n)
	}
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	slices.Sort(names)
	for i := range nodes {
		nodes[i].Number, _ = slices.BinarySearch(names, nodes[i].Name)
		nodes[i].Number++
	}
	return nodes, nil
}

// parseNode parses one NAME[:VLAN[,VLAN...]] spec (without a number).
func parseNode(spec string) (Node, error) {
	name, list, hasList := strings.Cut(spec, ":")
	if !hostnameRE.MatchString(name) {
		return Node{}, fmt.Errorf("%w: machine name %q is not a valid host name: use 1-63 letters, digits, '-' or '_', starting and ending with a letter or digit", ErrBadOptions, name)
	}
	n := Node{Name: name}
	if !hasList {
		return n, nil
	}
	if list == "" {
		return Node{}, fmt.Errorf("%w: machine %q: empty VLAN list after ':': give VLAN numbers (%s:1,2) or the bare name for no VLAN", ErrBadOptions, spec, name)
	}
	for _, f := range strings.Split(list, ",") {
		v, err := parseVLAN(f)
		if err != nil {
			return Node{}, fmt.Errorf("%w: machine %q: %v", ErrBadOptions, spec, err)
		}
		if slices.Contains(n.VLANs, v) {
			return Node{}, fmt.Errorf("%w: machine %q: VLAN %d listed twice: a machine has one NIC per VLAN", ErrBadOptions, spec, v)
		}
		n.VLANs = append(n.VLANs, v)
	}
	return n, nil
}

// parseVLAN parses a decimal VLAN number in 1..MaxVLAN.
func parseVLAN(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty VLAN number in the list")
	}
	if len(s) > 3 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("VLAN %q is not a number from 1 to %d", s, MaxVLAN)
	}
	v, _ := strconv.Atoi(s)
	if v < 1 || v > MaxVLAN {
		return 0, fmt.Errorf("VLAN %d is outside 1-%d", v, MaxVLAN)
	}
	return v, nil
}

// hasVLANs says whether any node has a VLAN NIC: only then do the start
// scripts carry a network configuration.
func hasVLANs(nodes []Node) bool {
	for _, n := range nodes {
		if len(n.VLANs) > 0 {
			return true
		}
	}
	return false
}

// renderHosts returns self's /etc/hosts: the localhost lines, then every
// node with a VLAN by its first VLAN address, in node order. A node
// without a VLAN is not listed; if self is one, its name goes on
// 127.0.1.1 so it still resolves (Debian's convention).
func renderHosts(nodes []Node, self Node) string {
	var sb strings.Builder
	sb.WriteString("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
	if len(self.VLANs) == 0 {
		fmt.Fprintf(&sb, "127.0.1.1 %s\n", self.Name)
	}
	byNumber := slices.Clone(nodes)
	slices.SortFunc(byNumber, func(a, b Node) int { return a.Number - b.Number })
	for _, n := range byNumber {
		if len(n.VLANs) == 0 {
			continue
		}
		fmt.Fprintf(&sb, "%s %s\n", n.NICs()[0].Addr.Addr(), n.Name)
	}
	return sb.String()
}

// renderNet returns the guest's interface table, one "DEV MAC ADDR/24"
// line per VLAN NIC, which guest/vmdriver-net applies.
func renderNet(n Node) string {
	var sb strings.Builder
	for _, c := range n.NICs() {
		fmt.Fprintf(&sb, "%s %s %s\n", c.Dev(), c.MAC, c.Addr)
	}
	return sb.String()
}
