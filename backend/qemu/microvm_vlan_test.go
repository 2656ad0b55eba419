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
// (images built with NAME:1) and pings one from the other by name.
func TestRealMicrovmVLAN(t *testing.T) {
	if testing.Short() {
		t.Skip("builds images and boots two VMs")
	}
	needQEMU(t)
	testenv.NeedCommand(t, vlan.Binary)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
	env := []string{sw.EnvName() + "=" + sw.SocketDir()}

	b := NewMicrovm(WithAccel(AccelTCG))
	shells := map[string]*backdoor.Shell{}
	for k, name := range []string{"a", "b"} {
		spec := specDefaults(t, backend.Spec{Name: name, StartScript: paths[k], Env: env}, name)
		inst, err := b.Start(ctx, spec)
		if err != nil {
			t.Fatalf("Start %s: %v", name, err)
		}
		t.Cleanup(func() { inst.Close() })
		net, err := inst.(*Instance).MonitorCommand(ctx, "info network")
		if err != nil || !strings.Contains(net, "restrict=on") || !strings.Contains(net, "vde") {
			t.Fatalf("%s: info network shows no restricted user NIC and VDE NIC (%v):\n%s", name, err, net)
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
