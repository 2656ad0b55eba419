package machine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

func TestRenumber(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"192.168.1.1/24", "192.168.1.7/24", true},
		{"192.168.2.1/24", "192.168.2.7/24", true},
		{"192.168.1.2/24", "192.168.1.2/24", false},
		{"10.0.2.15/24", "10.0.2.15/24", false},
		{"2001:db8:1::1/64", "2001:db8:1::7/64", true},
		{"2001:db8:1::11/64", "2001:db8:1::11/64", false},
		{"fe80::5054:ff:fe12:101/64", "fe80::5054:ff:fe12:101/64", false},
	}
	for _, tt := range tests {
		got, ok := renumber(netip.MustParsePrefix(tt.in), 1, 7)
		if got.String() != tt.want || ok != tt.ok {
			t.Errorf("renumber(%s) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseInterfaces(t *testing.T) {
	out := `1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\    link/ether 52:54:00:12:01:01 brd ff:ff:ff:ff:ff:ff
3: eth1    inet 192.168.1.1/24 brd 192.168.1.255 scope global eth1\       valid_lft forever preferred_lft forever
3: eth1    inet6 fe80::5054:ff:fe12:101/64 scope link \       valid_lft forever preferred_lft forever
`
	ifs := parseInterfaces(out)
	g := ifs["eth1"]
	if g == nil || g.MAC != "52:54:00:12:01:01" || len(g.Addrs) != 2 {
		t.Fatalf("eth1 = %+v", g)
	}
	ll, err := linkLocal("52:54:00:12:01:01")
	if err != nil || ll != g.Addrs[1] {
		t.Errorf("linkLocal = %s, %v; the guest has %s", ll, err, g.Addrs[1])
	}
	links := []backend.Link{{Name: "n1", VLAN: 1, MAC: "52:54:00:12:01:01"}}
	script, err := identityScript(identity{Hostname: "a-1", Node: 9, Now: time.Unix(1790000000, 5)}, links, ifs)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		guestcmd.SetClock(time.Unix(1790000000, 5)),
		guestcmd.SetHostname("a-1"),
		guestcmd.SetMAC("eth1", "52:54:00:12:01:09"),
		guestcmd.ReplaceAddr("eth1", netip.MustParsePrefix("192.168.1.1/24"), netip.MustParsePrefix("192.168.1.9/24")),
		guestcmd.ReplaceAddr("eth1", g.Addrs[1], netip.MustParsePrefix("fe80::5054:ff:fe12:109/64")),
		guestcmd.FlushNeighbours("eth1"),
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// Every clone gets a machine-id and entropy of its own: two scripts
	// for the same identity differ in those two lines only.
	again, err := identityScript(identity{Hostname: "a-1", Node: 9, Now: time.Unix(1790000000, 5)}, links, ifs)
	if err != nil {
		t.Fatal(err)
	}
	l1, l2 := strings.Split(script, "\n"), strings.Split(again, "\n")
	differ := 0
	for i := range min(len(l1), len(l2)) {
		if l1[i] != l2[i] {
			differ++
		}
	}
	if len(l1) != len(l2) || differ != 2 {
		t.Errorf("two scripts for one identity differ in %d lines, want the machine-id's and the entropy's:\n%s\n%s", differ, script, again)
	}
	// A VLAN link the guest does not show is an error, not a silent skip.
	if _, err := identityScript(identity{Hostname: "a-1", Node: 9}, []backend.Link{{VLAN: 2, MAC: "52:54:00:12:02:01"}}, ifs); err == nil {
		t.Error("no error for a missing interface")
	}
}
