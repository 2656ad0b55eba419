package images

import (
	"strings"
	"testing"
	"time"
)

// TestVsockBackdoorBoot boots the systemd guest as Firecracker would
// have it (vmdriver.backdoor=vsock on the kernel command line) under QEMU,
// which has no vsock device here: the initramfs loads the vsock modules,
// masks the virtio-console backdoor for this boot and enables the vsock
// one, and systemd starts socat listening on vsock port 1025. The serial
// console shows it; the virtio console never offers a shell.
func TestVsockBackdoorBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	needBuildHost(t, Systemd)
	ctx, cancel := testContext(t, 10*time.Minute)
	defer cancel()
	paths, err := Build(ctx, Options{Kind: Systemd, OutDir: t.TempDir(), Names: []string{"vs"}, CacheDir: testCacheDir(t), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	vm := launchVM(t, paths[0], "vs", []string{"QEMU_KERNEL_PARAMS=vmdriver.backdoor=vsock systemd.show_status=1"})
	const started = "Started backdoor-vsock.service - vmdriver backdoor root shell on vsock port 1025"
	deadline := time.Now().Add(3 * time.Minute)
	// multi-user.target waits for every unit it wants: the virtio-console
	// backdoor would have started by then.
	const reached = "Reached target multi-user.target"
	for c := vm.serial.tail(400); !strings.Contains(c, started) || !strings.Contains(c, reached); c = vm.serial.tail(400) {
		select {
		case <-vm.done:
			t.Fatalf("QEMU exited before the vsock backdoor started: %v\n%s", vm.waitErr, vm.serial.tail(60))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q and %q on the serial console within 3 minutes:\n%s", started, reached, vm.serial.tail(60))
		}
	}
	console := vm.serial.tail(400)
	for _, bad := range []string{"vmdriver-init: cannot load", "Started backdoor.service", "Failed to start backdoor"} {
		if strings.Contains(console, bad) {
			t.Errorf("serial console has %q:\n%s", bad, console)
		}
	}
}
