package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// noKernelScript starts a VM with no kernel and no disk: SeaBIOS finds
// nothing to boot, so the guest never offers a shell, but QEMU, QMP and
// the display are all there.
const noKernelScript = "#!/bin/sh\nexec qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults -vga std \"$@\"\n"

// needQEMU skips in -short mode and when QEMU is missing.
func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts QEMU; skipped with -short")
	}
	testenv.NeedQEMU(t)
}

// stateDir returns a fresh 0700 directory with a short path (unix socket
// paths are limited to 108 bytes), removed when the test ends.
func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// writeScript writes an executable start script and returns its path.
func writeScript(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(stateDir(t), "run-test-vm")
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// syncBuffer collects console output and lets a test wait for text.
type syncBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{wake: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer contains s.
func (b *syncBuffer) waitFor(ctx context.Context, s string) error {
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.wake:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q in the console: %w; got %q", s, ctx.Err(), b.String())
		}
	}
	return nil
}

// testLogf returns a Logf that goes to the test log while the test runs.
func testLogf(t *testing.T) func(string, ...any) {
	var mu sync.Mutex
	ended := false
	t.Cleanup(func() { mu.Lock(); ended = true; mu.Unlock() })
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !ended {
			t.Logf(format, args...)
		}
	}
}

// start starts a machine on the given script and registers a cleanup
// that closes it and checks nothing is left behind.
func start(t *testing.T, script string, console *syncBuffer) *Instance {
	t.Helper()
	spec := backend.Spec{StartScript: script}
	if console != nil {
		spec.Console = console
	}
	return startSpec(t, spec)
}

// specDefaults fills in the name, a fresh state directory (also the
// shared directory) and the test log where spec leaves them unset.
func specDefaults(t *testing.T, spec backend.Spec, name string) backend.Spec {
	t.Helper()
	if spec.Name == "" {
		spec.Name = name
	}
	if spec.StateDir == "" {
		spec.StateDir = stateDir(t)
	}
	if spec.SharedDir == "" {
		spec.SharedDir = spec.StateDir
	}
	if spec.Logf == nil {
		spec.Logf = testLogf(t)
	}
	return spec
}

// startSpec starts spec, filling in the name, a fresh state directory
// (also the shared directory) and the test log where they are unset, and
// registers a cleanup that closes the machine and checks nothing is left
// behind.
func startSpec(t *testing.T, spec backend.Spec) *Instance {
	t.Helper()
	spec = specDefaults(t, spec, "test")
	fds := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	began := time.Now()
	inst, err := New(WithAccel(AccelTCG)).Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start returned after %s", time.Since(began).Round(time.Millisecond))
	i := inst.(*Instance)
	t.Cleanup(func() { closeAndCheck(t, i, fds) })
	return i
}

// closeAndCheck closes the instance twice and checks that its processes,
// the files it made in the state directory (only the names in keep, made
// by the test's own script, may remain) and its descriptors (compared
// with fdsBefore, taken before Start) are gone.
func closeAndCheck(t *testing.T, i *Instance, fdsBefore map[int]string, keep ...string) {
	t.Helper()
	if err := i.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := i.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-i.Done():
	default:
		t.Errorf("Done not closed after Close")
	}
	assertGone(t, i.PID())
	if err := syscall.Kill(-i.PID(), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("QEMU's process group %d still has processes after Close (kill -0: %v)", i.PID(), err)
	}
	entries, err := os.ReadDir(i.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			t.Errorf("left behind in the state directory after Close: %s (%v)", e.Name(), e.Type())
		}
	}
	for fd, target := range openFDs(t) {
		if old, ok := fdsBefore[fd]; ok && old == target {
			continue
		}
		if runtimeFD(target) {
			continue
		}
		t.Errorf("descriptor %d (%s) left open after Close", fd, target)
	}
}

// openFDs returns this process's open descriptors and what they refer to.
func openFDs(t *testing.T) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := make(map[int]string, len(entries))
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The directory's own descriptor is gone by now.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fds[fd] = target
		}
	}
	return fds
}

// runtimeFD reports descriptors the Go runtime opens once, on first use
// of the network poller, and keeps: they are not a machine's.
func runtimeFD(target string) bool {
	return target == "anon_inode:[eventpoll]" || target == "anon_inode:[eventfd]"
}

// assertGone checks that no process has the pid.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still exists after Close (kill -0: %v)", pid, err)
	}
}

func TestStartBadInput(t *testing.T) {
	needQEMU(t)
	missingDir := stateDir(t)
	notExec := filepath.Join(stateDir(t), "run-x-vm")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		script string
		want   []string
		exited bool
	}{
		{"missing script", filepath.Join(missingDir, "run-nope-vm"), []string{"start script", "does not exist"}, false},
		{"not executable", notExec, []string{"is not executable (chmod +x"}, false},
		{"directory", missingDir, []string{"is not a regular file"}, false},
		{"script exits 3",
			writeScript(t, "#!/bin/sh\necho 'boot output on stdout'\necho 'something broke on stderr' >&2\nexit 3\n"),
			[]string{"exited with status 3", "waiting for QEMU's control socket", "boot output on stdout", "something broke on stderr"},
			true},
		{"QEMU not installed",
			writeScript(t, "#!/bin/sh\nexec qemu-system-vmdriver-missing \"$@\"\n"),
			[]string{"exited with status 127", "qemu-system-x86"},
			true},
		{"QEMU rejects its arguments",
			writeScript(t, "#!/bin/sh\nexec qemu-system-x86_64 -no-such-option \"$@\"\n"),
			[]string{"exited with status 1", "no-such-option"},
			true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := stateDir(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			inst, err := New(WithAccel(AccelTCG)).Start(ctx, backend.Spec{
				Name: "bad", StartScript: tt.script, StateDir: dir, Logf: testLogf(t),
			})
			if err == nil {
				inst.Close()
				t.Fatal("Start succeeded")
			}
			t.Logf("error: %v", err)
			// The tails are data, not text: the machine renders them.
			text := err.Error()
			var be *backend.Error
			if errors.As(err, &be) {
				text += "\n" + strings.Join(be.Stderr, "\n") + "\n" + strings.Join(be.Console, "\n")
				t.Logf("stderr tail %q, console tail %q", be.Stderr, be.Console)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("error does not mention %q", w)
				}
			}
			if strings.Contains(err.Error(), `"bad"`) || (be != nil && strings.Contains(be.Error(), be.Stderr[len(be.Stderr)-1])) {
				t.Errorf("the error's text names the machine or quotes a tail: %q", err)
			}
			if got := errors.Is(err, backend.ErrExited); got != tt.exited {
				t.Errorf("errors.Is(err, ErrExited) = %v, want %v", got, tt.exited)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				t.Errorf("left behind in the state dir: %s", e.Name())
			}
		})
	}
}

func TestStartWithoutQEMUOnPath(t *testing.T) {
	needQEMU(t)
	script := writeScript(t, noKernelScript)
	t.Setenv("PATH", stateDir(t))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New().Start(ctx, backend.Spec{Name: "x", StartScript: script, StateDir: stateDir(t)})
	if !errors.Is(err, ErrNoQEMU) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Fatalf("Start error = %v, want ErrNoQEMU naming the Debian package", err)
	}
}

func TestStartEnvironmentAndArgs(t *testing.T) {
	needQEMU(t)
	// The script records what it got, then runs QEMU with it.
	script := writeScript(t, `#!/bin/sh
{ pwd; echo "TMPDIR=$TMPDIR"; echo "USE_TMPDIR=$USE_TMPDIR"; echo "SHARED_DIR=$SHARED_DIR"; echo "EXTRA=$EXTRA"; printf 'arg=%s\n' "$@"; } > "$TMPDIR/record"
exec qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults "$@"
`)
	dir := stateDir(t)
	shared := stateDir(t)
	fds := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inst, err := New(WithAccel(AccelTCG), WithExtraArgs("-name", "envtest")).Start(ctx, backend.Spec{
		Name: "env", StartScript: script, StateDir: dir, SharedDir: shared,
		Env: []string{"EXTRA=a value; with $(shell) chars"}, Logf: testLogf(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	i := inst.(*Instance)
	t.Cleanup(func() { closeAndCheck(t, i, fds, "record") })
	rec, err := os.ReadFile(filepath.Join(dir, "record"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(rec)
	for _, w := range []string{
		dir + "\n",
		"TMPDIR=" + dir + "\n",
		"USE_TMPDIR=1\n",
		"SHARED_DIR=" + shared + "\n",
		"EXTRA=a value; with $(shell) chars\n",
		"arg=unix:" + dir + "/qmp,server=on,wait=off\n",
		"arg=socket,id=shell,fd=3\n",
		"arg=-no-reboot\n",
		// The script says -m 64: the guest RAM is a shared file on fd 4.
		"arg=accel=tcg\narg=-object\narg=memory-backend-file,id=vmdriver-ram,size=64M,mem-path=/proc/self/fd/4,share=on\narg=-machine\narg=memory-backend=vmdriver-ram\narg=-name\narg=envtest\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("start script record lacks %q:\n%s", w, got)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := i.MonitorCommand(ctx, "info name")
	if err != nil || !strings.Contains(out, "envtest") {
		t.Errorf("info name = %q, %v; want the extra -name", out, err)
	}
}

func TestShellNoBanner(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, noKernelScript), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := i.Shell(ctx)
	if err == nil {
		t.Fatal("Shell succeeded on a VM without a kernel")
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap context.DeadlineExceeded")
	}
	if !strings.Contains(err.Error(), "Spawning backdoor root shell...") {
		t.Errorf("error does not name the awaited banner")
	}
	if errors.Is(err, backend.ErrExited) || i.ExitErr() != nil {
		t.Errorf("QEMU should still run: ExitErr = %v", i.ExitErr())
	}
}

func TestKilledWhileShellWaits(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, noKernelScript), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := i.Shell(ctx)
		errc <- err
	}()
	// Kill while Shell is blocked (it cannot finish: there is no guest).
	if err := syscall.Kill(i.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	// The brief: a waiter must learn of the death within 2 s.
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	var err error
	select {
	case err = <-errc:
	case <-timer.C:
		t.Fatal("Shell still waiting 2 s after QEMU was SIGKILLed")
	}
	t.Logf("Shell failed %s after SIGKILL: %v", time.Since(killed).Round(time.Millisecond), err)
	if !errors.Is(err, backend.ErrExited) {
		t.Errorf("error does not wrap ErrExited")
	}
	if want := fmt.Sprintf("QEMU (pid %d) was killed by signal 9", i.PID()); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error does not say %q", want)
	}
	select {
	case <-i.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after QEMU died")
	}
	if e := i.ExitErr(); !errors.Is(e, backend.ErrExited) {
		t.Errorf("ExitErr = %v, want ErrExited", e)
	}
	// A later Shell fails the same way, at once.
	if _, err := i.Shell(ctx); !errors.Is(err, backend.ErrExited) {
		t.Errorf("Shell after exit = %v", err)
	}
}

func TestCapabilitiesWithoutGuest(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, noKernelScript), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("monitor", func(t *testing.T) {
		out, err := i.MonitorCommand(ctx, "info status")
		if err != nil || !strings.Contains(out, "VM status: running") {
			t.Errorf("info status = %q, %v", out, err)
		}
	})
	t.Run("raw", func(t *testing.T) {
		res, err := i.ControlCommand(ctx, "query-status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := res.(map[string]any); !ok || m["status"] != "running" {
			t.Errorf("query-status = %#v", res)
		}
		if _, err := i.ControlCommand(ctx, "no-such-command", nil); err == nil {
			t.Errorf("an unknown QMP command succeeded")
		}
	})
	t.Run("screenshot", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shot.png")
		if err := i.Screenshot(ctx, path); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		img, err := png.Decode(f)
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		if b := img.Bounds(); b.Dx() < 320 || b.Dy() < 200 {
			t.Errorf("screenshot is %v", b)
		}
		if m, _ := filepath.Glob(filepath.Join(i.stateDir, "screendump-*")); len(m) > 0 {
			t.Errorf("temporary screendumps left behind: %v", m)
		}
	})
	t.Run("sendkey", func(t *testing.T) {
		// Not ctrl-alt-delete: SeaBIOS resets on it, and -no-reboot
		// then ends QEMU.
		for _, k := range []string{"ret", "shift-a", "alt-f2", "0x0C"} {
			if err := i.SendKey(ctx, k); err != nil {
				t.Errorf("SendKey(%q): %v", k, err)
			}
		}
		for _, k := range []string{"no-such-key", "a b", "a\ninfo status"} {
			if err := i.SendKey(ctx, k); err == nil {
				t.Errorf("SendKey(%q) succeeded", k)
			}
		}
	})
	t.Run("console", func(t *testing.T) {
		if err := i.WriteConsole(ctx, []byte("typed\n")); err != nil {
			t.Error(err)
		}
	})
	t.Run("events", func(t *testing.T) {
		if _, err := i.ControlCommand(ctx, "stop", nil); err != nil {
			t.Fatal(err)
		}
		ev, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "STOP" })
		if err != nil {
			t.Fatal(err)
		}
		if ev.Time.IsZero() {
			t.Errorf("STOP event has no time")
		}
		if _, err := i.ControlCommand(ctx, "cont", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "RESUME" }); err != nil {
			t.Fatal(err)
		}
		// Nothing more is pending: a short wait ends at its deadline.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if _, err := i.WaitEvent(short, func(e backend.Event) bool { return e.Name == "STOP" }); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitEvent with nothing pending = %v", err)
		}
	})
	t.Run("powerdown", func(t *testing.T) {
		if err := i.PowerDown(ctx); err != nil {
			t.Error(err)
		}
		if _, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "POWERDOWN" }); err != nil {
			t.Error(err)
		}
	})
	t.Run("kill", func(t *testing.T) {
		if err := i.Kill(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case <-i.Done():
		default:
			t.Fatal("Done not closed after Kill")
		}
		if err := i.ExitErr(); err != nil {
			t.Errorf("ExitErr after QMP quit = %v, want nil", err)
		}
		assertGone(t, i.PID())
		if _, err := i.MonitorCommand(ctx, "info status"); !errors.Is(err, backend.ErrExited) {
			t.Errorf("MonitorCommand after Kill = %v, want ErrExited", err)
		}
		// Events queued before the end are still delivered (QMP quit
		// announces SHUTDOWN); after them the exit is reported.
		if _, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "SHUTDOWN" }); err != nil {
			t.Errorf("WaitEvent(SHUTDOWN) after Kill = %v", err)
		}
		if _, err := i.WaitEvent(ctx, func(backend.Event) bool { return false }); !errors.Is(err, backend.ErrExited) {
			t.Errorf("WaitEvent after the queue drained = %v, want ErrExited", err)
		}
	})
}

// TestCloseRunning checks Close on a running VM (SIGTERM path).
func TestCloseRunning(t *testing.T) {
	needQEMU(t)
	i := start(t, writeScript(t, noKernelScript), nil)
	if err := i.Close(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, i.PID())
}

// childEnv switches the test binary into the driver-death child.
const childEnv = "VMDRIVER_QEMU_TEST_DEATH_CHILD"

// TestDriverDeathChild is the child side of TestDriverDeath: it starts a
// VM, prints QEMU's pid and waits to be killed.
func TestDriverDeathChild(t *testing.T) {
	dir := os.Getenv(childEnv)
	if dir == "" {
		t.Skip("helper for TestDriverDeath")
	}
	script := filepath.Join(dir, "run-child-vm")
	state := filepath.Join(dir, "state")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inst, err := New(WithAccel(AccelTCG)).Start(ctx, backend.Spec{Name: "child", StartScript: script, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	fmt.Printf("QEMUPID %d\n", inst.PID())
	// Wait for the parent's SIGKILL; never longer than the deadline.
	<-ctx.Done()
}

func TestDriverDeath(t *testing.T) {
	needQEMU(t)
	// Become a subreaper so the orphaned QEMU is reparented to us and we
	// can reap it; PID 1 here does not reap orphans.
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, 36 /* PR_SET_CHILD_SUBREAPER */, 1, 0); e != 0 {
		t.Skipf("prctl(PR_SET_CHILD_SUBREAPER): %v", e)
	}
	dir := stateDir(t)
	if err := os.WriteFile(filepath.Join(dir, "run-child-vm"), []byte(noKernelScript), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestDriverDeathChild$", "-test.count=1")
	child.Env = append(os.Environ(), childEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })

	pidc := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "QEMUPID "); ok {
				n, _ := strconv.Atoi(s)
				pidc <- n
				break
			}
		}
		for sc.Scan() { // drain
		}
		close(pidc)
	}()
	var pid int
	select {
	case pid = <-pidc:
	case <-ctx.Done():
		t.Fatal("child never reported QEMU's pid")
	}
	if pid <= 0 {
		t.Fatal("child ended without starting QEMU")
	}
	// Whatever happens below, QEMU must not outlive the test.
	t.Cleanup(func() {
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	killed := time.Now()

	// QEMU is now our (adopted) child: wait for it to die.
	reaped := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(pid, &ws, 0, nil)
			if err == syscall.EINTR {
				continue
			}
			reaped <- ws
			return
		}
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case ws := <-reaped:
		t.Logf("QEMU (pid %d) ended %s after its driver was SIGKILLed: signaled=%v signal=%v",
			pid, time.Since(killed).Round(time.Millisecond), ws.Signaled(), ws.Signal())
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("QEMU ended by %v, want SIGKILL (Pdeathsig)", ws)
		}
	case <-timer.C:
		syscall.Kill(pid, syscall.SIGKILL)
		<-reaped
		t.Fatalf("QEMU (pid %d) still running 10 s after its driver was SIGKILLed", pid)
	}
}

func TestStartDeadlineBeforeQMP(t *testing.T) {
	needQEMU(t)
	// A script that never starts QEMU (and leaves a child behind).
	script := writeScript(t, "#!/bin/sh\necho $$ > \"$TMPDIR/pid\"\nsleep 30 &\nwait\n")
	dir := stateDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := New(WithAccel(AccelTCG)).Start(ctx, backend.Spec{Name: "slow", StartScript: script, StateDir: dir, Logf: testLogf(t)})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "control socket") {
		t.Fatalf("Start error = %v, want a deadline waiting for the control socket", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	assertGone(t, pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "pid" {
			t.Errorf("left behind in the state directory: %s", e.Name())
		}
	}
}

func TestStartStateDirChecks(t *testing.T) {
	needQEMU(t)
	script := writeScript(t, noKernelScript)
	long := filepath.Join(stateDir(t), strings.Repeat("d", 100))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	blocked := stateDir(t)
	if err := os.WriteFile(filepath.Join(blocked, qmpSocket), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
	}{
		{"missing", filepath.Join(blocked, "nope"), "no such file"},
		{"too long for a socket", long, "longer than 107 bytes"},
		{"a file where the QMP socket goes", blocked, "is not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			inst, err := New(WithAccel(AccelTCG)).Start(ctx, backend.Spec{Name: "x", StartScript: script, StateDir: tt.dir})
			if err == nil {
				inst.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestStartReplacesStaleSockets(t *testing.T) {
	needQEMU(t)
	script := writeScript(t, noKernelScript)
	dir := stateDir(t)
	// Leave the QMP socket file behind as a SIGKILLed run would.
	ln, err := net.Listen("unix", filepath.Join(dir, qmpSocket))
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	fds := openFDs(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inst, err := New(WithAccel(AccelTCG)).Start(ctx, backend.Spec{Name: "stale", StartScript: script, StateDir: dir, Logf: testLogf(t)})
	if err != nil {
		t.Fatal(err)
	}
	i := inst.(*Instance)
	t.Cleanup(func() { closeAndCheck(t, i, fds) })
	if out, err := i.MonitorCommand(ctx, "info status"); err != nil || !strings.Contains(out, "running") {
		t.Errorf("info status = %q, %v", out, err)
	}
}

// TestGuestReset checks what a guest reset does to QEMU and the shell
// channel: with AllowReboot both survive, so the same shell can wait for
// the rebooted guest's banner; without it QEMU powers off (-no-reboot)
// and Shell says so.
func TestGuestReset(t *testing.T) {
	needQEMU(t)
	tests := []struct {
		name        string
		allowReboot bool
	}{
		{"reboot allowed", true},
		{"no reboot", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := startSpec(t, backend.Spec{StartScript: writeScript(t, noKernelScript), AllowReboot: tt.allowReboot})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			sh := i.shell
			// QEMU may exit before it answers.
			_, _ = i.ControlCommand(ctx, "system_reset", nil)
			if !tt.allowReboot {
				select {
				case <-i.Done():
				case <-ctx.Done():
					t.Fatal("QEMU still runs after a reset under -no-reboot")
				}
				if _, err := i.Shell(ctx); !errors.Is(err, backend.ErrExited) {
					t.Errorf("Shell after the reset = %v, want ErrExited", err)
				}
				return
			}
			if _, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "RESET" }); err != nil {
				t.Fatal(err)
			}
			// Anything that ends QEMU or the channel is visible to a
			// command round trip: QMP answers only while QEMU runs.
			if out, err := i.MonitorCommand(ctx, "info status"); err != nil || !strings.Contains(out, "running") {
				t.Fatalf("info status after the reset = %q, %v", out, err)
			}
			select {
			case <-sh.Done():
				t.Fatalf("the shell channel ended on a guest reset: %v", sh.Err())
			default:
			}
			// Shell still waits on the same channel for a banner (none
			// comes: there is no kernel) instead of failing.
			short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if _, err := i.Shell(short); !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, backend.ErrExited) {
				t.Errorf("Shell after the reset = %v, want a deadline waiting for the banner", err)
			}
			if i.shell != sh {
				t.Errorf("the instance's shell changed on a reset")
			}
		})
	}
}
