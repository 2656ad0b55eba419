package driver

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
)

// TestKilledRunIsSwept: a driver killed with SIGKILL cannot remove its
// run directory; the next driver on the machine does, and leaves live
// runs' directories and everything else alone.
func TestKilledRunIsSwept(t *testing.T) {
	if os.Getenv("VMDRIVER_RUNDIR_CHILD") != "" {
		d, err := New(t.Context(), Config{OutputDir: t.TempDir()}, WithBackend(mock.New()), WithLogger(newRecLogger()))
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString(d.RunDir() + "\n")
		select {} // killed by the parent
	}
	base := privateTmp(t)
	other := filepath.Join(base, "vmdriver-not-a-run")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	live, err := New(t.Context(), Config{OutputDir: t.TempDir()}, WithBackend(mock.New()), WithLogger(newRecLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunIsSwept$", "-test.count=1")
	cmd.Env = append(os.Environ(), "VMDRIVER_RUNDIR_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		t.Fatalf("child: %v", err)
	}
	killed = strings.TrimSpace(killed)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if _, err := os.Stat(killed); err != nil {
		t.Fatalf("the killed run's directory %s is already gone (%v): the test cannot see the sweep", killed, err)
	}

	log := newRecLogger()
	d, err := New(t.Context(), Config{OutputDir: t.TempDir()}, WithBackend(mock.New()), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Errorf("the killed run's directory %s is still there (%v)", killed, err)
	}
	if !log.has("info: removed " + killed + ", left by a run that was killed") {
		t.Errorf("the sweep is not logged: %q", log.lines)
	}
	for _, dir := range []string{live.RunDir(), other, d.RunDir()} {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("%s was removed: %v", dir, err)
		}
	}
}
