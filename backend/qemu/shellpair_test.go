package qemu

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// noNetAdminEnv tells TestShellPair it runs without CAP_NET_ADMIN, so the
// buffer must have come from the SO_SNDBUF fallback.
const noNetAdminEnv = "VMDRIVER_QEMU_TEST_NO_NET_ADMIN"

func TestShellPair(t *testing.T) {
	p, err := newShellPair()
	if err != nil {
		t.Fatal(err)
	}
	defer p.ours.Close()
	defer p.theirs.Close()
	t.Log(p.describe())

	// QEMU's end must not leak into other children; ExtraFiles clears
	// the flag on the spawned child's copy only.
	flags, _, e := syscall.Syscall(syscall.SYS_FCNTL, p.theirs.Fd(), syscall.F_GETFD, 0)
	if e != 0 {
		t.Fatal(e)
	}
	if flags&syscall.FD_CLOEXEC == 0 {
		t.Errorf("QEMU's end is not close-on-exec")
	}

	b, err := os.ReadFile("/proc/sys/net/core/wmem_max")
	if err != nil {
		t.Fatal(err)
	}
	wmemMax, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The kernel doubles what it is asked for.
	want := 2 * shellBufSize
	if !p.forced {
		want = 2 * min(shellBufSize, wmemMax)
	}
	if p.sndbuf != want {
		t.Errorf("QEMU's send buffer = %d, want %d (forced %v, wmem_max %d)", p.sndbuf, want, p.forced, wmemMax)
	}
	if os.Getenv(noNetAdminEnv) != "" && p.forced {
		t.Errorf("SO_SNDBUFFORCE worked without CAP_NET_ADMIN")
	}

	// Bytes pass both ways.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	if err := p.ours.SetDeadline(dl); err != nil {
		t.Fatal(err)
	}
	msg := []byte("from the guest\n")
	if _, err := p.theirs.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(p.ours, got); err != nil || !bytes.Equal(got, msg) {
		t.Errorf("read %q, %v; want %q", got, err, msg)
	}
	if _, err := p.ours.Write([]byte("to the guest\n")); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len("to the guest\n"))
	if _, err := io.ReadFull(p.theirs, got); err != nil || string(got) != "to the guest\n" {
		t.Errorf("read %q, %v", got, err)
	}
	// Once QEMU's end is closed, ours reads EOF.
	p.theirs.Close()
	if n, err := p.ours.Read(got); err != io.EOF {
		t.Errorf("read after the peer closed = %d, %v; want EOF", n, err)
	}
}

// TestShellPairWithoutNetAdmin runs TestShellPair without CAP_NET_ADMIN
// (as a non-root driver would), where SO_SNDBUFFORCE fails and the
// fallback applies.
func TestShellPairWithoutNetAdmin(t *testing.T) {
	if os.Getenv(noNetAdminEnv) != "" {
		t.Skip("already without CAP_NET_ADMIN")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: TestShellPair already exercises the fallback")
	}
	setpriv := testenv.NeedCommand(t, "setpriv")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, setpriv, "--inh-caps=-net_admin", "--bounding-set=-net_admin",
		os.Args[0], "-test.run=^TestShellPair$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), noNetAdminEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("TestShellPair without CAP_NET_ADMIN: %v", err)
	}
	if !strings.Contains(string(out), "capped by net.core.wmem_max") {
		t.Errorf("the child did not use the SO_SNDBUF fallback")
	}
}
