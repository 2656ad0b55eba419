package integration

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// TestFork forks 4 clones of each guest kind on a VLAN and checks that
// they are independent machines with identities of their own.
func TestFork(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "qemu-img")
	for _, tt := range []struct {
		kind    images.Kind
		network string
	}{
		{images.Minimal, backend.VDE},
		{images.Systemd, backend.VDE},
		// Clones get TAP devices of their own on the same bridge.
		{images.Minimal, backend.TAP},
	} {
		t.Run(string(tt.kind)+"-"+tt.network, func(t *testing.T) {
			if tt.network == backend.TAP {
				testenv.NeedTAP(t)
			} else {
				testenv.NeedCommand(t, "vde_switch")
			}
			testFork(t, tt.kind, tt.network)
		})
	}
}

func testFork(t *testing.T, kind images.Kind, network string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	scripts, err := images.Build(ctx, images.Options{Kind: kind, OutDir: t.TempDir(), Names: []string{"base:1"}, Logf: t.Logf})
	if errors.Is(err, images.ErrNotSupported) && !testenv.Required() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("building the guest: %v", err)
	}
	d, err := driver.New(t.Context(), driver.Config{
		Machines: []driver.MachineConfig{{Name: "base", StartScript: scripts[0]}},
		VLANs:    []int{1},
		Network:  network,
	}, driver.WithBackend(sharedBackend()), driver.WithMachineOptions(machine.WithLogger(machine.NewTextLogger(testWriter{t}))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("closing the driver: %v", err)
		}
	})
	base := d.Machine("base")
	run := func(m *machine.Machine, cmd string) string {
		t.Helper()
		out, err := m.Succeed(ctx, cmd)
		if err != nil {
			t.Fatalf("%s: %v", m.Name(), err)
		}
		return strings.TrimSpace(out)
	}
	run(base, "echo set-up > /root/base && sync")
	baseMAC := run(base, "cat /sys/class/net/eth1/address")

	clones, err := d.Fork(ctx, base, 4)
	if err != nil {
		t.Fatalf("Fork: %v", err)
	}
	if len(clones) != 4 {
		t.Fatalf("Fork returned %d machines", len(clones))
	}
	seen := map[string]string{}
	unique := func(what, v, who string) {
		t.Helper()
		if prev, dup := seen[what+v]; dup {
			t.Errorf("%s %q of %s is also %s's", what, v, who, prev)
		}
		seen[what+v] = who
	}
	unique("mac", baseMAC, "base")
	unique("machine-id", run(base, "cat /etc/machine-id 2>/dev/null || echo none-base"), "base")
	unique("random", run(base, "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"), "base")
	var ips []string
	for k, c := range clones {
		name := fmt.Sprintf("base-%d", k+1)
		if c.Name() != name {
			t.Errorf("clone %d is named %q, want %q", k, c.Name(), name)
		}
		if got := run(c, "hostname"); got != name {
			t.Errorf("%s: hostname %q", name, got)
		}
		if got := run(c, "cat /root/base"); got != "set-up" {
			t.Errorf("%s: /root/base = %q", name, got)
		}
		// Clock: within a few seconds of the host's, although the
		// snapshot is older (generous for TCG on a loaded host).
		secs, err := strconv.ParseInt(run(c, "date +%s"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if skew := time.Since(time.Unix(secs, 0)); skew < -5*time.Second || skew > 5*time.Second {
			t.Errorf("%s: clock is %s off the host's", name, skew)
		}
		node := c.Node()
		mac := run(c, "cat /sys/class/net/eth1/address")
		if want := fmt.Sprintf("52:54:00:12:01:%02x", node); mac != want {
			t.Errorf("%s: eth1 MAC %s, want %s (node %d)", name, mac, want, node)
		}
		unique("mac", mac, name)
		ip := fmt.Sprintf("192.168.1.%d", node)
		if addrs := run(c, "ip -4 addr show dev eth1"); !strings.Contains(addrs, ip+"/") || strings.Contains(addrs, "192.168.1.1/") {
			t.Errorf("%s: eth1 addresses %q, want %s only", name, addrs, ip)
		}
		ips = append(ips, ip)
		unique("machine-id", run(c, "cat /etc/machine-id"), name)
		unique("random", run(c, "head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'"), name)
		// The kernel itself reseeded its RNG when the restore changed the
		// VM generation ID, before the first command ran.
		if got := run(c, "dmesg | grep -c 'crng reseeded due to virtual machine fork' || true"); got == "0" {
			t.Errorf("%s: the kernel did not reseed its RNG on the fork (no vmgenid change seen)", name)
		}
		run(c, fmt.Sprintf("echo %s > /root/own && sync", name))
	}
	// Independent: each sees only its own write; the original none.
	for _, c := range clones {
		if got := run(c, "cat /root/own"); got != c.Name() {
			t.Errorf("%s: /root/own = %q", c.Name(), got)
		}
	}
	if got := run(base, "cat /root/own 2>/dev/null || echo absent"); got != "absent" {
		t.Errorf("base sees a clone's write: %q", got)
	}
	// On one VLAN: clones reach each other (by address and by name) and
	// the original.
	run(clones[0], "ping -c 1 -W 10 "+ips[1])
	run(clones[0], "ping -c 1 -W 10 "+clones[1].Name())
	run(clones[2], "ping -c 1 -W 10 192.168.1.1")
	run(base, "ping -c 1 -W 10 "+ips[3])
	// A clone forks like any machine, taking over its own addresses.
	grand, err := d.Fork(ctx, clones[0], 1)
	if err != nil {
		t.Fatalf("forking a clone: %v", err)
	}
	gip := fmt.Sprintf("192.168.1.%d", grand[0].Node())
	if addrs := run(grand[0], "ip -4 addr show dev eth1"); !strings.Contains(addrs, gip+"/") || strings.Contains(addrs, ips[0]+"/") {
		t.Errorf("%s: eth1 addresses %q, want %s only", grand[0].Name(), addrs, gip)
	}
	run(grand[0], "ping -c 1 -W 10 "+ips[0])
	if err := grand[0].Close(); err != nil {
		t.Errorf("closing %s: %v", grand[0].Name(), err)
	}
	// The clones' writes stayed out of the snapshot: a machine restored
	// from it now sees none of them.
	snap, err := d.Snapshot(ctx, base, "later")
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	late, err := d.Restore(ctx, snap, "")
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if got := run(late, "cat /root/own 2>/dev/null || echo absent; cat /root/base"); got != "absent\nset-up" {
		t.Errorf("%s: %q", late.Name(), got)
	}
	// The original keeps working, with its identity.
	if got := run(base, "hostname; cat /sys/class/net/eth1/address"); got != "base\n"+baseMAC {
		t.Errorf("base after forking: %q", got)
	}
}

// testWriter sends a machine logger's lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
