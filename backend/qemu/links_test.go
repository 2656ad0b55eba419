package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
)

// infoNetworkNixOS is QEMU 7.2's `info network` for a NixOS-style
// command line: eth0 on user.0, two VLAN NICs.
const infoNetworkNixOS = "virtio-net-pci.0: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:56\r\n" +
	" \\ user.0: index=0,type=user,net=10.0.2.0,restrict=off\r\n" +
	"virtio-net-pci.1: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:01:02\r\n" +
	" \\ vlan1: index=0,type=vde,sock=/tmp/vde1.ctl[000]\r\n" +
	"virtio-net-pci.2: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:05:02\r\n" +
	" \\ vlan2: index=0,type=dgram,udp=/tmp/a:/tmp/b\r\n"

// infoNetworkMixed is QEMU 7.2's `info network` for a hub (-net nic
// -net user), -nic user, a NIC with its own id, a netdev without NIC and
// a NIC without netdev.
const infoNetworkMixed = "hub 0\r\n" +
	" \\ hub0port1: #net336: index=0,type=user,net=10.0.2.0,restrict=off\r\n" +
	" \\ hub0port0: virtio-net-pci.1: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:58\r\n" +
	"lonely: index=0,type=socket,\r\n" +
	"e1000.0: index=0,type=nic,model=e1000,macaddr=52:54:00:12:34:56\r\n" +
	" \\ #net075: index=0,type=user,net=10.0.2.0,restrict=on\r\n" +
	"nic9: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:34:57\r\n" +
	" \\ sock9: index=0,type=stream,\r\n" +
	"unplugged: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:aa:bb:cc\r\n" +
	"nic10: index=0,type=nic,model=virtio-net-pci,macaddr=AA:BB:CC:DD:EE:FF\r\n" +
	" \\ tap0: index=0,type=tap,ifname=tap0\r\n"

func TestParseInfoNetwork(t *testing.T) {
	tests := []struct {
		name     string
		out      string
		down     []string
		want     []backend.Link
		netdevs  []string
		userNet  string
		noUserOK bool
	}{
		{
			name: "nixos",
			out:  infoNetworkNixOS,
			down: []string{"virtio-net-pci.2"},
			want: []backend.Link{
				{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
				{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:02", Up: true},
				{Name: "virtio-net-pci.2", VLAN: 5, MAC: "52:54:00:12:05:02", Up: false},
			},
			netdevs: []string{"user.0", "vlan1", "vlan2"},
			userNet: "user.0",
		},
		{
			name: "mixed",
			out:  infoNetworkMixed,
			// QEMU's order: hubs first.
			want: []backend.Link{
				{Name: "virtio-net-pci.1", VLAN: 0, MAC: "52:54:00:12:34:58", Up: true},
				{Name: "e1000.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true, Restricted: true},
				// QEMU's default MAC is not read as VLAN 0x34: the first
				// VLAN link by position.
				{Name: "nic9", VLAN: 1, MAC: "52:54:00:12:34:57", Up: true},
				{Name: "nic10", VLAN: 2, MAC: "aa:bb:cc:dd:ee:ff", Up: true},
			},
			netdevs: []string{"#net336", "#net075", "sock9", "tap0"},
			userNet: "#net336",
		},
		{
			name:     "no network",
			out:      "",
			noUserOK: true,
		},
		{
			name: "vlans only, unknown lines",
			out: "some future line\r\n" +
				"n1: index=0,type=nic,model=virtio-net-pci,macaddr=52:54:00:12:0a:01\r\n" +
				" \\ vlan1: index=0,type=vde,sock=/x\r\n" +
				" \\ weird child\r\n",
			want:     []backend.Link{{Name: "n1", VLAN: 10, MAC: "52:54:00:12:0a:01", Up: true}},
			netdevs:  []string{"vlan1"},
			noUserOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var st linkState
			for _, n := range tt.down {
				st.set(n, false)
			}
			info := parseInfoNetwork(tt.out)
			ls := info.links(&st)
			var got []backend.Link
			var netdevs []string
			for _, l := range ls {
				got = append(got, l.link)
				netdevs = append(netdevs, l.netdev)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("links =\n  %+v\nwant\n  %+v", got, tt.want)
			}
			if !slices.Equal(netdevs, tt.netdevs) {
				t.Errorf("netdevs = %q, want %q", netdevs, tt.netdevs)
			}
			id, ok := info.userNetdev()
			if ok == tt.noUserOK || id != tt.userNet {
				t.Errorf("userNetdev = %q, %v; want %q", id, ok, tt.userNet)
			}
		})
	}
}

func TestNixOSVLAN(t *testing.T) {
	tests := []struct {
		mac  string
		vlan int
		ok   bool
	}{
		{"52:54:00:12:01:01", 1, true},
		{"52:54:00:12:FF:fe", 255, true},
		{"52:54:00:12:34:55", 0x34, true},
		{"52:54:00:12:34:56", 0, false}, // QEMU's default
		{"52:54:00:12:00:01", 0, false},
		{"52:54:00:13:01:01", 0, false},
		{"52:54:00:12:1:01", 0, false},
		{"52:54:00:12:zz:01", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		v, ok := nixosVLAN(tt.mac)
		if v != tt.vlan || ok != tt.ok {
			t.Errorf("nixosVLAN(%q) = %d, %v; want %d, %v", tt.mac, v, ok, tt.vlan, tt.ok)
		}
	}
}

// linksScript is the no-kernel VM with a NixOS-style eth0 on user.0 and
// two VLAN NICs whose netdevs need no peer (a listening socket and a
// unix dgram socket in dir).
func linksScript(dir string) string {
	return "#!/bin/sh\nexec qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults -vga std" +
		" -netdev user,id=user.0 -device virtio-net-pci,netdev=user.0,romfile=" +
		" -netdev socket,id=vlan1,listen=127.0.0.1:0 -device virtio-net-pci,netdev=vlan1,mac=52:54:00:12:01:02,romfile=" +
		" -netdev dgram,id=vlan2,local.type=unix,local.path=" + shellQuote(filepath.Join(dir, "a")) +
		",remote.type=unix,remote.path=" + shellQuote(filepath.Join(dir, "b")) +
		" -device virtio-net-pci,netdev=vlan2,mac=52:54:00:12:05:02,romfile=" +
		" \"$@\"\n"
}

// shellQuote quotes s for sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestLinksWithoutGuest(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, linksScript(stateDir(t))), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	links := func() []backend.Link {
		t.Helper()
		ls, err := i.Links(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	want := []backend.Link{
		{Name: "virtio-net-pci.0", VLAN: 0, MAC: "52:54:00:12:34:56", Up: true},
		{Name: "virtio-net-pci.1", VLAN: 1, MAC: "52:54:00:12:01:02", Up: true},
		{Name: "virtio-net-pci.2", VLAN: 5, MAC: "52:54:00:12:05:02", Up: true},
	}
	if got := links(); !slices.Equal(got, want) {
		t.Fatalf("Links =\n  %+v\nwant\n  %+v", got, want)
	}

	t.Run("set_link", func(t *testing.T) {
		if err := i.SetLink(ctx, "virtio-net-pci.1", false); err != nil {
			t.Fatal(err)
		}
		// The netdev's id names the same link.
		if err := i.SetLink(ctx, "vlan2", false); err != nil {
			t.Fatal(err)
		}
		got := links()
		if got[0].Up != true || got[1].Up != false || got[2].Up != false {
			t.Errorf("after cutting vlan links: %+v", got)
		}
		if err := i.SetLink(ctx, "virtio-net-pci.2", true); err != nil {
			t.Fatal(err)
		}
		if got := links(); got[1].Up != false || got[2].Up != true {
			t.Errorf("after restoring virtio-net-pci.2: %+v", got)
		}
		if err := i.SetLink(ctx, "virtio-net-pci.1", true); err != nil {
			t.Fatal(err)
		}
		if got := links(); !slices.Equal(got, want) {
			t.Errorf("after restoring all: %+v", got)
		}
	})
	t.Run("bad link names", func(t *testing.T) {
		for _, name := range []string{"nope", "", "virtio-net-pci.1 off", "a\ninfo status"} {
			err := i.SetLink(ctx, name, false)
			if err == nil {
				t.Errorf("SetLink(%q) succeeded", name)
				continue
			}
			t.Logf("SetLink(%q): %v", name, err)
			if !strings.Contains(err.Error(), strconv.Quote(name)) {
				t.Errorf("error does not name %q: %v", name, err)
			}
		}
		err := i.SetLink(ctx, "nope", false)
		if err == nil || !strings.Contains(err.Error(), "virtio-net-pci.1 (netdev vlan1, vlan 1)") {
			t.Errorf("error does not list the links: %v", err)
		}
		if got := links(); !slices.Equal(got, want) {
			t.Errorf("links changed by failed calls: %+v", got)
		}
	})
	t.Run("forward_port", func(t *testing.T) {
		port := freePort(t)
		if err := i.ForwardPort(ctx, port, 80); err != nil {
			t.Fatal(err)
		}
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("host port %d is not listening after ForwardPort: %v", port, err)
		}
		c.Close()
		// The same host port again: QEMU's text error becomes an error.
		err = i.ForwardPort(ctx, port, 81)
		if err == nil || !strings.Contains(err.Error(), "Could not set up host forwarding rule") ||
			!strings.Contains(err.Error(), "already in use") {
			t.Errorf("second ForwardPort(%d) = %v", port, err)
		}
		for _, p := range [][2]int{{0, 80}, {65536, 80}, {port + 1, 0}, {-1, -1}} {
			if err := i.ForwardPort(ctx, p[0], p[1]); err == nil || !strings.Contains(err.Error(), "is not a TCP port") {
				t.Errorf("ForwardPort(%d, %d) = %v", p[0], p[1], err)
			}
		}
	})
	t.Run("after exit", func(t *testing.T) {
		if err := i.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := i.Links(ctx); !errors.Is(err, backend.ErrExited) {
			t.Errorf("Links after Kill = %v, want ErrExited", err)
		}
		if err := i.SetLink(ctx, "virtio-net-pci.1", true); !errors.Is(err, backend.ErrExited) {
			t.Errorf("SetLink after Kill = %v, want ErrExited", err)
		}
		if err := i.ForwardPort(ctx, 8080, 80); !errors.Is(err, backend.ErrExited) {
			t.Errorf("ForwardPort after Kill = %v, want ErrExited", err)
		}
	})
}

func TestForwardPortWithoutUserNetwork(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, noKernelScript), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if ls, err := i.Links(ctx); err != nil || len(ls) != 0 {
		t.Errorf("Links = %+v, %v; want none", ls, err)
	}
	err := i.ForwardPort(ctx, freePort(t), 80)
	if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "no user-mode network") {
		t.Errorf("ForwardPort = %v, want ErrUnsupported naming the missing user-mode network", err)
	}
	if err := i.SetLink(ctx, "virtio-net-pci.0", false); err == nil || !strings.Contains(err.Error(), "its links are: none") {
		t.Errorf("SetLink = %v", err)
	}
}

// TestLinksInGuest checks what the guest sees: a cut link's carrier
// goes away and comes back, and a forwarded port reaches a guest server.
func TestLinksInGuest(t *testing.T) {
	dir := stateDir(t)
	nic := "-netdev dgram,id=vlan1,local.type=unix,local.path=" + filepath.Join(dir, "a") +
		",remote.type=unix,remote.path=" + filepath.Join(dir, "b") +
		" -device virtio-net-pci,netdev=vlan1,mac=52:54:00:12:01:07,romfile="
	i, sh, _ := bootGuestSpec(t, backend.Spec{Env: []string{"QEMU_OPTS=" + nic}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(cmd string) string {
		t.Helper()
		res, err := sh.Run(ctx, cmd, backdoor.RunOptions{})
		if err != nil {
			t.Fatalf("Run(%q): %v", cmd, err)
		}
		if res.Status != 0 {
			t.Fatalf("%q exited %d: %s", cmd, res.Status, res.Output)
		}
		return strings.TrimSpace(string(res.Output))
	}
	ls, err := i.Links(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[1].VLAN != 1 || ls[1].MAC != "52:54:00:12:01:07" {
		t.Fatalf("Links = %+v", ls)
	}
	// The guest's interface with that MAC.
	iface := run(`for d in /sys/class/net/*; do if [ "$(cat $d/address)" = 52:54:00:12:01:07 ]; then echo ${d##*/}; fi; done`)
	if iface == "" {
		t.Fatal("no guest interface has the VLAN NIC's MAC")
	}
	run("ip link set " + iface + " up")
	carrier := func() string { return run("cat /sys/class/net/" + iface + "/carrier") }
	if c := carrier(); c != "1" {
		t.Fatalf("carrier before SetLink = %s", c)
	}
	// The guest learns of the change from an interrupt; poll its view
	// until it agrees (bounded by ctx).
	waitCarrier := func(want string) {
		t.Helper()
		began := time.Now()
		for c := carrier(); c != want; c = carrier() {
			if ctx.Err() != nil {
				t.Fatalf("carrier stayed %s, want %s", c, want)
			}
		}
		t.Logf("guest carrier %s after %s", want, time.Since(began).Round(time.Millisecond))
	}
	if err := i.SetLink(ctx, ls[1].Name, false); err != nil {
		t.Fatal(err)
	}
	waitCarrier("0")
	if err := i.SetLink(ctx, "vlan1", true); err != nil {
		t.Fatal(err)
	}
	waitCarrier("1")

	// Forwarding: a one-shot server in the guest answers through SLiRP
	// (eth0 has its fixed address from boot).
	port := freePort(t)
	if err := i.ForwardPort(ctx, port, 8000); err != nil {
		t.Fatal(err)
	}
	run(`(echo hello-from-guest | nc -l -p 8000 >/dev/null 2>&1 &)`)
	var got string
	for got == "" && ctx.Err() == nil {
		// The server may not listen yet: SLiRP then closes at once.
		d := net.Dialer{Timeout: 10 * time.Second}
		c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		c.Close()
		got = strings.TrimSpace(string(b))
	}
	if got != "hello-from-guest" {
		t.Errorf("read %q through the forwarded port", got)
	}
}
