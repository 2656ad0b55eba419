package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/vlan"
)

// TestRealMicrovmVLAN boots two minimal guests under -M microvm on VLAN 1
// (images built with NAME:1) and pings one from the other by name: on a
// VDE switch, and on a bridge with TAP devices.
func TestRealMicrovmVLAN(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and boots two VMs")
	}
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ucd, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := images.Build(ctx, images.Options{Kind: images.Minimal, OutDir: t.TempDir(), Names: []string{"a:1", "b:1"},
		CacheDir: filepath.Join(ucd, "vmdriver"), Logf: t.Logf})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, kind := range []string{backend.VDE, backend.TAP} {
		t.Run(kind, func(t *testing.T) {
			var base backend.Spec
			switch kind {
			case backend.VDE:
				testenv.NeedCommand(t, vlan.Binary)
				swDir, err := os.MkdirTemp("", "vmd")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(swDir) })
				sw, err := vlan.Start(ctx, 1, swDir)
				if err != nil {
					t.Fatalf("start VLAN 1: %v", err)
				}
				t.Cleanup(func() { sw.Close() })
				base.Env = []string{sw.EnvName() + "=" + sw.SocketDir()}
			case backend.TAP:
				testenv.NeedTAP(t)
				br, err := vlan.StartBridges([]int{1})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { br.Close() })
				base.TAPs = br
			}
			pingOverVLAN(ctx, t, paths, base, kind)
		})
	}
}

// pingOverVLAN boots a and b from their start scripts on base's network
// and pings each from the other.
func pingOverVLAN(ctx context.Context, t *testing.T, paths []string, base backend.Spec, kind string) {
	b := NewMicrovm(WithAccel(AccelTCG))
	shells := map[string]*backdoor.Shell{}
	for k, name := range []string{"a", "b"} {
		spec := base
		spec.Name, spec.StartScript = name, paths[k]
		spec = specDefaults(t, spec, name)
		inst, err := b.Start(ctx, spec)
		if err != nil {
			t.Fatalf("Start %s: %v", name, err)
		}
		t.Cleanup(func() { inst.Close() })
		// QEMU's own report first: the user NIC is restricted, the VLAN
		// NIC is on the network under test.
		net, err := inst.(*Instance).MonitorCommand(ctx, "info network")
		if err != nil || !strings.Contains(net, "restrict=on") || !strings.Contains(net, "type="+kind) {
			t.Fatalf("%s: info network shows no restricted user NIC and %s NIC (%v):\n%s", name, kind, err, net)
		}
		bctx, bcancel := context.WithTimeout(ctx, b.BootTimeout())
		shells[name], err = inst.Shell(bctx)
		bcancel()
		if err != nil {
			t.Fatalf("%s Shell: %v", name, err)
		}
	}
	for i := 0; ; i++ {
		res, err := shells["a"].Run(ctx, "ping -c 1 -W 2 b", backdoor.RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status == 0 {
			break
		}
		if i == 30 {
			t.Fatalf("a cannot ping b over VLAN 1: %s", res.Output)
		}
		time.Sleep(time.Second)
	}
	mustRun(t, ctx, shells["b"], "ping -c 1 -W 2 192.168.1.1")
}
