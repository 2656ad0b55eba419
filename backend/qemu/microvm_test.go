package qemu

import (
	"slices"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
)

func TestMicrovmArgs(t *testing.T) {
	d := &backend.Description{
		Name: "a", Kernel: "vmlinux", Initrd: "/abs/initrd", Dir: "/img",
		Cmdline: "console=ttyS0 panic=1 acpi=noirq systemd.hostname=a", MemoryMiB: 512, CPUs: 1, Shared: true,
		Disks: []backend.DiskDescription{{Path: "root.img", Format: "raw"}},
		NICs:  []backend.NICDescription{{VLAN: 0, MAC: "52:54:00:12:34:56"}, {VLAN: 1, MAC: "52:54:00:12:01:01"}},
		Hosts: "192.168.1.1 a", Net: "eth1 52:54:00:12:01:01 192.168.1.1/24",
	}
	env := map[string]string{"QEMU_VDE_SOCKET_1": "/run/v,1", "QEMU_NET_OPTS": "hostfwd=tcp::2222-:22", "QEMU_OPTS": " -smp  2 -device virtio-balloon-device "}
	args, overlays, err := microvmArgs(microvmConfig{Desc: d, StateDir: "/state", SharedDir: "/sh", Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-machine " + microvmMachine,
		"-netdev user,id=net0,restrict=on,hostfwd=tcp::2222-:22",
		"-device virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
		"-netdev vde,id=net1,sock=/run/v,,1",
		"-fw_cfg name=opt/vmdriver/hosts,string=192.168.1.1 a",
		"-device virtio-9p-device,fsdev=shared,mount_tag=shared",
		"-drive file=/state/a-root.qcow2,if=none,id=root,format=qcow2",
		"-device virtio-blk-device,drive=root",
		"-kernel /img/vmlinux", "-initrd /abs/initrd",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q:\n%s", want, line)
		}
	}
	// QEMU_OPTS comes last, split at blanks as the start scripts' $QEMU_OPTS.
	if got := args[len(args)-4:]; !slices.Equal(got, []string{"-smp", "2", "-device", "virtio-balloon-device"}) {
		t.Errorf("args end in %q, want QEMU_OPTS's words", got)
	}
	if got := args[slices.Index(args, "-append")+1]; got != "console=ttyS0 panic=1 systemd.hostname=a" {
		t.Errorf("kernel command line %q: want acpi=noirq dropped", got)
	}
	if want := [][3]string{{"/state/a-root.qcow2", "/img/root.img", "raw"}}; !slices.Equal(overlays, want) {
		t.Errorf("overlays %q, want %q", overlays, want)
	}
	if strings.Contains(line, "-pci") {
		t.Errorf("a PCI device on microvm: %s", line)
	}

	delete(env, "QEMU_VDE_SOCKET_1")
	if _, _, err := microvmArgs(microvmConfig{Desc: d, StateDir: "/state", Getenv: func(k string) string { return env[k] }}); err == nil || !strings.Contains(err.Error(), "QEMU_VDE_SOCKET_1 is not set") {
		t.Errorf("without the VLAN's socket: %v", err)
	}
	d.Cmdline += " vmdriver.outbound=1"
	args, _, _ = microvmArgs(microvmConfig{Desc: &backend.Description{Name: "b", Kernel: "k", Cmdline: "vmdriver.outbound=1", MemoryMiB: 64, CPUs: 1, NICs: d.NICs[:1]}, Getenv: func(string) string { return "" }})
	if !slices.Contains(args, "user,id=net0") {
		t.Errorf("an outbound image's user NIC: %q", args)
	}
}

func TestDriverArgsMicrovm(t *testing.T) {
	args := driverArgs(argvOptions{Microvm: true, StateDir: "/s", ShellFD: 3})
	if !slices.Contains(args, "virtio-serial-device") || slices.Contains(args, "virtio-serial") {
		t.Errorf("microvm's shell console: %q", args)
	}
	if n := NewMicrovm(); n.Name() != "microvm" || n.Hypervisor() != "QEMU microvm" {
		t.Errorf("names %q %q", n.Name(), n.Hypervisor())
	}
}

func TestParseCPUInfoTSCkHz(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"processor\t: 0\ncpu MHz\t\t: 2100.000\nflags\t\t: fpu tsc constant_tsc tsc_known_freq\n", 2100000},
		{"cpu MHz\t\t: 2100.000\nflags\t\t: fpu tsc constant_tsc\n", 0},
		{"flags\t\t: fpu\n", 0},
	} {
		if got := parseCPUInfoTSCkHz(strings.NewReader(c.in)); got != c.want {
			t.Errorf("parseCPUInfoTSCkHz(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
