package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/vlan"
)

// recLogger records what the driver logs and signals warnings.
type recLogger struct {
	mu     sync.Mutex
	lines  []string
	warned chan string
}

func newRecLogger() *recLogger { return &recLogger{warned: make(chan string, 16)} }

func (l *recLogger) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *recLogger) Info(_, msg string)   { l.add("info: " + msg) }
func (l *recLogger) Serial(_, msg string) {}
func (l *recLogger) Warn(_, msg string) {
	l.add("warn: " + msg)
	select {
	case l.warned <- msg:
	default:
	}
}
func (l *recLogger) Nested(_, msg string) func(error) {
	l.add("nested: " + msg)
	return func(err error) { l.add(fmt.Sprintf("end: %s: %v", msg, err)) }
}
func (l *recLogger) Subtest(name string) func(error) { return l.Nested("", "subtest: "+name) }

func (l *recLogger) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.lines, s)
}

// privateTmp points the driver's run directory at a fresh short
// directory, so a test can see what a run leaves behind.
func privateTmp(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("XDG_RUNTIME_DIR", dir)
	return dir
}

// processesUnder lists the pids whose command line mentions dir.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(b), dir) {
			found = append(found, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return found
}

func TestVLANsReachMachines(t *testing.T) {
	testenv.NeedCommand(t, vlan.Binary)
	tmp := privateTmp(t)
	var (
		mu   sync.Mutex
		envs = map[string][]string{}
	)
	b := mock.New(mock.WithStartHook(func(spec backend.Spec) error {
		mu.Lock()
		defer mu.Unlock()
		envs[spec.Name] = spec.Env
		return nil
	}))
	log := newRecLogger()
	cfg := Config{
		Machines:  []MachineConfig{{Name: "a", StartScript: "/x/run-a-vm"}, {Name: "b", StartScript: "/x/run-b-vm"}},
		VLANs:     []int{2, 1, 2},
		OutputDir: t.TempDir(),
	}
	d, err := New(t.Context(), cfg, WithBackend(b), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	sw := d.Switches()
	if len(sw) != 2 || sw[0].Nr() != 1 || sw[1].Nr() != 2 {
		t.Fatalf("VLANs() = %v, want switches 1 and 2", sw)
	}
	if !log.has("nested: start all VLans") || !log.has("end: start all VLans: <nil>") {
		t.Errorf("no successful \"start all VLans\" block in %q", log.lines)
	}
	var want []string
	for _, s := range sw {
		if !strings.HasPrefix(s.SocketDir(), tmp) {
			t.Errorf("vlan %d socket dir %s is not in the run directory", s.Nr(), s.SocketDir())
		}
		if _, err := os.Stat(filepath.Join(s.SocketDir(), "ctl")); err != nil {
			t.Errorf("vlan %d is not listening: %v", s.Nr(), err)
		}
		want = append(want, fmt.Sprintf("QEMU_VDE_SOCKET_%d=%s", s.Nr(), s.SocketDir()))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.StartAll(ctx); err != nil {
		t.Fatal(err)
	}
	extra, err := d.CreateMachine("/x/run-c-vm")
	if err != nil {
		t.Fatal(err)
	}
	if err := extra.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for _, name := range []string{"a", "b", "c"} {
		for _, kv := range want {
			if !slices.Contains(envs[name], kv) {
				t.Errorf("machine %s started with env %q, missing %q", name, envs[name], kv)
			}
		}
	}
	mu.Unlock()

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	for _, s := range sw {
		select {
		case <-s.Done():
		default:
			t.Errorf("vlan %d still running after Close", s.Nr())
		}
		if s.Err() != nil {
			t.Errorf("vlan %d: Err() = %v after a clean stop", s.Nr(), s.Err())
		}
	}
	if left := processesUnder(t, tmp); len(left) > 0 {
		t.Errorf("processes left after Close: %q", left)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left in %s after Close: %v", tmp, entries)
	}
}

func TestVLANDeathIsLogged(t *testing.T) {
	testenv.NeedCommand(t, vlan.Binary)
	privateTmp(t)
	log := newRecLogger()
	d, err := New(t.Context(), Config{VLANs: []int{1}, OutputDir: t.TempDir()}, WithBackend(mock.New()), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	s := d.Switches()[0]
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case msg := <-log.warned:
		if !strings.Contains(msg, "vlan 1") || !strings.Contains(msg, "lost") {
			t.Errorf("warning %q does not say VLAN 1's network is lost", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the death of the switch was not logged")
	}
	if !errors.Is(s.Err(), vlan.ErrExited) {
		t.Errorf("Err() = %v", s.Err())
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestVLANStartFailure(t *testing.T) {
	vdeBin := testenv.NeedCommand(t, vlan.Binary)
	for _, tt := range []struct {
		name string
		path func(t *testing.T) string // PATH for the run
		is   error
		want string
	}{
		{"not installed", func(t *testing.T) string { return t.TempDir() }, vlan.ErrNotInstalled, "vde2"},
		{"one fails", func(t *testing.T) string {
			// VLAN 2's switch dies at once; the others are real and must
			// be stopped again.
			bin := t.TempDir()
			script := fmt.Sprintf("#!/bin/sh\ncase \"$*\" in *vde2.ctl*) echo 'vde2 cannot start' >&2; exit 1;; esac\nexec %s \"$@\"\n", vdeBin)
			if err := os.WriteFile(filepath.Join(bin, vlan.Binary), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			return bin + ":" + os.Getenv("PATH")
		}, vlan.ErrExited, "vde2 cannot start"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmp := privateTmp(t)
			t.Setenv("PATH", tt.path(t))
			var starts int
			b := mock.New(mock.WithStartHook(func(backend.Spec) error { starts++; return nil }))
			cfg := Config{Machines: []MachineConfig{{Name: "m", StartScript: "/x/run-m-vm"}}, VLANs: []int{1, 2, 3}, OutputDir: t.TempDir()}
			d, err := New(t.Context(), cfg, WithBackend(b), WithLogger(newRecLogger()))
			if err == nil {
				d.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %v containing %q", err, tt.is, tt.want)
			}
			if left := processesUnder(t, tmp); len(left) > 0 {
				t.Errorf("processes left after a failed New: %q", left)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("left in %s after a failed New: %v", tmp, entries)
			}
			if starts != 0 {
				t.Errorf("%d machines started", starts)
			}
		})
	}
}
