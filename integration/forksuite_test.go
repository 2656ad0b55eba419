package integration

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// forkSuiteScript sets up a file on the minimal guest, then runs three
// subtests on clones: two pass, and the third fails on purpose because
// the file the second wrote is on the second's clone only. The tail
// checks that the subtests left the original machine alone.
const forkSuiteScript = `start_all()
minimal.succeed("echo from-set-up > /tmp/vmd-setup")

with subtest("sees set-up"):
    minimal.succeed("grep -q from-set-up /tmp/vmd-setup")
    minimal.succeed("echo one > /tmp/vmd-one")

with subtest("writes its own file"):
    minimal.succeed("grep -q from-set-up /tmp/vmd-setup")
    minimal.succeed("echo two > /tmp/vmd-two")

with subtest("fails on purpose"):
    minimal.succeed("test -e /tmp/vmd-two")

minimal.succeed("grep -q from-set-up /tmp/vmd-setup")
minimal.fail("test -e /tmp/vmd-one || test -e /tmp/vmd-two")
`

// TestForkSubtestsSuite runs the vmdriver binary with --fork-subtests -j 2
// on the minimal guest, as a user would.
func TestForkSubtestsSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "qemu-img")
	goTool := testenv.NeedCommand(t, "go")
	start := testenv.StartScript(t, "minimal")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	// A short private temp dir for the run's sockets and state, so that
	// what is left of the run can be found by its path.
	tmp, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if left := processesMentioning(tmp); len(left) > 0 {
			t.Errorf("processes of the run still running after it ended:\n    %s", strings.Join(left, "\n    "))
		}
		os.RemoveAll(tmp)
	})
	bin := filepath.Join(t.TempDir(), "vmdriver")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/vmdriver/vmdriver/cmd/vmdriver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vmdriver: %v\n%s", err, out)
	}
	out := t.TempDir()
	script := filepath.Join(out, "suite.py")
	if err := os.WriteFile(script, []byte(forkSuiteScript), 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, bin, "eval-file", "--fork-subtests", "-j", "2",
		"--start-scripts", start, "--global-timeout", "600", "-o", out, "--junit-xml", "junit.xml", script)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "XDG_RUNTIME_DIR=")
	// On the deadline, ask vmdriver to stop (it tears its machines down);
	// kill it if it does not.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("vmdriver: %v, want exit status 1; output:\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), `Test "fails on purpose" failed`) {
		t.Errorf("the log does not report the failing subtest:\n%s", stderr.String())
	}

	data, err := os.ReadFile(filepath.Join(out, "junit.xml"))
	if err != nil {
		t.Fatalf("no JUnit report: %v\n%s", err, stderr.String())
	}
	var doc struct {
		Suites []struct {
			Tests    int `xml:"tests,attr"`
			Failures int `xml:"failures,attr"`
			Cases    []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("JUnit report: %v\n%s", err, data)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("JUnit report has %d suites:\n%s", len(doc.Suites), data)
	}
	s := doc.Suites[0]
	passed := map[string]bool{}
	for _, c := range s.Cases {
		passed[c.Name] = c.Failure == nil
	}
	if s.Tests != 3 || s.Failures != 1 || len(passed) != 3 ||
		!passed["sees set-up"] || !passed["writes its own file"] || passed["fails on purpose"] {
		t.Errorf("JUnit: %d tests, %d failures, cases %v; want the 3 subtests with only \"fails on purpose\" failed\n%s\nlog:\n%s",
			s.Tests, s.Failures, passed, data, stderr.String())
	}
}
