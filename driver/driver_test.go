package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

func TestMachineName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/nix/store/abc-nixos-vm/bin/run-server-vm", "server"},
		{"run-my-client-vm", "my-client"},
		{"./start.sh", "machine"},
		{"run--vm", "machine"},
	} {
		if got := MachineName(tt.in); got != tt.want {
			t.Errorf("MachineName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPythonName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"server", "server"},
		{"machine-a", "machine_a"},
		{"1node", "_node"},
		{"a.b c", "a_b_c"},
		{"node1", "node1"},
	} {
		if got := PythonName(tt.in); got != tt.want {
			t.Errorf("PythonName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := LoadConfig(write(`{"vms": {"server": {"name": "server", "start_script": "/s/run-server-vm"},
		"client": {"name": "client", "start_script": "/s/run-client-vm"}},
		"vlans": [1, 2], "global_timeout": 120, "enable_ssh_backdoor": false, "test_script": "/s/script"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Machines) != 2 || c.Machines[0].Name != "client" || c.Machines[1].StartScript != "/s/run-server-vm" {
		t.Errorf("machines = %+v", c.Machines)
	}
	if c.GlobalTimeout != 2*time.Minute || c.TestScript != "/s/script" || len(c.VLANs) != 2 {
		t.Errorf("config = %+v", c)
	}
	if c.Warm {
		t.Error("warm without \"warm\": true")
	}
	if c, err := LoadConfig(write(`{"vms": {}, "warm": true}`)); err != nil || !c.Warm {
		t.Errorf(`"warm": true gave Warm=%v, %v`, c.Warm, err)
	}

	for _, tt := range []struct{ name, body, want string }{
		{"syntax", "{\n  \"vms\": {,\n}", "line 2, column"},
		{"type", `{"vlans": "1"}`, "cannot unmarshal"},
		{"vlan range", `{"vlans": [256]}`, "vlan 256 is out of range"},
		{"no script", `{"vms": {"a": {"name": "a"}}}`, "vms.a has no start_script"},
		{"timeout", `{"global_timeout": 0}`, "global_timeout must be positive"},
		{"containers", `{"containers": {"c": {}}}`, "containers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := write(tt.body)
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if tt.name == "syntax" && !strings.Contains(err.Error(), p) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNewNeedsABackend(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", tmp)
	cfg := Config{Machines: []MachineConfig{{Name: "a", StartScript: "/x/run-a-vm"}}, VLANs: []int{1}, OutputDir: t.TempDir()}
	d, err := New(t.Context(), cfg, WithLogger(plainLogger{machine.DiscardLogger()}))
	if d != nil || !errors.Is(err, ErrNoBackend) || !strings.Contains(err.Error(), "WithBackend(qemu.New())") {
		t.Fatalf("New without a backend = %v, %v; want ErrNoBackend saying what to pass", d, err)
	}
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("New without a backend left %s behind", left[0].Name())
	}
}

// guestAnswers scripts the mock guests' answers to the tests' commands.
func guestAnswers(_ string, g *mock.Guest) {
	g.Answer("true", mock.Reply{})
	for _, w := range []string{"hi", "1", "2", "3"} {
		g.Answer("echo "+w, mock.Reply{Out: w + "\n"})
	}
	// A sleep far beyond any test's deadline: it ends with the guest.
	g.AnswerFunc("sleep 600", func(ctx context.Context, _ mock.Request) mock.Reply {
		<-ctx.Done()
		return mock.Reply{Status: 143}
	})
}

func newMockDriver(t *testing.T, cfg Config, opts ...Option) (*Driver, *mock.Backend) {
	t.Helper()
	b := mock.New(mock.WithGuest(guestAnswers))
	d, err := New(t.Context(), cfg, append([]Option{WithBackend(b), WithLogger(plainLogger{machine.DiscardLogger()})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, b
}

func TestStartAllAndClose(t *testing.T) {
	cfg := Config{Machines: []MachineConfig{{Name: "b", StartScript: "/x/run-b-vm"}, {Name: "a", StartScript: "/x/run-a-vm"}}, OutputDir: t.TempDir()}
	d, _ := newMockDriver(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got := d.Machines(); len(got) != 2 || got[0].Name() != "a" {
		t.Fatalf("machines not sorted by name: %v", got)
	}
	if err := d.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	for _, m := range d.Machines() {
		if out, err := m.Succeed(ctx, "echo hi"); err != nil || out != "hi\n" {
			t.Fatalf("%s: %q, %v", m.Name(), out, err)
		}
		if !strings.HasPrefix(m.StateDir(), d.runDir) || m.SharedDir() != d.SharedDir() {
			t.Errorf("%s: state %s shared %s, run dir %s", m.Name(), m.StateDir(), m.SharedDir(), d.runDir)
		}
	}
	run := d.runDir
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Errorf("run directory %s still exists after Close", run)
	}
	for _, m := range d.Machines() {
		if m.IsUp() {
			t.Errorf("%s still up after Close", m.Name())
		}
	}
}

func TestRunGlobalTimeout(t *testing.T) {
	cfg := Config{Machines: []MachineConfig{{Name: "m", StartScript: "/x/run-m-vm"}}, GlobalTimeout: 200 * time.Millisecond, OutputDir: t.TempDir()}
	d, _ := newMockDriver(t, cfg)
	err := d.Run(context.Background(), func(ctx context.Context) error {
		m := d.Machines()[0]
		// Sleeps in the guest far beyond the global timeout.
		_, err := m.Succeed(ctx, "sleep 600")
		return err
	})
	if !errors.Is(err, ErrGlobalTimeout) {
		t.Fatalf("err = %v, want ErrGlobalTimeout", err)
	}
	if d.Machines()[0].IsUp() {
		t.Error("machine still up after the global timeout released it")
	}
}

func TestRunPassesResult(t *testing.T) {
	d, _ := newMockDriver(t, Config{OutputDir: t.TempDir()})
	want := errors.New("boom")
	if err := d.Run(context.Background(), func(context.Context) error { return want }); err != want {
		t.Fatalf("err = %v, want %v", err, want)
	}
	if err := d.Run(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestPollingCondition(t *testing.T) {
	cfg := Config{Machines: []MachineConfig{{Name: "m", StartScript: "/x/run-m-vm"}}, OutputDir: t.TempDir()}
	d, _ := newMockDriver(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := d.Machines()[0]
	healthy := true
	checks := 0
	c := &PollingCondition{Description: "healthy", Interval: time.Nanosecond, Check: func(ctx context.Context) error {
		checks++
		// The check runs a command itself: that must not recurse.
		if _, err := m.Succeed(ctx, "true"); err != nil {
			return err
		}
		if !healthy {
			return errors.New("unhealthy")
		}
		return nil
	}}
	deactivate := d.Activate(c)
	if _, err := m.Succeed(ctx, "echo 1"); err != nil {
		t.Fatal(err)
	}
	if checks != 1 {
		t.Fatalf("condition ran %d times before one command, want 1", checks)
	}
	healthy = false
	_, err := m.Succeed(ctx, "echo 2")
	if !errors.Is(err, ErrPollingCondition) || !strings.Contains(err.Error(), "healthy") {
		t.Fatalf("err = %v, want a polling condition failure naming it", err)
	}
	deactivate()
	if _, err := m.Succeed(ctx, "echo 3"); err != nil {
		t.Fatalf("after deactivation: %v", err)
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := Retry(ctx, time.Minute, func(_ context.Context, last bool) (bool, error) {
		calls++
		return calls == 2, nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
	var lastSeen bool
	err = Retry(ctx, 10*time.Millisecond, func(_ context.Context, last bool) (bool, error) {
		lastSeen = lastSeen || last
		return false, nil
	})
	if !errors.Is(err, ErrRetryTimeout) || !lastSeen {
		t.Fatalf("err = %v, last try seen %v", err, lastSeen)
	}
	boom := errors.New("boom")
	if err := Retry(ctx, time.Minute, func(context.Context, bool) (bool, error) { return false, boom }); err != boom {
		t.Fatalf("err = %v, want boom", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Retry(cctx, time.Minute, func(context.Context, bool) (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestCreateMachine(t *testing.T) {
	d, _ := newMockDriver(t, Config{OutputDir: t.TempDir()})
	m, err := d.CreateMachine("/x/run-extra-vm")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "extra" || len(d.Machines()) != 0 {
		t.Fatalf("name %q, machines %d", m.Name(), len(d.Machines()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := m.Succeed(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	d.Close()
	if m.IsUp() {
		t.Error("extra machine survived Close")
	}
	if _, err := d.CreateMachine("/x/run-late-vm"); err == nil {
		t.Error("CreateMachine after Close succeeded")
	}
}

func TestCreateMachineOptions(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	d, _ := newMockDriver(t, Config{OutputDir: t.TempDir()})
	defer d.Close()
	m, err := d.CreateMachine("/x/run-extra-vm", Named("web"), KeepState())
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "web" {
		t.Errorf("name %q, want web", m.Name())
	}
	// Kept state lives where the next run finds it, not in the run dir.
	if dir := m.StateDir(); !strings.Contains(dir, "vmdriver-state-") || strings.HasPrefix(dir, d.runDir) {
		t.Errorf("kept state in %s", dir)
	}
}

func TestNewBadOption(t *testing.T) {
	_, err := New(t.Context(), Config{OutputDir: t.TempDir()}, WithBackend(mock.New()), WithLogger(nil))
	if err == nil || !strings.Contains(err.Error(), "WithLogger needs a Logger") {
		t.Errorf("New with a nil logger = %v", err)
	}
	_, err = New(t.Context(), Config{OutputDir: t.TempDir()}, WithBackend(nil))
	if !errors.Is(err, ErrNoBackend) {
		t.Errorf("New with a nil backend = %v, want ErrNoBackend", err)
	}
}

func TestRelativeStartScript(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	var got string
	b := mock.New(mock.WithStartHook(func(spec backend.Spec) error {
		got = spec.StartScript
		return nil
	}))
	d, err := New(t.Context(), Config{Machines: []MachineConfig{{Name: "m", StartScript: "vms/run-m-vm"}}, OutputDir: dir},
		WithBackend(b), WithLogger(plainLogger{machine.DiscardLogger()}))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Machines()[0].Start(ctx); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "vms/run-m-vm"); got != want {
		t.Errorf("start script %q, want the absolute %q", got, want)
	}
}
