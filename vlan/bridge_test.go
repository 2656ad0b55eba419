package vlan

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/proc"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// startBridges starts TAP networks that the test's cleanup closes.
func startBridges(t *testing.T, nrs ...int) *Bridges {
	t.Helper()
	testenv.NeedTAP(t)
	b, err := StartBridges(nrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// inNS runs a command inside the bridges' namespace and returns its
// output.
func inNS(t *testing.T, b *Bridges, name string, args ...string) string {
	t.Helper()
	bin := testenv.NeedCommand(t, name)
	var out []byte
	err := b.Do(func() error {
		var err error
		out, err = exec.Command(bin, args...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s %s in the namespace: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ports lists the devices attached to bridge br, as ip sees them.
func bridgePorts(t *testing.T, b *Bridges, br string) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(inNS(t, b, "ip", "-o", "link", "show", "master", br)), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	return names
}

func TestBridgesTopology(t *testing.T) {
	b := startBridges(t, 2, 1, 2)
	if got := b.VLANs(); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("VLANs() = %v, want [1 2]", got)
	}
	a, aName, err := b.OpenTAP("client", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r, rName, err := b.OpenTAP("router", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := b.CreateTAP("server", 2)
	if err != nil {
		t.Fatal(err)
	}

	if got := bridgePorts(t, b, "br1"); strings.Join(got, " ") != aName+" "+rName {
		t.Errorf("br1's ports = %v, want [%s %s]", got, aName, rName)
	}
	if got := bridgePorts(t, b, "br2"); strings.Join(got, " ") != s {
		t.Errorf("br2's ports = %v, want [%s]", got, s)
	}
	for _, dev := range []string{"br1", aName} {
		var v []byte
		if err := b.Do(func() (err error) {
			v, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + dev + "/disable_ipv6")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(v)); got != "1" {
			t.Errorf("%s: IPv6 is on (disable_ipv6 = %q): the namespace would talk on the VLAN", dev, got)
		}
	}
	// Nothing of it is in the host's namespace.
	host, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range host {
		if i.Name == aName || i.Name == s || i.Name == "br1" {
			t.Errorf("host namespace has %s", i.Name)
		}
	}

	// A persistent device outlives its creator's file until RemoveTAP.
	if err := b.RemoveTAP(s); err != nil {
		t.Fatal(err)
	}
	if got := bridgePorts(t, b, "br2"); len(got) != 0 {
		t.Errorf("br2's ports after RemoveTAP = %v, want none", got)
	}
	if err := b.RemoveTAP(s); err == nil {
		t.Error("second RemoveTAP succeeded")
	}
	// An opened one goes with its last file.
	r.Close()
	if got := bridgePorts(t, b, "br1"); strings.Join(got, " ") != aName {
		t.Errorf("br1's ports after closing %s = %v, want [%s]", rName, got, aName)
	}
}

// frame is an Ethernet frame from src to dst with an experimental
// EtherType and a payload, padded to the minimum length.
func frame(dst, src net.HardwareAddr, payload string) []byte {
	f := append(append(append([]byte{}, dst...), src...), 0x88, 0xb5)
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f
}

// readFrame reads frames from f until one carries payload, failing after
// a bound; it returns every frame seen.
func readFrame(t *testing.T, f *os.File, payload string) [][]byte {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var seen [][]byte
	buf := make([]byte, 2048)
	for {
		n, err := f.Read(buf)
		if err != nil {
			t.Fatalf("reading a frame: %v (seen %d)", err, len(seen))
		}
		seen = append(seen, append([]byte{}, buf[:n]...))
		if bytes.Contains(buf[:n], []byte(payload)) {
			return seen
		}
	}
}

func TestBridgesForward(t *testing.T) {
	b := startBridges(t, 1, 2)
	names := map[*os.File]string{}
	open := func(vlan int) *os.File {
		f, name, err := b.OpenTAP("m", vlan)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		// A non-blocking copy, so reads honour deadlines.
		fd, err := syscall.Dup(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		nf := os.NewFile(uintptr(fd), name)
		t.Cleanup(func() { nf.Close() })
		names[nf] = name
		return nf
	}
	send := func(f *os.File, src, payload string) {
		t.Helper()
		s, _ := net.ParseMAC(src)
		if _, err := f.Write(frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, s, payload)); err != nil {
			t.Fatal(err)
		}
	}
	a, c, other := open(1), open(1), open(2)
	// A broadcast on VLAN 1 reaches the other port of VLAN 1, both ways.
	send(a, "52:54:00:12:01:01", "hello vlan 1")
	readFrame(t, c, "hello vlan 1")
	send(c, "52:54:00:12:01:02", "hello back")
	readFrame(t, a, "hello back")
	// VLAN 2 hears its own broadcast and none of VLAN 1's.
	other2 := open(2)
	send(other2, "52:54:00:12:02:01", "hello vlan 2")
	for _, f := range readFrame(t, other, "hello vlan 2") {
		if bytes.Contains(f, []byte("hello")) && !bytes.Contains(f, []byte("hello vlan 2")) {
			t.Errorf("a frame of VLAN 1 reached VLAN 2: % x", f)
		}
	}
	// With c's link down the bridge drops what a sends; once it is up
	// again, frames flow, and the dropped one never arrives.
	if err := b.SetLink(names[c], false); err != nil {
		t.Fatal(err)
	}
	send(a, "52:54:00:12:01:01", "while cut")
	if err := b.SetLink(names[c], true); err != nil {
		t.Fatal(err)
	}
	send(a, "52:54:00:12:01:01", "after unblock")
	for _, f := range readFrame(t, c, "after unblock") {
		if bytes.Contains(f, []byte("while cut")) {
			t.Error("a frame sent while the link was down arrived")
		}
	}
}

func TestBridgesBadInput(t *testing.T) {
	if _, err := StartBridges([]int{1, 256}); !errors.Is(err, ErrBadNumber) {
		t.Errorf("StartBridges(256) = %v, want ErrBadNumber", err)
	}
	b := startBridges(t, 1)
	if _, _, err := b.OpenTAP("client", 3); err == nil || !strings.Contains(err.Error(), "--vlans including 3") {
		t.Errorf("OpenTAP on an absent VLAN = %v, want advice naming --vlans", err)
	}
	if err := b.SetLink("tap-nope", false); err == nil {
		t.Error("SetLink of an unknown device succeeded")
	}
	b.Close()
	if _, _, err := b.OpenTAP("client", 1); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("OpenTAP after Close = %v, want an error saying closed", err)
	}
}

func TestBridgesLeaveNothing(t *testing.T) {
	b := startBridges(t, 1)
	f, _, err := b.OpenTAP("m", 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateTAP("m", 1); err != nil {
		t.Fatal(err)
	}
	inode := b.Inode()
	if len(testenv.NetNSHolders(inode)) == 0 {
		t.Fatalf("no holder of net:[%d] found while it is open: the check cannot see it", inode)
	}
	f.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if h := testenv.NetNSHolders(inode); len(h) != 0 {
		t.Errorf("net:[%d] still held after Close: %v", inode, h)
	}
}

// TestBridgesDieWithDriver kills a driver-like process with SIGKILL while
// its namespace has bridges, TAP devices and a process inside it: the
// namespace must go with it.
func TestBridgesDieWithDriver(t *testing.T) {
	testenv.NeedTAP(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestBridgesChild$")
	cmd.Env = append(os.Environ(), "VMDRIVER_BRIDGES_CHILD=driver")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The child prints the namespace's inode once everything is up.
	var line string
	if _, err := fmt.Fscanln(out, &line); err != nil {
		t.Fatalf("reading the child's namespace: %v", err)
	}
	inode, err := strconv.ParseUint(strings.TrimPrefix(line, "inode="), 10, 64)
	if err != nil {
		t.Fatalf("child said %q", line)
	}
	if h := testenv.NetNSHolders(inode); len(h) < 2 {
		t.Fatalf("holders of net:[%d] before the kill = %v, want the driver's descriptor and the process inside", inode, h)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	// The process inside gets its parent-death signal from the kernel,
	// asynchronously: wait for it, within a bound.
	deadline := time.Now().Add(20 * time.Second)
	for h := testenv.NetNSHolders(inode); len(h) != 0; h = testenv.NetNSHolders(inode) {
		if time.Now().After(deadline) {
			t.Fatalf("net:[%d] still held 20 s after the driver's SIGKILL: %v", inode, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBridgesChild is the driver-like process of TestBridgesDieWithDriver
// (and the process it starts in the namespace); it does nothing when run
// on its own.
func TestBridgesChild(t *testing.T) {
	switch os.Getenv("VMDRIVER_BRIDGES_CHILD") {
	case "driver":
	case "inside":
		select {} // killed by its parent-death signal
	default:
		t.Skip("helper process of TestBridgesDieWithDriver")
	}
	b, err := StartBridges([]int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	f, _, err := b.OpenTAP("m", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := b.CreateTAP("m", 2); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	inside := exec.Command(self, "-test.run=^TestBridgesChild$")
	inside.Env = append(os.Environ(), "VMDRIVER_BRIDGES_CHILD=inside")
	if err := b.Do(func() error {
		_, err := proc.Start(inside)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("inode=%d\n", b.Inode())
	select {}
}

// TestBridgesWithoutPrivilege: a driver that may not create network
// namespaces (not root) is told so, with what to use instead.
func TestBridgesWithoutPrivilege(t *testing.T) {
	if os.Getenv("VMDRIVER_BRIDGES_UNPRIVILEGED") != "" {
		_, err := StartBridges([]int{1})
		if !errors.Is(err, ErrPermission) || !strings.Contains(err.Error(), "needs root") || !strings.Contains(err.Error(), "--net vde") {
			t.Fatalf("StartBridges without CAP_SYS_ADMIN = %v, want ErrPermission saying it needs root and to use --net vde", err)
		}
		return
	}
	testenv.NeedTAP(t)
	setpriv := testenv.NeedCommand(t, "setpriv")
	cmd := exec.Command(setpriv, "--inh-caps=-sys_admin,-net_admin", "--bounding-set=-sys_admin,-net_admin",
		os.Args[0], "-test.run=^TestBridgesWithoutPrivilege$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "VMDRIVER_BRIDGES_UNPRIVILEGED=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestBridgesWithoutPrivilege") {
		t.Fatalf("child: %v", err)
	}
}
