package images

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/vlan"
)

// TestVLANBoot boots two machines of each kind on VDE switches, in
// parallel, from one build "server:1,2 client:1", and checks inside the
// guests what the NixOS test framework promises: eth1..ethN with
// 192.168.<vlan>.<node>/24 and 52:54:00:12:<vlan>:<node>, the build's
// /etc/hosts, name resolution for ping and nc (and wget on the minimal
// guest), eth0 on QEMU's restricted user-mode network without a default
// route, so a VLAN the machine is not on is unreachable, and a
// machine-id of each machine's own.
func TestVLANBoot(t *testing.T) {
	cache := testCacheDir(t)
	tests := []struct {
		kind Kind
		boot time.Duration
		// listen starts a TCP listener on port 1234 writing what it
		// receives to /tmp/nc.out; send sends stdin to HOST port 1234.
		listen, send string
	}{
		{Minimal, 90 * time.Second, "nc -l -p 1234", "nc -w 5 %s 1234"},
		{Systemd, 180 * time.Second, "nc -l 1234", "nc -N -w 5 %s 1234"},
	}
	const hosts = "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n192.168.1.1 client\n192.168.1.2 server\n"
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			needBuildHost(t, tt.kind)
			testenv.NeedCommand(t, vlan.Binary)
			ctx, cancel := testContext(t, 25*time.Minute)
			defer cancel()

			paths, err := Build(ctx, Options{Kind: tt.kind, OutDir: t.TempDir(), Names: []string{"server:1,2", "client:1"}, CacheDir: cache, Logf: t.Logf})
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			swDir, err := os.MkdirTemp("", "vmd")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(swDir) })
			var env []string
			for _, nr := range []int{1, 2} {
				sw, err := vlan.Start(ctx, nr, swDir)
				if err != nil {
					t.Fatalf("start VLAN %d: %v", nr, err)
				}
				t.Cleanup(func() {
					if err := sw.Close(); err != nil {
						t.Errorf("close VLAN %d: %v", nr, err)
					}
				})
				env = append(env, sw.Env())
			}

			server := launchVM(t, paths[0], "server", env)
			client := launchVM(t, paths[1], "client", env)
			server.waitBoot(t, tt.boot)
			client.waitBoot(t, tt.boot)

			type nic struct{ dev, mac, addr string }
			for _, m := range []struct {
				vm    *testVM
				peer  string
				nics  []nic
				other *testVM
			}{
				{server, "client", []nic{{"eth1", "52:54:00:12:01:02", "192.168.1.2/24"}, {"eth2", "52:54:00:12:02:02", "192.168.2.2/24"}}, client},
				{client, "server", []nic{{"eth1", "52:54:00:12:01:01", "192.168.1.1/24"}}, server},
			} {
				vm := m.vm
				// The backdoor may start before the network is applied
				// on no guest: no waiting here.
				for _, n := range m.nics {
					if got := vm.succeed(t, "ip -4 -o addr show dev "+n.dev+" | awk '{print $4}'"); got != n.addr+"\n" {
						t.Errorf("%s: %s has IPv4 %q, want %s\n%s", vm.name, n.dev, got, n.addr, vm.succeed(t, "ip addr"))
					}
					if got := vm.succeed(t, "cat /sys/class/net/"+n.dev+"/address"); got != n.mac+"\n" {
						t.Errorf("%s: %s has MAC %q, want %s", vm.name, n.dev, got, n.mac)
					}
					// Administratively up with carrier (operstate may still
					// say "unknown" for a moment after the link came up).
					if got := vm.succeed(t, "d=/sys/class/net/"+n.dev+"; echo $(($(cat $d/flags) & 1)) $(cat $d/carrier)"); got != "1 1\n" {
						t.Errorf("%s: %s up and carrier: %q, want \"1 1\"", vm.name, n.dev, got)
					}
				}
				if out, st := vm.run(t, "test -e /sys/class/net/eth"+fmt.Sprint(len(m.nics)+1), 30*time.Second); st == 0 {
					t.Errorf("%s: has more NICs than its VLANs: %q", vm.name, out)
				}
				if got := vm.succeed(t, "cat /etc/hosts"); got != hosts {
					t.Errorf("%s: /etc/hosts\n%s\nwant\n%s", vm.name, got, hosts)
				}
				if got := vm.succeed(t, "hostname"); got != vm.name+"\n" {
					t.Errorf("%s: hostname %q", vm.name, got)
				}
				vm.succeed(t, "ping -c 1 -W 5 "+m.peer+" >/dev/null")
				checkIsolated(t, vm)
			}
			// QEMU's own report: the client's user-mode netdev lets
			// nothing out. Checked, like the routes above, before the
			// one packet that could otherwise leave is sent.
			checkRestricted(t, client)
			// With no default route (checked above), the server's VLAN 2
			// address is unreachable from the client, which is on VLAN 1
			// only: the packet has nowhere to go, not even to QEMU.
			if out, st := client.run(t, "ping -c 1 -W 2 192.168.2.2 2>&1", 30*time.Second); st == 0 {
				t.Errorf("client reached the server's VLAN 2 address without being on VLAN 2:\n%s", out)
			}
			if tt.kind == Systemd {
				ids := map[string]bool{}
				for _, vm := range []*testVM{server, client} {
					id := vm.succeed(t, "cat /etc/machine-id")
					if len(id) != 33 || strings.Trim(id, "0123456789abcdef\n") != "" {
						t.Errorf("%s: /etc/machine-id = %q, want 32 hex digits", vm.name, id)
					}
					if got := vm.succeed(t, "cat /var/lib/dbus/machine-id"); got != id {
						t.Errorf("%s: D-Bus machine-id %q differs from /etc/machine-id %q", vm.name, got, id)
					}
					ids[id] = true
				}
				if len(ids) != 2 {
					t.Errorf("server and client share a machine-id: %v", ids)
				}
			}

			// nc by name: the server listens, the client sends a line to
			// "server". The client retries until the listener is up.
			server.succeed(t, "rm -f /tmp/nc.out; ("+tt.listen+" </dev/null >/tmp/nc.out 2>&1 &)")
			client.succeed(t, "for i in $(seq 100); do echo hello-from-client | "+fmt.Sprintf(tt.send, "server")+" && exit 0; sleep 0.1; done; exit 1")
			server.succeed(t, "for i in $(seq 100); do grep -q hello-from-client /tmp/nc.out && exit 0; sleep 0.1; done; cat /tmp/nc.out; exit 1")

			switch tt.kind {
			case Minimal:
				// busybox-static's resolver (static glibc) reads /etc/hosts
				// for wget as well. (Its wget has no --timeout, and -T
				// crashes it: busybox 1.35 in Debian 12.)
				server.succeed(t, "mkdir -p /tmp/www && echo served-by-server >/tmp/www/x && httpd -p 8080 -h /tmp/www")
				if got := client.succeed(t, "timeout 30 wget -q -O - http://server:8080/x"); got != "served-by-server\n" {
					t.Errorf("wget http://server:8080/x = %q", got)
				}
			case Systemd:
				for _, vm := range []*testVM{server, client} {
					// What getaddrinfo (ping, nc, ...) sees; `getent hosts`
					// asks for IPv6 first and gets nss-myhostname's
					// link-local addresses for the machine's own name.
					for name, want := range map[string]string{"server": "192.168.1.2\n", "client": "192.168.1.1\n"} {
						if got := vm.succeed(t, "getent ahosts "+name+" | awk '{print $1}' | sort -u"); got != want {
							t.Errorf("%s: getent ahosts %s: %q, want %q", vm.name, name, got, want)
						}
					}
					out, st := vm.run(t, "timeout 100 systemctl is-system-running --wait", 110*time.Second)
					if st != 0 || out != "running\n" {
						failed, _ := vm.run(t, "systemctl --failed --no-pager", 30*time.Second)
						t.Errorf("%s: systemctl is-system-running = %q (status %d)\n%s", vm.name, out, st, failed)
					}
					vm.succeed(t, "systemctl is-active vmdriver-net.service")
				}
			}
			// The client's banner is read after the server's, so its figure
			// is an upper bound.
			t.Logf("two machines booted in parallel: both banners within %.2fs", max(server.booted, client.booted).Seconds())
			for _, vm := range []*testVM{server, client} {
				if s := vm.serial.tail(5000); strings.Contains(s, "vmdriver-net:") || strings.Contains(s, "VLAN network is incomplete") {
					t.Errorf("%s: vmdriver-net complained:\n%s", vm.name, s)
				}
			}
			for _, vm := range []*testVM{server, client} {
				vm.shutdown(t, "poweroff -f", 60*time.Second)
			}
		})
	}
}
