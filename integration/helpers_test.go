package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// guestKind describes what differs between the two test guests.
type guestKind struct {
	name string
	// timeoutStatus is the exit status of a command the guest's
	// time limit ended: 124 on both (the driver ends the command's process
	// group itself; busybox's own timeout would give 143).
	timeoutStatus int
	// listen is a shell command (with %d for the port) that keeps
	// listening on a TCP port in the foreground, whatever connects:
	// busybox nc needs -p and -ll -e, netcat-openbsd refuses -p.
	listen string
	// listening lists the guest's listening TCP sockets, one a line
	// with "ADDR:PORT " in it.
	listening string
	// systemd is true for the guest with a service manager.
	systemd bool
}

var (
	minimalGuest = guestKind{name: "minimal", timeoutStatus: 124, listen: "nc -ll -p %d -e true", listening: "netstat -ltn"}
	systemdGuest = guestKind{name: "systemd", timeoutStatus: 124, listen: "nc -lk %d", listening: "ss -ltn", systemd: true}
	guestKinds   = []guestKind{minimalGuest, systemdGuest}
)

// bootTimeout bounds the wait for a guest's shell. Both guests boot in
// well under a minute under TCG, even with the other one booting beside
// them on a 2-core host; the margin covers a loaded CI machine.
const bootTimeout = 3 * time.Minute

// sharedBackend is the QEMU backend every test uses: it decides the
// accelerator once for the whole package.
var sharedBackend = sync.OnceValue(func() *qemu.Backend { return qemu.New() })

// TestMain runs the tests, then fails the run if any process the tests
// started is still a child of this one (running or unreaped).
func TestMain(m *testing.M) {
	code := m.Run()
	if left := childProcesses(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "integration: processes left behind by the tests:\n    %s\n", strings.Join(left, "\n    "))
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// childProcesses lists this process's children as "pid state cmdline".
func childProcesses() []string {
	self := os.Getpid()
	var out []string
	for _, p := range procs() {
		if p.ppid == self {
			out = append(out, fmt.Sprintf("%d %s %s", p.pid, p.state, p.cmdline))
		}
	}
	return out
}

type proc struct {
	pid, ppid int
	state     string
	cmdline   string
}

// procs reads every process of the host from /proc (processes that end
// while it reads are skipped).
func procs() []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name in parentheses may hold spaces; the fields
		// after its closing parenthesis are "state ppid ...".
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, proc{pid: pid, ppid: ppid, state: f[0],
			cmdline: strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))})
	}
	return out
}

// processesMentioning lists the processes whose command line contains s.
func processesMentioning(s string) []string {
	var out []string
	for _, p := range procs() {
		if p.pid != os.Getpid() && strings.Contains(p.cmdline, s) {
			out = append(out, fmt.Sprintf("%d %s", p.pid, p.cmdline))
		}
	}
	return out
}

// testCtx returns a context that ends after d or with the test.
func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// boot starts a machine of the given kind for t (closed at the end of
// t) and waits for its shell. At the end of t, after the machine is
// closed, it checks that no process started for the machine is left
// (every QEMU it ran has the state directory on its command line) and
// that the private state directory is gone.
func boot(t *testing.T, k guestKind, opts ...machine.Option) *machine.Machine {
	t.Helper()
	m := startMachine(t, k, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+time.Minute)
	defer cancel()
	if _, err := m.Succeed(ctx, "true"); err != nil {
		t.Fatalf("the %s guest did not come up: %v", k.name, err)
	}
	return m
}

// startMachine is boot without waiting for the shell.
func startMachine(t *testing.T, k guestKind, opts ...machine.Option) *machine.Machine {
	t.Helper()
	testenv.NeedQEMU(t)
	script := testenv.StartScript(t, k.name)
	var stateDir string
	// Registered before StartT's cleanup, so it runs after Close.
	t.Cleanup(func() {
		if stateDir == "" {
			return
		}
		if left := processesMentioning(stateDir); len(left) > 0 {
			t.Errorf("processes of machine %s still running after Close:\n    %s", k.name, strings.Join(left, "\n    "))
		}
		if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory %s of machine %s still exists after Close (stat: %v)", stateDir, k.name, err)
		}
	})
	opts = append([]machine.Option{
		machine.WithStartScript(script),
		machine.WithOutputDir(t.TempDir()),
		machine.WithBootTimeout(bootTimeout),
	}, opts...)
	m := machine.StartT(t, sharedBackend(), k.name, opts...)
	stateDir = m.StateDir()
	return m
}

// assertGone fails t if process pid still exists. Callers use it where
// the API promises the process has been reaped.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Errorf("no QEMU pid to check (got %d)", pid)
		return
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("QEMU pid %d still exists (kill 0: %v)", pid, err)
	}
}

// bootID returns the guest kernel's boot id, which changes at every boot.
func bootID(ctx context.Context, t *testing.T, m *machine.Machine) string {
	t.Helper()
	out, err := m.Succeed(ctx, "cat /proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatalf("reading the boot id: %v", err)
	}
	id := strings.TrimSpace(out)
	if len(id) != 36 {
		t.Fatalf("boot id %q is not a UUID", out)
	}
	return id
}

// mustContain fails t unless err's message contains every one of subs.
func mustContain(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("got no error, want one containing %q", subs)
		return
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %q:\n%v", s, err)
		}
	}
}

// waitConsoleLog waits until the machine's console log contains s,
// without consuming it for WaitForConsoleText.
func waitConsoleLog(ctx context.Context, t *testing.T, m *machine.Machine, s string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(m.ConsoleLog(), s) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("console log never showed %q: %v", s, ctx.Err())
		}
	}
}
