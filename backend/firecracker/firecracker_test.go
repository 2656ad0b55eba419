package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/faketap"
)

// lockedBuffer collects the console safely.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is one machine's files: a description with a kernel and a raw
// disk beside run-NAME-vm, and a 0700 state directory.
type fixture struct {
	script   string
	stateDir string
	console  *lockedBuffer
}

func newFixture(t *testing.T, name string, edit func(*backend.Description)) *fixture {
	t.Helper()
	loadSpec(t) // skips without the API description
	dir := t.TempDir()
	write := func(p string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, p), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("vmlinux", []byte("kernel"))
	disk := make([]byte, 3<<20)
	copy(disk[1<<20:], "root file system")
	write("root.raw", disk)
	d := backend.Description{Name: name, Kernel: "vmlinux", Cmdline: "quiet", MemoryMiB: 256, CPUs: 2,
		Disks: []backend.DiskDescription{{Path: "root.raw", Format: "raw"}}}
	if edit != nil {
		edit(&d)
	}
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	write(name+".machine.json", data)
	write("run-"+name+"-vm", nil)
	state := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	return &fixture{script: filepath.Join(dir, "run-"+name+"-vm"), stateDir: state, console: &lockedBuffer{}}
}

// spec is the fixture's Spec with the fake VMM's environment and env
// added.
func (f *fixture) spec(name string, env ...string) backend.Spec {
	return backend.Spec{Name: name, StartScript: f.script, StateDir: f.stateDir, Console: f.console,
		Env: append([]string{fakeEnv + "=1"}, env...)}
}

// newBackend runs the test binary as firecracker.
func newBackend(t *testing.T, opts ...Option) *Backend {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return New(append([]Option{WithBinary(exe)}, opts...)...)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func start(t *testing.T, b *Backend, spec backend.Spec) *Instance {
	t.Helper()
	inst, err := b.Start(testCtx(t), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { inst.Close() })
	return inst.(*Instance)
}

func run(t *testing.T, sh *backdoor.Shell, cmd string) string {
	t.Helper()
	res, err := sh.Run(testCtx(t), cmd, backdoor.RunOptions{})
	if err != nil || res.Status != 0 {
		t.Fatalf("%s: %v, status %d", cmd, err, res.Status)
	}
	return strings.TrimSpace(string(res.Output))
}

func TestBootShellPowerDown(t *testing.T) {
	f := newFixture(t, "m", nil)
	b := newBackend(t)
	if b.Name() != "firecracker" || b.Hypervisor() != "Firecracker" {
		t.Fatalf("names %q %q", b.Name(), b.Hypervisor())
	}
	inst := start(t, b, f.spec("m"))
	sh, err := inst.Shell(testCtx(t))
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	if got := run(t, sh, "echo hi"); got != "ran: echo hi" {
		t.Errorf("echo hi = %q", got)
	}
	if again, err := inst.Shell(testCtx(t)); err != nil || again != sh {
		t.Errorf("second Shell = %p, %v; want the same shell", again, err)
	}
	// The machine's own copy of the disk, not the image.
	if got := run(t, sh, "drives"); got != "map[disk0:"+filepath.Join(f.stateDir, "disk0.raw")+"]" {
		t.Errorf("drives = %q", got)
	}
	orig, _ := os.ReadFile(filepath.Join(filepath.Dir(f.script), "root.raw"))
	if cp, err := os.ReadFile(filepath.Join(f.stateDir, "disk0.raw")); err != nil || len(cp) != 3<<20 || !bytes.Equal(cp, orig) {
		t.Errorf("the disk copy differs from the image (%v)", err)
	}
	// Configuration after InstanceStart is refused by the VMM.
	err = inst.configure(testCtx(t), &backend.Description{Kernel: "/k", CPUs: 1, MemoryMiB: 64}, "", nil, nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Fault, "after starting") {
		t.Errorf("configuring a started VM = %v, want the VMM's refusal", err)
	}
	if err := inst.PowerDown(testCtx(t)); err != nil {
		t.Fatalf("PowerDown: %v", err)
	}
	select {
	case <-inst.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after PowerDown")
	}
	if err := inst.ExitErr(); err != nil {
		t.Errorf("ExitErr after a clean power-off = %v", err)
	}
	if !strings.Contains(f.console.String(), "fake guest: booting") {
		t.Errorf("console = %q", f.console.String())
	}
	if !strings.Contains(inst.Diagnostics(), "PUT /actions ok") {
		t.Errorf("Diagnostics = %q", inst.Diagnostics())
	}
	for _, p := range []string{"fc.sock", "vsock.sock"} {
		if _, err := os.Stat(filepath.Join(f.stateDir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
}

func TestKill(t *testing.T) {
	f := newFixture(t, "victim", nil)
	inst := start(t, newBackend(t), f.spec("victim"))
	if err := inst.Kill(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	err := inst.ExitErr()
	var be *backend.Error
	if !errors.As(err, &be) || be.Signal != syscall.SIGKILL || !errors.Is(err, backend.ErrExited) {
		t.Fatalf("ExitErr = %#v", err)
	}
	if strings.Contains(err.Error(), "victim") {
		t.Errorf("ExitErr names the machine: %v", err)
	}
	if err := inst.Close(); err != nil {
		t.Errorf("Close after Kill = %v", err)
	}
}

func TestAPIFault(t *testing.T) {
	f := newFixture(t, "m", nil)
	_, err := newBackend(t).Start(testCtx(t), f.spec("m", fakeFault+"=/machine-config"))
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Fault != "fake fault on /machine-config" || apiErr.Status != 400 {
		t.Fatalf("Start = %v, want the fault message", err)
	}
	if _, err := os.Stat(filepath.Join(f.stateDir, "fc.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the API socket is left: %v (the process was not ended)", err)
	}
}

func TestProcessDies(t *testing.T) {
	f := newFixture(t, "m", nil)
	_, err := newBackend(t).Start(testCtx(t), f.spec("m", fakeDie+"=/actions"))
	var be *backend.Error
	if !errors.As(err, &be) || !be.Exited || be.ExitStatus != 3 || !errors.Is(err, backend.ErrExited) {
		t.Fatalf("Start = %v, want the exit status", err)
	}
	if !strings.Contains(strings.Join(be.Stderr, "\n"), "dying as asked") {
		t.Errorf("stderr tail = %q", be.Stderr)
	}
}

func TestNoBinary(t *testing.T) {
	f := newFixture(t, "m", nil)
	_, err := New(WithBinary(filepath.Join(t.TempDir(), "firecracker"))).Start(testCtx(t), f.spec("m"))
	if !errors.Is(err, ErrNoFirecracker) {
		t.Fatalf("Start = %v, want ErrNoFirecracker", err)
	}
}

func TestRefusedConnect(t *testing.T) {
	f := newFixture(t, "m", nil)
	inst := start(t, newBackend(t), f.spec("m", fakeRefuse+"=1"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := inst.Shell(ctx)
	if !errors.Is(err, ErrConnectRefused) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shell = %v, want a refused CONNECT and the deadline", err)
	}
}

func TestUnsupported(t *testing.T) {
	f := newFixture(t, "m", nil)
	inst := start(t, newBackend(t), f.spec("m"))
	err := inst.ForwardPort(testCtx(t), 8080, 80)
	if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "unsupported by firecracker") {
		t.Errorf("ForwardPort = %v", err)
	}
	var i any = inst
	if _, ok := i.(backend.Screenshotter); ok {
		t.Error("an Instance without a display takes screenshots")
	}
	for name, edit := range map[string]func(*backend.Description){
		"qcow2": func(d *backend.Description) { d.Disks[0].Format = "qcow2" },
		"vlan":  func(d *backend.Description) { d.NICs = []backend.NICDescription{{VLAN: 1, MAC: "52:54:00:12:01:01"}} },
		// A minimal guest: its shell is on the virtio console only.
		"no vsock shell": func(d *backend.Description) { d.Shells = []string{backend.ShellVirtioConsole} },
	} {
		f := newFixture(t, "m", edit)
		_, err := newBackend(t).Start(testCtx(t), f.spec("m"))
		if !errors.Is(err, backend.ErrUnsupported) {
			t.Errorf("%s: Start = %v, want ErrUnsupported", name, err)
		}
	}
}

func TestTAP(t *testing.T) {
	nics := func(d *backend.Description) {
		d.NICs = []backend.NICDescription{{VLAN: 0, MAC: "52:54:00:12:34:56"}, {VLAN: 2, MAC: "52:54:00:12:02:01"}}
		d.Cmdline += " vmdriver.net=fw_cfg"
		d.Hosts, d.Net = "127.0.0.1 localhost\n192.168.2.1 m\n", "eth1 52:54:00:12:02:01 192.168.2.1/24\n"
	}
	f := newFixture(t, "m", nics)
	nets := &faketap.Networks{}
	spec := f.spec("m")
	spec.TAPs = nets
	b := newBackend(t)
	inst := start(t, b, spec)
	// Only the VLAN NIC gets a device (no user-mode network here), and
	// the VMM is started inside the TAP networks' namespace.
	if got := nets.Created(); fmt.Sprint(got) != "[tap-m-2]" || nets.Dos() != 1 {
		t.Errorf("devices made %v, processes started inside %d; want [tap-m-2] and 1", got, nets.Dos())
	}
	sh, err := inst.Shell(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	// No fw_cfg: the network table travels on the kernel command line.
	if got := run(t, sh, "cat /proc/cmdline"); !strings.Contains(got, " vmdriver.net=cmdline vmdriver.hosts=127.0.0.1,localhost;192.168.2.1,m vmdriver.nics=eth1,52:54:00:12:02:01,192.168.2.1/24") {
		t.Errorf("boot args %q lack the network table", got)
	}
	if got := run(t, sh, "cat /proc/cmdline"); !strings.HasSuffix(got, " vmdriver.backdoor=vsock") {
		t.Errorf("boot args %q do not ask the guest for its shell on vsock", got)
	}
	if got := run(t, sh, "nics"); got != "map[eth1:tap-m-2]" {
		t.Errorf("VMM's NICs = %q, want eth1 on tap-m-2", got)
	}
	// Link control is the device's state.
	links, err := inst.Links(testCtx(t))
	if err != nil || len(links) != 1 || links[0] != (backend.Link{Name: "eth1", VLAN: 2, MAC: "52:54:00:12:02:01", Up: true}) {
		t.Errorf("Links = %+v, %v", links, err)
	}
	if err := inst.SetLink(testCtx(t), "eth1", false); err != nil || !nets.Down("tap-m-2") {
		t.Errorf("SetLink(eth1, down) = %v; device down: %v", err, nets.Down("tap-m-2"))
	}
	if links, _ := inst.Links(testCtx(t)); links[0].Up {
		t.Error("Links says eth1 is up after SetLink(down)")
	}
	if err := inst.SetLink(testCtx(t), "eth7", false); err == nil || !strings.Contains(err.Error(), "eth1 (vlan 2, tap-m-2)") {
		t.Errorf("SetLink(eth7) = %v, want an error listing eth1", err)
	}

	// A clone gets devices of its own, handed over in network_overrides.
	snap, err := inst.Snapshot(testCtx(t), t.TempDir(), backend.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clone := newFixture(t, "m", nics)
	cspec := clone.spec("m-1")
	cspec.TAPs = nets
	ri, err := b.Restore(testCtx(t), cspec, snap)
	if err != nil {
		t.Fatal(err)
	}
	rsh, err := ri.Shell(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := run(t, rsh, "nics"); got != "map[eth1:tap-m-1-2]" {
		t.Errorf("clone's NICs = %q, want eth1 on tap-m-1-2", got)
	}
	// Each machine's devices go when it has ended, and only then.
	if got := nets.Removed(); len(got) != 0 {
		t.Errorf("devices removed while their VMMs run: %v", got)
	}
	ri.Close()
	inst.Close()
	if got := nets.Removed(); fmt.Sprint(got) != "[tap-m-1-2 tap-m-2]" {
		t.Errorf("devices removed = %v, want both", got)
	}

	// Without TAP networks a VLAN NIC is refused, saying what to use;
	// a failing device is reported, and nothing is left.
	if _, err := b.Start(testCtx(t), f.spec("m")); !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "--net tap") {
		t.Errorf("Start without TAP networks = %v, want ErrUnsupported naming --net tap", err)
	}
	failing := &faketap.Networks{Fail: errors.New("no room")}
	spec.TAPs = failing
	if _, err := b.Start(testCtx(t), spec); err == nil || !strings.Contains(err.Error(), "no room") {
		t.Errorf("Start with a failing device = %v", err)
	}
}

func TestSnapshotRestore(t *testing.T) {
	f := newFixture(t, "m", nil)
	b := newBackend(t)
	inst := start(t, b, f.spec("m"))
	sh, err := inst.Shell(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	run(t, sh, "remember before")
	dir := t.TempDir()
	snap, err := inst.Snapshot(testCtx(t), dir, backend.SnapshotOptions{})
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if snap.Backend != "firecracker" || snap.Machine != "m" || snap.Dir != dir {
		t.Errorf("snapshot = %+v", snap)
	}
	run(t, sh, "remember after") // the original runs on
	if got := run(t, sh, "drives"); got != "map[disk0:"+filepath.Join(f.stateDir, "disk0.raw")+"]" {
		t.Errorf("original's drives after the snapshot = %q, want its own copy again", got)
	}
	// The snapshot needs nothing of the source machine's: hide its disk
	// while restoring.
	ownDisk := filepath.Join(f.stateDir, "disk0.raw")
	if err := os.Rename(ownDisk, ownDisk+".hidden"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{manifestName, stateName, memoryName, "disk0.raw"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("snapshot file: %v", err)
		}
	}

	clone := &fixture{script: f.script, stateDir: filepath.Join(t.TempDir(), "clone"), console: &lockedBuffer{}}
	if err := os.Mkdir(clone.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ri, err := b.Restore(testCtx(t), clone.spec("m-1"), snap)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	defer ri.Close()
	rsh, err := ri.Shell(testCtx(t))
	if err != nil {
		t.Fatalf("restored Shell: %v", err)
	}
	if err := os.Rename(ownDisk+".hidden", ownDisk); err != nil {
		t.Fatal(err)
	}
	if got := run(t, rsh, "recall"); got != "before" {
		t.Errorf("restored guest remembers %q, want %q", got, "before")
	}
	if got := run(t, rsh, "drives"); got != "map[disk0:"+filepath.Join(clone.stateDir, "disk0.raw")+"]" {
		t.Errorf("restored drives = %q, want the clone's own copy", got)
	}
	if got := run(t, sh, "recall"); got != "after" {
		t.Errorf("original guest remembers %q", got)
	}

	// A paused snapshot, then refusals.
	dir2 := t.TempDir()
	if _, err := inst.Snapshot(testCtx(t), dir2, backend.SnapshotOptions{KeepPaused: true}); err != nil {
		t.Fatal(err)
	}
	if err := inst.PowerDown(testCtx(t)); err == nil {
		t.Error("PowerDown of a paused VM was accepted by the fake")
	}

	bad := newFixture(t, "m", func(d *backend.Description) { d.MemoryMiB = 512 })
	_, err = b.Restore(testCtx(t), bad.spec("m-2"), snap)
	if !errors.Is(err, backend.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "512 MiB of memory, the snapshot has 256") {
		t.Errorf("Restore with other memory = %v", err)
	}
	_, err = b.Restore(testCtx(t), clone.spec("m-3"), &backend.Snapshot{Backend: "qemu", Dir: dir})
	if !errors.Is(err, backend.ErrSnapshotMismatch) {
		t.Errorf("Restore of a QEMU snapshot = %v", err)
	}
}

func TestSnapshotFailureResumes(t *testing.T) {
	// The fake refuses /snapshot/create: the VM must run again and the
	// directory be empty.
	f := newFixture(t, "m", nil)
	inst := start(t, newBackend(t), f.spec("m", fakeFault+"=/snapshot/create"))
	dir := t.TempDir()
	if _, err := inst.Snapshot(testCtx(t), dir, backend.SnapshotOptions{}); err == nil {
		t.Fatal("Snapshot succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("failed snapshot left %v", entries)
	}
	if err := inst.PowerDown(testCtx(t)); err != nil {
		t.Errorf("the VM was not resumed: %v", err)
	}
}

func TestWarmKey(t *testing.T) {
	f := newFixture(t, "m", nil)
	b := newBackend(t)
	k1, err := b.WarmKey(f.spec("m"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(k1, "description ") || !strings.Contains(k1, "root.raw") {
		t.Errorf("key = %q", k1)
	}
	// A rebuilt kernel makes another key.
	time.Sleep(10 * time.Millisecond)
	kernel := filepath.Join(filepath.Dir(f.script), "vmlinux")
	if err := os.WriteFile(kernel, []byte("another kernel"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k2, err := b.WarmKey(f.spec("m")); err != nil || k2 == k1 {
		t.Errorf("key after a kernel change = %q, %v; want a new one", k2, err)
	}
}

// TestFakeVMMRefuses checks that the fake keeps Firecracker's contract,
// so that the tests above mean something: bodies are checked against the
// API description and requests out of state are refused.
func TestFakeVMMRefuses(t *testing.T) {
	f := newFixture(t, "m", nil)
	inst := start(t, newBackend(t), f.spec("m"))
	ctx := testCtx(t)
	for _, c := range []struct {
		method, path string
		body         any
		want         string
	}{
		{"PUT", "/snapshot/create", snapshotCreate{SnapshotType: "Full", SnapshotPath: "s", MemFilePath: "m"}, "must be paused"},
		{"PUT", "/snapshot/load", snapshotLoad{SnapshotPath: "s", MemFilePath: "m"}, "only before any configuration"},
		{"PUT", "/machine-config", machineConfig{VCPUCount: 1, MemSizeMiB: 64}, "after starting"},
		{"PUT", "/vsock", map[string]any{"guest_cid": 3, "uds_path": "x", "vsock_id": "v", "bogus": true}, "unknown property bogus"},
		{"PUT", "/actions", action{ActionType: "Reboot"}, "is not one of"},
		{"DELETE", "/vm", nil, "does not take DELETE"},
		{"GET", "/no-such-path", nil, "no path /no-such-path"},
	} {
		err := inst.api.call(ctx, c.method, c.path, c.body, nil)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || !strings.Contains(apiErr.Fault, c.want) {
			t.Errorf("%s %s = %v, want a fault containing %q", c.method, c.path, err, c.want)
		}
	}
}
