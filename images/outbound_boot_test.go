package images

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestNetOutboundBoot boots guests built with --net-outbound and checks,
// without sending a packet, that the opt-in took effect on both sides:
// the start script leaves the user-mode NIC unrestricted, and the guest
// has a default route through QEMU's NAT and QEMU's name server.
func TestNetOutboundBoot(t *testing.T) {
	cache := testCacheDir(t)
	for _, tt := range []struct {
		kind Kind
		boot time.Duration
	}{
		{Minimal, 60 * time.Second},
		{Systemd, 120 * time.Second},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			needBuildHost(t, tt.kind)
			ctx, cancel := testContext(t, 25*time.Minute)
			defer cancel()
			paths, err := Build(ctx, Options{Kind: tt.kind, OutDir: t.TempDir(), Names: []string{"wide"}, CacheDir: cache, NetOutbound: true, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			script, err := os.ReadFile(paths[0])
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(script), "restrict=on") || !strings.Contains(string(script), "vmdriver.outbound=1") {
				t.Fatalf("the --net-outbound start script still restricts, or does not tell the guest:\n%s", script)
			}
			vm := startVM(t, paths[0], "wide", tt.boot)
			// networkd applies its configuration in the background, after
			// the shell is up: wait for it (at most a minute) before looking.
			addr := "for i in $(seq 600); do a=$(ip -4 -o addr show dev eth0 | awk '{print $4}'); [ -n \"$a\" ] && break; sleep 0.1; done; echo $a"
			if got := vm.succeed(t, addr); got != "10.0.2.15/24\n" {
				t.Errorf("eth0 has %q, want 10.0.2.15/24", got)
			}
			route := "for i in $(seq 600); do r=$(ip -4 route show default); [ -n \"$r\" ] && break; sleep 0.1; done; echo $r | awk '{print $1, $2, $3, $4, $5}'"
			if got := vm.succeed(t, route); got != "default via 10.0.2.2 dev eth0\n" {
				t.Errorf("default route %q, want via 10.0.2.2 on eth0", got)
			}
			if got := vm.succeed(t, "grep '^nameserver' /etc/resolv.conf | awk '{print $2}'"); got != "10.0.2.3\n" {
				t.Errorf("name servers %q, want QEMU's 10.0.2.3", got)
			}
			vm.shutdown(t, "poweroff", 60*time.Second)
		})
	}
}
