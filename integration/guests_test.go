package integration

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/machine"
)

// TestGuests boots one machine of each kind and runs every check that
// leaves the machine usable on it, as subtests in order. The two guests
// run side by side (one QEMU per core); everything else in this package
// boots machines of its own.
func TestGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, k := range guestKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			m := boot(t, k)
			checks := []struct {
				name string
				fn   func(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine)
				only func(guestKind) bool
			}{
				{"Boot", checkBoot, nil},
				{"ExecuteOutput", checkExecuteOutput, nil},
				{"SucceedFail", checkSucceedFail, nil},
				{"LongCommand", checkLongCommand, nil},
				{"GuestTimeout", checkGuestTimeout, nil},
				{"LargeOutput", checkLargeOutput, nil},
				{"WaitUntil", checkWaitUntil, nil},
				{"WaitForFile", checkWaitForFile, nil},
				{"Ports", checkPorts, nil},
				{"Isolation", checkIsolation, nil},
				{"UnixSockets", checkUnixSockets, isSystemd},
				{"Units", checkUnits, isSystemd},
				{"NoSystemd", checkNoSystemd, isMinimal},
				{"CopyFromHost", checkCopyFromHost, nil},
				{"CopyFromHostViaShell", checkCopyFromHostViaShell, nil},
				{"CopyFromMachine", checkCopyFromMachine, nil},
				{"Screenshot", checkScreenshot, nil},
				{"Console", checkConsole, nil},
				{"Monitor", checkMonitor, nil},
				{"TTY", checkTTY, nil},
				{"Keys", checkKeys, nil},
			}
			for _, c := range checks {
				if c.only != nil && !c.only(k) {
					continue
				}
				ok := t.Run(c.name, func(t *testing.T) {
					c.fn(testCtx(t, 3*time.Minute), t, k, m)
				})
				if !ok && c.name == "Boot" {
					t.Fatal("the guest is not usable; skipping the other checks")
				}
			}
		})
	}
}

func isSystemd(k guestKind) bool { return k.systemd }
func isMinimal(k guestKind) bool { return !k.systemd }

// checkBoot: the machine is up, is the guest we asked for, and has
// logged its kernel's boot.
func checkBoot(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	if !m.IsUp() || !m.Booted() || !m.Connected() {
		t.Fatalf("IsUp=%v Booted=%v Connected=%v after the first command, want all true", m.IsUp(), m.Booted(), m.Connected())
	}
	if m.PID() <= 0 {
		t.Errorf("PID() = %d for a running machine", m.PID())
	}
	out, err := m.Succeed(ctx, "hostname")
	if err != nil {
		t.Fatal(err)
	}
	if want := k.name + "\n"; out != want {
		t.Errorf("hostname = %q, want %q", out, want)
	}
	if !strings.Contains(m.ConsoleLog(), "Linux version") {
		t.Errorf("console log lacks the kernel's \"Linux version\" line; it is:\n%s", m.ConsoleLog())
	}
}

// execCases are commands with their exact exit status and stdout.
var execCases = []struct {
	name, cmd string
	status    int
	out       string
}{
	{"true", "true", 0, ""},
	{"no trailing newline", "printf abc", 0, "abc"},
	{"lines", `printf 'a\nb\n'`, 0, "a\nb\n"},
	{"only newlines", `printf '\n\n'`, 0, "\n\n"},
	{"NUL byte", `printf 'a\0b'`, 0, "a\x00b"},
	{"UTF-8", `printf 'caf\303\251 \342\202\254'`, 0, "café €"},
	{"invalid UTF-8 replaced", `printf '\377x'`, 0, "\uFFFDx"},
	{"quotes", "x='it'\"'\"'s \"q\" $HOME \\ '; printf '%s' \"$x\"", 0, `it's "q" $HOME \ `},
	{"arithmetic", `echo "$((6*7))"`, 0, "42\n"},
	{"loop", "for i in 1 2 3; do echo $i; done", 0, "1\n2\n3\n"},
	{"stdin is empty", "cat", 0, ""},
	{"stderr not in output", "echo to-stderr >&2; printf out", 0, "out"},
	{"exit 1", "exit 1", 1, ""},
	{"exit 3", "exit 3", 3, ""},
	{"exit 255", "exit 255", 255, ""},
	{"output then exit 3", "echo partial; exit 3", 3, "partial\n"},
	{"set -e", "echo before; false; echo not-reached", 1, "before\n"},
	{"set -o pipefail", "false | true", 1, ""},
	{"set -u", `echo "$NO_SUCH_VARIABLE"`, 1, ""},
	{"command not found", "no-such-command-vmd", 127, ""},
	{"multi-line command", "echo one\necho two", 0, "one\ntwo\n"},
}

// checkExecuteOutput: Execute returns the exact status and stdout.
func checkExecuteOutput(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	for _, tc := range execCases {
		r, err := m.Execute(ctx, tc.cmd)
		if err != nil {
			t.Errorf("%s: Execute(%q): %v", tc.name, tc.cmd, err)
			continue
		}
		if r.Status != tc.status || r.Output != tc.out {
			t.Errorf("%s: Execute(%q) = (%d, %q), want (%d, %q)", tc.name, tc.cmd, r.Status, r.Output, tc.status, tc.out)
		}
	}
}

// checkSucceedFail: Succeed and Fail (which frame commands without a
// guest-side timeout, unlike Execute) give the same exact results, and
// a status against expectations is a *CommandError carrying it.
func checkSucceedFail(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	for _, tc := range execCases {
		if tc.status == 0 {
			out, err := m.Succeed(ctx, tc.cmd)
			if err != nil || out != tc.out {
				t.Errorf("%s: Succeed(%q) = %q, %v; want %q, nil", tc.name, tc.cmd, out, err, tc.out)
			}
			out, err = m.Fail(ctx, tc.cmd)
			var ce *machine.CommandError
			if !errors.As(err, &ce) || !errors.Is(err, machine.ErrCheckFailed) || !ce.WantFailure || ce.Status != 0 || out != tc.out {
				t.Errorf("%s: Fail(%q) = %q, %v; want %q and a *CommandError (WantFailure, status 0)", tc.name, tc.cmd, out, err, tc.out)
			}
			continue
		}
		out, err := m.Fail(ctx, tc.cmd)
		if err != nil || out != tc.out {
			t.Errorf("%s: Fail(%q) = %q, %v; want %q, nil", tc.name, tc.cmd, out, err, tc.out)
		}
		out, err = m.Succeed(ctx, tc.cmd)
		var ce *machine.CommandError
		if !errors.As(err, &ce) || !errors.Is(err, machine.ErrCheckFailed) {
			t.Errorf("%s: Succeed(%q) error = %v, want a *CommandError", tc.name, tc.cmd, err)
			continue
		}
		if ce.Status != tc.status || ce.Output != tc.out || out != tc.out || ce.WantFailure || ce.Command != tc.cmd || ce.Machine != m.Name() {
			t.Errorf("%s: Succeed(%q) gave %+v and output %q; want status %d, output %q", tc.name, tc.cmd, *ce, out, tc.status, tc.out)
		}
		mustContain(t, err, fmt.Sprintf("failed (exit code %d)", tc.status))
	}
}

// checkLongCommand: a command line longer than one argv string may be
// (128 KiB) runs intact with and without a guest-side timeout.
func checkLongCommand(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	const n = 200 << 10
	cmd := "printf %s " + strings.Repeat("ab", n/2) + " | wc -c"
	r, err := m.Execute(ctx, cmd)
	if err != nil || r.Status != 0 || strings.TrimSpace(r.Output) != fmt.Sprint(n) {
		t.Errorf("Execute(printf of %d bytes | wc -c) = (%d, %q), %v; want (0, %d)", n, r.Status, r.Output, err, n)
	}
	out, err := m.Succeed(ctx, cmd)
	if err != nil || strings.TrimSpace(out) != fmt.Sprint(n) {
		t.Errorf("Succeed(printf of %d bytes | wc -c) = %q, %v; want %d", n, out, err, n)
	}
}

// checkGuestTimeout: the guest's `timeout` ends a command that runs too
// long with the status of the guest's timeout implementation, whether
// the command is one program or a compound one (whose children must end
// too), and the shell stays usable.
func checkGuestTimeout(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	r, err := m.Execute(ctx, "sleep 30", machine.Timeout(2*time.Second))
	if err != nil || r.Status != k.timeoutStatus || r.Output != "" {
		t.Errorf("Execute(sleep 30, Timeout 2s) = (%d, %q), %v; want (%d, \"\")", r.Status, r.Output, err, k.timeoutStatus)
	}
	out, err := m.Succeed(ctx, "sleep 30", machine.Timeout(2*time.Second))
	var ce *machine.CommandError
	if !errors.As(err, &ce) || ce.Status != k.timeoutStatus || out != "" {
		t.Errorf("Succeed(sleep 30, Timeout 2s) = %q, %v; want a *CommandError with status %d", out, err, k.timeoutStatus)
	}
	// The sleep is a child of the command's shell here. (If it
	// outlives the timeout, the shell is busy until it ends: 10 s.)
	r, err = m.Execute(ctx, "echo started; sleep 10; echo not-reached", machine.Timeout(2*time.Second))
	if err != nil || r.Status != k.timeoutStatus || r.Output != "started\n" {
		t.Errorf("Execute(echo started; sleep 10; ..., Timeout 2s) = (%d, %q), %v; want (%d, %q)", r.Status, r.Output, err, k.timeoutStatus, "started\n")
	}
	if out, err := m.Succeed(ctx, "echo alive"); err != nil || out != "alive\n" {
		t.Errorf("after the timeouts: Succeed(echo alive) = %q, %v", out, err)
	}
}

// checkLargeOutput: 4 MiB of output arrive byte-exact through both
// command framings (checked against the guest's own sha256sum).
func checkLargeOutput(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	const size = 4 << 20
	// Random bytes folded into 7 bits: valid UTF-8 (so Execute returns
	// them unchanged), with NULs, newlines, carriage returns and the
	// protocol's record separator \036 among them.
	gen := fmt.Sprintf("head -c %d /dev/urandom | tr '\\200-\\377' '\\000-\\177' > /tmp/blob && wc -c < /tmp/blob && sha256sum /tmp/blob", size)
	out, err := m.Succeed(ctx, gen)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) < 2 || f[0] != fmt.Sprint(size) {
		t.Fatalf("making the blob: %q", out)
	}
	guestSum := f[1]
	r, err := m.Execute(ctx, "cat /tmp/blob")
	if err != nil || r.Status != 0 {
		t.Fatalf("Execute(cat /tmp/blob) = status %d, %v", r.Status, err)
	}
	out, err = m.Succeed(ctx, "cat /tmp/blob")
	if err != nil {
		t.Fatalf("Succeed(cat /tmp/blob): %v", err)
	}
	for name, got := range map[string]string{"Execute": r.Output, "Succeed": out} {
		sum := sha256.Sum256([]byte(got))
		if len(got) != size || hex.EncodeToString(sum[:]) != guestSum {
			t.Errorf("%s: got %d bytes with sha256 %x; the guest has %d bytes with sha256 %s", name, len(got), sum, size, guestSum)
		}
	}
	if _, err := m.Succeed(ctx, "rm /tmp/blob"); err != nil {
		t.Error(err)
	}
}

// checkWaitUntil: WaitUntilSucceeds/WaitUntilFails return once the
// condition holds, with the output of the attempt that ended the wait,
// and a wait that never ends says what it saw last.
func checkWaitUntil(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	if _, err := m.Succeed(ctx, "rm -f /tmp/later; (sleep 2; echo here > /tmp/later) >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	out, err := m.WaitUntilSucceeds(ctx, "cat /tmp/later", machine.Timeout(time.Minute))
	if err != nil || out != "here\n" {
		t.Errorf("WaitUntilSucceeds(cat /tmp/later) = %q, %v; want \"here\\n\"", out, err)
	}

	if _, err := m.Succeed(ctx, "touch /tmp/going; (sleep 2; rm /tmp/going) >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	out, err = m.WaitUntilFails(ctx, "test -e /tmp/going && echo still-there", machine.Timeout(time.Minute))
	if err != nil || out != "" {
		t.Errorf("WaitUntilFails(test -e /tmp/going) = %q, %v; want \"\", nil", out, err)
	}

	_, err = m.WaitUntilSucceeds(ctx, "echo nope; exit 4", machine.Timeout(3*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || !errors.Is(err, machine.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitUntilSucceeds(exit 4) = %v, want a *WaitError wrapping ErrTimeout", err)
	}
	if we.What != "`echo nope; exit 4` to succeed" || !strings.Contains(we.Detail, "status 4") || !strings.Contains(we.Detail, "nope") ||
		we.Machine != m.Name() || we.Waited < 3*time.Second {
		t.Errorf("WaitError = %+v; want What naming the command, Detail with status 4 and its output, Waited >= 3s", *we)
	}
	if out, err := m.Succeed(ctx, "echo alive"); err != nil || out != "alive\n" {
		t.Errorf("after a timed-out wait: Succeed(echo alive) = %q, %v", out, err)
	}
}

// checkWaitForFile: a file that appears later is waited for; a missing
// one times out with an error naming it.
func checkWaitForFile(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	// A name the shell must get quoted right: blanks, quotes and a $.
	const name = `/tmp/wait for "it's" $me`
	q := shellQuote(name)
	if _, err := m.Succeed(ctx, "rm -f "+q+"; (sleep 2; touch "+q+") >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForFile(ctx, name, machine.Timeout(time.Minute)); err != nil {
		t.Errorf("WaitForFile: %v", err)
	}
	if _, err := m.Succeed(ctx, "test -e "+q); err != nil {
		t.Errorf("the file WaitForFile returned for is not there: %v", err)
	}
	err := m.WaitForFile(ctx, "/no/such/file", machine.Timeout(2*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("WaitForFile(/no/such/file) = %v, want a *WaitError", err)
	}
	if we.What != "file /no/such/file to exist" {
		t.Errorf("WaitError.What = %q, want %q", we.What, "file /no/such/file to exist")
	}
}

// checkPorts: WaitForOpenPort sees a listener, WaitForClosedPort waits
// while it listens and sees its end; a port nothing listens on times
// out naming it. Whether the port listens is checked independently
// with the guest's netstat/ss.
func checkPorts(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	const port = 8080
	listening := fmt.Sprintf("%s | grep -q ':%d '", k.listening, port)
	if _, err := m.Fail(ctx, listening); err != nil {
		t.Fatalf("port %d listens before anything was started on it: %v", port, err)
	}
	start := fmt.Sprintf("%s >/dev/null 2>&1 </dev/null & echo $! > /tmp/nc.pid", fmt.Sprintf(k.listen, port))
	if _, err := m.Succeed(ctx, start); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WaitUntilSucceeds(ctx, listening, machine.Timeout(30*time.Second)); err != nil {
		t.Fatalf("the listener never listened: %v", err)
	}
	if err := m.WaitForOpenPort(ctx, port, machine.Timeout(20*time.Second)); err != nil {
		t.Errorf("WaitForOpenPort(%d) with a listener: %v", port, err)
	}
	err := m.WaitForClosedPort(ctx, port, machine.Timeout(3*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || we.What != "TCP port localhost:8080 to close" {
		t.Errorf("WaitForClosedPort(%d) with a listener = %v, want a *WaitError for \"TCP port localhost:8080 to close\"", port, err)
	}
	if _, err := m.Succeed(ctx, `kill "$(cat /tmp/nc.pid)"`); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForClosedPort(ctx, port, machine.Timeout(30*time.Second)); err != nil {
		t.Errorf("WaitForClosedPort(%d) after killing the listener: %v", port, err)
	}
	if _, err := m.Fail(ctx, listening); err != nil {
		t.Errorf("port %d still listens after WaitForClosedPort: %v", port, err)
	}
	err = m.WaitForOpenPort(ctx, 8081, machine.Timeout(2*time.Second))
	if !errors.As(err, &we) || we.What != "TCP port localhost:8081 to open" {
		t.Errorf("WaitForOpenPort(8081) with nothing listening = %v, want a *WaitError for \"TCP port localhost:8081 to open\"", err)
	}
}

// checkUnixSockets: WaitForOpenUnixSocket sees stream and datagram
// listeners (netcat-openbsd; busybox nc has no unix sockets).
func checkUnixSockets(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	for _, tc := range []struct {
		path, flags string
		datagram    bool
	}{
		{"/tmp/vmd-stream.sock", "-lU", false},
		{"/tmp/vmd-dgram.sock", "-luU", true},
	} {
		cmd := fmt.Sprintf("rm -f %s; nc %s %s >/dev/null 2>&1 </dev/null & echo $! > %s.pid", tc.path, tc.flags, tc.path, tc.path)
		if _, err := m.Succeed(ctx, cmd); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitForOpenUnixSocket(ctx, tc.path, tc.datagram, machine.Timeout(30*time.Second)); err != nil {
			t.Errorf("WaitForOpenUnixSocket(%s, datagram=%v): %v", tc.path, tc.datagram, err)
		}
		if _, err := m.Succeed(ctx, fmt.Sprintf(`kill "$(cat %s.pid)" 2>/dev/null || true; rm -f %s`, tc.path, tc.path)); err != nil {
			t.Error(err)
		}
	}
	err := m.WaitForOpenUnixSocket(ctx, "/tmp/no-such.sock", false, machine.Timeout(2*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || we.What != "unix socket /tmp/no-such.sock to open" {
		t.Errorf("WaitForOpenUnixSocket(/tmp/no-such.sock) = %v, want a *WaitError naming the socket", err)
	}
}

// checkUnits covers the systemd calls on the systemd guest.
func checkUnits(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	if err := m.WaitForUnit(ctx, "multi-user.target", machine.Timeout(2*time.Minute)); err != nil {
		t.Fatalf("WaitForUnit(multi-user.target): %v", err)
	}
	info, err := m.GetUnitInfo(ctx, "backdoor.service")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"Id": "backdoor.service", "ActiveState": "active", "SubState": "running", "LoadState": "loaded", "Type": "simple"} {
		if info[k] != want {
			t.Errorf("GetUnitInfo(backdoor.service)[%q] = %q, want %q", k, info[k], want)
		}
	}
	if v, err := m.GetUnitProperty(ctx, "backdoor.service", "KillSignal"); err != nil || v != "1" {
		t.Errorf("GetUnitProperty(backdoor.service, KillSignal) = %q, %v; want \"1\" (SIGHUP)", v, err)
	}
	if _, err := m.GetUnitProperty(ctx, "backdoor.service", "NoSuchProperty"); err == nil {
		t.Error("GetUnitProperty(NoSuchProperty) succeeded")
	}
	if err := m.RequireUnitState(ctx, "backdoor.service", "active"); err != nil {
		t.Errorf("RequireUnitState(backdoor.service, active): %v", err)
	}
	err = m.RequireUnitState(ctx, "backdoor.service", "inactive")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("RequireUnitState(backdoor.service, inactive) = %v, want ErrCheckFailed", err)
	}
	mustContain(t, err, `"inactive"`, `"active"`, "backdoor.service")
	if st, out, err := m.Systemctl(ctx, "is-active backdoor.service"); err != nil || st != 0 || out != "active\n" {
		t.Errorf("Systemctl(is-active backdoor.service) = (%d, %q, %v), want (0, \"active\\n\")", st, out, err)
	}
	if st, out, err := m.Systemctl(ctx, "is-active no-such-unit.service"); err != nil || st != 3 || out != "inactive\n" {
		t.Errorf("Systemctl(is-active no-such-unit.service) = (%d, %q, %v), want (3, \"inactive\\n\")", st, out, err)
	}

	// A transient service: active, stopped, gone.
	if _, err := m.Succeed(ctx, "systemd-run --unit=probe sleep 300"); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForUnit(ctx, "probe.service", machine.Timeout(time.Minute)); err != nil {
		t.Errorf("WaitForUnit(probe.service): %v", err)
	}
	if v, err := m.GetUnitProperty(ctx, "probe.service", "ExecMainPID"); err != nil || v == "0" || v == "" {
		t.Errorf("GetUnitProperty(probe.service, ExecMainPID) = %q, %v; want a pid", v, err)
	}
	if st, out, err := m.StopJob(ctx, "probe.service"); err != nil || st != 0 || out != "" {
		t.Errorf("StopJob(probe.service) = (%d, %q, %v), want (0, \"\")", st, out, err)
	}
	if err := m.RequireUnitState(ctx, "probe.service", "inactive"); err != nil {
		t.Errorf("after StopJob: %v", err)
	}

	// A unit file started with StartJob.
	unit := "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'echo started > /tmp/oneshot'\n"
	if _, err := m.Succeed(ctx, fmt.Sprintf("printf '%%s' %s > /run/systemd/system/vmd-oneshot.service && systemctl daemon-reload", shellQuote(unit))); err != nil {
		t.Fatal(err)
	}
	if st, out, err := m.StartJob(ctx, "vmd-oneshot.service"); err != nil || st != 0 || out != "" {
		t.Errorf("StartJob(vmd-oneshot.service) = (%d, %q, %v), want (0, \"\")", st, out, err)
	}
	if err := m.RequireUnitState(ctx, "vmd-oneshot.service", "active"); err != nil {
		t.Error(err)
	}
	if out, err := m.Succeed(ctx, "cat /tmp/oneshot"); err != nil || out != "started\n" {
		t.Errorf("the oneshot unit wrote %q, %v", out, err)
	}
	if st, _, err := m.StartJob(ctx, "no-such-unit.service"); err != nil || st == 0 {
		t.Errorf("StartJob(no-such-unit.service) = status %d, %v; want a non-zero status", st, err)
	}

	// A failing unit ends WaitForUnit at once, not at its deadline.
	if _, err := m.Succeed(ctx, "systemd-run --unit=failer sh -c 'exit 1'"); err != nil {
		t.Fatal(err)
	}
	err = m.WaitForUnit(ctx, "failer.service", machine.Timeout(2*time.Minute))
	if !errors.Is(err, machine.ErrCheckFailed) || errors.Is(err, machine.ErrTimeout) {
		t.Errorf("WaitForUnit(failer.service) = %v, want ErrCheckFailed (not a timeout)", err)
	}
	mustContain(t, err, "failer.service", `"failed"`)

	// A unit nothing starts times out, saying so.
	err = m.WaitForUnit(ctx, "no-such-unit.service", machine.Timeout(3*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || !strings.Contains(we.Detail, "inactive and has no pending job") {
		t.Errorf("WaitForUnit(no-such-unit.service) = %v, want a *WaitError saying the unit is inactive with no pending job", err)
	}
}

// checkNoSystemd: the systemd calls fail at once, clearly, on a guest
// without systemd.
func checkNoSystemd(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	err := m.WaitForUnit(ctx, "multi-user.target", machine.Timeout(2*time.Minute))
	if err == nil || errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("WaitForUnit on a guest without systemd = %v, want an immediate error", err)
	}
	mustContain(t, err, "systemctl", "multi-user.target", "127")
	t.Logf("WaitForUnit without systemd: %v", err)
	if _, err := m.GetUnitInfo(ctx, "multi-user.target"); !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("GetUnitInfo without systemd = %v, want ErrCheckFailed", err)
	}
	if st, _, err := m.Systemctl(ctx, "is-active multi-user.target"); err != nil || st != 127 {
		t.Errorf("Systemctl without systemd = status %d, %v; want 127", st, err)
	}
}

// checkCopyFromHost: a file and a directory tree reach the guest with
// their contents, modes and symlinks.
func checkCopyFromHost(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	dir := t.TempDir()
	// Names the shell must get quoted right, staged and in the guest.
	file := filepath.Join(dir, `it's a "greeting".txt`)
	if err := os.WriteFile(file, []byte("hello\nguest"), 0o750); err != nil {
		t.Fatal(err)
	}
	target := shellQuote("/root/in/new dir/o'neil $x.txt")
	if err := m.CopyFromHost(ctx, file, "/root/in/new dir/o'neil $x.txt"); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Succeed(ctx, "cat "+target+"; echo; stat -c %a "+target); err != nil || out != "hello\nguest\n750\n" {
		t.Errorf("copied file: %q, %v; want its content and mode 750", out, err)
	}

	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(tree, "sub", "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "a.txt"), []byte("A"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sub", "b.txt"), []byte("B\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(tree, "link")); err != nil {
		t.Fatal(err)
	}
	if err := m.CopyFromHost(ctx, tree, "/root/tree"); err != nil {
		t.Fatal(err)
	}
	out, err := m.Succeed(ctx, "cd /root/tree && find . | sort && cat a.txt sub/b.txt && readlink link && stat -c %a sub/b.txt")
	if want := ".\n./a.txt\n./link\n./sub\n./sub/b.txt\n./sub/empty\nAB\na.txt\n600\n"; err != nil || out != want {
		t.Errorf("copied tree: %q, %v", out, err)
	}
	if err := m.CopyFromHost(ctx, filepath.Join(dir, "missing"), "/root/missing"); err == nil {
		t.Error("CopyFromHost of a missing host file succeeded")
	}
}

// checkCopyFromHostViaShell: a 200 KiB binary file (several chunks) and
// an empty file arrive byte-exact through the shell alone.
func checkCopyFromHostViaShell(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	dir := t.TempDir()
	data := make([]byte, 200<<10)
	rand.Read(data)
	src := filepath.Join(dir, "blob.bin")
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A target the shell must get quoted right.
	const target = "/root/via/my shell/blob's copy.bin"
	if err := m.CopyFromHostViaShell(ctx, src, target); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	out, err := m.Succeed(ctx, "wc -c < "+shellQuote(target)+"; sha256sum < "+shellQuote(target))
	if want := fmt.Sprintf("%d\n%x  -\n", len(data), sum); err != nil || strings.TrimLeft(out, " ") != want {
		t.Errorf("guest copy: %q, %v; want %q", out, err, want)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.CopyFromHostViaShell(ctx, empty, "/root/via/empty"); err != nil {
		t.Fatal(err)
	}
	if out, err := m.Succeed(ctx, "wc -c < /root/via/empty"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("empty file in the guest has %q bytes, %v", out, err)
	}
}

// checkCopyFromMachine: a guest tree and a binary file land under the
// output directory, byte-exact.
func checkCopyFromMachine(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	setup := "rm -rf /tmp/export; mkdir -p /tmp/export/sub && printf one > /tmp/export/one.txt && printf 'two\\n' > /tmp/export/sub/two.txt" +
		` && printf log > "/tmp/export/my app's log" && head -c 100000 /dev/urandom > /tmp/export.bin && sha256sum /tmp/export.bin`
	out, err := m.Succeed(ctx, setup)
	if err != nil {
		t.Fatal(err)
	}
	guestSum := strings.Fields(out)[0]

	got, err := m.CopyFromMachine(ctx, "/tmp/export", "results")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(m.OutputDir(), "results", "export"); got != want {
		t.Errorf("CopyFromMachine returned %q, want %q", got, want)
	}
	for rel, want := range map[string]string{"one.txt": "one", "sub/two.txt": "two\n", "my app's log": "log"} {
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil || string(b) != want {
			t.Errorf("copied %s: %q, %v; want %q", rel, b, err, want)
		}
	}

	// A single file whose name the shell must get quoted right.
	got, err = m.CopyFromMachine(ctx, "/tmp/export/my app's log", "single")
	if b, err2 := os.ReadFile(filepath.Join(m.OutputDir(), "single", "my app's log")); err != nil || err2 != nil || string(b) != "log" {
		t.Errorf("CopyFromMachine of one file = %q, %v: %q, %v", got, err, b, err2)
	}

	got, err = m.CopyFromMachine(ctx, "/tmp/export.bin", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(got)
	sum := sha256.Sum256(b)
	if err != nil || len(b) != 100000 || hex.EncodeToString(sum[:]) != guestSum {
		t.Errorf("copied binary %s: %d bytes, sha256 %x, %v; want 100000 bytes, sha256 %s", got, len(b), sum, err, guestSum)
	}

	_, err = m.CopyFromMachine(ctx, "/no/such/file", "results")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("CopyFromMachine(/no/such/file) = %v, want ErrCheckFailed", err)
	}
}

// checkScreenshot: the screen arrives as a valid PNG of a real size
// with something on it.
func checkScreenshot(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	path, err := m.Screenshot(ctx, "screen")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(m.OutputDir(), "screen.png"); path != want {
		t.Errorf("Screenshot returned %q, want %q", path, want)
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
	b := img.Bounds()
	if b.Dx() < 320 || b.Dy() < 200 {
		t.Errorf("screenshot is %dx%d, want at least 320x200", b.Dx(), b.Dy())
	}
	if n := colours(img, 2); n < 2 {
		t.Errorf("screenshot has %d colour(s); the console text should give at least 2", n)
	}
}

// colours counts the distinct colours of img, stopping at limit.
func colours(img image.Image, limit int) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}

// checkConsole: text written to the serial console is found by
// WaitForConsoleText, which searches line by line.
func checkConsole(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	if _, err := m.Succeed(ctx, `echo "vmd-marker-$((6*7))" > /dev/ttyS0`); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForConsoleText(ctx, `vmd-marker-42`, machine.Timeout(time.Minute)); err != nil {
		t.Errorf("WaitForConsoleText(vmd-marker-42): %v", err)
	}
	// A command's stderr goes to the serial console.
	if _, err := m.Succeed(ctx, `echo "vmd-stderr-$((6*7))" >&2`); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForConsoleText(ctx, `vmd-stderr-42`, machine.Timeout(time.Minute)); err != nil {
		t.Errorf("WaitForConsoleText(vmd-stderr-42): %v", err)
	}

	// Text split over two lines: a pattern without (?s) does not match
	// across the line break; one that spells the break out does.
	if _, err := m.Succeed(ctx, `printf 'vmd-split-left\nvmd-split-right\n' > /dev/ttyS0`); err != nil {
		t.Fatal(err)
	}
	waitConsoleLog(ctx, t, m, "vmd-split-right")
	err := m.WaitForConsoleText(ctx, `vmd-split-left.*vmd-split-right`, machine.Timeout(2*time.Second))
	var we *machine.WaitError
	if !errors.As(err, &we) || !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("WaitForConsoleText across a line break = %v, want a *WaitError", err)
	} else if len(we.Console) == 0 || !strings.Contains(err.Error(), "console lines") {
		t.Errorf("the WaitError carries no console lines: %v", err)
	}
	if err := m.WaitForConsoleText(ctx, `vmd-split-left\nvmd-split-right`, machine.Timeout(time.Minute)); err != nil {
		t.Errorf("WaitForConsoleText with the line break spelt out: %v", err)
	}
	// The match is consumed: the same text is not found again.
	err = m.WaitForConsoleText(ctx, `vmd-split-left`, machine.Timeout(time.Second))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("WaitForConsoleText found a consumed match again: %v", err)
	}

	log := m.ConsoleLog()
	for _, want := range []string{"Linux version", "vmd-marker-42", "vmd-split-left\nvmd-split-right"} {
		if !strings.Contains(log, want) {
			t.Errorf("ConsoleLog lacks %q", want)
		}
	}
	if tail := m.ConsoleTail(); len(tail) == 0 || len(tail) > 20 {
		t.Errorf("ConsoleTail has %d lines, want 1..20", len(tail))
	}
}

// checkMonitor: HMP and QMP commands, and QMP events of a pause and a
// resume.
func checkMonitor(ctx context.Context, t *testing.T, _ guestKind, m *machine.Machine) {
	out, err := m.SendMonitorCommand(ctx, "info status")
	if err != nil || !strings.Contains(out, "running") {
		t.Errorf("info status = %q, %v; want it to say running", out, err)
	}
	res, err := m.ControlCommand(ctx, "query-status", nil)
	if st, ok := res.(map[string]any); err != nil || !ok || st["status"] != "running" {
		t.Errorf("query-status = %#v, %v; want status running", res, err)
	}
	if _, err := m.ControlCommand(ctx, "no-such-qmp-command", nil); err == nil {
		t.Error("an unknown QMP command succeeded")
	}

	isEvent := func(name string) func(backend.Event) bool {
		return func(e backend.Event) bool { return e.Name == name }
	}
	if _, err := m.ControlCommand(ctx, "stop", nil); err != nil {
		t.Fatal(err)
	}
	ev, err := m.WaitForQMPEvent(ctx, isEvent("STOP"), machine.Timeout(30*time.Second))
	if err != nil || ev.Name != "STOP" || ev.Time.IsZero() {
		t.Errorf("WaitForQMPEvent(STOP) = %+v, %v", ev, err)
	}
	if out, err := m.SendMonitorCommand(ctx, "info status"); err != nil || !strings.Contains(out, "paused") {
		t.Errorf("info status while stopped = %q, %v; want it to say paused", out, err)
	}
	if _, err := m.ControlCommand(ctx, "cont", nil); err != nil {
		t.Fatal(err)
	}
	if ev, err := m.WaitForQMPEvent(ctx, isEvent("RESUME"), machine.Timeout(30*time.Second)); err != nil || ev.Name != "RESUME" {
		t.Errorf("WaitForQMPEvent(RESUME) = %+v, %v", ev, err)
	}
	if out, err := m.Succeed(ctx, "echo resumed"); err != nil || out != "resumed\n" {
		t.Errorf("after cont: %q, %v", out, err)
	}
	_, err = m.WaitForQMPEvent(ctx, isEvent("NO_SUCH_EVENT"), machine.Timeout(time.Second))
	if !errors.Is(err, machine.ErrTimeout) {
		t.Errorf("WaitForQMPEvent(NO_SUCH_EVENT) = %v, want a timeout", err)
	}
}

// checkTTY: the text of the first virtual terminal, folded at its
// width, shows what was written to it.
func checkTTY(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	if k.systemd {
		// getty clears the screen when it starts; write after it.
		if err := m.WaitUntilTTYMatches(ctx, 1, `(?m)^systemd login: *$`, machine.Timeout(time.Minute)); err != nil {
			t.Fatalf("no login prompt on tty1: %v", err)
		}
	}
	if _, err := m.Succeed(ctx, `printf '\r\nvmd-tty-%s\r\n' "$((6*7))" > /dev/tty1`); err != nil {
		t.Fatal(err)
	}
	text, err := m.GetTTYText(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	// 80x25 in VGA text mode; wider on a frame buffer console (the
	// minimal guest's: 160x50 at 1280x800).
	if len(lines) < 24 || len(lines[0]) < 80 {
		t.Errorf("GetTTYText(1) has %d lines of %d columns, want a text screen (>= 24 x 80):\n%s", len(lines), len(lines[0]), text)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.TrimRight(l, " ") == "vmd-tty-42" }) {
		t.Errorf("GetTTYText(1) lacks the line written to /dev/tty1:\n%s", text)
	}
	if _, err := m.GetTTYText(ctx, 99); !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("GetTTYText(99) of a terminal that cannot exist = %v, want ErrCheckFailed", err)
	}
	if k.systemd {
		// The dump goes to the journal, which the guest copies to the
		// serial console.
		if err := m.DumpTTYContents(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitForConsoleText(ctx, `vmd-tty-42`, machine.Timeout(time.Minute)); err != nil {
			t.Errorf("DumpTTYContents: the terminal's text never reached the console: %v", err)
		}
	}
}

// checkKeys: keys typed with SendChars reach the shell on tty1 (minimal)
// or the login prompt (systemd), shifted symbols included.
func checkKeys(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	if err := m.SendKey(ctx, "ret"); err != nil {
		t.Fatalf("SendKey(ret): %v", err)
	}
	if err := m.SendKey(ctx, "no-such-key"); err == nil {
		t.Error("SendKey(no-such-key) succeeded")
	}
	if k.systemd {
		if err := m.WaitUntilTTYMatches(ctx, 1, `(?m)^systemd login: *$`, machine.Timeout(time.Minute)); err != nil {
			t.Fatalf("no login prompt on tty1: %v", err)
		}
		if err := m.SendChars(ctx, "root\n"); err != nil {
			t.Fatal(err)
		}
		if err := m.WaitUntilTTYMatches(ctx, 1, `(?m)^root@systemd:~# *$`, machine.Timeout(time.Minute)); err != nil {
			t.Fatalf("no root prompt on tty1 after logging in: %v", err)
		}
	}
	if err := m.SendChars(ctx, "echo \"vmd-typed-$((6*7))\" > /tmp/typed\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.WaitForFile(ctx, "/tmp/typed", machine.Timeout(time.Minute)); err != nil {
		t.Fatalf("the typed command never ran: %v", err)
	}
	if out, err := m.WaitUntilSucceeds(ctx, "cat /tmp/typed | grep .", machine.Timeout(30*time.Second)); err != nil || out != "vmd-typed-42\n" {
		t.Errorf("the typed command wrote %q, %v; want \"vmd-typed-42\\n\"", out, err)
	}
	if err := m.WaitUntilTTYMatches(ctx, 1, `echo "vmd-typed-\$\(\(6\*7\)\)" > /tmp/typed`, machine.Timeout(30*time.Second)); err != nil {
		t.Errorf("the typed command is not on the screen: %v", err)
	}
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// checkIsolation: the guest cannot reach the host's networks. QEMU's own
// report says its user-mode NIC is restricted, the guest has no default
// route and no name server; a port forwarded from the host still reaches
// a guest service (the one way in), and no packet is sent anywhere but
// to loopback.
func checkIsolation(ctx context.Context, t *testing.T, k guestKind, m *machine.Machine) {
	links, err := m.Links(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var user []backend.Link
	for _, l := range links {
		if l.VLAN == 0 {
			user = append(user, l)
		}
	}
	if len(user) != 1 || !user[0].Restricted {
		t.Fatalf("user-mode links per QEMU's info network = %+v, want one, restricted", user)
	}
	if out, err := m.Succeed(ctx, "ip -4 route show default; ip -6 route show default"); err != nil || out != "" {
		t.Errorf("the guest's default routes = %q, %v; want none", out, err)
	}
	if out, err := m.Succeed(ctx, "grep -c '^nameserver' /etc/resolv.conf || true"); err != nil || out != "0\n" {
		t.Errorf("name servers in /etc/resolv.conf: %q, %v; want 0", out, err)
	}

	const guestPort = 8090
	serve := fmt.Sprintf("echo forwarded-hello | nc -l -p %d", guestPort)
	if k.systemd {
		serve = fmt.Sprintf("echo forwarded-hello | nc -N -l %d", guestPort)
	}
	if _, err := m.Succeed(ctx, serve+" >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	// Watched without connecting: the one-shot server answers one
	// connection only.
	listening := fmt.Sprintf("%s | grep -q ':%d '", k.listening, guestPort)
	if _, err := m.WaitUntilSucceeds(ctx, listening, machine.Timeout(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := m.ForwardPort(ctx, hostPort, guestPort); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(hostPort)), 10*time.Second)
	if err != nil {
		t.Fatalf("dial the forwarded port: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if line != "forwarded-hello\n" {
		t.Errorf("through the forwarded port: %q, %v; want the guest's greeting", line, err)
	}
}
