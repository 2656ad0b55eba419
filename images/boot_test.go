package images

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	goimage "image"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/qmp"
)

const banner = "Spawning backdoor root shell..."

// testCacheDir is the default cache, so the tests reuse what `make images`
// built instead of building the systemd guest a second time.
func testCacheDir(t *testing.T) string {
	ucd, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("user cache dir: %v", err)
	}
	return filepath.Join(ucd, "vmdriver")
}

// needBuildHost skips (or fails under make test) unless this host can
// build and boot guests of kind: QEMU and the Debian tools, and root for
// the systemd and desktop kinds (debootstrap). The Debian mirror must be reachable
// unless the cache is warm.
func needBuildHost(t *testing.T, kind Kind) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and boots guests: not in -short mode")
	}
	testenv.NeedQEMU(t)
	tools := []string{"apt-get", "apt-cache", "dpkg-deb", "depmod", "xz"}
	if kind.rootfs() {
		tools = append(tools, "qemu-img", "debootstrap", "mkfs.ext4")
	}
	for _, tool := range tools {
		testenv.NeedCommand(t, tool)
	}
	if kind.rootfs() && !isRoot() {
		if testenv.Required() {
			t.Fatalf("building the %s guest needs root", kind)
		}
		t.Skipf("building the %s guest needs root", kind)
	}
}

// TestBuildAndBoot builds both guest kinds (twice: the second build must
// be a cache hit), then boots each start script the way the driver does
// and checks the backdoor, hostname, shared directory, network and
// power-off.
func TestBuildAndBoot(t *testing.T) {
	cache := testCacheDir(t)
	tests := []struct {
		kind      Kind
		name      string
		boot      time.Duration // TCG boot deadline
		shutdowns []string      // one boot per shutdown command
	}{
		{Minimal, "alpha", 60 * time.Second, []string{"poweroff", "poweroff -f", "reboot"}},
		{Systemd, "beta", 120 * time.Second, []string{"poweroff"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			needBuildHost(t, tt.kind)
			ctx, cancel := testContext(t, 25*time.Minute)
			defer cancel()
			out := t.TempDir()
			start := time.Now()
			paths, err := Build(ctx, Options{Kind: tt.kind, OutDir: out, Names: []string{tt.name, "other"}, CacheDir: cache, Logf: t.Logf})
			if err != nil {
				t.Fatalf("first build: %v", err)
			}
			t.Logf("first build: %.2fs", time.Since(start).Seconds())
			want := []string{filepath.Join(out, "run-"+tt.name+"-vm"), filepath.Join(out, "run-other-vm")}
			if strings.Join(paths, " ") != strings.Join(want, " ") {
				t.Fatalf("Build returned %q, want %q", paths, want)
			}
			for _, p := range paths {
				if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
					t.Fatalf("start script %s: %v, mode %v", p, err, fi.Mode())
				}
			}

			var logs logBuffer
			start = time.Now()
			if _, err := Build(ctx, Options{Kind: tt.kind, OutDir: out, Names: []string{tt.name}, CacheDir: cache, Logf: logs.Logf}); err != nil {
				t.Fatalf("second build: %v", err)
			}
			t.Logf("second build: %.3fs", time.Since(start).Seconds())
			if !strings.Contains(logs.String(), "cache hit") {
				t.Fatalf("second build was not a cache hit:\n%s", logs.String())
			}

			for i, sd := range tt.shutdowns {
				t.Run(strings.ReplaceAll(sd, " ", "_"), func(t *testing.T) {
					vm := startVM(t, paths[0], tt.name, tt.boot)
					if i == 0 {
						checkGuest(t, vm, tt.kind, tt.name)
					}
					vm.shutdown(t, sd, 60*time.Second)
				})
			}
		})
	}
}

// testContext bounds a test by its own limit and by go test's deadline.
func testContext(t *testing.T, limit time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := t.Deadline(); ok && time.Until(dl)-30*time.Second < limit {
		limit = time.Until(dl) - 30*time.Second
	}
	return context.WithTimeout(context.Background(), limit)
}

type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, format+"\n", args...)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// lockedBuffer collects QEMU's serial output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return tail(b.buf.String(), n)
}

// testVM is one booted guest, driven like the NixOS driver drives it.
type testVM struct {
	name    string
	ln      net.Listener // the shell socket, until waitBoot accepted
	start   time.Time    // QEMU started
	booted  time.Duration
	cmd     *exec.Cmd
	conn    net.Conn
	r       *bufio.Reader
	serial  *lockedBuffer
	shared  string
	qmp     string        // QEMU's QMP socket
	done    chan struct{} // closed when QEMU has exited
	waitErr error
}

// startVM runs a start script with the driver's flags and environment,
// listening on the shell socket before QEMU starts, and waits for the
// backdoor banner.
func startVM(t *testing.T, script, name string, bootTimeout time.Duration) *testVM {
	t.Helper()
	vm := launchVM(t, script, name, nil)
	vm.waitBoot(t, bootTimeout)
	return vm
}

// accelBackend decides the accelerator the way the driver does (TCG
// where /dev/kvm cannot boot a stock kernel), once for the package.
var accelBackend = sync.OnceValue(func() *qemu.Backend { return qemu.New() })

// launchVM starts QEMU through a start script the way the driver does,
// with env added to the environment (QEMU_VDE_SOCKET_<n>), without waiting
// for it: several machines boot in parallel, then waitBoot waits for each.
func launchVM(t *testing.T, script, name string, env []string) *testVM {
	t.Helper()
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	state, shared := filepath.Join(dir, "state"), filepath.Join(dir, "shared")
	for _, d := range []string{state, shared} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(shared, "from-host.txt"), []byte("hello from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// QEMU connects as soon as it starts; the connection waits in the
	// backlog until waitBoot accepts it.
	ln, err := net.Listen("unix", filepath.Join(dir, "shell"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })

	vm := &testVM{name: name, ln: ln, serial: &lockedBuffer{}, shared: shared, qmp: filepath.Join(dir, "qmp"), done: make(chan struct{})}
	accel, _, err := accelBackend().AccelArgs()
	if err != nil {
		t.Fatal(err)
	}
	vm.cmd = exec.Command(script, append([]string{
		"-qmp", "unix:" + vm.qmp + ",server=on,wait=off",
		"-chardev", "socket,id=shell,path=" + filepath.Join(dir, "shell"),
		"-device", "virtio-serial", "-device", "virtconsole,chardev=shell",
		"-serial", "stdio", "-no-reboot", "-nographic"}, accel...)...)
	vm.cmd.Dir = state
	vm.cmd.Env = append(os.Environ(), "TMPDIR="+state, "USE_TMPDIR=1", "SHARED_DIR="+shared,
		"NIX_DISK_IMAGE="+filepath.Join(state, name+".qcow2"))
	vm.cmd.Env = append(vm.cmd.Env, env...)
	vm.cmd.Stdout = vm.serial
	vm.cmd.Stderr = vm.serial
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	vm.start = time.Now()
	if err := vm.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", script, err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-vm.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-vm.done:
		case <-time.After(10 * time.Second):
			t.Errorf("QEMU (pid %d) did not die after SIGKILL", vm.cmd.Process.Pid)
		}
		if vm.conn != nil {
			vm.conn.Close()
		}
	})
	return vm
}

// waitBoot accepts the guest's shell connection, or learns that QEMU
// died first, and waits for the backdoor banner.
func (vm *testVM) waitBoot(t *testing.T, bootTimeout time.Duration) {
	t.Helper()
	defer vm.ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	acc := make(chan accepted, 1)
	vm.ln.(*net.UnixListener).SetDeadline(time.Now().Add(30 * time.Second))
	go func() {
		c, err := vm.ln.Accept()
		acc <- accepted{c, err}
	}()
	select {
	case a := <-acc:
		if a.err != nil {
			t.Fatalf("%s: QEMU did not connect to the shell socket: %v\n%s", vm.name, a.err, vm.serial.tail(30))
		}
		vm.conn = a.c
	case <-vm.done:
		vm.ln.Close()
		<-acc
		t.Fatalf("%s: QEMU exited before connecting: %v\n%s", vm.name, vm.waitErr, vm.serial.tail(30))
	}
	vm.r = bufio.NewReader(vm.conn)

	// Wait for the banner, however it is split across reads.
	vm.conn.SetReadDeadline(vm.start.Add(bootTimeout))
	var seen []byte
	for !bytes.Contains(seen, []byte(banner)) {
		b, err := vm.r.ReadByte()
		if err != nil {
			t.Fatalf("%s: no backdoor banner within %v: %v (got %q)\nserial:\n%s", vm.name, bootTimeout, err, seen, vm.serial.tail(40))
		}
		seen = append(seen, b)
	}
	vm.booted = time.Since(vm.start)
	t.Logf("%s: boot to banner: %.2fs", vm.name, vm.booted.Seconds())
	// The guest prints "\n" after the banner.
	if b, err := vm.r.ReadByte(); err != nil || b != '\n' {
		t.Fatalf("%s: after the banner: %q, %v", vm.name, b, err)
	}
}

// run executes cmd in the guest with the NixOS driver's framing and
// returns its stdout and exit status.
func (vm *testVM) run(t *testing.T, cmd string, timeout time.Duration) (string, int) {
	t.Helper()
	vm.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(vm.conn, "bash -c %s | (base64 -w 0; echo)\n", shellQuote(cmd)); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	line, err := vm.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read output of %q: %v\nserial:\n%s", cmd, err, vm.serial.tail(30))
	}
	out, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(line, "\n"))
	if err != nil {
		t.Fatalf("output of %q is not base64 (%q): %v", cmd, line, err)
	}
	if _, err := fmt.Fprintf(vm.conn, "echo ${PIPESTATUS[0]}\n"); err != nil {
		t.Fatalf("send status query: %v", err)
	}
	line, err = vm.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read status of %q: %v", cmd, err)
	}
	status, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("status of %q: %q", cmd, line)
	}
	return string(out), status
}

// succeed runs cmd and fails the test unless it exits 0.
func (vm *testVM) succeed(t *testing.T, cmd string) string {
	t.Helper()
	out, st := vm.run(t, cmd, 60*time.Second)
	if st != 0 {
		t.Fatalf("%q exited %d: %q\nserial:\n%s", cmd, st, out, vm.serial.tail(30))
	}
	return out
}

// shutdown types cmd into the backdoor (no reply expected) and waits for
// QEMU to exit.
func (vm *testVM) shutdown(t *testing.T, cmd string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	vm.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(vm.conn, "%s\n", cmd); err != nil {
		t.Fatalf("send %q: %v", cmd, err)
	}
	select {
	case <-vm.done:
		t.Logf("%q: QEMU exited after %.2fs (%v)", cmd, time.Since(start).Seconds(), vm.waitErr)
		var ee *exec.ExitError
		if vm.waitErr != nil && !errors.As(vm.waitErr, &ee) {
			t.Errorf("waiting for QEMU: %v", vm.waitErr)
		}
	case <-time.After(timeout):
		t.Fatalf("QEMU still running %v after %q\nserial:\n%s", timeout, cmd, vm.serial.tail(30))
	}
}

// checkGuest runs the driver-visible checks on a booted guest.
func checkGuest(t *testing.T, vm *testVM, kind Kind, name string) {
	t.Helper()
	if got := vm.succeed(t, "echo hello | base64"); got != "aGVsbG8K\n" {
		t.Errorf("echo hello | base64 = %q", got)
	}
	if out, st := vm.run(t, "echo to-stderr >&2; exit 3", 30*time.Second); st != 3 || out != "" {
		t.Errorf("exit 3: status %d, output %q", st, out)
	}
	if got := vm.succeed(t, "printf 'a\\nb\\000c'"); got != "a\nb\x00c" {
		t.Errorf("binary output = %q", got)
	}
	if got := vm.succeed(t, "hostname"); got != name+"\n" {
		t.Errorf("hostname = %q, want %q", got, name)
	}
	vm.succeed(t, "ping -c 1 -W 5 "+name+" >/dev/null")
	if got := vm.succeed(t, "cat /tmp/shared/from-host.txt"); got != "hello from the host\n" {
		t.Errorf("/tmp/shared/from-host.txt = %q", got)
	}
	vm.succeed(t, "echo written by the guest > /tmp/shared/from-guest.txt")
	if got, err := os.ReadFile(filepath.Join(vm.shared, "from-guest.txt")); err != nil || string(got) != "written by the guest\n" {
		t.Errorf("SHARED_DIR/from-guest.txt = %q, %v", got, err)
	}
	// 48 KiB of output (64 KiB of base64) in one command: less than a
	// unix socket buffer, so QEMU's virtconsole, which drops what the
	// socket does not take at once, cannot lose any of it whatever the
	// host load. Larger outputs are the driver's business.
	big := vm.succeed(t, "yes 0123456789abcdef | head -c 49152")
	if len(big) != 49152 || !strings.HasPrefix(big, "0123456789abcdef\n0123") {
		t.Errorf("48 KiB output came back as %d bytes", len(big))
	}
	vm.succeed(t, "test -c /dev/vcs1 && fold -w80 /dev/vcs1 >/dev/null")
	if kind == Minimal {
		checkConsoleScreen(t, vm)
	}
	checkIsolated(t, vm)
	if kind == Systemd {
		out, st := vm.run(t, "timeout 100 systemctl is-system-running --wait", 110*time.Second)
		if st != 0 || out != "running\n" {
			failed, _ := vm.run(t, "systemctl --failed --no-pager; systemctl list-jobs --no-pager", 30*time.Second)
			t.Errorf("systemctl is-system-running = %q (status %d)\n%s", out, st, failed)
		}
		if got := vm.succeed(t, "findmnt -no SOURCE,FSTYPE /"); got != "/dev/vda ext4\n" {
			t.Errorf("root file system: %q", got)
		}
		vm.succeed(t, "systemctl is-active backdoor.service systemd-networkd.service systemd-journald.service")
	}
}

// checkConsoleScreen checks that the VGA screen shows the guest's console:
// once the bochs DRM driver is up, a screenshot has the size of its
// frame buffer (not the firmware's 720x400 text mode) and is not blank.
func checkConsoleScreen(t *testing.T, vm *testVM) {
	t.Helper()
	poll(t, vm, "frame buffer console", "test -e /sys/class/graphics/fbcon && grep -q bochs /proc/fb")
	var w, h int
	size := vm.succeed(t, "cat /sys/class/graphics/fb0/virtual_size")
	if _, err := fmt.Sscanf(size, "%d,%d", &w, &h); err != nil {
		t.Fatalf("fb0 virtual_size %q: %v", size, err)
	}
	shot := vm.screendump(t)
	if got := shot.Bounds().Size(); got != goimage.Pt(w, h) {
		t.Errorf("screenshot of %v, want the frame buffer's %dx%d", got, w, h)
	}
	if _, sd, _ := screenStats(shot); sd < 5 {
		t.Errorf("the console screen is blank: %s", describe(shot))
	}
	t.Logf("console screen %v: %s", shot.Bounds().Size(), describe(shot))
}

// TestConcurrentBuilds starts two cold builds of the minimal image into a
// fresh cache at once: both must succeed with the same complete image and
// leave no build directories behind. Package files are linked from the
// shared test cache so only the build itself is repeated.
func TestConcurrentBuilds(t *testing.T) {
	needBuildHost(t, Minimal)
	ctx, cancel := testContext(t, 10*time.Minute)
	defer cancel()
	shared := testCacheDir(t)
	// Make sure the shared cache holds the packages (usually a cache hit).
	if _, err := Build(ctx, Options{Kind: Minimal, OutDir: t.TempDir(), Names: []string{"warm"}, CacheDir: shared}); err != nil {
		t.Fatalf("warm-up build: %v", err)
	}
	cache := t.TempDir()
	if err := os.MkdirAll(filepath.Join(cache, "debs"), 0o755); err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(shared, "debs", "*.deb"))
	for _, d := range debs {
		if err := os.Link(d, filepath.Join(cache, "debs", filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}

	const n = 2
	var wg sync.WaitGroup
	errs := make([]error, n)
	scripts := make([][]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scripts[i], errs[i] = Build(ctx, Options{Kind: Minimal, OutDir: t.TempDir(), Names: []string{fmt.Sprintf("m%d", i)}, CacheDir: cache})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(cache, "images"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || !strings.HasPrefix(names[0], "minimal-") {
		t.Fatalf("cache holds %q, want exactly one minimal image and no build directories", names)
	}
	for _, f := range []string{vmlinuxFile, initrdFile, manifestFile} {
		if _, err := os.Stat(filepath.Join(cache, "images", names[0], f)); err != nil {
			t.Errorf("image lacks %s: %v", f, err)
		}
	}
	for i, s := range scripts {
		data, err := os.ReadFile(s[0])
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), filepath.Join(cache, "images", names[0], vmlinuxFile)) {
			t.Errorf("script %d does not boot the published image", i)
		}
	}
}

// monitor runs an HMP command through QEMU's QMP socket and returns its
// output: what QEMU itself reports.
func (vm *testVM) monitor(t *testing.T, cmd string) string {
	t.Helper()
	var out string
	vm.qmpExecute(t, "human-monitor-command", map[string]string{"command-line": cmd}, &out)
	return out
}

// qmpExecute runs one QMP command, connecting as soon as QEMU listens:
// right after launchVM, before the guest runs anything, it waits for
// the socket (for at most 30 s, or until QEMU exits).
func (vm *testVM) qmpExecute(t *testing.T, command string, args, result any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var c *qmp.Client
	for {
		var err error
		if c, err = qmp.Dial(ctx, "unix", vm.qmp); err == nil {
			break
		}
		select {
		case <-tick.C:
		case <-vm.done:
			t.Fatalf("%s: QEMU exited before its QMP socket answered: %v\n%s", vm.name, vm.waitErr, vm.serial.tail(30))
		case <-ctx.Done():
			t.Fatalf("%s: QMP: %v", vm.name, err)
		}
	}
	defer c.Close()
	if err := c.Execute(ctx, command, args, result); err != nil {
		t.Fatalf("%s: QMP %s: %v", vm.name, command, err)
	}
}

// checkIsolated checks, from inside the guest, what keeps it inside the
// test: eth0 has QEMU's fixed user-mode address (for forwarded ports) but
// no route leads off the machine's own networks, and no name server is
// configured. The start script's restrict=on, QEMU's side, is checked by
// the driver's tests through `info network` (links()).
func checkIsolated(t *testing.T, vm *testVM) {
	t.Helper()
	if got := vm.succeed(t, "ip -4 -o addr show dev eth0 | awk '{print $4}'"); got != "10.0.2.15/24\n" {
		t.Errorf("%s: eth0 has %q, want 10.0.2.15/24", vm.name, got)
	}
	if got := vm.succeed(t, "ip -4 route show default; ip -6 route show default 2>/dev/null; true"); got != "" {
		t.Errorf("%s: the guest has a default route:\n%s", vm.name, got)
	}
	if got := vm.succeed(t, "grep -c '^nameserver' /etc/resolv.conf || true"); got != "0\n" {
		t.Errorf("%s: /etc/resolv.conf names a server:\n%s", vm.name, vm.succeed(t, "cat /etc/resolv.conf"))
	}
}
