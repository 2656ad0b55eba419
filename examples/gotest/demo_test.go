// Package gotest shows vmdriver's Go API used from `go test`: one real
// QEMU guest, booted from a start script built by `make images`.
package gotest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// TestDemo is what `make demo` runs: boot the minimal guest, run commands
// in it, move a file through the shared directory and power it off.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testenv.NeedQEMU(t)
	script := testenv.StartScript(t, "minimal")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m := machine.StartT(t, qemu.New(), "minimal",
		machine.WithStartScript(script),
	)

	kernel, err := m.Succeed(ctx, "uname -r")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest kernel: %s", strings.TrimSpace(kernel))

	if _, err := m.Fail(ctx, "test -e /no/such/file"); err != nil {
		t.Fatal(err)
	}
	out, err := m.Succeed(ctx, `printf '%s\n' "hello from $(hostname)"`)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from minimal\n"; out != want {
		t.Fatalf("got %q, want %q", out, want)
	}

	// A file written by the host appears in the guest, and back.
	src := t.TempDir() + "/greeting.txt"
	if err := os.WriteFile(src, []byte("hi guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.CopyFromHost(ctx, src, "/root/greeting.txt"); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Succeed(ctx, "cat /root/greeting.txt"); err != nil || got != "hi guest\n" {
		t.Fatalf("copied file reads %q, %v", got, err)
	}

	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m.IsUp() {
		t.Fatal("machine still up after shutdown")
	}
}
