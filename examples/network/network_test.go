// Package network runs network.py, the multi-machine example: three
// minimal guests on two VLANs with a router on both.
package network

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// nodes is the topology of network.py: client on VLAN 1, server on VLAN 2,
// router on both.
var nodes = []string{"client:1", "router:1,2", "server:2"}

// TestNetwork builds the three guests (a cache hit after the first build)
// and runs network.py against them, the way `vmdriver eval-file` does:
// once on VDE switches (the NixOS driver's networks) and once on Linux
// bridges and TAP devices in a private network namespace (--net tap).
func TestNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "bash") // the host side of the port-forwarding check

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	scripts, err := images.Build(ctx, images.Options{
		Kind:   images.Minimal,
		OutDir: t.TempDir(),
		Names:  nodes,
		Logf:   t.Logf,
	})
	if errors.Is(err, images.ErrNotSupported) && !testenv.Required() {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("building the guests: %v", err)
	}
	var machines []driver.MachineConfig
	for i, spec := range nodes {
		name, _, _ := strings.Cut(spec, ":")
		machines = append(machines, driver.MachineConfig{Name: name, StartScript: scripts[i]})
	}
	for _, network := range []string{backend.VDE, backend.TAP} {
		t.Run(network, func(t *testing.T) {
			switch network {
			case backend.VDE:
				testenv.NeedCommand(t, "vde_switch")
			case backend.TAP:
				testenv.NeedTAP(t)
			}
			t.Setenv("VMDRIVER_NETWORK_HOST_PORT", strconv.Itoa(freePort(t)))
			runNetwork(ctx, t, driver.Config{
				Machines:      machines,
				VLANs:         []int{1, 2},
				Network:       network,
				GlobalTimeout: 10 * time.Minute,
				OutputDir:     t.TempDir(),
			})
		})
	}
}

// runNetwork runs network.py on a driver of cfg.
func runNetwork(ctx context.Context, t *testing.T, cfg driver.Config) {
	const file = "network.py"
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	log := report.New(report.Options{Out: testWriter{t}, JUnit: true})
	d, err := driver.New(t.Context(), cfg, driver.WithBackend(qemu.New()), driver.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := script.Run(ctx, script.Options{Driver: d, Filename: filepath.Join("examples", "network", file), Source: src, Stdout: testWriter{t}, Logger: log}); err != nil {
		t.Fatalf("%s failed: %v", file, err)
	}
	if b := d.Bridges(); b != nil {
		// The bridges' namespace, with every bridge and TAP device in
		// it, goes with the run.
		inode := b.Inode()
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if h := testenv.NetNSHolders(inode); len(h) != 0 {
			t.Errorf("the run's network namespace net:[%d] is still held after Close: %v", inode, h)
		}
	}
}

// freePort returns a TCP port that was free on the host a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free host port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testWriter sends output lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
