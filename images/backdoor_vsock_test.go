package images

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// TestBackdoorVsockScript serves guest/backdoor-vsock the way the systemd
// guest's backdoor-vsock.service does (socat, a fresh script per
// connection), on a Unix socket instead of vsock port 1025, and drives
// it with the driver's backdoor protocol: every connection is a new root
// shell that announces itself, runs commands and keeps their stdin.
func TestBackdoorVsockScript(t *testing.T) {
	socat := testenv.NeedCommand(t, "socat")
	testenv.NeedCommand(t, "bash")
	dir, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Installed as the image installs it: executable, at a path without
	// blanks (socat's EXEC splits its command at them).
	script := filepath.Join(dir, "vmdriver-backdoor-vsock")
	if err := os.WriteFile(script, guestFile("backdoor-vsock"), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s")
	stderr := filepath.Join(dir, "stderr")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listen := exec.CommandContext(ctx, socat, "UNIX-LISTEN:"+sock+",fork", "EXEC:"+script)
	listen.Env = append(os.Environ(), "VMDRIVER_BACKDOOR_STDERR="+stderr)
	if err := listen.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listen.Process.Kill(); listen.Wait() })

	connect := func() *backdoor.Shell {
		t.Helper()
		var conn net.Conn
		for conn == nil {
			c, err := net.Dial("unix", sock)
			if err == nil {
				conn = c
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("socat never listened: %v", err)
			case <-time.After(10 * time.Millisecond):
			}
		}
		sh := backdoor.New(conn)
		t.Cleanup(func() { sh.Close() })
		if err := sh.WaitReady(ctx); err != nil {
			t.Fatalf("no banner: %v", err)
		}
		return sh
	}
	sh := connect()
	for _, tt := range []struct {
		cmd    string
		status int
		out    string
	}{
		{"echo hi; echo oops >&2", 0, "hi\n"},
		{"exit 3", 3, ""},
		{`printf '%s\n' "$USER $HOME $PWD"`, 0, "root /root /tmp\n"},
		{"echo from stdin | cat", 0, "from stdin\n"},
	} {
		res, err := sh.Run(ctx, tt.cmd, backdoor.RunOptions{})
		if err != nil || res.Status != tt.status || string(res.Output) != tt.out {
			t.Errorf("Run(%q) = %q, status %d, %v; want %q, status %d", tt.cmd, res.Output, res.Status, err, tt.out, tt.status)
		}
	}
	// A second connection is a shell of its own; the first lives on.
	other := connect()
	if _, err := other.Run(ctx, "cd /; x=second", backdoor.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := sh.Run(ctx, "pwd", backdoor.RunOptions{}); err != nil || string(res.Output) != "/tmp\n" {
		t.Errorf("first shell after the second connected: %q, %v", res.Output, err)
	}
	// Commands' stderr goes where the serial console would be.
	if data, _ := os.ReadFile(stderr); !strings.Contains(string(data), "oops") {
		t.Errorf("stderr file %q lacks the command's stderr", data)
	}
}
