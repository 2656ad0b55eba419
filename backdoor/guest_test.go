package backdoor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// guest starts one kind of guest and returns the host's end of its shell
// connection. timeoutStatus is what a guest-side timeout returns there.
type guest struct {
	name          string
	start         func(t testing.TB) net.Conn
	timeoutStatus int
	realShell     bool // a real bash reads our bytes (else the fake guest)
}

func guests(t testing.TB) []guest {
	return []guest{
		{name: "fake", start: startFakeBash, timeoutStatus: 124},
		{name: "bash", start: func(t testing.TB) net.Conn { return startBash(t, "") }, timeoutStatus: 124, realShell: true},
		{name: "busybox", start: func(t testing.TB) net.Conn { return startBash(t, busyboxDir(t)) }, timeoutStatus: 143, realShell: true},
	}
}

// busyboxDir returns a directory whose base64 and timeout are busybox's.
func busyboxDir(t testing.TB) string {
	t.Helper()
	bb := testenv.NeedCommand(t, "busybox")
	dir := t.TempDir()
	for _, name := range []string{"base64", "timeout"} {
		if err := os.Symlink(bb, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// lockedBuffer collects a child's stderr.
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

// socketpair returns two connected unix stream sockets as files.
func socketpair(t testing.TB) (*os.File, *os.File) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return os.NewFile(uintptr(fds[0]), "host"), os.NewFile(uintptr(fds[1]), "guest")
}

func fileConn(t testing.TB, f *os.File) net.Conn {
	t.Helper()
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startBash runs a host bash as the guest: it prints the banner, then
// reads its script from the socket, as the guest's bash reads /dev/hvc0.
// pathPrefix, if set, goes first in its PATH.
func startBash(t testing.TB, pathPrefix string) net.Conn {
	t.Helper()
	testenv.NeedCommand(t, "bash")
	hostF, guestF := socketpair(t)
	cmd := exec.Command("sh", "-c", `printf '%s\n' "$1"; exec bash --norc`, "sh", Banner)
	cmd.Stdin, cmd.Stdout = guestF, guestF
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if pathPrefix != "" {
		cmd.Env = append(cmd.Env, "PATH="+pathPrefix+":"+os.Getenv("PATH"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guestF.Close()
	conn := fileConn(t, hostF)
	t.Cleanup(func() {
		conn.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("guest bash stderr:\n%s", stderr.String())
		}
	})
	return conn
}

// startFake serves the fake guest with h on a socketpair.
func startFake(t testing.TB, h GuestHandler, opts FakeGuestOptions) net.Conn {
	t.Helper()
	hostF, guestF := socketpair(t)
	host, g := fileConn(t, hostF), fileConn(t, guestF)
	return serveFake(t, host, g, h, opts)
}

// serveFake runs ServeGuest on g until the test ends and checks that it
// returns cleanly.
func serveFake(t testing.TB, host, g net.Conn, h GuestHandler, opts FakeGuestOptions) net.Conn {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeGuest(ctx, g, h, opts) }()
	t.Cleanup(func() {
		host.Close()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("ServeGuest: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ServeGuest did not return after the host closed the connection")
		}
		cancel()
	})
	return host
}

// startFakeBash is a fake guest whose handler runs commands with the host
// bash, so the shared suite can check the fake's wire format end to end.
func startFakeBash(t testing.TB) net.Conn {
	dir := t.TempDir()
	var n int
	var mu sync.Mutex
	return startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		mu.Lock()
		n++
		file := filepath.Join(dir, "cmd"+strconv.Itoa(n))
		mu.Unlock()
		if err := os.WriteFile(file, []byte(req.Command), 0o600); err != nil {
			return GuestReply{Output: []byte(err.Error()), Status: 255}
		}
		// The command goes through a file: argv could not hold 1 MiB.
		args := []string{"bash", "-c", `__c=$(<"$0"); set -euo pipefail; eval "$__c"`, file}
		if req.Timeout > 0 {
			args = append([]string{"timeout", formatSeconds(req.Timeout)}, args...)
		}
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		out, err := cmd.Output()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			return GuestReply{Output: out, Status: ee.ExitCode()}
		case err != nil:
			return GuestReply{Output: []byte(err.Error()), Status: 255}
		}
		return GuestReply{Output: out}
	}, FakeGuestOptions{PreBanner: "connecting to host...\n"})
}

// oneByteConn returns at most one byte per Read.
type oneByteConn struct{ net.Conn }

func (c oneByteConn) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return c.Conn.Read(p)
}

// dropConn loses n bytes of the guest-to-host stream from offset from,
// like QEMU's virtconsole when the host reads too slowly.
type dropConn struct {
	net.Conn
	from, n int64
	pos     int64 // only the shell's reader goroutine reads
}

func (c *dropConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		start, end := c.pos, c.pos+int64(n)
		c.pos = end
		lo, hi := max(start, c.from), min(end, c.from+c.n)
		if lo < hi {
			copy(p[lo-start:], p[hi-start:n])
			n -= int(hi - lo)
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// fifo makes a named pipe and opens it read-write, which never blocks and
// keeps it open, so guest commands can open it either way.
func fifo(t testing.TB, name string) (string, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, f
}

// readLine reads one line from a fifo with a deadline.
func readLine(t testing.TB, f *os.File, d time.Duration) {
	t.Helper()
	if err := f.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	for {
		if _, err := f.Read(b); err != nil {
			t.Fatalf("waiting for the guest command to signal: %v", err)
		}
		if b[0] == '\n' {
			return
		}
	}
}

// logRecorder collects logf messages and signals each one.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
	c    chan string
}

func newLogRecorder() *logRecorder { return &logRecorder{c: make(chan string, 1000)} }

func (l *logRecorder) logf(format string, args ...any) {
	m := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.msgs = append(l.msgs, m)
	l.mu.Unlock()
	select {
	case l.c <- m:
	default:
	}
}

// waitFor waits until a message containing sub was logged.
func (l *logRecorder) waitFor(t testing.TB, sub string, d time.Duration) string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case m := <-l.c:
			if bytes.Contains([]byte(m), []byte(sub)) {
				return m
			}
		case <-timer.C:
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("no log message containing %q; got %q", sub, l.msgs)
			return ""
		}
	}
}
