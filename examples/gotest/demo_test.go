// Package gotest shows vmdriver's Go API used from `go test`, with public
// packages only: vmtest builds (or finds in the cache) the minimal guest
// and boots it on QEMU for the test.
package gotest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/vmtest"
)

// TestDemo boots the minimal guest, runs commands in it, moves a file
// through the shared directory and powers it off.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	m := vmtest.Minimal(t) // closed when the test ends

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
