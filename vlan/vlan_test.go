package vlan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// shortDir is a private temp directory with a short path (unix sockets
// live under it), removed when the test ends.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start starts a switch that the test's cleanup closes, whatever happens.
func start(t *testing.T, nr int, dir string, opts ...Option) *Switch {
	t.Helper()
	s, err := Start(testCtx(t), nr, dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// waitDone waits for the switch's Done, failing the test after a bound.
func waitDone(t *testing.T, s *Switch) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("vlan %d: Done not closed", s.Nr())
	}
}

// recorder is a Logf that keeps the lines and stops at the test's end.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

func (r *recorder) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

func TestStartAndClose(t *testing.T) {
	testenv.NeedCommand(t, Binary)
	dir := shortDir(t)
	var rec recorder
	s := start(t, 3, dir, WithLogf(rec.logf))

	want := filepath.Join(dir, "vde3.ctl")
	if s.Nr() != 3 || s.SocketDir() != want {
		t.Errorf("Nr %d SocketDir %q, want 3 and %q", s.Nr(), s.SocketDir(), want)
	}
	if got := s.Env(); got != "QEMU_VDE_SOCKET_3="+want {
		t.Errorf("Env() = %q", got)
	}
	st, err := os.Stat(filepath.Join(want, "ctl"))
	if err != nil || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("control socket: %v, %v", st, err)
	}
	if dst, err := os.Stat(want); err != nil || dst.Mode().Perm() != 0o700 {
		t.Errorf("control directory: %v, %v; want mode 0700", dst, err)
	}
	if s.PID() <= 0 || !alive(s.PID()) {
		t.Fatalf("pid %d is not running", s.PID())
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed while the switch runs")
	default:
	}
	if err := s.Err(); err != nil {
		t.Errorf("Err() while running = %v", err)
	}
	if !rec.has("1000 Success") {
		t.Errorf("Logf did not see the showinfo answer; got %q", rec.lines)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s) // Close returns after the exit; this must not block
	if err := s.Err(); err != nil {
		t.Errorf("Err() after Close = %v, want nil", err)
	}
	if alive(s.PID()) {
		t.Errorf("pid %d still exists after Close", s.PID())
	}
	if _, err := os.Lstat(want); !os.IsNotExist(err) {
		t.Errorf("control directory still there after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestKilledSwitchIsNoticed(t *testing.T) {
	testenv.NeedCommand(t, Binary)
	s := start(t, 1, shortDir(t))
	if err := syscall.Kill(s.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDone(t, s)
	err := s.Err()
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "killed") || !strings.Contains(err.Error(), "vlan 1") {
		t.Fatalf("Err() = %v, want ErrExited naming the VLAN and the signal", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.SocketDir()); !os.IsNotExist(err) {
		t.Errorf("control directory left behind by a killed switch: %v", err)
	}
	if !errors.Is(s.Err(), ErrExited) {
		t.Errorf("Close forgot the crash: Err() = %v", s.Err())
	}
}

func TestTwoSwitches(t *testing.T) {
	testenv.NeedCommand(t, Binary)
	dir := shortDir(t)
	a := start(t, 1, dir)
	b := start(t, 255, dir)
	if a.PID() == b.PID() || a.SocketDir() == b.SocketDir() {
		t.Fatalf("switches share pid %d / %d or dir %s / %s", a.PID(), b.PID(), a.SocketDir(), b.SocketDir())
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// Stopping one leaves the other running.
	if !alive(b.PID()) || b.Err() != nil {
		t.Fatalf("vlan 255 is gone after vlan 1 closed: %v", b.Err())
	}
	if _, err := os.Stat(filepath.Join(b.SocketDir(), "ctl")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left in %s: %v", dir, entries)
	}
}

func TestStartErrors(t *testing.T) {
	testenv.NeedCommand(t, Binary)
	dir := shortDir(t)
	if err := os.Mkdir(filepath.Join(dir, "vde7.ctl"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		nr   int
		dir  string
		is   error
		want string
	}{
		{"zero", 0, dir, ErrBadNumber, "vlan 0: VLAN numbers are 1 to 255"},
		{"negative", -1, dir, ErrBadNumber, "1 to 255"},
		{"too big", 256, dir, ErrBadNumber, "1 to 255"},
		{"dir in use", 7, dir, nil, "already exists"},
		{"long path", 1, "/" + strings.Repeat("d", 100), nil, "too long"},
		{"no parent", 2, filepath.Join(dir, "missing"), ErrExited, "Cannot create ctl directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Start(testCtx(t), tt.nr, tt.dir)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("a failed start left something: %v", err)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(testCtx(t), 1, shortDir(t))
	if !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), "vde2") {
		t.Fatalf("err = %v, want ErrNotInstalled naming the package", err)
	}
}

// fakeSwitch puts a vde_switch script on PATH.
func fakeSwitch(t *testing.T, body string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, Binary), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
}

// pidFile returns a path under a fresh directory where fakes write $$.
func pidFile(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "pid")
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	data, err := os.ReadFile(path)
	if err == nil {
		_, err = fmt.Sscan(string(data), &pid)
	}
	if err != nil {
		t.Fatalf("fake switch pid: %v", err)
	}
	return pid
}

func TestStartFailures(t *testing.T) {
	testenv.NeedCommand(t, "sh")
	for _, tt := range []struct {
		name string
		body string // %s is the pid file
		ctx  time.Duration
		want string
	}{
		// Never answers and ignores stdin's end: the deadline fails the
		// start, and Close must kill it.
		{"silent", `echo $$ > %s; exec sleep 600`, 300 * time.Millisecond, "did not answer showinfo"},
		{"error answer", `echo $$ > %s; read x; echo "1500 no such command"; exec cat >/dev/null`, 10 * time.Second, `answered showinfo with "1500 no such command"`},
		{"exits", `echo $$ > %s; echo "bad option" >&2; exit 3`, 10 * time.Second, "exit status 3"},
		// Claims success without creating the socket.
		{"no socket", `echo $$ > %s; read x; echo "1000 Success"; exec cat >/dev/null`, 10 * time.Second, "control socket is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pf := pidFile(t)
			fakeSwitch(t, fmt.Sprintf(tt.body, pf))
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctx)
			defer cancel()
			s, err := Start(ctx, 1, shortDir(t))
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if tt.name == "exits" && (!errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "bad option")) {
				t.Errorf("err = %v, want ErrExited with the stderr tail", err)
			}
			if pid := readPID(t, pf); alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("fake switch pid %d left running after a failed Start", pid)
			}
		})
	}
}

// BenchmarkStartClose measures a switch's start (to its showinfo answer)
// and stop.
func BenchmarkStartClose(b *testing.B) {
	testenv.NeedCommand(b, Binary)
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for b.Loop() {
		s, err := Start(ctx, 1, dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
