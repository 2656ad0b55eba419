// Package testenv lets tests find the host tools and guest images they
// need, and decides whether a missing one skips the test or fails it.
//
// Under `make test` (and in CI) VMDRIVER_REQUIRE_VM=1 is set: everything
// is installed and built by the Makefile, so a missing tool is a failure,
// never a silent skip. A developer running `go test` by hand without the
// tools gets skips instead.
package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// Required reports whether missing tools or images must fail tests.
func Required() bool {
	return os.Getenv("VMDRIVER_REQUIRE_VM") == "1" || os.Getenv("CI") == "true"
}

// NeedCommand returns the path of a host program, or skips (or fails,
// when Required) the test if it is not installed. A program that the
// host tools table does not list always fails the test: `make deps`
// would never install it.
func NeedCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := hosttools.Path(name)
	switch {
	case errors.Is(err, hosttools.ErrUnlisted):
		t.Fatal(err)
	case err != nil:
		missing(t, err.Error())
	}
	return p
}

// NeedQEMU returns the path of qemu-system-x86_64.
func NeedQEMU(t testing.TB) string {
	t.Helper()
	return NeedCommand(t, "qemu-system-x86_64")
}

// StartScript returns the start script of a prebuilt test guest of the
// given kind ("minimal" or "systemd"), as built by `make images` into the
// directory named by VMDRIVER_IMAGES (default: ../../build/images relative
// to nothing; the Makefile always sets it). It skips or fails when absent.
func StartScript(t testing.TB, kind string) string {
	t.Helper()
	dir := os.Getenv("VMDRIVER_IMAGES")
	if dir == "" {
		missing(t, "VMDRIVER_IMAGES is not set (run tests through `make test`, or `make images` and export VMDRIVER_IMAGES=$PWD/build/images)")
		return ""
	}
	p := dir + "/" + kind + "/run-" + kind + "-vm"
	if _, err := os.Stat(p); err != nil {
		missing(t, "guest image "+p+" is missing (run `make images`)")
	}
	return p
}

func missing(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatal(why)
	}
	t.Skip(why)
}

// NeedTAP skips (or fails, when Required) a test that makes TAP networks
// when this host cannot: they need root and /dev/net/tun.
func NeedTAP(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "TAP networks need root (a private network namespace, bridges and TAP devices)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing(t, "TAP networks need /dev/net/tun: "+err.Error())
	}
}

// NetNSHolders lists what keeps network namespace net:[inode] alive: the
// processes inside it (/proc/PID/ns/net) and the descriptors open on it
// (/proc/PID/fd/N). None means the kernel has removed it, with every
// device in it.
func NetNSHolders(inode uint64) []string {
	want := "net:[" + strconv.FormatUint(inode, 10) + "]"
	var who []string
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		if l, _ := os.Readlink(p + "/ns/net"); l == want {
			who = append(who, p+"/ns/net")
		}
		fds, _ := filepath.Glob(p + "/fd/*")
		for _, fd := range fds {
			if l, _ := os.Readlink(fd); l == want {
				who = append(who, fd)
			}
		}
	}
	return who
}
