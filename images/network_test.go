package images

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

func TestParseNodes(t *testing.T) {
	many := func(n int) []string {
		var s []string
		for i := range n {
			s = append(s, fmt.Sprintf("n%03d:1", i))
		}
		return s
	}
	tests := []struct {
		name  string
		specs []string
		want  []Node // nil when an error is wanted
		err   string // part of the error message
	}{
		{"bare names", []string{"b", "a"}, []Node{{Name: "b", Number: 2}, {Name: "a", Number: 1}}, ""},
		{"numbered by sorted name, given order kept", []string{"server:1", "client:1,2", "Zed"},
			[]Node{{"server", 3, []int{1}}, {"client", 2, []int{1, 2}}, {"Zed", 1, nil}}, ""},
		{"vlan order kept", []string{"a:7,3,255"}, []Node{{"a", 1, []int{7, 3, 255}}}, ""},
		{"leading zeros", []string{"a:01,002"}, []Node{{"a", 1, []int{1, 2}}}, ""},
		{"underscore and dash", []string{"web_1-a:1"}, []Node{{"web_1-a", 1, []int{1}}}, ""},
		{"254 nodes", many(254), nil, ""},

		{"no names", nil, nil, "no machine names"},
		{"empty list", []string{"a:"}, nil, `machine "a:": empty VLAN list`},
		{"empty element", []string{"a:1,,2"}, nil, "empty VLAN number"},
		{"trailing comma", []string{"a:1,"}, nil, "empty VLAN number"},
		{"vlan 0", []string{"a:0"}, nil, "VLAN 0 is outside 1-255"},
		{"vlan 256", []string{"a:256"}, nil, "VLAN 256 is outside 1-255"},
		{"vlan too long", []string{"a:1000"}, nil, `VLAN "1000" is not a number`},
		{"vlan sign", []string{"a:+1"}, nil, `VLAN "+1" is not a number`},
		{"vlan negative", []string{"a:-1"}, nil, `VLAN "-1" is not a number`},
		{"vlan word", []string{"a:one"}, nil, `VLAN "one" is not a number`},
		{"vlan space", []string{"a:1, 2"}, nil, `VLAN " 2" is not a number`},
		{"second colon", []string{"a:1:2"}, nil, `VLAN "1:2" is not a number`},
		{"vlan twice", []string{"a:2,1,2"}, nil, "VLAN 2 listed twice"},
		{"vlan twice, leading zero", []string{"a:1,01"}, nil, "VLAN 1 listed twice"},
		{"node twice", []string{"a:1", "b", "a:2"}, nil, `machine "a" given twice`},
		{"node twice, bare", []string{"a", "a"}, nil, `machine "a" given twice`},
		{"255 nodes", many(255), nil, "255 machines given, but one build numbers at most 254"},
		{"empty name", []string{":1"}, nil, `machine name "" is not a valid host name`},
		{"dot", []string{"a.b"}, nil, `machine name "a.b" is not a valid host name`},
		{"leading dash", []string{"-a"}, nil, "is not a valid host name"},
		{"trailing dash", []string{"a-:1"}, nil, "is not a valid host name"},
		{"trailing underscore", []string{"a_"}, nil, "is not a valid host name"},
		{"shell metacharacters", []string{"a$(reboot)"}, nil, "is not a valid host name"},
		{"space", []string{"a b"}, nil, "is not a valid host name"},
		{"64 characters", []string{strings.Repeat("a", 64)}, nil, "is not a valid host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNodes(tt.specs)
			if tt.err != "" {
				if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want ErrBadOptions containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
			if len(got) != len(tt.specs) {
				t.Fatalf("got %d nodes for %d specs", len(got), len(tt.specs))
			}
		})
	}
	// 63 characters is the longest valid name.
	if _, err := ParseNodes([]string{strings.Repeat("a", 63) + ":1"}); err != nil {
		t.Errorf("63-character name: %v", err)
	}
	// Numbers are 1..n without gaps, in sorted order.
	nodes, err := ParseNodes(many(254))
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if n.Number != i+1 {
			t.Fatalf("node %s has number %d, want %d", n.Name, n.Number, i+1)
		}
	}
}

func TestNICs(t *testing.T) {
	tests := []struct {
		node Node
		want []NIC
		devs []string
	}{
		{Node{Name: "a", Number: 1}, []NIC{}, nil},
		{Node{Name: "b", Number: 2, VLANs: []int{1}}, []NIC{
			{1, 1, "52:54:00:12:01:02", netip.MustParsePrefix("192.168.1.2/24")},
		}, []string{"eth1"}},
		{Node{Name: "c", Number: 254, VLANs: []int{255, 16, 10}}, []NIC{
			{1, 255, "52:54:00:12:ff:fe", netip.MustParsePrefix("192.168.255.254/24")},
			{2, 16, "52:54:00:12:10:fe", netip.MustParsePrefix("192.168.16.254/24")},
			{3, 10, "52:54:00:12:0a:fe", netip.MustParsePrefix("192.168.10.254/24")},
		}, []string{"eth1", "eth2", "eth3"}},
	}
	for _, tt := range tests {
		t.Run(tt.node.Name, func(t *testing.T) {
			got := tt.node.NICs()
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("NICs() = %+v\nwant %+v", got, tt.want)
			}
			var devs []string
			for _, c := range got {
				devs = append(devs, c.Dev())
			}
			if !reflect.DeepEqual(devs, tt.devs) {
				t.Errorf("devs %q, want %q", devs, tt.devs)
			}
		})
	}
}

func TestRenderHostsAndNet(t *testing.T) {
	const localhost = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
	tests := []struct {
		name  string
		specs []string
		self  string
		hosts string
		net   string
	}{
		{"first vlan address, node order", []string{"server:2,1", "client:1", "alone"}, "client",
			localhost + "192.168.1.2 client\n192.168.2.3 server\n",
			"eth1 52:54:00:12:01:02 192.168.1.2/24\n"},
		{"several nics", []string{"server:2,1", "client:1", "alone"}, "server",
			localhost + "192.168.1.2 client\n192.168.2.3 server\n",
			"eth1 52:54:00:12:02:03 192.168.2.3/24\neth2 52:54:00:12:01:03 192.168.1.3/24\n"},
		{"a machine without vlan resolves itself on 127.0.1.1", []string{"server:2,1", "client:1", "alone"}, "alone",
			localhost + "127.0.1.1 alone\n192.168.1.2 client\n192.168.2.3 server\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes, err := ParseNodes(tt.specs)
			if err != nil {
				t.Fatal(err)
			}
			var self Node
			for _, n := range nodes {
				if n.Name == tt.self {
					self = n
				}
			}
			if got := renderHosts(nodes, self); got != tt.hosts {
				t.Errorf("hosts\n got %q\nwant %q", got, tt.hosts)
			}
			if got := renderNet(self); got != tt.net {
				t.Errorf("net\n got %q\nwant %q", got, tt.net)
			}
		})
	}
	// The largest build: fw_cfg carries it (no kernel command line limit).
	var specs []string
	for i := range MaxNodes {
		specs = append(specs, fmt.Sprintf("node-%03d:255,1", i+1))
	}
	nodes, err := ParseNodes(specs)
	if err != nil {
		t.Fatal(err)
	}
	h := renderHosts(nodes, nodes[0])
	if lines := strings.Split(strings.TrimSuffix(h, "\n"), "\n"); len(lines) != 2+MaxNodes || lines[len(lines)-1] != "192.168.255.254 node-254" {
		t.Errorf("hosts of %d nodes: %d lines ending %q", MaxNodes, len(lines), lines[len(lines)-1])
	}
	if got := renderNet(nodes[MaxNodes-1]); got != "eth1 52:54:00:12:ff:fe 192.168.255.254/24\neth2 52:54:00:12:01:fe 192.168.1.254/24\n" {
		t.Errorf("net of node 254: %q", got)
	}
	if nodes, _ := ParseNodes([]string{"a", "b"}); hasVLANs(nodes) {
		t.Error("hasVLANs of bare machines is true")
	}
	if nodes, _ := ParseNodes([]string{"a", "b:3"}); !hasVLANs(nodes) {
		t.Error("hasVLANs of a build with a VLAN is false")
	}
}

// TestVMDriverNetScript runs guest/vmdriver-net on the host, in a network
// namespace of its own with bridges standing in for the NICs, under
// dash with iproute2 and under busybox sh with busybox ip (the systemd
// and the minimal guest).
func TestVMDriverNetScript(t *testing.T) {
	if !isRoot() {
		if testenv.Required() {
			t.Fatal("needs root for network namespaces")
		}
		t.Skip("needs root for network namespaces")
	}
	unshare := testenv.NeedCommand(t, "unshare")
	testenv.NeedCommand(t, "ip")
	busybox := testenv.NeedCommand(t, "busybox")
	script, err := filepath.Abs("guest/vmdriver-net")
	if err != nil {
		t.Fatal(err)
	}
	bbDir := t.TempDir()
	for _, a := range []string{"sh", "ip", "cat", "mv", "grep"} {
		if err := os.Symlink(busybox, filepath.Join(bbDir, a)); err != nil {
			t.Fatal(err)
		}
	}
	const hosts = "127.0.0.1 localhost\n192.168.1.1 a\n192.168.1.2 b"
	const twoNICs = "eth1 52:54:00:12:01:02 192.168.1.2/24\neth2 52:54:00:12:02:02 192.168.2.2/24"
	// setup creates eth0..ethN bridges with the given MACs ("" = random).
	tests := []struct {
		name    string
		cmdline string
		hosts   *string
		net     *string
		macs    []string // eth0, eth1, ... as the kernel named them
		// onCmdline passes hosts and net on the kernel command line
		// (backend.Description.CmdlineWithNet) instead of fw_cfg.
		onCmdline bool
		rc        int
		stderr    string
		// want is `ip -4 -o addr` reduced to "dev addr" pairs, and the MAC of each.
		want []string
	}{
		{"in order", "vmdriver.net=fw_cfg", ptr(hosts), ptr(twoNICs), []string{"", "52:54:00:12:01:02", "52:54:00:12:02:02"}, false, 0, "",
			[]string{"eth1 52:54:00:12:01:02 192.168.1.2/24", "eth2 52:54:00:12:02:02 192.168.2.2/24"}},
		{"swapped by the kernel", "vmdriver.net=fw_cfg", ptr(hosts), ptr(twoNICs), []string{"", "52:54:00:12:02:02", "52:54:00:12:01:02"}, false, 0, "",
			[]string{"eth1 52:54:00:12:01:02 192.168.1.2/24", "eth2 52:54:00:12:02:02 192.168.2.2/24"}},
		{"eth0 has a vlan mac", "vmdriver.net=fw_cfg", ptr(hosts), ptr("eth1 52:54:00:12:34:56 192.168.52.86/24"), []string{"52:54:00:12:34:56", "52:54:00:12:34:56"}, false, 0, "",
			[]string{"eth1 52:54:00:12:34:56 192.168.52.86/24"}},
		{"hosts only", "vmdriver.net=fw_cfg", ptr(hosts), nil, []string{""}, false, 0, "", nil},
		{"nothing passed", "quiet", nil, nil, []string{""}, false, 0, "", nil},
		{"outbound, nothing else", "quiet vmdriver.outbound=1", nil, nil, []string{""}, false, 0, "", nil},
		{"fw_cfg missing", "quiet vmdriver.net=fw_cfg", nil, nil, []string{""}, false, 1, "is the qemu_fw_cfg module loaded?", nil},
		{"on the command line", "vmdriver.net=fw_cfg", ptr(hosts), ptr(twoNICs), []string{"", "52:54:00:12:01:02", "52:54:00:12:02:02"}, true, 0, "",
			[]string{"eth1 52:54:00:12:01:02 192.168.1.2/24", "eth2 52:54:00:12:02:02 192.168.2.2/24"}},
		{"on the command line, swapped by the kernel", "vmdriver.net=fw_cfg", ptr(hosts), ptr(twoNICs), []string{"", "52:54:00:12:02:02", "52:54:00:12:01:02"}, true, 0, "",
			[]string{"eth1 52:54:00:12:01:02 192.168.1.2/24", "eth2 52:54:00:12:02:02 192.168.2.2/24"}},
		{"nic missing", "vmdriver.net=fw_cfg", ptr(hosts), ptr(twoNICs), []string{"", "52:54:00:12:01:02"}, false, 1, "no network interface has MAC 52:54:00:12:02:02",
			[]string{"eth1 52:54:00:12:01:02 192.168.1.2/24"}},
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	t.Cleanup(func() {
		if now, _ := os.ReadFile("/etc/resolv.conf"); string(now) != string(hostResolv) {
			t.Errorf("the guest script changed the host's /etc/resolv.conf from %q to %q", hostResolv, now)
		}
	})
	for _, shell := range []struct{ name, sh, path string }{
		{"dash+iproute2", "/bin/sh", "/usr/sbin:/usr/bin:/sbin:/bin"},
		{"busybox", filepath.Join(bbDir, "sh"), bbDir},
	} {
		for _, tt := range tests {
			t.Run(shell.name+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				fw := filepath.Join(dir, "fw")
				write := func(name, data string) {
					if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				cmdline := "console=ttyS0 " + tt.cmdline
				write(filepath.Join(dir, "hosts"), "old\n")
				switch {
				case tt.onCmdline:
					d := backend.Description{Name: "b", Cmdline: cmdline, Hosts: *tt.hosts, Net: *tt.net}
					var err error
					if cmdline, err = d.CmdlineWithNet(); err != nil {
						t.Fatal(err)
					}
				default:
					if tt.hosts != nil {
						write(filepath.Join(fw, "hosts", "raw"), *tt.hosts)
					}
					if tt.net != nil {
						write(filepath.Join(fw, "net", "raw"), *tt.net)
					}
				}
				write(filepath.Join(dir, "cmdline"), cmdline+"\n")
				var setup strings.Builder
				setup.WriteString("set -e\nmount -t sysfs sysfs /sys\n")
				for i, mac := range tt.macs {
					if mac != "" {
						mac = "address " + mac
					}
					fmt.Fprintf(&setup, "ip link add eth%d %s type bridge\n", i, mac)
				}
				fmt.Fprintf(&setup, "set +e\nPATH=%s %s %s 2>%s/stderr; echo \"rc=$?\"\nPATH=%[1]s %[2]s %[3]s 2>/dev/null; echo \"rerun=$?\"\n",
					shellQuote(shell.path), shellQuote(shell.sh), shellQuote(script), shellQuote(dir))
				setup.WriteString(`for d in /sys/class/net/eth*; do d=${d##*/}; for a in $(ip -4 -o addr show dev "$d" | awk '{print $4}'); do echo "$d $(cat /sys/class/net/$d/address) $a"; done; done` + "\n")
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, unshare, "--net", "--mount", "--propagation", "private", "sh", "-c", setup.String())
				// Every file the script writes is redirected: it runs on
				// the host, where it must not touch /etc.
				resolv := filepath.Join(dir, "resolv.conf")
				cmd.Env = append(os.Environ(), "VMDRIVER_NET_FW_CFG="+fw, "VMDRIVER_NET_HOSTS="+filepath.Join(dir, "hosts"),
					"VMDRIVER_NET_CMDLINE="+filepath.Join(dir, "cmdline"), "VMDRIVER_NET_RESOLV="+resolv)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%v\n%s", err, out)
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
				if lines[0] != fmt.Sprintf("rc=%d", tt.rc) || !strings.Contains(string(stderr), tt.stderr) {
					t.Fatalf("%s, stderr %q; want rc=%d and stderr containing %q\n%s", lines[0], stderr, tt.rc, tt.stderr, out)
				}
				if tt.stderr == "" && len(stderr) > 0 {
					t.Errorf("unexpected stderr %q", stderr)
				}
				if len(lines) < 2 || lines[1] != fmt.Sprintf("rerun=%d", tt.rc) {
					t.Errorf("second run: %q, want rerun=%d (idempotent)", lines[1:], tt.rc)
				}
				if got := lines[2:]; !reflect.DeepEqual(got, tt.want) && (len(got) != 0 || len(tt.want) != 0) {
					t.Errorf("interfaces\n got %q\nwant %q", got, tt.want)
				}
				gotHosts, err := os.ReadFile(filepath.Join(dir, "hosts"))
				if err != nil {
					t.Fatal(err)
				}
				wantHosts := "old\n"
				if tt.hosts != nil {
					wantHosts = *tt.hosts + "\n"
				}
				if string(gotHosts) != wantHosts {
					t.Errorf("hosts file %q, want %q", gotHosts, wantHosts)
				}
				gotResolv, err := os.ReadFile(resolv)
				if err != nil {
					t.Fatal(err)
				}
				wantServer := strings.Contains(tt.cmdline, "vmdriver.outbound=1")
				if hasServer := strings.HasPrefix(string(gotResolv), "nameserver 10.0.2.3"); hasServer != wantServer || strings.Count(string(gotResolv), "\n") != 1 {
					t.Errorf("resolv.conf %q: want one line, a name server only with vmdriver.outbound=1", gotResolv)
				}
			})
		}
	}
}

func ptr[T any](v T) *T { return &v }
