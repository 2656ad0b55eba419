package mock

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// The guest's identity: clock, hostname, machine id, entropy and network
// addresses, and the commands that change them (what a machine sends
// after a restore so clones stop sharing the original's identity).

// Hardware is the mock's machine configuration, which a snapshot must be
// restored onto unchanged: it plays the part of QEMU's memory size and
// CPU count (the device order is the list of link names).
type Hardware struct {
	// MemoryMiB is the guest's memory size.
	MemoryMiB int `json:"memory_mib"`
	// CPUs is the guest's CPU count.
	CPUs int `json:"cpus"`
}

// DefaultHardware is a new guest's Hardware.
var DefaultHardware = Hardware{MemoryMiB: 1024, CPUs: 1}

// Interface is one network interface as the guest sees it (`ip -o addr`).
type Interface struct {
	// Name is the interface's name: lo, then eth<i> for link i.
	Name string
	// MAC is its hardware address.
	MAC string
	// Addrs are its addresses in CIDR form.
	Addrs []string
}

// machineID is the /etc/machine-id a new guest of that name has.
func machineID(name string) string {
	sum := sha256.Sum256([]byte("mock machine-id " + name))
	return hex.EncodeToString(sum[:16])
}

// SetHardware sets the guest's machine configuration (call it from the
// WithGuest callback: it is what Restore compares with a snapshot's).
func (g *Guest) SetHardware(h Hardware) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.hardware = h
}

// Hardware returns the guest's machine configuration.
func (g *Guest) Hardware() Hardware {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hardware
}

// Hostname returns the guest's kernel hostname (`hostname`); it starts
// as the machine's name.
func (g *Guest) Hostname() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.hostname
}

// Clock returns the guest's current time (`date`), which `date -s` sets
// and which a restored guest resumes from the moment of its snapshot.
func (g *Guest) Clock() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.nowLocked()
}

func (g *Guest) nowLocked() time.Time { return time.Now().Add(g.clockOffset) }

// URandomWrites returns every write to /dev/urandom (or /dev/random)
// since the guest started or was restored, in order: how a test sees
// that a clone's entropy pool was reseeded.
func (g *Guest) URandomWrites() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([][]byte, len(g.urandom))
	for i, b := range g.urandom {
		out[i] = slices.Clone(b)
	}
	return out
}

// Restored reports whether the guest was restored from a snapshot rather
// than booted (it stays true after a reboot).
func (g *Guest) Restored() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.restored
}

// Interfaces returns the guest's network interfaces: lo, then eth<i> for
// link i, with their current MACs and addresses.
func (g *Guest) Interfaces() []Interface {
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []Interface{{Name: "lo", MAC: "00:00:00:00:00:00", Addrs: prefixStrings(listed(n.lo, 0))}}
	for i, l := range n.links {
		out = append(out, Interface{Name: ifName(i), MAC: l.MAC, Addrs: prefixStrings(listed(n.addrs[i], 0))})
	}
	return out
}

// listed orders addresses as iproute2 lists them (IPv4 before IPv6, each
// in the kernel's order) and keeps only the family asked for (4, 6, or 0
// for both).
func listed(ps []netip.Prefix, family int) []netip.Prefix {
	var v4, v6 []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	switch family {
	case 4:
		return v4
	case 6:
		return v6
	}
	return append(v4, v6...)
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func ifName(i int) string { return "eth" + strconv.Itoa(i) }

// nixosAddr reads VV and NN out of a MAC 52:54:00:12:VV:NN.
func nixosAddr(mac string) (vlan, node int, ok bool) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || hw[0] != 0x52 || hw[1] != 0x54 || hw[2] != 0 || hw[3] != 0x12 {
		return 0, 0, false
	}
	return int(hw[4]), int(hw[5]), true
}

// linkLocal is the EUI-64 link-local address of a MAC.
func linkLocal(mac string) (netip.Prefix, bool) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return netip.Prefix{}, false
	}
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10], a[11] = hw[0]^0x02, hw[1], hw[2], 0xff
	a[12], a[13], a[14], a[15] = 0xfe, hw[3], hw[4], hw[5]
	return netip.PrefixFrom(netip.AddrFrom16(a), 64), true
}

// defaultAddrs are the addresses NixOS's test framework gives a link's
// interface.
func defaultAddrs(l backend.Link) []netip.Prefix {
	var ps []netip.Prefix
	if l.VLAN == 0 {
		ps = append(ps, netip.MustParsePrefix("10.0.2.15/24"))
	} else if v, n, ok := nixosAddr(l.MAC); ok {
		ps = append(ps,
			netip.MustParsePrefix(fmt.Sprintf("192.168.%d.%d/24", v, n)),
			netip.MustParsePrefix(fmt.Sprintf("2001:db8:%d::%d/64", v, n)))
	}
	if ll, ok := linkLocal(l.MAC); ok {
		ps = append(ps, ll)
	}
	return ps
}

// date runs `date [-u] [+FORMAT]` and `date [-u] -s @SECONDS[.FRACTION]`.
func (g *Guest) date(args []string) reply {
	var set, format string
	setting := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-u" || a == "--utc" || a == "--universal":
		case a == "-s" || a == "--set":
			if i+1 >= len(args) {
				return reply{stderr: "date: option requires an argument -- 's'\n", status: 1}
			}
			i++
			set, setting = args[i], true
		case strings.HasPrefix(a, "--set="):
			set, setting = strings.TrimPrefix(a, "--set="), true
		case strings.HasPrefix(a, "+"):
			format = a[1:]
		default:
			return reply{stderr: fmt.Sprintf("date: mock: unsupported argument '%s' (it knows -u, +FORMAT and -s @SECONDS[.FRACTION])\n", a), status: 1}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.nowLocked()
	if setting {
		t, ok := parseEpoch(set)
		if !ok {
			return reply{stderr: fmt.Sprintf("date: invalid date '%s' (the mock takes only @SECONDS[.FRACTION])\n", set), status: 1}
		}
		g.clockOffset = time.Until(t)
		now = t
	}
	if format == "" {
		format = "%a %b %e %H:%M:%S %Z %Y"
	}
	return reply{out: strftime(now.UTC(), format) + "\n"}
}

// parseEpoch parses @SECONDS[.FRACTION] exactly (to the nanosecond).
func parseEpoch(s string) (time.Time, bool) {
	s, ok := strings.CutPrefix(s, "@")
	if !ok {
		return time.Time{}, false
	}
	neg := false
	if rest, ok := strings.CutPrefix(s, "-"); ok {
		neg, s = true, rest
	}
	whole, frac, hasFrac := strings.Cut(s, ".")
	if !isDigits(whole) || (hasFrac && frac != "" && !isDigits(frac)) {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	frac = (frac + "000000000")[:9]
	nanos, _ := strconv.ParseInt(frac, 10, 64)
	if neg {
		secs, nanos = -secs, -nanos
	}
	return time.Unix(secs, nanos), true
}

// strftime formats t with the conversions GNU date knows that the mock
// supports; others are printed as they are.
func strftime(t time.Time, f string) string {
	var b strings.Builder
	for i := 0; i < len(f); i++ {
		if f[i] != '%' || i+1 >= len(f) {
			b.WriteByte(f[i])
			continue
		}
		i++
		switch f[i] {
		case 's':
			b.WriteString(strconv.FormatInt(t.Unix(), 10))
		case 'N':
			fmt.Fprintf(&b, "%09d", t.Nanosecond())
		case 'Y':
			fmt.Fprintf(&b, "%04d", t.Year())
		case 'm':
			fmt.Fprintf(&b, "%02d", int(t.Month()))
		case 'd':
			fmt.Fprintf(&b, "%02d", t.Day())
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			fmt.Fprintf(&b, "%02d", t.Hour())
		case 'M':
			fmt.Fprintf(&b, "%02d", t.Minute())
		case 'S':
			fmt.Fprintf(&b, "%02d", t.Second())
		case 'F':
			b.WriteString(t.Format("2006-01-02"))
		case 'T':
			b.WriteString(t.Format("15:04:05"))
		case 'a':
			b.WriteString(t.Format("Mon"))
		case 'b':
			b.WriteString(t.Format("Jan"))
		case 'Z':
			b.WriteString("UTC")
		case 'z':
			b.WriteString("+0000")
		case '%':
			b.WriteByte('%')
		default:
			b.WriteByte('%')
			b.WriteByte(f[i])
		}
	}
	return b.String()
}

// hostnameCmd runs `hostname`, `hostname -s|-f` and `hostname NAME`.
func (g *Guest) hostnameCmd(args []string) reply {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case len(args) == 0 || (len(args) == 1 && (args[0] == "-f" || args[0] == "--fqdn")):
		return reply{out: g.hostname + "\n"}
	case len(args) == 1 && (args[0] == "-s" || args[0] == "--short"):
		short, _, _ := strings.Cut(g.hostname, ".")
		return reply{out: short + "\n"}
	case len(args) == 1 && !strings.HasPrefix(args[0], "-"):
		name := args[0]
		if name == "" || len(name) > 64 || strings.ContainsAny(name, " \t\n/") {
			return reply{stderr: "hostname: the specified hostname is invalid\n", status: 1}
		}
		g.hostname = name
		return reply{}
	}
	return reply{stderr: fmt.Sprintf("hostname: mock: unsupported arguments %q (it knows NAME, -s and -f)\n", args), status: 1}
}

// ip runs the iproute2 commands a machine uses to read and change the
// guest's network identity.
func (g *Guest) ip(args []string) reply {
	oneline, family := false, 0
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-o", "-oneline", "--oneline":
			oneline = true
		case "-4":
			family = 4
		case "-6":
			family = 6
		default:
			return ipUnsupported(args)
		}
		args = args[1:]
	}
	if len(args) == 0 {
		return reply{stderr: "Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n", status: 255}
	}
	obj, rest := args[0], args[1:]
	switch {
	case strings.HasPrefix("link", obj):
		return g.ipLink(rest, oneline)
	case strings.HasPrefix("address", obj):
		return g.ipAddr(rest, oneline, family)
	case strings.HasPrefix("neighbour", obj) || obj == "neighbor":
		return g.ipNeigh(rest)
	}
	return reply{stderr: fmt.Sprintf("Object \"%s\" is unknown, try \"ip help\".\n", obj), status: 255}
}

func ipUnsupported(args []string) reply {
	return reply{stderr: fmt.Sprintf("mock guest: cannot interpret `ip %s`; script it with Guest.Handle\n", strings.Join(args, " ")), status: 2}
}

// ifIndexLocked finds an interface: -1 for lo, i for eth<i>; ok is false
// for a device the guest does not have.
func (n *netState) ifIndexLocked(name string) (int, bool) {
	if name == "lo" {
		return -1, true
	}
	if s, ok := strings.CutPrefix(name, "eth"); ok && isDigits(s) {
		i, err := strconv.Atoi(s)
		if err == nil && i < len(n.links) && ifName(i) == name {
			return i, true
		}
	}
	return 0, false
}

func noDevice(name string) reply {
	return reply{stderr: fmt.Sprintf("Cannot find device \"%s\"\n", name), status: 1}
}

// devArg parses "[dev] NAME" (the first words of args) and returns NAME
// and the rest.
func devArg(args []string) (string, []string, bool) {
	if len(args) > 0 && args[0] == "dev" {
		args = args[1:]
	}
	if len(args) == 0 {
		return "", nil, false
	}
	return args[0], args[1:], true
}

func (g *Guest) ipLink(args []string, oneline bool) reply {
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(args) == 0 || args[0] == "show" || args[0] == "list" || args[0] == "ls" {
		only, r, ok := n.showTarget("link", args, oneline)
		if !ok {
			return r
		}
		var b strings.Builder
		if only == -2 || only == -1 {
			b.WriteString("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n")
		}
		for i, l := range n.links {
			if only != -2 && only != i {
				continue
			}
			flags, state := "<BROADCAST,MULTICAST,UP,LOWER_UP>", "UP"
			if !l.Up {
				flags, state = "<NO-CARRIER,BROADCAST,MULTICAST,UP>", "DOWN"
			}
			fmt.Fprintf(&b, "%d: %s: %s mtu 1500 qdisc pfifo_fast state %s mode DEFAULT group default qlen 1000\\    link/ether %s brd ff:ff:ff:ff:ff:ff\n",
				i+2, ifName(i), flags, state, l.MAC)
		}
		return reply{out: b.String()}
	}
	if args[0] != "set" {
		return ipUnsupported(append([]string{"link"}, args...))
	}
	dev, rest, ok := devArg(args[1:])
	if !ok {
		return reply{stderr: "Not enough information: \"dev\" argument is required.\n", status: 255}
	}
	i, ok := n.ifIndexLocked(dev)
	if !ok {
		return noDevice(dev)
	}
	var mac string
	for k := 0; k < len(rest); k++ {
		switch rest[k] {
		case "up", "down":
		case "address", "addr":
			if k+1 >= len(rest) || i < 0 {
				return ipUnsupported(append([]string{"link"}, args...))
			}
			k++
			hw, err := net.ParseMAC(rest[k])
			if err != nil || len(hw) != 6 {
				return reply{stderr: fmt.Sprintf("\"%s\" is invalid lladdr.\n", rest[k]), status: 255}
			}
			mac = hw.String()
		default:
			return ipUnsupported(append([]string{"link"}, args...))
		}
	}
	if mac != "" {
		n.links[i].MAC = mac
	}
	return reply{}
}

// addrsLocked returns a pointer to an interface's address list.
func (n *netState) addrsLocked(i int) *[]netip.Prefix {
	if i < 0 {
		return &n.lo
	}
	return &n.addrs[i]
}

func (g *Guest) ipAddr(args []string, oneline bool, family int) reply {
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(args) == 0 || args[0] == "show" || args[0] == "list" || args[0] == "ls" {
		only, r, ok := n.showTarget("addr", args, oneline)
		if !ok {
			return r
		}
		var b strings.Builder
		for i := -1; i < len(n.links); i++ {
			if only != -2 && only != i {
				continue
			}
			name := "lo"
			if i >= 0 {
				name = ifName(i)
			}
			for _, p := range listed(*n.addrsLocked(i), family) {
				b.WriteString(addrLine(i+2, name, p))
			}
		}
		return reply{out: b.String()}
	}
	switch args[0] {
	case "add", "del", "delete", "flush":
	default:
		return ipUnsupported(append([]string{"addr"}, args...))
	}
	if args[0] == "flush" {
		dev, rest, ok := devArg(args[1:])
		if !ok || len(rest) > 0 {
			return ipUnsupported(append([]string{"addr"}, args...))
		}
		i, ok := n.ifIndexLocked(dev)
		if !ok {
			return noDevice(dev)
		}
		*n.addrsLocked(i) = nil
		return reply{}
	}
	if len(args) != 4 || args[2] != "dev" {
		return ipUnsupported(append([]string{"addr"}, args...))
	}
	p, err := parsePrefix(args[1])
	if err != nil {
		return reply{stderr: fmt.Sprintf("Error: any valid prefix is expected rather than \"%s\".\n", args[1]), status: 1}
	}
	i, ok := n.ifIndexLocked(args[3])
	if !ok {
		return noDevice(args[3])
	}
	list := n.addrsLocked(i)
	k := slices.Index(*list, p)
	if args[0] == "add" {
		if k >= 0 {
			return reply{stderr: "RTNETLINK answers: File exists\n", status: 2}
		}
		if p.Addr().Is4() {
			*list = append(*list, p)
		} else {
			// Linux lists the newest IPv6 address first.
			*list = slices.Insert(*list, 0, p)
		}
		return reply{}
	}
	if k < 0 {
		return reply{stderr: "RTNETLINK answers: Cannot assign requested address\n", status: 2}
	}
	*list = slices.Delete(*list, k, k+1)
	return reply{}
}

// parsePrefix parses ADDR[/LEN] as ip does (a bare address is a host
// route: /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// addrLine is one line of `ip -o addr`.
func addrLine(index int, name string, p netip.Prefix) string {
	const tail = "\\       valid_lft forever preferred_lft forever\n"
	a := p.Addr()
	scope := "global"
	switch {
	case a.IsLoopback():
		scope = "host"
	case a.IsLinkLocalUnicast():
		scope = "link"
	}
	if a.Is4() {
		brd := ""
		if p.Bits() < 31 {
			b := a.As4()
			for k := p.Bits(); k < 32; k++ {
				b[k/8] |= 0x80 >> (k % 8)
			}
			if !a.IsLoopback() {
				brd = " brd " + netip.AddrFrom4(b).String()
			}
		}
		return fmt.Sprintf("%d: %s    inet %s%s scope %s %s%s", index, name, p, brd, scope, name, tail)
	}
	return fmt.Sprintf("%d: %s    inet6 %s scope %s %s", index, name, p, scope, tail)
}

// ipNeigh runs `ip neigh flush dev X` and `ip neigh flush all` (the mock
// keeps no neighbour cache, so there is nothing to drop).
func (g *Guest) ipNeigh(args []string) reply {
	if len(args) == 0 || args[0] != "flush" {
		return ipUnsupported(append([]string{"neigh"}, args...))
	}
	if len(args) == 2 && args[1] == "all" {
		return reply{}
	}
	dev, rest, ok := devArg(args[1:])
	if !ok || len(rest) > 0 {
		return ipUnsupported(append([]string{"neigh"}, args...))
	}
	n := g.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.ifIndexLocked(dev); !ok {
		return noDevice(dev)
	}
	return reply{}
}

// showTarget parses the arguments of `ip -o link|addr [show] [dev] DEV`:
// which interface to list (-2 for all), or the reply for a form the mock
// does not take. n.mu is held.
func (n *netState) showTarget(kind string, args []string, oneline bool) (only int, r reply, ok bool) {
	if len(args) > 0 {
		args = args[1:]
	}
	if !oneline {
		return 0, ipUnsupported(append([]string{kind}, args...)), false
	}
	if len(args) == 0 {
		return -2, reply{}, true
	}
	dev, rest, _ := devArg(args)
	i, found := n.ifIndexLocked(dev)
	if !found {
		return 0, noDevice(dev), false
	}
	if len(rest) > 0 {
		return 0, ipUnsupported(append([]string{kind, "show"}, args...)), false
	}
	return i, reply{}, true
}
