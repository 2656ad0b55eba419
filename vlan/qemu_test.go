package vlan

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// qemuProc is a paused QEMU with one NIC on a VDE switch and QMP on its
// stdio; no guest runs.
type qemuProc struct {
	cmd      *exec.Cmd
	greeting chan string // the first QMP line, or "" at EOF
	exited   chan struct{}
	readDone chan struct{}
}

// startQEMU starts it; the test's cleanup kills it and waits for it.
func startQEMU(t *testing.T, sock string) *qemuProc {
	t.Helper()
	bin := testenv.NeedQEMU(t)
	cmd := exec.Command(bin, "-machine", "pc", "-S", "-nodefaults", "-display", "none", "-m", "32",
		"-netdev", "vde,id=n1,sock="+sock, "-device", "virtio-net-pci,netdev=n1", "-qmp", "stdio")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout = stdinR, outW
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinR.Close()
	outW.Close()
	p := &qemuProc{cmd: cmd, greeting: make(chan string, 1), exited: make(chan struct{}), readDone: make(chan struct{})}
	go func() {
		defer close(p.readDone)
		sc := bufio.NewScanner(outR)
		first := ""
		if sc.Scan() {
			first = sc.Text()
		}
		p.greeting <- first
		for sc.Scan() {
		}
		outR.Close()
	}()
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		stdinW.Close()
		for _, ch := range []chan struct{}{p.exited, p.readDone} {
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Errorf("qemu pid %d did not go away", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("qemu stderr: %s", stderr.String())
		}
	})
	return p
}

// initialized waits for QMP's greeting, which QEMU sends only after
// creating its devices and connecting its netdevs.
func (p *qemuProc) initialized(t *testing.T) bool {
	t.Helper()
	select {
	case g := <-p.greeting:
		return strings.Contains(g, `"QMP"`)
	case <-time.After(60 * time.Second):
		t.Fatal("no QMP greeting from qemu")
		return false
	}
}

func (p *qemuProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// ports counts the data sockets the switch made for its clients: every
// entry of its control directory but ctl.
func ports(t *testing.T, s *Switch) int {
	t.Helper()
	entries, err := os.ReadDir(s.SocketDir())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Name() != "ctl" {
			n++
		}
	}
	return n
}

func TestQEMUConnects(t *testing.T) {
	testenv.NeedCommand(t, Binary)
	testenv.NeedQEMU(t)
	dir := shortDir(t)
	s := start(t, 1, dir)

	// Without a switch QEMU refuses to start: the greeting below is
	// evidence of a connection.
	bad := startQEMU(t, dir+"/vde9.ctl")
	if bad.initialized(t) {
		t.Fatal("qemu initialized without a switch")
	}

	a := startQEMU(t, s.SocketDir())
	b := startQEMU(t, s.SocketDir())
	if !a.initialized(t) || !b.initialized(t) {
		t.Fatal("qemu did not initialize on the switch")
	}
	if n := ports(t, s); n != 2 {
		t.Errorf("switch has %d ports in use, want 2", n)
	}
	if !a.running() || !b.running() || s.Err() != nil {
		t.Fatalf("qemu running %v %v, switch %v", a.running(), b.running(), s.Err())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
