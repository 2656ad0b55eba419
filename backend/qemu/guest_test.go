package qemu

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// bootGuest starts the prebuilt minimal guest and waits for its shell.
func bootGuest(t *testing.T) (*Instance, *backdoor.Shell, *syncBuffer) {
	t.Helper()
	return bootGuestSpec(t, backend.Spec{})
}

// bootGuestSpec is bootGuest with spec's settings (the start script and
// console are filled in).
func bootGuestSpec(t *testing.T, spec backend.Spec) (*Instance, *backdoor.Shell, *syncBuffer) {
	t.Helper()
	needQEMU(t)
	spec.StartScript = testenv.StartScript(t, "minimal")
	console := newSyncBuffer()
	spec.Console = console
	i := startSpec(t, spec)
	ctx, cancel := context.WithTimeout(context.Background(), New(WithAccel(AccelTCG)).BootTimeout())
	defer cancel()
	began := time.Now()
	sh, err := i.Shell(ctx)
	if err != nil {
		t.Fatalf("Shell: %v", err)
	}
	t.Logf("guest shell ready %s after Start returned", time.Since(began).Round(time.Millisecond))
	return i, sh, console
}

func TestRealGuest(t *testing.T) {
	i, sh, console := bootGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	run := func(cmd string) backdoor.Result {
		t.Helper()
		res, err := sh.Run(ctx, cmd, backdoor.RunOptions{})
		if err != nil {
			t.Fatalf("Run(%q): %v", cmd, err)
		}
		return res
	}

	if res := run("echo hello"); res.Status != 0 || string(res.Output) != "hello\n" {
		t.Errorf("echo hello = %d %q", res.Status, res.Output)
	}
	if res := run("uname -r"); res.Status != 0 || len(bytes.TrimSpace(res.Output)) == 0 {
		t.Errorf("uname -r = %d %q", res.Status, res.Output)
	} else {
		t.Logf("guest kernel %s", bytes.TrimSpace(res.Output))
	}
	for _, st := range []int{0, 1, 3, 42, 255} {
		if res := run(fmt.Sprintf("exit %d", st)); res.Status != st {
			t.Errorf("exit %d gave status %d", st, res.Status)
		}
	}

	// A later Shell call returns the same, live shell.
	if sh2, err := i.Shell(ctx); err != nil || sh2 != sh {
		t.Errorf("second Shell = %p, %v; want %p", sh2, err, sh)
	}

	// 4 MiB of random bytes, byte-exact: far more than any socket buffer
	// holds by default, so a channel that drops what the host does not
	// read at once loses some of it.
	const size = 4 << 20
	if res := run(fmt.Sprintf("head -c %d /dev/urandom > /tmp/blob", size)); res.Status != 0 {
		t.Fatalf("making the blob: status %d", res.Status)
	}
	began := time.Now()
	blob := run("cat /tmp/blob").Output
	t.Logf("4 MiB of output in %s", time.Since(began).Round(time.Millisecond))
	sum := sha256.Sum256(blob)
	guestSum := strings.Fields(string(run("sha256sum /tmp/blob").Output))
	if len(blob) != size || len(guestSum) == 0 || guestSum[0] != hex.EncodeToString(sum[:]) {
		t.Errorf("4 MiB blob: got %d bytes with sha256 %x, guest says %q", len(blob), sum, guestSum)
	}

	// stderr goes to the serial console, which reaches Spec.Console.
	run("echo console-marker-$((6*7)) >&2")
	if err := console.waitFor(ctx, "console-marker-42"); err != nil {
		t.Error(err)
	}
	if tail := strings.Join(i.ConsoleTail(5), "\n"); !strings.Contains(tail, "console-marker-42") {
		t.Errorf("ConsoleTail lacks the marker: %q", tail)
	}
}

func TestRealGuestKilledDuringCommand(t *testing.T) {
	i, sh, console := bootGuest(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type result struct {
		res backdoor.Result
		err error
	}
	resc := make(chan result, 1)
	go func() {
		// The marker on stderr reaches the serial console once the
		// command runs in the guest.
		r, err := sh.Run(ctx, "echo sleeper-$((40+2)) >&2; sleep 50", backdoor.RunOptions{})
		resc <- result{r, err}
	}()
	if err := console.waitFor(ctx, "sleeper-42"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(i.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	timer := time.NewTimer(2 * time.Second)
	defer timer.Stop()
	var r result
	select {
	case r = <-resc:
	case <-timer.C:
		t.Fatal("Run still waiting 2 s after QEMU was SIGKILLed")
	}
	t.Logf("Run failed %s after SIGKILL: %v", time.Since(killed).Round(time.Millisecond), r.err)
	if !errors.Is(r.err, backend.ErrExited) {
		t.Errorf("Run error does not wrap backend.ErrExited")
	}
	if want := fmt.Sprintf("QEMU (pid %d)", i.PID()); r.err == nil || !strings.Contains(r.err.Error(), want) {
		t.Errorf("Run error does not name %q", want)
	}
	if _, err := i.Shell(ctx); !errors.Is(err, backend.ErrExited) {
		t.Errorf("Shell after the kill = %v, want ErrExited", err)
	}
}

// restarter is backdoor.Shell's ExpectRestart, which is being added to
// package backdoor; the test that needs it skips while it is missing.
type restarter interface{ ExpectRestart() }

// TestRealGuestReboot checks that a guest reset with AllowReboot keeps
// QEMU and the shell channel, and that Shell then returns the same shell
// once the rebooted guest offers it again: commands after the reboot run
// in the new boot.
func TestRealGuestReboot(t *testing.T) {
	i, sh, console := bootGuestSpec(t, backend.Spec{AllowReboot: true})
	ctx, cancel := context.WithTimeout(context.Background(), New(WithAccel(AccelTCG)).BootTimeout()+time.Minute)
	defer cancel()
	bootID := func(sh *backdoor.Shell) string {
		t.Helper()
		res, err := sh.Run(ctx, "cat /proc/sys/kernel/random/boot_id", backdoor.RunOptions{})
		if err != nil || res.Status != 0 {
			t.Fatalf("reading the boot id: status %d, %v", res.Status, err)
		}
		return strings.TrimSpace(string(res.Output))
	}
	before := bootID(sh)

	r, ok := any(sh).(restarter)
	if ok {
		// What Machine does before it reboots a guest.
		r.ExpectRestart()
	}
	if _, err := i.ControlCommand(ctx, "system_reset", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := i.WaitEvent(ctx, func(e backend.Event) bool { return e.Name == "RESET" }); err != nil {
		t.Fatal(err)
	}
	if err := i.ExitErr(); err != nil {
		t.Fatalf("QEMU exited on a guest reset with AllowReboot: %v", err)
	}
	select {
	case <-sh.Done():
		t.Fatalf("the shell channel ended on a guest reset: %v", sh.Err())
	default:
	}
	if !ok {
		t.Skip("backdoor.Shell has no ExpectRestart yet; the backend side passed, the wait for the new banner is untested")
	}
	began := time.Now()
	sh2, err := i.Shell(ctx)
	if err != nil {
		t.Fatalf("Shell after the reboot: %v", err)
	}
	t.Logf("shell ready again %s after the reset", time.Since(began).Round(time.Millisecond))
	if sh2 != sh {
		t.Errorf("Shell after the reboot returned %p, want the same shell %p", sh2, sh)
	}
	if after := bootID(sh2); after == before {
		t.Errorf("boot id %s unchanged: Shell returned before the guest rebooted", after)
	}
	if n := strings.Count(console.String(), "Linux version"); n < 2 {
		t.Errorf("the console shows %d kernel boots, want 2", n)
	}
}
