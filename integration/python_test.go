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

// pythonScript uses what only CPython runs, on the minimal guest: a
// class subclassing Machine, try/except around a failing command, a
// generator, a walrus, a global statement and a module imported from
// PYTHONPATH; then a polling condition that stops holding mid-run.
const pythonScript = `import helper_mod

class Guest(Machine):
    def kernel(self):
        return self.succeed("uname -s").strip()

guest = Guest(minimal)
start_all()

with subtest("python language"):
    assert guest.kernel() == "Linux", guest.kernel()
    try:
        minimal.succeed("exit 3")
    except AssertionError as e:
        print("caught:", e)
    def lines_of(cmd):
        for line in minimal.succeed(cmd).splitlines():
            yield line
    print("generator", list(lines_of("printf 'a\\nb\\n'")))
    if (n := len(minimal.succeed("echo abc").strip())) == 3:
        print("walrus", n)
    count = 0
    def bump():
        global count
        count += 1
    bump()
    bump()
    print("global", count, helper_mod.describe(minimal))

minimal.succeed("touch /tmp/healthy")

@polling_condition(interval=0.001)
def healthy():
    return minimal.execute("test -e /tmp/healthy")[0] == 0

with subtest("condition fails mid-run"):
    with healthy:
        minimal.succeed("true")
        minimal.succeed("rm /tmp/healthy")
        minimal.succeed("true")
        print("not reached")
`

// TestPythonEngine runs scripts on CPython against the minimal guest
// through the vmdriver binary, as a user would.
func TestPythonEngine(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "python3")
	goTool := testenv.NeedCommand(t, "go")
	start := testenv.StartScript(t, "minimal")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "vmdriver")
	build := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/vmdriver/vmdriver/cmd/vmdriver")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building vmdriver: %v\n%s", err, out)
	}
	lib := t.TempDir()
	if err := os.WriteFile(filepath.Join(lib, "helper_mod.py"), []byte("def describe(m):\n    return m.name + ' runs ' + m.succeed('uname -m').strip()\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// run runs the binary on script with the minimal guest in a private
	// temp dir, and checks that nothing of the run is left afterwards.
	run := func(t *testing.T, script string, args ...string) (code int, stdout, stderr, out string) {
		t.Helper()
		tmp, err := os.MkdirTemp("", "vmd")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(tmp)
		out = t.TempDir()
		path := filepath.Join(out, "test.py")
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(append([]string{"eval-file"}, args...), "--start-scripts", start, "-o", out, "--junit-xml", "junit.xml", path)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp, "XDG_RUNTIME_DIR=", "PYTHONPATH="+lib)
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = time.Minute
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			code = exit.ExitCode()
		default:
			t.Fatalf("vmdriver: %v", err)
		}
		if left := processesMentioning(tmp); len(left) > 0 {
			t.Errorf("processes of the run still running after it ended:\n    %s", strings.Join(left, "\n    "))
		}
		if entries, _ := os.ReadDir(tmp); len(entries) > 0 {
			t.Errorf("the run left %d entries in its temp dir (%s, ...)", len(entries), entries[0].Name())
		}
		return code, o.String(), e.String(), out
	}

	t.Run("language and a polling condition", func(t *testing.T) {
		code, stdout, stderr, out := run(t, pythonScript)
		if code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		for _, want := range []string{
			"caught: machine minimal: command `exit 3` failed (exit code 3)",
			"generator ['a', 'b']",
			"walrus 3",
			"global 2 minimal runs x86_64",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stdout, "not reached") {
			t.Errorf("the script went on after the condition failed")
		}
		for _, want := range []string{
			"running the test script on CPython 3.",
			"the Starlark engine refuses the script: ",
			`Test "condition fails mid-run" failed with error: "polling condition failed: healthy: healthy returned False"`,
			"test.py:40:9:",
		} {
			if !strings.Contains(stderr, want) {
				t.Errorf("log lacks %q:\n%s", want, stderr)
			}
		}
		passed := junitCases(t, filepath.Join(out, "junit.xml"))
		if len(passed) != 2 || !passed["python language"] || passed["condition fails mid-run"] {
			t.Errorf("JUnit cases %v, want \"python language\" passed and \"condition fails mid-run\" failed", passed)
		}
	})

	t.Run("interpreter dies mid-run", func(t *testing.T) {
		code, _, stderr, _ := run(t, "import os, signal\nstart_all()\nminimal.succeed('true')\nos.kill(os.getpid(), signal.SIGKILL)\n", "--python")
		if code != 1 || !strings.Contains(stderr, "the Python interpreter died (killed by signal killed)") {
			t.Fatalf("exit %d, want 1 with the interpreter's death in the log:\n%s", code, stderr)
		}
	})

	t.Run("hung interpreter and the global timeout", func(t *testing.T) {
		t0 := time.Now()
		code, _, stderr, _ := run(t, "start_all()\nminimal.succeed('true')\nwhile True:\n    pass\n", "--python", "--global-timeout", "5")
		if code != 3 || !strings.Contains(stderr, "test script stopped: global timeout reached") {
			t.Fatalf("exit %d, want 3 (global timeout):\n%s", code, stderr)
		}
		if d := time.Since(t0); d > 2*time.Minute {
			t.Errorf("the run took %s with a 5 s global timeout", d)
		}
	})

	t.Run("forked subtests", func(t *testing.T) {
		testenv.NeedCommand(t, "qemu-img")
		// The class makes it a CPython script; the rest is the Starlark
		// suite's (forksuite_test.go).
		code, _, stderr, out := run(t, "class Unused:\n    pass\n\n"+forkSuiteScript, "--fork-subtests")
		if code != 1 || !strings.Contains(stderr, "each in a fork of the Python interpreter") || !strings.Contains(stderr, `Test "fails on purpose" failed`) {
			t.Fatalf("exit %d, want 1 with the forked subtests in the log:\n%s", code, stderr)
		}
		passed := junitCases(t, filepath.Join(out, "junit.xml"))
		if len(passed) != 3 || !passed["sees set-up"] || !passed["writes its own file"] || passed["fails on purpose"] {
			t.Errorf("JUnit cases %v, want only \"fails on purpose\" failed", passed)
		}
	})

	t.Run("syntax error boots nothing", func(t *testing.T) {
		code, _, stderr, _ := run(t, "start_all()\nif True\n    pass\n", "--python")
		if code != 2 || !strings.Contains(stderr, "test.py:2:") || strings.Contains(stderr, "starting vm") {
			t.Fatalf("exit %d, want 2 with the position and no machine started:\n%s", code, stderr)
		}
	})
}

// junitCases reads a JUnit report: whether each case passed, by name.
func junitCases(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no JUnit report: %v", err)
	}
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("JUnit report: %v\n%s", err, data)
	}
	passed := map[string]bool{}
	for _, s := range doc.Suites {
		for _, c := range s.Cases {
			passed[c.Name] = c.Failure == nil
		}
	}
	return passed
}
