package backdoor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// guest starts one kind of guest and returns the host's end of its shell
// connection.
type guest struct {
	name      string
	start     func(t testing.TB) net.Conn
	realShell bool // a real bash reads our bytes (else the fake guest)
	counted   bool // the console byte counter is available (mode c)
}

func guests(t testing.TB) []guest {
	bash := func(bb, counted bool) func(t testing.TB) net.Conn {
		return func(t testing.TB) net.Conn {
			o := bashOptions{ports: counted}
			if bb {
				o.pathPrefix = busyboxDir(t)
			}
			return startBash(t, o)
		}
	}
	return []guest{
		{name: "fake", start: startFakeBash, counted: true},
		{name: "fake-wrapped", start: startFakeBashWrapped},
		{name: "bash", start: bash(false, true), realShell: true, counted: true},
		{name: "bash-wrapped", start: bash(false, false), realShell: true},
		{name: "busybox", start: bash(true, true), realShell: true, counted: true},
		{name: "busybox-wrapped", start: bash(true, false), realShell: true},
	}
}

// busyboxApplets are the programs the wire format and the tests use.
var busyboxApplets = []string{"base64", "cat", "setsid", "sleep", "timeout"}

// busyboxDir returns a directory whose busyboxApplets are busybox's, as
// in a minimal guest.
func busyboxDir(t testing.TB) string {
	t.Helper()
	return busyboxOnly(t, busyboxApplets...)
}

// busyboxOnly returns a directory with the host's bash and the busybox
// applets named, to be a guest's whole PATH.
func busyboxOnly(t testing.TB, applets ...string) string {
	t.Helper()
	bb := testenv.NeedCommand(t, "busybox")
	bash := testenv.NeedCommand(t, "bash")
	dir := t.TempDir()
	if err := os.Symlink(bash, filepath.Join(dir, "bash")); err != nil {
		t.Fatal(err)
	}
	for _, name := range applets {
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

// bashOptions shape a local bash guest.
type bashOptions struct {
	pathPrefix string // goes first in the guest's PATH
	path       string // when set, the guest's whole PATH
	// ports puts a portRelay between bash and the Shell and points the
	// prelude at its fake debugfs (mode c); without it the prelude finds
	// no debugfs (mode w).
	ports bool
	// restartable runs bash in a loop that prints the banner again
	// whenever bash is killed, like a guest that reboots.
	restartable bool
	// noBanner starts bash without printing the banner, as a guest shell
	// restored from a snapshot, but without the prelude.
	noBanner bool
}

// startBash runs a host bash as the guest: it prints the banner, then
// reads its script from the socket, as the guest's bash reads /dev/hvc0.
func startBash(t testing.TB, o bashOptions) net.Conn {
	t.Helper()
	testenv.NeedCommand(t, "bash")
	hostF, guestF := socketpair(t)
	script := `printf '%s\n' "$1"; exec bash --norc`
	switch {
	case o.restartable:
		script = `while :; do printf '%s\n' "$1"; bash --norc; [ $? -ge 128 ] || exit; done`
	case o.noBanner:
		script = `exec bash --norc`
	}
	cmd := exec.Command("sh", "-c", script, "sh", Banner)
	cmd.Stdin, cmd.Stdout = guestF, guestF
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	cmd.Dir = t.TempDir()
	ports := filepath.Join(cmd.Dir, "no-debugfs")
	if o.ports {
		ports = t.TempDir()
	}
	cmd.Env = append(os.Environ(), "LC_ALL=C", "__vmd_ports="+ports)
	switch {
	case o.path != "":
		cmd.Env = append(cmd.Env, "PATH="+o.path)
	case o.pathPrefix != "":
		cmd.Env = append(cmd.Env, "PATH="+o.pathPrefix+":"+os.Getenv("PATH"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	guestF.Close()
	conn := fileConn(t, hostF)
	if o.ports {
		conn = startRelay(t, conn.(*net.UnixConn), ports)
	}
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

// portRelay stands between a local guest bash and the Shell as QEMU's
// virtconsole does: it counts the bytes bash writes and serves that count
// as bytes_sent in a fake debugfs port file (a FIFO, so that every read
// gets a fresh count).
//
// The count must include every byte whose write() returned before bash
// opened the file, as the kernel's does. A write to the socket returns
// once the bytes are queued, maybe before the relay read them, so the
// count is what the relay has read plus what is still queued (SIOCINQ);
// reading and counting happen under mu, so no byte is in neither.
type portRelay struct {
	t       testing.TB
	mu      sync.Mutex
	read    int64 // bytes read from bash so far
	bash    *net.UnixConn
	raw     syscall.RawConn
	shell   net.Conn // the relay's end of the Shell's connection
	fifo    string
	dir     string
	closing atomic.Bool
	wg      sync.WaitGroup
}

// startRelay relays bashConn and returns the Shell's end of the relayed
// connection. dir becomes the fake virtio-ports directory.
func startRelay(t testing.TB, bashConn *net.UnixConn, dir string) net.Conn {
	t.Helper()
	raw, err := bashConn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketpair(t)
	shellConn, relayConn := fileConn(t, a), fileConn(t, b)
	r := &portRelay{t: t, bash: bashConn, raw: raw, shell: relayConn, fifo: filepath.Join(dir, "vport0p1"), dir: dir}
	if err := syscall.Mkfifo(r.fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// Another port, not the console: the prelude must pick the console.
	other := "name: org.example.port\nguest_connected: 0\nhost_connected: 1\noutvq_full: 0\nbytes_sent: 777\nbytes_received: 0\nbytes_discarded: 0\nis_console: no\nconsole_vtermno: 0\n"
	if err := os.WriteFile(filepath.Join(dir, "vport0p2"), []byte(other), 0o444); err != nil {
		t.Fatal(err)
	}
	r.wg.Add(3)
	go r.up()
	go r.down()
	go r.serve()
	t.Cleanup(r.stop)
	return shellConn
}

// up copies bash's output to the Shell, counting it.
func (r *portRelay) up() {
	defer r.wg.Done()
	defer r.closeConns()
	buf := make([]byte, 64<<10)
	for {
		var n int
		var rerr error
		err := r.raw.Read(func(fd uintptr) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			if rerr != nil {
				n = 0
			}
			r.read += int64(n)
			return rerr != syscall.EAGAIN
		})
		if err != nil || rerr != nil || n == 0 {
			return
		}
		if _, err := r.shell.Write(buf[:n]); err != nil {
			return
		}
	}
}

// down copies the Shell's input to bash.
func (r *portRelay) down() {
	defer r.wg.Done()
	defer r.closeConns()
	io.Copy(r.bash, r.shell)
}

func (r *portRelay) closeConns() {
	r.bash.Close()
	r.shell.Close()
}

// sent is the console counter: bytes bash has written.
func (r *portRelay) sent() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var queued int
	r.raw.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&queued))); e != 0 {
			r.t.Errorf("relay: SIOCINQ: %v", e)
		}
	})
	return r.read + int64(queued)
}

// serve answers each open of the port file with the port's state.
func (r *portRelay) serve() {
	defer r.wg.Done()
	next := filepath.Join(r.dir, "next-fifo")
	for !r.closing.Load() {
		f, err := os.OpenFile(r.fifo, os.O_WRONLY, 0) // waits for a reader
		if err != nil {
			r.t.Errorf("relay: %v", err)
			return
		}
		if r.closing.Load() {
			f.Close()
			return
		}
		n := r.sent()
		// Later readers get a new FIFO: this reader may still have the old
		// one open, and must not be served twice.
		if err := syscall.Mkfifo(next, 0o600); err != nil {
			r.t.Errorf("relay: %v", err)
		} else if err := os.Rename(next, r.fifo); err != nil {
			r.t.Errorf("relay: %v", err)
		}
		fmt.Fprintf(f, "name: \nguest_connected: 1\nhost_connected: 1\noutvq_full: 0\nbytes_sent: %d\nbytes_received: 0\nbytes_discarded: 0\nis_console: yes\nconsole_vtermno: 0\n", n)
		f.Close()
	}
}

// stop ends the relay. The FIFO server may be waiting for a reader: this
// holds one open until it has seen closing.
func (r *portRelay) stop() {
	r.closeConns()
	r.closing.Store(true)
	f, err := os.OpenFile(r.fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		r.t.Errorf("relay: releasing the FIFO server: %v", err)
	}
	r.wg.Wait()
	if f != nil {
		f.Close()
	}
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
	return startFake(t, bashHandler(t), FakeGuestOptions{PreBanner: "connecting to host...\n"})
}

// startFakeBashWrapped is startFakeBash in the fallback shape.
func startFakeBashWrapped(t testing.TB) net.Conn {
	return startFake(t, bashHandler(t), FakeGuestOptions{PreBanner: "connecting to host...\n", NoCounter: true})
}

func bashHandler(t testing.TB) GuestHandler {
	dir := t.TempDir()
	var n int
	var mu sync.Mutex
	return func(ctx context.Context, req GuestRequest) GuestReply {
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
	}
}

// oneByteConn returns at most one byte per Read.
type oneByteConn struct{ net.Conn }

func (c oneByteConn) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return c.Conn.Read(p)
}

// dropConn loses bytes of the guest-to-host stream, like QEMU's
// virtconsole when the host reads too slowly.
type dropConn struct {
	net.Conn
	mu      sync.Mutex
	pos     int64 // bytes received so far
	from, n int64 // drop n bytes from stream position from
}

// dropAt arms the next loss: n bytes, after more bytes have arrived.
func (c *dropConn) dropAt(after, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.from, c.n = c.pos+after, n
}

func (c *dropConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		start, end := c.pos, c.pos+int64(n)
		c.pos = end
		lo, hi := max(start, c.from), min(end, c.from+c.n)
		c.mu.Unlock()
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

// detachConn lets a Shell go without closing the connection, so that
// another Shell can take it over, as after a snapshot restore. The first
// Shell must be idle: bytes it already read are gone.
type detachConn struct {
	net.Conn
	detached atomic.Bool
}

func (c *detachConn) Read(p []byte) (int, error) {
	if c.detached.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

// Close detaches: it wakes a pending Read and leaves the connection open.
func (c *detachConn) Close() error {
	c.detached.Store(true)
	return c.Conn.SetReadDeadline(time.Now())
}

// tapConn records everything read, to look at the wire.
type tapConn struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.buf.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}
