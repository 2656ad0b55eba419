package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// writeScript writes a start script into a fresh directory and returns
// its path.
func writeScript(t *testing.T, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; set it exactly.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadStartScript: start scripts that cannot run, or exit before QEMU
// is up, fail Start at once with an error that says what is wrong, and
// leave nothing running. The implicit start of a command reports the same.
func TestBadStartScript(t *testing.T) {
	testenv.NeedQEMU(t)
	cases := []struct {
		name string
		// script returns the start script's path.
		script func(t *testing.T) string
		want   []string
		is     error
	}{
		{
			name:   "missing",
			script: func(t *testing.T) string { return filepath.Join(t.TempDir(), "run-missing-vm") },
			want:   []string{"run-missing-vm", "does not exist"},
			is:     fs.ErrNotExist,
		},
		{
			name: "not executable",
			script: func(t *testing.T) string {
				return writeScript(t, "run-noexec-vm", "#!/bin/sh\nexit 0\n", 0o644)
			},
			want: []string{"run-noexec-vm", "is not executable", "chmod +x"},
		},
		{
			name: "exits before QEMU is up",
			script: func(t *testing.T) string {
				return writeScript(t, "run-boom-vm", "#!/bin/sh\necho boom\necho 'boom on stderr' >&2\nexit 3\n", 0o755)
			},
			want: []string{"run-boom-vm", "exited with status 3", "boom", "boom on stderr"},
			is:   backend.ErrExited,
		},
		{
			name: "QEMU program not found",
			script: func(t *testing.T) string {
				return writeScript(t, "run-noqemu-vm", "#!/bin/sh\nexec qemu-system-does-not-exist \"$@\"\n", 0o755)
			},
			want: []string{"run-noqemu-vm", "status 127", "qemu-system-does-not-exist", "qemu-system-x86"},
			is:   backend.ErrExited,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			script := tc.script(t)
			dir := filepath.Dir(script)
			ctx := testCtx(t, time.Minute)
			check := func(how string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s succeeded", how)
				}
				mustContain(t, err, tc.want...)
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s: error does not wrap %v: %v", how, tc.is, err)
				}
				if left := processesMentioning(dir); len(left) > 0 {
					t.Errorf("%s left processes behind:\n    %s", how, strings.Join(left, "\n    "))
				}
			}

			m, err := machine.Start(ctx, sharedBackend(), "bad", machine.WithStartScript(script))
			if m != nil {
				t.Errorf("Start returned a machine with its error")
				m.Close()
			}
			check("Start", err)
			t.Logf("Start: %v", err)

			m, err = machine.New(sharedBackend(), "bad", machine.WithStartScript(script))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			_, err = m.Succeed(ctx, "true")
			check("Succeed (implicit start)", err)
			if m.Booted() || m.PID() != 0 {
				t.Errorf("after a failed start: Booted=%v PID=%d", m.Booted(), m.PID())
			}
			if err := m.Close(); err != nil {
				t.Errorf("Close after a failed start: %v", err)
			}
			if _, err := os.Stat(m.StateDir()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("state directory left after Close: %v", err)
			}
		})
	}
}

// TestQEMUNotInstalled: without qemu-system-x86_64 on PATH, Start fails
// before spawning anything and names the Debian package to install.
func TestQEMUNotInstalled(t *testing.T) {
	script := writeScript(t, "run-fine-vm", "#!/bin/sh\necho must not run > ran\nexec qemu-system-x86_64 \"$@\"\n", 0o755)
	t.Setenv("PATH", t.TempDir())
	ctx := testCtx(t, time.Minute)
	m, err := machine.New(sharedBackend(), "noqemu", machine.WithStartScript(script))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	err = m.Start(ctx)
	if !errors.Is(err, qemu.ErrNoQEMU) {
		t.Fatalf("Start without QEMU = %v, want qemu.ErrNoQEMU", err)
	}
	mustContain(t, err, "qemu-system-x86_64", "Debian package qemu-system-x86", "not installed", "make deps")
	if _, err := os.Stat(filepath.Join(m.StateDir(), "ran")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the start script ran although QEMU is missing (stat: %v)", err)
	}
	if _, err := m.Succeed(ctx, "true"); !errors.Is(err, qemu.ErrNoQEMU) {
		t.Errorf("Succeed without QEMU = %v, want qemu.ErrNoQEMU", err)
	}
}

// TestNoBanner: a QEMU that runs but whose guest never prints the
// backdoor banner (firmware with nothing to boot) fails the first
// command at the boot deadline, naming what was awaited and quoting the
// console; QEMU goes with Close.
func TestNoBanner(t *testing.T) {
	if testing.Short() {
		t.Skip("runs QEMU")
	}
	testenv.NeedQEMU(t)
	script := writeScript(t, "run-nobanner-vm",
		"#!/bin/sh\necho 'vmd-test: firmware only, nothing to boot'\nexec qemu-system-x86_64 -machine pc,accel=tcg -m 64 -nodefaults -vga std \"$@\"\n", 0o755)
	ctx := testCtx(t, 2*time.Minute)
	m, err := machine.Start(ctx, sharedBackend(), "nobanner", machine.WithStartScript(script), machine.WithBootTimeout(5*time.Second))
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer m.Close()
	pid := m.PID()
	stateDir := m.StateDir()

	_, err = m.Succeed(ctx, "true")
	var we *machine.WaitError
	if !errors.As(err, &we) || !errors.Is(err, machine.ErrTimeout) {
		t.Fatalf("Succeed on a guest without a shell = %v, want a *WaitError", err)
	}
	if we.Waited < 5*time.Second {
		t.Errorf("gave up after %v, before the 5s boot timeout", we.Waited)
	}
	if !strings.Contains(we.What, "root shell") {
		t.Errorf("WaitError.What = %q, want it to name the guest's root shell", we.What)
	}
	if !strings.Contains(strings.Join(we.Console, "\n"), "vmd-test: firmware only, nothing to boot") {
		t.Errorf("WaitError.Console = %q, want the console's last lines", we.Console)
	}
	mustContain(t, err, "Spawning backdoor root shell...", "timed out after", "vmd-test: firmware only")
	t.Logf("error: %v", err)
	if !m.Booted() {
		t.Error("QEMU is gone after a boot timeout; it should run until Close")
	}

	if err := m.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	assertGone(t, pid)
	if left := processesMentioning(stateDir); len(left) > 0 {
		t.Errorf("processes left after Close:\n    %s", strings.Join(left, "\n    "))
	}
}
