package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// TestTAPNetworkDiesWithDriver runs two minimal guests on a TAP network
// (--net tap) through the vmdriver binary, proves they reach each other,
// then SIGKILLs the driver mid-run: its QEMUs, and the network namespace
// with the bridge and TAP devices in it, must all be gone, though nothing
// of the driver's own clean-up ran.
func TestTAPNetworkDiesWithDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedTAP(t)
	goTool := testenv.NeedCommand(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "vmdriver")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/vmdriver/vmdriver/cmd/vmdriver").CombinedOutput(); err != nil {
		t.Fatalf("building vmdriver: %v\n%s", err, out)
	}
	scripts, err := images.Build(ctx, images.Options{Kind: images.Minimal, OutDir: t.TempDir(), Names: []string{"a:1", "b:1"}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	out := t.TempDir()
	script := filepath.Join(out, "test.py")
	const src = "start_all()\na.succeed('ping -c 1 -W 10 b')\nprint('READY', flush=True)\na.succeed('sleep 600')\n"
	if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "eval-file", "--net", "tap", "--vlans", "1",
		"--start-scripts", strings.Join(scripts, " "), "-o", out, script)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "XDG_RUNTIME_DIR=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The log names the namespace; the script says when the guests met.
	nsLine := regexp.MustCompile(`network namespace net:\[(\d+)\]`)
	inodes := make(chan uint64, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := nsLine.FindStringSubmatch(sc.Text()); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				select {
				case inodes <- n:
				default:
				}
			}
		}
	}()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "READY" {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	var inode uint64
	select {
	case inode = <-inodes:
	case <-ctx.Done():
		t.Fatal("the log never named the network namespace")
	}
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the script ended before its guests pinged each other over the TAP network")
		}
	case <-ctx.Done():
		t.Fatal("the guests never pinged each other")
	}
	if len(processesMentioning(tmp)) < 2 || len(testenv.NetNSHolders(inode)) == 0 {
		t.Fatalf("before the kill: QEMUs %v, namespace holders %v; the checks below could not see them", processesMentioning(tmp), testenv.NetNSHolders(inode))
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// QEMUs get their parent-death signal from the kernel, asynchronously.
	deadline := time.Now().Add(30 * time.Second)
	for {
		left, holders := processesMentioning(tmp), testenv.NetNSHolders(inode)
		if len(left) == 0 && len(holders) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the driver's SIGKILL: processes %v, namespace net:[%d] held by %v", left, inode, holders)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
