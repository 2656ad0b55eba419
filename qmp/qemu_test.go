package qmp

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// startQEMU runs an empty QEMU with a QMP socket and returns the socket
// path and a channel closed when QEMU has exited. QEMU runs in its own
// process group, which is killed at cleanup.
func startQEMU(t *testing.T) (sock string, exited <-chan struct{}, stderr func() string) {
	t.Helper()
	qemu := testenv.NeedQEMU(t)
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock = filepath.Join(dir, "q")

	var out bytes.Buffer
	cmd := exec.Command(qemu, "-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting qemu: %v", err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if waitFor(done, "qemu to exit") != nil {
			t.Errorf("qemu (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
		}
	})
	// out may be read only after done, when Wait has finished copying.
	return sock, done, func() string { <-done; return out.String() }
}

// dialRetry dials until QEMU's socket accepts, QEMU exits or ctx ends.
func dialRetry(ctx context.Context, t *testing.T, sock string, exited <-chan struct{}, stderr func() string) *Client {
	t.Helper()
	for {
		c, err := Dial(ctx, "unix", sock)
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited before QMP was up: %s", stderr())
		case <-ctx.Done():
			t.Fatalf("QMP socket never accepted: %v", err)
		case <-time.After(20 * time.Millisecond): // poll: QEMU gives no other sign of readiness
		}
	}
}

func TestRealQEMU(t *testing.T) {
	sock, exited, stderr := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dialRetry(ctx, t, sock, exited, stderr)
	defer c.Close()

	if v := c.Version(); v.Major < 7 {
		t.Errorf("Version() = %+v, want major >= 7", v)
	}
	var status struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &status); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if status.Status == "" {
		t.Errorf("query-status returned no status")
	}

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := c.ExecuteWithFiles(ctx, "getfd", map[string]string{"fdname": "vmdfd"}, nil, r); err != nil {
		t.Fatalf("getfd: %v", err)
	}
	// closefd fails unless QEMU really holds an fd by that name.
	if err := c.Execute(ctx, "closefd", map[string]string{"fdname": "vmdfd"}, nil); err != nil {
		t.Errorf("closefd after getfd: %v", err)
	}
	var qe *Error
	if err := c.Execute(ctx, "closefd", map[string]string{"fdname": "vmdfd"}, nil); !errors.As(err, &qe) {
		t.Errorf("second closefd = %v, want a QMP error reply", err)
	}

	sub := c.Subscribe()
	defer sub.Close()
	for _, step := range []struct{ command, event string }{{"stop", "STOP"}, {"cont", "RESUME"}} {
		if err := c.Execute(ctx, step.command, nil, nil); err != nil {
			t.Fatalf("%s: %v", step.command, err)
		}
		ev, err := sub.Wait(ctx, func(ev Event) bool { return ev.Name == step.event })
		if err != nil {
			t.Fatalf("waiting for %s: %v", step.event, err)
		}
		if ev.Time.IsZero() {
			t.Errorf("%s event has no timestamp", step.event)
		}
	}

	// QEMU may exit before or after its reply to quit gets out.
	if err := c.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("quit: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("connection still open after quit")
	}
	// Events sent before QEMU went away are still delivered, then the end.
	if ev, err := sub.Wait(ctx, func(ev Event) bool { return ev.Name == "SHUTDOWN" }); err != nil || ev.Data["reason"] != "host-qmp-quit" {
		t.Errorf("SHUTDOWN after quit: got %+v, %v", ev, err)
	}
	if _, err := sub.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after the queue drained = %v, want ErrClosed", err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err() after quit = %v, want ErrClosed", c.Err())
	}
	if err := waitFor(exited, "qemu to exit after quit"); err != nil {
		t.Error(err)
	}
}
