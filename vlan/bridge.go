package vlan

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vmdriver/vmdriver/internal/netns"
)

// ErrNoTAP is wrapped by StartBridges when the host cannot make TAP
// devices or bridges.
var ErrNoTAP = errors.New("TAP networks need /dev/net/tun and the kernel's bridge support")

// ErrPermission is wrapped by StartBridges when the caller may not
// create the network namespace (it needs root).
var ErrPermission = netns.ErrPermission

// Bridges is a run's VLANs as Linux bridges: one bridge per VLAN (brN),
// and a TAP device per machine NIC attached to its VLAN's bridge, all in
// a private network namespace. The host's own network namespace is never
// touched, and the namespace, with everything in it, disappears when
// Close is called or the driver dies. Hypervisors that take an open TAP
// device (QEMU's -netdev tap,fd=) get one from OpenTAP and stay in the
// host's namespace; those that open TAP devices by name (Firecracker,
// cloud-hypervisor) are started with Do, inside it.
//
// Bridges learn like switches and forward 802.1Q-tagged frames as they
// are. IPv6 is off on the host side of every device, so the namespace
// itself sends nothing on a VLAN: the guests hear only each other, as on
// a VDE switch.
type Bridges struct {
	ns  *netns.NS
	ctl int // AF_INET datagram socket inside ns, for the device ioctls
	nrs []int

	mu  sync.Mutex
	seq int
	// devs are the TAP devices made, each true if it is persistent
	// (CreateTAP's, which RemoveTAP removes).
	devs   map[string]bool
	closed bool
}

// StartBridges creates the network namespace and one bridge per VLAN in
// nrs (1–255), up. On error nothing is left behind.
func StartBridges(nrs []int) (_ *Bridges, err error) {
	nrs = slices.Clone(nrs)
	slices.Sort(nrs)
	nrs = slices.Compact(nrs)
	for _, nr := range nrs {
		if nr < 1 || nr > 255 {
			return nil, fmt.Errorf("vlan %d: %w", nr, ErrBadNumber)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return nil, fmt.Errorf("%w: %v (load the tun module: modprobe tun)", ErrNoTAP, err)
	}
	ns, err := netns.New()
	if err != nil {
		return nil, fmt.Errorf("TAP networks: %w (or use VDE switches: --net vde)", err)
	}
	b := &Bridges{ns: ns, ctl: -1, nrs: nrs, devs: map[string]bool{}}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	err = ns.Do(func() error {
		// Before any device exists, so none gets an IPv6 address or
		// sends router solicitations onto a VLAN. A kernel without IPv6
		// has nothing to turn off.
		for _, p := range []string{"/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/all/disable_ipv6"} {
			if err := os.WriteFile(p, []byte("1"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("turning IPv6 off in the namespace: %w", err)
			}
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
		b.ctl = fd
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("TAP networks: %w", err)
	}
	for _, nr := range nrs {
		name := BridgeName(nr)
		if err := unix.IoctlSetString(b.ctl, unix.SIOCBRADDBR, name); err != nil {
			return nil, fmt.Errorf("vlan %d: creating bridge %s: %w (is the kernel's bridge module available? modprobe bridge)", nr, name, errors.Join(ErrNoTAP, err))
		}
		if err := b.setUp(name, true); err != nil {
			return nil, fmt.Errorf("vlan %d: bridge %s: %w", nr, name, err)
		}
	}
	return b, nil
}

// BridgeName is the bridge of VLAN nr inside the namespace.
func BridgeName(nr int) string { return fmt.Sprintf("br%d", nr) }

// VLANs returns the VLAN numbers, sorted.
func (b *Bridges) VLANs() []int { return slices.Clone(b.nrs) }

// Inode identifies the namespace: /proc/PID/ns/net of every process in
// it links to net:[Inode].
func (b *Bridges) Inode() uint64 { return b.ns.Inode() }

// String describes the networks for the run's log.
func (b *Bridges) String() string {
	names := make([]string, len(b.nrs))
	for i, nr := range b.nrs {
		names[i] = fmt.Sprintf("vlan %d: bridge %s", nr, BridgeName(nr))
	}
	return fmt.Sprintf("%s in network namespace net:[%d]", strings.Join(names, ", "), b.Inode())
}

// OpenTAP creates a TAP device for machine's NIC on vlan, attaches it to
// that VLAN's bridge, brings it up and returns it open with its name.
// The device lives as long as the file or a copy of it (the hypervisor's)
// is open. The machine name is only for messages.
func (b *Bridges) OpenTAP(machine string, vlan int) (*os.File, string, error) {
	name, err := b.nextName(vlan)
	if err != nil {
		return nil, "", fmt.Errorf("%s's NIC on vlan %d: %w", machine, vlan, err)
	}
	f, err := b.tap(name, vlan, false)
	if err != nil {
		return nil, "", fmt.Errorf("%s's NIC on vlan %d: %w", machine, vlan, err)
	}
	return f, name, nil
}

// CreateTAP creates a persistent TAP device for machine's NIC on vlan,
// attached to that VLAN's bridge and up, for a hypervisor started with Do
// to open by name. RemoveTAP removes it; Close removes any left.
func (b *Bridges) CreateTAP(machine string, vlan int) (string, error) {
	name, err := b.nextName(vlan)
	if err != nil {
		return "", fmt.Errorf("%s's NIC on vlan %d: %w", machine, vlan, err)
	}
	f, err := b.tap(name, vlan, true)
	if err != nil {
		return "", fmt.Errorf("%s's NIC on vlan %d: %w", machine, vlan, err)
	}
	f.Close()
	return name, nil
}

// RemoveTAP removes a device CreateTAP made. A device that is still open
// (its hypervisor runs) goes when it is closed.
func (b *Bridges) RemoveTAP(name string) error {
	b.mu.Lock()
	known := b.devs[name]
	delete(b.devs, name)
	b.mu.Unlock()
	if !known {
		return fmt.Errorf("TAP device %s: not made by CreateTAP", name)
	}
	var f *os.File
	err := b.ns.Do(func() error {
		var err error
		f, err = openTUN(name)
		return err
	})
	if err != nil {
		return fmt.Errorf("removing TAP device %s: %w", name, err)
	}
	defer f.Close()
	if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 0); err != nil {
		return fmt.Errorf("removing TAP device %s: %w", name, err)
	}
	return nil
}

// Do runs f on a thread inside the namespace: a process f starts lives
// there and can open the TAP devices by name.
func (b *Bridges) Do(f func() error) error { return b.ns.Do(f) }

// SetLink brings a TAP device up or down: down, the bridge drops the
// NIC's frames both ways, as if its cable were pulled.
func (b *Bridges) SetLink(name string, up bool) error {
	b.mu.Lock()
	_, ok := b.devs[name]
	b.mu.Unlock()
	if !ok {
		return fmt.Errorf("no TAP device %s in this run", name)
	}
	return b.setUp(name, up)
}

// Close removes the namespace with its bridges and TAP devices (those a
// running hypervisor holds go when it exits). It may be called more than
// once.
func (b *Bridges) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	if b.ctl >= 0 {
		unix.Close(b.ctl)
	}
	return b.ns.Close()
}

// nextName picks the next TAP name for vlan: tap-v<VLAN>-<N>, within the
// 15 bytes of an interface name.
func (b *Bridges) nextName(vlan int) (string, error) {
	if !slices.Contains(b.nrs, vlan) {
		return "", fmt.Errorf("no such VLAN (the run's VLANs: %v): start the driver with --vlans including %d", b.nrs, vlan)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", errors.New("the TAP networks are closed")
	}
	b.seq++
	return fmt.Sprintf("tap-v%d-%d", vlan, b.seq), nil
}

// tap creates TAP device name, attached to vlan's bridge and up, and
// returns its open file.
func (b *Bridges) tap(name string, vlan int, persist bool) (_ *os.File, err error) {
	var f *os.File
	// The device belongs to the namespace of the thread that opens the
	// clone device.
	if err := b.ns.Do(func() error {
		var err error
		f, err = openTUN(name)
		return err
	}); err != nil {
		return nil, fmt.Errorf("creating TAP device %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			if persist {
				unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 0)
			}
			f.Close()
		}
	}()
	if persist {
		if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1); err != nil {
			return nil, fmt.Errorf("TAP device %s: making it persistent: %w", name, err)
		}
	}
	idx, err := b.index(name)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(BridgeName(vlan))
	if err != nil {
		return nil, err
	}
	ifr.SetUint32(idx)
	if err := unix.IoctlIfreq(b.ctl, unix.SIOCBRADDIF, ifr); err != nil {
		return nil, fmt.Errorf("attaching %s to bridge %s: %w", name, BridgeName(vlan), err)
	}
	if err := b.setUp(name, true); err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.devs[name] = persist
	b.mu.Unlock()
	return f, nil
}

// openTUN opens /dev/net/tun as TAP device name (creating it when it
// does not exist) without packet information headers, which is what
// QEMU's fd= expects and what Firecracker and cloud-hypervisor re-open.
// It runs inside the namespace.
func openTUN(name string) (*os.File, error) {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		f.Close()
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(int(f.Fd()), unix.TUNSETIFF, ifr); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// index is the interface index of name inside the namespace.
func (b *Bridges) index(name string) (uint32, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(b.ctl, unix.SIOCGIFINDEX, ifr); err != nil {
		return 0, fmt.Errorf("index of %s: %w", name, err)
	}
	return ifr.Uint32(), nil
}

// setUp sets or clears IFF_UP on name, keeping its other flags.
func (b *Bridges) setUp(name string, up bool) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(b.ctl, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("flags of %s: %w", name, err)
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(b.ctl, unix.SIOCSIFFLAGS, ifr); err != nil {
		action := "down"
		if up {
			action = "up"
		}
		return fmt.Errorf("bringing %s %s: %w", name, action, err)
	}
	return nil
}
