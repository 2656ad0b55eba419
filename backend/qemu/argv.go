package qemu

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// qmpSocket names the QMP socket in a machine's state directory. The
// guest shell has no socket file: it is a socketpair (see shellpair.go).
const qmpSocket = "qmp"

// argvOptions is everything driverArgs needs; it holds no host state so
// the command line can be tested as a table.
type argvOptions struct {
	// Microvm puts the shell's virtio console on virtio-mmio
	// (virtio-serial-device): -M microvm has no PCI bus.
	Microvm bool
	// StateDir is the machine's state directory (absolute).
	StateDir string
	// ShellFD is the descriptor QEMU inherits its end of the guest shell
	// socketpair on.
	ShellFD int
	// AllowReboot drops -no-reboot.
	AllowReboot bool
	// Display is true when DISPLAY or WAYLAND_DISPLAY is set; without one
	// QEMU runs with -nographic.
	Display bool
	// Accel holds the accelerator arguments.
	Accel []string
	// Extra holds the user's own extra arguments, appended last.
	Extra []string
	// Incoming makes QEMU wait for a migration stream given later over
	// QMP (migrate-incoming), to restore a snapshot.
	Incoming bool
}

// driverArgs returns the arguments the driver appends to a start script,
// in the order the NixOS driver uses: QMP server socket, the guest shell
// on a virtio console, the serial port on stdio, then -no-reboot,
// -nographic, the accelerator and extra args. Unlike the NixOS driver the
// shell's chardev is an inherited, already connected socket (fd=N)
// rather than a path QEMU connects to, and every machine has a VM
// generation ID device: each QEMU process gets a new random ID, so a
// guest restored from a snapshot sees it change and its kernel (vmgenid,
// Linux 5.18+) reseeds its random number generator at once, before any
// clone could repeat its siblings' random numbers.
func driverArgs(o argvOptions) []string {
	args := []string{
		"-qmp", "unix:" + filepath.Join(o.StateDir, qmpSocket) + ",server=on,wait=off",
		"-chardev", "socket,id=shell,fd=" + strconv.Itoa(o.ShellFD),
	}
	serial := "virtio-serial"
	if o.Microvm {
		serial = "virtio-serial-device"
	}
	args = append(args,
		"-device", serial,
		"-device", "virtconsole,chardev=shell",
		"-device", "vmgenid,guid=auto",
		"-serial", "stdio",
	)
	if !o.AllowReboot {
		args = append(args, "-no-reboot")
	}
	if !o.Display {
		args = append(args, "-nographic")
	}
	args = append(args, o.Accel...)
	if o.Incoming {
		args = append(args, "-incoming", "defer")
	}
	return append(args, o.Extra...)
}

// hasDisplay reports whether a graphical display is available, as the
// NixOS driver decides it.
func hasDisplay(getenv func(string) string) bool {
	return getenv("DISPLAY") != "" || getenv("WAYLAND_DISPLAY") != ""
}

// buildEnv returns the start script's environment: the driver's own, then
// the variables the nixpkgs start script honours, then the spec's extras.
// Later entries win (os/exec keeps the last of duplicate keys).
func buildEnv(base []string, stateDir, sharedDir string, extra []string) ([]string, error) {
	env := make([]string, 0, len(base)+3+len(extra))
	env = append(env, base...)
	env = append(env, "TMPDIR="+stateDir, "USE_TMPDIR=1")
	if sharedDir != "" {
		env = append(env, "SHARED_DIR="+sharedDir)
	}
	for _, kv := range extra {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
		env = append(env, kv)
	}
	return env, nil
}
