package mock

import (
	"slices"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
)

// discovery is the command a machine sends to learn a restored guest's
// interfaces.
const discovery = "ip -o link; ip -o addr"

// wantDiscovery is its output for testLinks.
const wantDiscovery = `1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT group default qlen 1000\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff
3: eth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP mode DEFAULT group default qlen 1000\    link/ether 52:54:00:12:01:02 brd ff:ff:ff:ff:ff:ff
4: eth2: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc pfifo_fast state DOWN mode DEFAULT group default qlen 1000\    link/ether 52:54:00:12:03:02 brd ff:ff:ff:ff:ff:ff
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
1: lo    inet6 ::1/128 scope host \       valid_lft forever preferred_lft forever
2: eth0    inet 10.0.2.15/24 brd 10.0.2.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0    inet6 fe80::5054:ff:fe12:3456/64 scope link \       valid_lft forever preferred_lft forever
3: eth1    inet 192.168.1.2/24 brd 192.168.1.255 scope global eth1\       valid_lft forever preferred_lft forever
3: eth1    inet6 2001:db8:1::2/64 scope global \       valid_lft forever preferred_lft forever
3: eth1    inet6 fe80::5054:ff:fe12:102/64 scope link \       valid_lft forever preferred_lft forever
4: eth2    inet 192.168.3.2/24 brd 192.168.3.255 scope global eth2\       valid_lft forever preferred_lft forever
4: eth2    inet6 2001:db8:3::2/64 scope global \       valid_lft forever preferred_lft forever
4: eth2    inet6 fe80::5054:ff:fe12:302/64 scope link \       valid_lft forever preferred_lft forever
`

// fixup is the identity fix-up a machine sends to a clone named web-1
// on VLAN 1 as node 5.
const fixup = `date -s @1790000000.123456789 >/dev/null 2>&1 || date -s @1790000000 >/dev/null
hostname 'web-1'
echo 'web-1' > /etc/hostname
echo '0123456789abcdef0123456789abcdef' > /etc/machine-id
echo 'a1b2c3' > /dev/urandom
ip link set dev 'eth1' address '52:54:00:12:01:05'
ip addr del '192.168.1.2/24' dev 'eth1'
ip addr add '192.168.1.5/24' dev 'eth1'
ip addr del '2001:db8:1::2/64' dev 'eth1'
ip addr add '2001:db8:1::5/64' dev 'eth1'
ip neigh flush dev 'eth1'
echo '192.168.1.5 web-1' >> /etc/hosts
`

func withTestLinks() Option {
	return WithGuest(func(_ string, g *Guest) { g.SetLinks(testLinks...) })
}

func TestDiscovery(t *testing.T) {
	in, _ := start(t, backend.Spec{}, withTestLinks())
	r := run(t, in, discovery)
	if r.Status != 0 || string(r.Output) != wantDiscovery {
		t.Errorf("%s: status %d, output\n%s\nwant\n%s", discovery, r.Status, r.Output, wantDiscovery)
	}
}

func TestIdentityFixup(t *testing.T) {
	var console syncBuffer
	in, g := start(t, backend.Spec{Console: &console}, withTestLinks())
	if err := g.WriteFile("/etc/hosts", []byte("127.0.0.1 localhost\n")); err != nil {
		t.Fatal(err)
	}
	r := run(t, in, fixup)
	if r.Status != 0 || len(r.Output) != 0 {
		t.Fatalf("fix-up: status %d, output %q; console:\n%s", r.Status, r.Output, console.String())
	}
	if strings.Contains(console.String(), "not found") {
		t.Errorf("the fix-up ran a command the guest lacks: %q", console.String())
	}
	if got := g.Hostname(); got != "web-1" {
		t.Errorf("hostname %q", got)
	}
	if got := g.Clock().Unix(); got < 1790000000 || got > 1790000000+3600 {
		t.Errorf("clock %d, want about 1790000000", got)
	}
	if got := g.URandomWrites(); len(got) != 1 || string(got[0]) != "a1b2c3\n" {
		t.Errorf("urandom writes %q", got)
	}
	files := map[string]string{
		"/etc/hostname":   "web-1\n",
		"/etc/machine-id": "0123456789abcdef0123456789abcdef\n",
		"/etc/hosts":      "127.0.0.1 localhost\n192.168.1.5 web-1\n",
	}
	for p, want := range files {
		if got := string(run(t, in, "cat "+p).Output); got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	ls, err := in.Links(testCtx(t))
	if err != nil || ls[1].MAC != "52:54:00:12:01:05" || ls[0].MAC != testLinks[0].MAC {
		t.Errorf("Links after the fix-up: %+v, %v", ls, err)
	}
	ifs := g.Interfaces()
	wantEth1 := Interface{Name: "eth1", MAC: "52:54:00:12:01:05", Addrs: []string{"192.168.1.5/24", "2001:db8:1::5/64", "fe80::5054:ff:fe12:102/64"}}
	if len(ifs) != 4 || ifs[2].Name != wantEth1.Name || ifs[2].MAC != wantEth1.MAC || !slices.Equal(ifs[2].Addrs, wantEth1.Addrs) {
		t.Errorf("Interfaces = %+v, want eth1 %+v", ifs, wantEth1)
	}
	out := string(run(t, in, "ip -o link show dev eth1; ip -o -4 addr show dev eth1").Output)
	for _, want := range []string{"link/ether 52:54:00:12:01:05 ", "3: eth1    inet 192.168.1.5/24 brd 192.168.1.255 scope global eth1\\"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "inet6") {
		t.Errorf("ip -4 printed IPv6 addresses:\n%s", out)
	}
}

func TestIdentityCommands(t *testing.T) {
	tests := []struct {
		name       string
		cmd        string
		wantStatus int
		wantOut    string // exact, unless prefix
		prefix     bool
	}{
		{"hostname", "hostname", 0, "vm\n", false},
		{"set hostname", "hostname 'web-1'; hostname; hostname -s", 0, "web-1\nweb-1\n", false},
		{"bad hostname", "hostname 'a b'", 1, "", false},
		{"machine-id", "cat /etc/machine-id", 0, machineID("vm") + "\n", false},
		{"etc hostname", "cat /etc/hostname", 0, "vm\n", false},
		{"date set prints", "date -s @1790000000", 0, "Mon Sep 21 14:13:20 UTC 2026\n", false},
		{"date fraction", "date -s @1790000000.5 >/dev/null; date +%s", 0, "17900000", true},
		{"date nanoseconds", "date -s @1790000000.25 >/dev/null; date +%s.%N", 0, "17900000", true},
		{"date format", "date -s @0 >/dev/null; date -u +%Y-%m-%dT%H", 0, "1970-01-01T00\n", false},
		{"date bad", "date -s @12x", 1, "", false},
		{"date other form", "date -s 'next tuesday'", 1, "", false},
		{"date fallback", "date -s @1790000000.x >/dev/null 2>&1 || date -s @1790000000 >/dev/null; date +%s", 0, "17900000", true},
		{"perl missing", "perl -e 1", 127, "", false},
		{"perl or true", "perl -e 1 2>/dev/null || true", 0, "", false},
		{"urandom", "echo 'ab' > /dev/urandom", 0, "", false},
		{"del missing addr", "ip addr del '192.168.9.9/24' dev 'eth1'", 2, "", false},
		{"add existing addr", "ip addr add '192.168.1.2/24' dev 'eth1'", 2, "", false},
		{"add on missing dev", "ip addr add '1.2.3.4/24' dev 'eth9'", 1, "", false},
		{"bad prefix", "ip addr add '1.2.3/24' dev 'eth1'", 1, "", false},
		{"add and del", "ip addr add 10.9.8.7/16 dev eth1 && ip -o -4 addr show dev eth1 && ip addr del 10.9.8.7/16 dev eth1", 0,
			"3: eth1    inet 192.168.1.2/24 brd 192.168.1.255 scope global eth1\\       valid_lft forever preferred_lft forever\n" +
				"3: eth1    inet 10.9.8.7/16 brd 10.9.255.255 scope global eth1\\       valid_lft forever preferred_lft forever\n", false},
		{"bad mac", "ip link set dev 'eth1' address 'zz'", 255, "", false},
		{"mac on missing dev", "ip link set dev 'eth7' address '52:54:00:12:01:05'", 1, "", false},
		{"neigh flush", "ip neigh flush dev 'eth1'", 0, "", false},
		{"neigh flush missing dev", "ip neigh flush dev 'eth5'", 1, "", false},
		{"link show lo", "ip -o link show lo", 0, "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n", false},
		{"ip without -o", "ip link", 2, "", false},
		{"ip unknown object", "ip frob", 255, "", false},
		{"unknown command", "frobnicate", 127, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, _ := start(t, backend.Spec{}, withTestLinks())
			r := run(t, in, tt.cmd)
			ok := r.Status == tt.wantStatus && string(r.Output) == tt.wantOut
			if tt.prefix {
				ok = r.Status == tt.wantStatus && strings.HasPrefix(string(r.Output), tt.wantOut)
			}
			if !ok {
				t.Errorf("%s: status %d, output %q; want %d, %q", tt.cmd, r.Status, r.Output, tt.wantStatus, tt.wantOut)
			}
		})
	}
}

// TestScript checks the bash subset the fake guest interprets: lists,
// errexit, && and ||, exit and redirections.
func TestScript(t *testing.T) {
	tests := []struct {
		name       string
		cmd        string
		wantStatus int
		wantOut    string
		console    string // what must reach the console
	}{
		{"two lines", "echo a\necho b", 0, "a\nb\n", ""},
		{"semicolons", "echo a; echo b;", 0, "a\nb\n", ""},
		{"errexit", "echo a\nfalse\necho b", 1, "a\n", ""},
		{"errexit status", "true\nfrobnicate\necho b", 127, "", "frobnicate: command not found"},
		{"or rescues", "false || echo x\necho y", 0, "x\ny\n", ""},
		{"and does not exit", "false && echo x\necho y", 0, "y\n", ""},
		{"last and fails", "true && false\necho y", 1, "", ""},
		{"exit", "echo a\nexit 3\necho no", 3, "a\n", ""},
		{"exit in or", "test -e /nope || exit 4\necho no", 4, "", ""},
		{"continuation", "echo a \\\n b", 0, "a b\n", ""},
		{"comment", "# a comment\necho a # trailing", 0, "a\n", ""},
		{"newline after and", "true &&\necho z", 0, "z\n", ""},
		{"quoted newline", "echo 'a\nb'", 0, "a\nb\n", ""},
		{"truncate and append", "echo x > /tmp/f\necho y >> /tmp/f\necho z >>/tmp/f\ncat /tmp/f", 0, "x\ny\nz\n", ""},
		{"truncate on failure", "echo x > /tmp/f; false > /tmp/f || cat /tmp/f", 0, "", ""},
		{"stdout to null", "echo a >/dev/null", 0, "", ""},
		{"stderr to stdout", "cat /nope 2>&1 || true", 0, "cat: /nope: No such file or directory\n", ""},
		{"both to null", "cat /nope >/dev/null 2>&1 || echo failed", 0, "failed\n", ""},
		{"order matters", "echo a 2>&1 >/dev/null", 0, "", ""},
		{"to stderr", "echo oops >&2", 0, "", "oops"},
		{"and-redirect", "cat /nope &>/dev/null || echo failed", 0, "failed\n", ""},
		{"stderr to file", "cat /nope 2>/tmp/err || cat /tmp/err", 0, "cat: /nope: No such file or directory\n", ""},
		{"no such dir", "echo a > /no/such/file", 1, "", "No such file or directory"},
		{"redirect to dir", "echo a > /etc", 1, "", "Is a directory"},
		{"input missing", "cat < /nope", 1, "", "No such file or directory"},
		{"upload", "printf %s aGkK | base64 -d > /tmp/u && cat /tmp/u", 0, "hi\n", ""},
		{"pipe", "echo a | grep a", 2, "", "cannot interpret"},
		{"background", "sleep 1 &", 2, "", "cannot interpret"},
		{"dangling and", "echo a &&", 2, "", "syntax error"},
		{"leading pipe", "| echo a", 2, "", "syntax error"},
		{"redirect without target", "echo a >", 2, "", "syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var console syncBuffer
			in, _ := start(t, backend.Spec{Console: &console})
			r := run(t, in, tt.cmd)
			if r.Status != tt.wantStatus || string(r.Output) != tt.wantOut {
				t.Errorf("%q: status %d, output %q; want %d, %q", tt.cmd, r.Status, r.Output, tt.wantStatus, tt.wantOut)
			}
			if tt.console != "" && !strings.Contains(console.String(), tt.console) {
				t.Errorf("%q: console %q lacks %q", tt.cmd, console.String(), tt.console)
			}
		})
	}
}
