package images

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
)

// TestMachineDescription: the description beside a start script gives
// the same kernel, command line, memory, disk and NICs as the script.
func TestMachineDescription(t *testing.T) {
	nodes, err := ParseNodes([]string{"a:1", "b:1,2"})
	if err != nil {
		t.Fatal(err)
	}
	img := &image{kind: Systemd, dir: "/cache/img", kernel: "/cache/img/vmlinux", initrd: "/cache/img/initrd", disk: "/cache/img/root.img", memMiB: 512, params: "console=ttyS0 quiet"}
	d := machineDescription(img, nodes, nodes[1], scriptOptions{noVGA: true})
	script := renderScript(img, nodes, nodes[1], scriptOptions{noVGA: true})
	var vlans []int
	for _, n := range d.NICs {
		vlans = append(vlans, n.VLAN)
		if !strings.Contains(script, n.MAC) && n.VLAN != 0 {
			t.Errorf("NIC %s is not the script's", n.MAC)
		}
	}
	if !slices.Equal(vlans, []int{0, 1, 2}) {
		t.Errorf("NIC VLANs %v, want [0 1 2]", vlans)
	}
	for _, want := range []string{"console=ttyS0 quiet", "systemd.hostname=b", "vmdriver.net=fw_cfg", "vmdriver.display=none"} {
		if !strings.Contains(d.Cmdline, want) {
			t.Errorf("cmdline %q lacks %q", d.Cmdline, want)
		}
	}
	if d.Kernel != img.kernel || d.Initrd != img.initrd || d.MemoryMiB != 512 || len(d.Disks) != 1 || d.Disks[0].Path != img.disk || d.Hosts == "" || d.Net == "" {
		t.Errorf("description %+v", d)
	}
	// The systemd guest listens on vsock too (Firecracker); the minimal
	// one only on the virtio console.
	if !slices.Equal(d.Shells, []string{backend.ShellVirtioConsole, backend.ShellVsock}) {
		t.Errorf("systemd guest's shells %v", d.Shells)
	}
	minimal := *img
	minimal.kind = Minimal
	if m := machineDescription(&minimal, nodes, nodes[1], scriptOptions{}); !slices.Equal(m.Shells, []string{backend.ShellVirtioConsole}) {
		t.Errorf("minimal guest's shells %v", m.Shells)
	}
	// It is what LoadDescription reads back.
	data, _ := json.Marshal(d)
	p := filepath.Join(t.TempDir(), "b.machine.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.LoadDescription(p); err != nil {
		t.Fatal(err)
	}
}
