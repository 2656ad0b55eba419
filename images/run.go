package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// command describes one host program run by the builder.
type command struct {
	name  string
	args  []string
	dir   string
	stdin io.Reader
	// stdout, if set, receives stdout instead of the returned buffer.
	stdout io.Writer
}

// run runs c and returns its stdout. The program gets its own process
// group, which is killed when ctx ends (debootstrap and apt spawn
// children), and dies with the builder (Pdeathsig). A failure carries the
// command line and the tail of its output.
func run(ctx context.Context, c command) ([]byte, error) {
	bin := c.name
	if !filepath.IsAbs(bin) {
		p, err := hosttools.Path(bin)
		if err != nil {
			return nil, err
		}
		bin = p
	}
	cmd := exec.CommandContext(ctx, bin, c.args...)
	cmd.Dir = c.dir
	cmd.Stdin = c.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	if c.stdout != nil {
		cmd.Stdout = c.stdout
	}
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil {
		line := strings.TrimSpace(c.name + " " + strings.Join(c.args, " "))
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", line, ctx.Err())
		}
		out := stderr.String()
		if c.stdout == nil {
			out = stdout.String() + out
		}
		return nil, fmt.Errorf("%s: %w\n%s", line, err, tail(out, 25))
	}
	return stdout.Bytes(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

func isRoot() bool { return os.Geteuid() == 0 }
