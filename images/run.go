package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
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
	cmd := exec.CommandContext(ctx, c.name, c.args...)
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

// needTools checks that the host programs a build uses are installed, so
// a missing one fails early with the Debian package to install.
func needTools(tools map[string]string) error {
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("missing host tools: %s; install them with apt-get", strings.Join(missing, ", "))
	}
	return nil
}

func isRoot() bool { return os.Geteuid() == 0 }
