package integration

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/machine"
)

// TestShutdownAndSecondStart powers each guest off cleanly, starts it
// again (a new QEMU, a new boot), and halts it.
func TestShutdownAndSecondStart(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, k := range guestKinds {
		t.Run(k.name, func(t *testing.T) {
			m := boot(t, k)
			ctx := testCtx(t, 2*bootTimeout+3*time.Minute)
			firstID := bootID(ctx, t, m)
			firstPID := m.PID()
			if _, err := m.Succeed(ctx, "echo vmd-first-boot >&2"); err != nil {
				t.Fatal(err)
			}
			waitConsoleLog(ctx, t, m, "vmd-first-boot")

			if err := m.Shutdown(ctx, machine.Timeout(2*time.Minute)); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if m.Booted() || m.Connected() || m.IsUp() || m.PID() != 0 || m.Instance() != nil {
				t.Errorf("after Shutdown: Booted=%v Connected=%v IsUp=%v PID=%d, want false/0", m.Booted(), m.Connected(), m.IsUp(), m.PID())
			}
			assertGone(t, firstPID)
			// Shutdown of a machine that is off does nothing.
			if err := m.Shutdown(ctx); err != nil {
				t.Errorf("second Shutdown: %v", err)
			}

			if err := m.Start(ctx); err != nil {
				t.Fatalf("second Start: %v", err)
			}
			secondPID := m.PID()
			if secondPID == 0 || secondPID == firstPID {
				t.Errorf("second start has pid %d (first %d)", secondPID, firstPID)
			}
			if strings.Contains(m.ConsoleLog(), "vmd-first-boot") {
				t.Error("ConsoleLog still holds the first boot's lines after the second start")
			}
			secondID := bootID(ctx, t, m)
			if secondID == firstID {
				t.Errorf("the second start has the first boot's id %s", firstID)
			}
			if out, err := m.Succeed(ctx, "hostname"); err != nil || out != k.name+"\n" {
				t.Errorf("hostname after the second start = %q, %v", out, err)
			}
			waitConsoleLog(ctx, t, m, "Linux version")

			if err := m.Halt(ctx); err != nil {
				t.Fatalf("Halt: %v", err)
			}
			if m.Booted() || m.PID() != 0 {
				t.Errorf("after Halt: Booted=%v PID=%d", m.Booted(), m.PID())
			}
			assertGone(t, secondPID)
		})
	}
}

// TestCrash: a command whose background child holds its stdout fails at
// its deadline saying so; Crash ends QEMU at once; the next command
// boots the machine afresh, as documented.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	m := boot(t, minimalGuest)
	ctx := testCtx(t, bootTimeout+2*time.Minute)
	firstID := bootID(ctx, t, m)

	_, err := m.Execute(ctx, "sleep 30 &", machine.Timeout(3*time.Second))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("Execute(sleep 30 &) = %v, want a timeout", err)
	}
	mustContain(t, err, "background process", "stdout", "sleep 30 &")

	pid := m.PID()
	if err := m.Crash(ctx); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	assertGone(t, pid)
	if m.Booted() || m.PID() != 0 {
		t.Errorf("after Crash: Booted=%v PID=%d", m.Booted(), m.PID())
	}
	if err := m.Crash(ctx); err != nil {
		t.Errorf("Crash of a machine that is off: %v", err)
	}

	// The next command starts the machine again.
	secondID := bootID(ctx, t, m)
	if secondID == firstID {
		t.Errorf("after Crash the guest kept its boot id %s", firstID)
	}
	if p := m.PID(); p == 0 || p == pid {
		t.Errorf("after Crash and a command: pid %d (crashed one %d)", p, pid)
	}
}

// TestKilledDuringCommand: QEMU killed by SIGKILL while a command runs.
// The command fails within 2 s (the one timed check, demanded by the
// issue) naming the dead process; later calls fail at once, until an
// explicit Start replaces the machine.
func TestKilledDuringCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	m := boot(t, minimalGuest)
	ctx := testCtx(t, bootTimeout+2*time.Minute)
	pid := m.PID()

	type result struct {
		r   machine.ExecResult
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		r, err := m.Execute(ctx, `echo "vmd-sleeping-$((6*7))" >&2; sleep 60`)
		done <- result{r, err, time.Now()}
	}()
	if err := m.WaitForConsoleText(ctx, "vmd-sleeping-42", machine.Timeout(time.Minute)); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the command never returned after QEMU was killed")
	}
	if took := res.at.Sub(killed); took > 2*time.Second {
		t.Errorf("the command failed %v after QEMU was killed, want within 2s", took)
	} else {
		t.Logf("the command failed %v after QEMU was killed", took.Round(time.Millisecond))
	}
	if !errors.Is(res.err, backend.ErrExited) {
		t.Errorf("Execute = %+v, %v; want an error wrapping backend.ErrExited", res.r, res.err)
	}
	mustContain(t, res.err, fmt.Sprintf("pid %d", pid), "signal 9")
	t.Logf("error: %v", res.err)

	// Later calls report the dead machine at once instead of starting a
	// new one behind the caller's back.
	_, err := m.Succeed(ctx, "true")
	if !errors.Is(err, backend.ErrExited) {
		t.Errorf("Succeed after the kill = %v, want backend.ErrExited", err)
	}
	mustContain(t, err, fmt.Sprintf("pid %d", pid))
	if _, err := m.SendMonitorCommand(ctx, "info status"); !errors.Is(err, backend.ErrExited) {
		t.Errorf("SendMonitorCommand after the kill = %v, want backend.ErrExited", err)
	}
	if err := m.WaitForConsoleText(ctx, "never printed", machine.Timeout(time.Minute)); !errors.Is(err, backend.ErrExited) || errors.Is(err, machine.ErrTimeout) {
		t.Errorf("WaitForConsoleText after the kill = %v, want backend.ErrExited at once", err)
	}
	if m.Booted() {
		t.Error("Booted() is true after QEMU was killed")
	}
	assertGone(t, pid)

	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start after the kill: %v", err)
	}
	if out, err := m.Succeed(ctx, "echo back"); err != nil || out != "back\n" {
		t.Errorf("after a new Start: %q, %v", out, err)
	}
}

// killShell kills the backdoor's root shell (the bash reading
// /dev/hvc0) from inside a command: the outermost process on the way up
// from the command whose command line is that bash's (the subshells
// between share it). "hv[c]0" keeps the pattern from matching the
// command itself.
const killShell = `p=$$ top=
while [ "$p" -gt 1 ]; do
	if tr '\0' ' ' < /proc/$p/cmdline | grep -q -- '--norc /dev/hv[c]0'; then top=$p; fi
	p=$(awk '{print $4}' /proc/$p/stat)
done
echo "killing the backdoor shell, pid $top" >&2
kill -9 "$top"`

// TestShellDies kills the guest's root shell. Both guests start a new one
// (the minimal guest's init loop, the systemd guest's backdoor.service
// with Restart=always), which the machine picks up from its banner: the
// command in flight fails with backdoor.ErrRestarted, later ones run in
// the same boot and the same QEMU.
func TestShellDies(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, k := range guestKinds {
		t.Run(k.name, func(t *testing.T) {
			m := boot(t, k)
			ctx := testCtx(t, bootTimeout+3*time.Minute)
			id := bootID(ctx, t, m)
			pid := m.PID()

			_, err := m.Execute(ctx, killShell, machine.Timeout(time.Minute))
			if !errors.Is(err, backdoor.ErrRestarted) {
				t.Errorf("the command that killed the shell = %v, want backdoor.ErrRestarted", err)
			}
			if got := bootID(ctx, t, m); got != id {
				t.Errorf("boot id changed from %s to %s: the guest rebooted", id, got)
			}
			if m.PID() != pid {
				t.Errorf("QEMU changed from pid %d to %d", pid, m.PID())
			}
			if k.systemd {
				// The service manager restarted the shell: it is the
				// same unit, active again.
				if out, err := m.Succeed(ctx, "systemctl show -p NRestarts --value backdoor.service"); err != nil || out != "1\n" {
					t.Errorf("backdoor.service restarts = %q, %v; want 1", out, err)
				}
			}
			// Killed again: a unit's start limit does not stop it.
			for range 2 {
				if _, err := m.Execute(ctx, killShell, machine.Timeout(time.Minute)); !errors.Is(err, backdoor.ErrRestarted) {
					t.Fatalf("killing the shell again = %v, want backdoor.ErrRestarted", err)
				}
			}
			if out, err := m.Succeed(ctx, "echo still-here"); err != nil || out != "still-here\n" {
				t.Errorf("after three restarts: %q, %v", out, err)
			}
		})
	}
}
