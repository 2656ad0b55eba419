package cloudhypervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/faketap"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/machine"
)

// schemaSkip says why the tests that need the API description skip, or
// is empty.
var schemaSkip string

func TestMain(m *testing.M) {
	if os.Getenv(fakeVMMEnv) != "" {
		os.Exit(fakeVMM(os.Args[1:]))
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	specs := os.Getenv("VMDRIVER_SPECS")
	if specs == "" {
		specs = "/work/shared/specs"
	}
	yaml := filepath.Join(specs, "cloud-hypervisor.yaml")
	tmp, err := os.MkdirTemp("", "chtest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "cloud-hypervisor.json")
	switch _, err := os.Stat(yaml); {
	case err != nil:
		schemaSkip = fmt.Sprintf("%v: %s (set VMDRIVER_SPECS to the directory holding cloud-hypervisor.yaml)", errNoSchema, err)
	default:
		if _, err := hosttools.Path("python3"); err != nil {
			schemaSkip = err.Error()
		} else if err := loadSchema(yaml, out); err != nil {
			schemaSkip = err.Error()
		}
	}
	os.Setenv(fakeSchemaEnv, out)
	return m.Run()
}

// fixture is a machine description on disk and a backend whose
// cloud-hypervisor is this test binary.
type fixture struct {
	dir, script string
	b           *Backend
	taps        *faketap.Networks // every spec's TAP networks
}

func newFixture(t *testing.T, edit func(*backend.Description)) *fixture {
	t.Helper()
	if schemaSkip != "" {
		t.Skip(schemaSkip)
	}
	t.Setenv(fakeVMMEnv, "1")
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initrd", "disk.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), make([]byte, 1<<16), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d := backend.Description{
		Name: "m", Kernel: "vmlinux", Initrd: "initrd", Cmdline: "quiet",
		MemoryMiB: 256, CPUs: 2,
		Disks: []backend.DiskDescription{{Path: "disk.img", Format: "raw"}},
		NICs:  []backend.NICDescription{{VLAN: 0, MAC: "52:54:00:12:34:56"}, {VLAN: 1, MAC: "52:54:00:12:01:01"}},
	}
	if edit != nil {
		edit(&d)
	}
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "run-m-vm")
	if err := os.WriteFile(backend.DescriptionPath(script), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hosttools.Path("qemu-img"); err != nil && len(d.Disks) > 0 {
		t.Skip(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b := New(WithBinary(exe), WithTimeouts(5*time.Second))
	return &fixture{dir: dir, script: script, b: b, taps: &faketap.Networks{}}
}

// stateDir is a short private directory (Unix socket paths are short).
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ch")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// syncBuffer is a console sink safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (f *fixture) spec(t *testing.T, env ...string) (backend.Spec, *syncBuffer) {
	console := &syncBuffer{}
	return backend.Spec{Name: "m", StartScript: f.script, StateDir: stateDir(t), Env: env, Console: console, TAPs: f.taps}, console
}

func TestStartShellPowerDown(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t)
	spec, console := f.spec(t)
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	sh, err := inst.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sh.Run(ctx, "echo hi", backdoorOpts())
	if err != nil || !strings.Contains(string(res.Output), "ran: echo hi") {
		t.Fatalf("Run = %q, %v", res.Output, err)
	}
	if err := inst.PowerDown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	case <-ctx.Done():
		t.Fatal("the VMM did not exit after the power button")
	}
	if err := inst.ExitErr(); err != nil {
		t.Errorf("ExitErr after a clean exit = %v", err)
	}
	if !strings.Contains(console.String(), "Linux booting on ttyS0") {
		t.Errorf("console log %q lacks the serial output", console.String())
	}
	if _, err := os.Stat(filepath.Join(spec.StateDir, "disk0.qcow2")); err != nil {
		t.Errorf("no copy-on-write layer: %v", err)
	}
	if err := inst.Close(); err != nil {
		t.Error(err)
	}
}

func TestUnsupported(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t)
	spec, _ := f.spec(t)
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	i := inst.(*Instance)
	for name, err := range map[string]error{
		"ForwardPort": i.ForwardPort(ctx, 8080, 80),
		"Screenshot":  i.Screenshot(ctx, filepath.Join(t.TempDir(), "s.png")),
		"SendKey":     i.SendKey(ctx, "ret"),
	} {
		if !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "unsupported by cloud-hypervisor") {
			t.Errorf("%s = %v, want ErrUnsupported naming cloud-hypervisor", name, err)
		}
	}
	if _, err := i.MonitorCommand(ctx, "info"); !errors.Is(err, backend.ErrUnsupported) {
		t.Errorf("MonitorCommand = %v", err)
	}
	if err := inst.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	var be *backend.Error
	if err := inst.ExitErr(); !errors.As(err, &be) || !errors.Is(err, backend.ErrExited) || be.Signal == 0 || strings.Contains(err.Error(), "m ") {
		t.Errorf("ExitErr after Kill = %v, want a backend.Error with the signal", err)
	}
}

func TestTAP(t *testing.T) {
	f := newFixture(t, func(d *backend.Description) {
		d.Cmdline += " vmdriver.net=fw_cfg"
		d.Hosts, d.Net = "127.0.0.1 localhost\n192.168.1.1 m\n", "eth1 52:54:00:12:01:01 192.168.1.1/24\n"
	})
	ctx := testCtx(t)
	spec, _ := f.spec(t)
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// No fw_cfg: the network table travels on the kernel command line.
	sh, err := inst.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sh.Run(ctx, "cat /proc/cmdline", backdoorOpts())
	if err != nil || !strings.Contains(string(res.Output), "quiet vmdriver.net=cmdline vmdriver.hosts=127.0.0.1,localhost;192.168.1.1,m vmdriver.nics=eth1,52:54:00:12:01:01,192.168.1.1/24 console=ttyS0") {
		t.Errorf("kernel command line %q (%v) lacks the network table", res.Output, err)
	}
	// Only the VLAN NIC gets a device (no user-mode network here), and
	// the VMM is started inside the TAP networks' namespace.
	if got := f.taps.Created(); fmt.Sprint(got) != "[tap-m-1]" || f.taps.Dos() != 1 {
		t.Errorf("devices made %v, processes started inside %d; want [tap-m-1] and 1", got, f.taps.Dos())
	}
	lc := inst.(backend.LinkController)
	links, err := lc.Links(ctx)
	if err != nil || len(links) != 1 || links[0] != (backend.Link{Name: "eth1", VLAN: 1, MAC: "52:54:00:12:01:01", Up: true}) {
		t.Errorf("Links = %+v, %v", links, err)
	}
	if err := lc.SetLink(ctx, "eth1", false); err != nil || !f.taps.Down("tap-m-1") {
		t.Errorf("SetLink(eth1, down) = %v; device down: %v", err, f.taps.Down("tap-m-1"))
	}
	if err := lc.SetLink(ctx, "eth1", true); err != nil || f.taps.Down("tap-m-1") {
		t.Errorf("SetLink(eth1, up) = %v; device down: %v", err, f.taps.Down("tap-m-1"))
	}
	if len(f.taps.Removed()) != 0 {
		t.Errorf("devices removed while the VMM runs: %v", f.taps.Removed())
	}
	inst.Close()
	if got := f.taps.Removed(); fmt.Sprint(got) != "[tap-m-1]" {
		t.Errorf("devices removed after Close = %v, want [tap-m-1]", got)
	}

	// Without TAP networks a VLAN NIC is refused, saying what to use.
	spec, _ = f.spec(t)
	spec.TAPs = nil
	if _, err := f.b.Start(ctx, spec); !errors.Is(err, backend.ErrUnsupported) || !strings.Contains(err.Error(), "--net tap") || !strings.Contains(err.Error(), "unsupported by cloud-hypervisor") {
		t.Fatalf("Start without TAP networks = %v", err)
	}
}

func TestFailures(t *testing.T) {
	for _, tt := range []struct {
		mode, want string
		exited     bool
	}{
		{"die-on-create", "cannot create the VM: boom", true},
		{"reject-boot", "500", false},
		{"no-console", "virtio console", false},
		{"no-api", "API socket", false},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			f := newFixture(t, nil)
			f.b.wait = time.Second
			spec, _ := f.spec(t, fakeModeEnv+"="+tt.mode)
			inst, err := f.b.Start(testCtx(t), spec)
			if err == nil {
				inst.Close()
				t.Fatal("Start succeeded")
			}
			var be *backend.Error
			if !errors.As(err, &be) {
				t.Fatalf("Start = %v, want a *backend.Error", err)
			}
			text := err.Error() + strings.Join(be.Stderr, "\n")
			if !strings.Contains(text, tt.want) || errors.Is(err, backend.ErrExited) != tt.exited {
				t.Errorf("Start = %v (stderr %q), want %q, exited %v", err, be.Stderr, tt.want, tt.exited)
			}
			if !tt.exited && tt.mode != "reject-boot" && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Start = %v, want a deadline", err)
			}
			entries, _ := os.ReadDir(spec.StateDir)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".sock") {
					t.Errorf("socket %s left behind", e.Name())
				}
			}
		})
	}
}

func TestMachineSnapshotFork(t *testing.T) {
	// No VLAN NIC: the fake guest cannot re-address a clone's interface.
	f := newFixture(t, func(d *backend.Description) { d.NICs = d.NICs[:1] })
	ctx := testCtx(t)
	m, err := machine.New(f.b, "m", machine.WithStartScript(f.script), machine.WithStateDir(stateDir(t)), machine.WithTAPs(f.taps))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := m.Succeed(ctx, "uname")
	if err != nil || !strings.Contains(out, "ran: uname") {
		t.Fatalf("Succeed = %q, %v", out, err)
	}
	clones, err := m.Fork(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := clones[0]
	defer c.Close()
	if out, err := c.Succeed(ctx, "hostname"); err != nil || !strings.Contains(out, "ran: hostname") {
		t.Fatalf("clone Succeed = %q, %v", out, err)
	}
	if out, err := m.Succeed(ctx, "true"); err != nil {
		t.Fatalf("origin after Fork: %q, %v", out, err)
	}
	for _, mm := range []*machine.Machine{c, m} {
		if err := mm.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRestoreMismatch(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t)
	spec, _ := f.spec(t)
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, err := inst.Shell(ctx); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	snap, err := inst.(backend.Snapshotter).Snapshot(ctx, dir, backend.SnapshotOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"manifest.json", "disk0.qcow2", "state/config.json", "state/memory-ranges"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("snapshot lacks %s: %v", name, err)
		}
	}
	g := newFixture(t, func(d *backend.Description) { d.MemoryMiB = 512 })
	spec2, _ := g.spec(t)
	if _, err := g.b.Restore(ctx, spec2, snap); !errors.Is(err, backend.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "MiB") {
		t.Errorf("Restore with other memory = %v, want ErrSnapshotMismatch", err)
	}
	other := *snap
	other.Backend = "qemu"
	if _, err := f.b.Restore(ctx, spec2, &other); !errors.Is(err, backend.ErrSnapshotMismatch) {
		t.Errorf("Restore of a qemu snapshot = %v", err)
	}
}

func backdoorOpts() backdoor.RunOptions { return backdoor.RunOptions{Timeout: 10 * time.Second} }

// TestSchemaCheck makes sure the fake's checks bite: bodies off the API
// description are refused.
func TestSchemaCheck(t *testing.T) {
	newFixture(t, nil)
	data, err := os.ReadFile(os.Getenv(fakeSchemaEnv))
	if err != nil {
		t.Fatal(err)
	}
	var sp spec
	if err := json.Unmarshal(data, &sp); err != nil {
		t.Fatal(err)
	}
	vmConfig := map[string]any{"$ref": "#/components/schemas/VmConfig"}
	for _, tt := range []struct {
		body string
		ok   bool
	}{
		{`{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":1,"max_vcpus":1},"console":{"mode":"Socket","socket":"/s"}}`, true},
		{`{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`, false},                           // no payload
		{`{"payload":{"kernel":"/k"},"cpus":{"boot_vcpus":0,"max_vcpus":1}}`, false}, // below minimum
		{`{"payload":{"kernel":"/k"},"console":{"mode":"Unix"}}`, false},             // not in the enum
		{`{"payload":{"kernel":"/k"},"memory":{"size_mib":256}}`, false},             // unknown property
		{`{"payload":{"kernel":"/k"},"disks":[{"path":1}]}`, false},                  // wrong type
	} {
		var v any
		if err := json.Unmarshal([]byte(tt.body), &v); err != nil {
			t.Fatal(err)
		}
		if err := sp.validate(vmConfig, v, "body"); (err == nil) != tt.ok {
			t.Errorf("validate(%s) = %v, want ok %v", tt.body, err, tt.ok)
		}
	}
	if sp.path("/vm.create")["put"] == nil || sp.path("/vm.power-button")["put"] == nil || sp.path("/vm.create")["get"] != nil {
		t.Error("the description's paths are not read right")
	}
}

// TestShellFailsEarly: a VMM that dies before the guest's shell is up
// fails Shell at once with how it ended; a guest that never offers its
// shell fails it at the deadline.
func TestShellFailsEarly(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t)
	spec, _ := f.spec(t, fakeModeEnv+"=die-after-boot")
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	start := time.Now()
	_, err = inst.Shell(ctx)
	var be *backend.Error
	if !errors.As(err, &be) || !errors.Is(err, backend.ErrExited) || be.ExitStatus != 4 || !strings.Contains(strings.Join(be.Stderr, "\n"), "triple fault") {
		t.Fatalf("Shell = %v (%+v), want an exit with status 4 and the stderr tail", err, be)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Shell took %v to notice the exit", time.Since(start))
	}
	if !errors.Is(inst.ExitErr(), backend.ErrExited) || !strings.Contains(inst.Diagnostics(), "triple fault") {
		t.Errorf("ExitErr = %v, Diagnostics = %q", inst.ExitErr(), inst.Diagnostics())
	}

	spec, _ = f.spec(t, fakeModeEnv+"=silent")
	inst, err = f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := inst.Shell(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shell of a silent guest = %v, want a deadline", err)
	}
	pid := inst.PID()
	if err := inst.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inst.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	select {
	case <-inst.Done():
	default:
		t.Errorf("pid %d still running after Close", pid)
	}
}

// TestSnapshotRestore: KeepPaused leaves the VM paused; a restored
// machine gets its own layers over the frozen copies and its own console
// socket; a failed vm.snapshot resumes the guest and leaves nothing.
func TestSnapshotRestore(t *testing.T) {
	f := newFixture(t, nil)
	ctx := testCtx(t)
	spec, _ := f.spec(t)
	inst, err := f.b.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	i := inst.(*Instance)
	dir := t.TempDir()
	snap, err := i.Snapshot(ctx, dir, backend.SnapshotOptions{KeepPaused: true})
	if err != nil {
		t.Fatal(err)
	}
	if snap.Backend != "cloud-hypervisor" || snap.Size <= 0 || snap.Machine != "m" {
		t.Errorf("snapshot = %+v", snap)
	}
	if err := i.api(ctx, "vm.resume", nil); err != nil {
		t.Errorf("resume after KeepPaused: %v (was the VM not paused?)", err)
	}

	spec2, _ := f.spec(t)
	spec2.Name = "m-1"
	clone, err := f.b.Restore(ctx, spec2, snap)
	if err != nil {
		t.Fatal(err)
	}
	defer clone.Close()
	sh, err := clone.Shell(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := sh.Run(ctx, "id", backdoorOpts()); err != nil || !strings.Contains(string(res.Output), "ran: id") {
		t.Fatalf("clone Run = %q, %v", res.Output, err)
	}
	data, err := os.ReadFile(filepath.Join(spec2.StateDir, "restore", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Disks   []struct{ Path string } `json:"disks"`
		Console struct{ Socket string } `json:"console"`
		Net     []struct{ Tap string }  `json:"net"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Disks) != 1 || cfg.Disks[0].Path != filepath.Join(spec2.StateDir, "disk0.qcow2") || cfg.Console.Socket != consoleSocket(spec2.StateDir) || len(cfg.Net) != 1 || cfg.Net[0].Tap != "tap-m-1-1" {
		t.Errorf("restored configuration %s does not point at the clone's own files and TAP", data)
	}
	img, err := hosttools.Path("qemu-img")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, img, "info", "--output=json", cfg.Disks[0].Path).Output()
	if err != nil || !strings.Contains(string(out), filepath.Join(dir, "disk0.qcow2")) {
		t.Errorf("the clone's layer is not over the frozen copy: %s, %v", out, err)
	}

	g := newFixture(t, nil)
	spec3, _ := g.spec(t, fakeModeEnv+"=fail-snapshot")
	bad, err := g.b.Start(ctx, spec3)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	dir2 := t.TempDir()
	if _, err := bad.(*Instance).Snapshot(ctx, dir2, backend.SnapshotOptions{}); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("Snapshot = %v, want the VMM's error", err)
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 0 {
		t.Errorf("a failed snapshot left %d entries", len(entries))
	}
	if err := bad.(*Instance).api(ctx, "vm.pause", nil); err != nil {
		t.Errorf("the guest was not resumed after the failed snapshot: %v", err)
	}
}

func TestBadDescription(t *testing.T) {
	f := newFixture(t, nil)
	spec, _ := f.spec(t)
	spec.StartScript = filepath.Join(t.TempDir(), "run-x-vm")
	if _, err := f.b.Start(testCtx(t), spec); !errors.Is(err, backend.ErrNoDescription) {
		t.Errorf("Start without a description = %v", err)
	}
}
