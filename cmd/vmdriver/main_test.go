package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// vmdriver runs the CLI in-process and returns its exit code and output.
func vmdriver(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	code = run(ctx, args, strings.NewReader(""), &o, &e)
	return code, o.String(), e.String()
}

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.json", "{\n \"vms\": [\n")
	badBackend := writeFile(t, dir, "backend.json", `{"vms": {}, "backend": "bochs"}`)
	badNet := writeFile(t, dir, "net.json", `{"vms": {}, "network": "slirp"}`)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"missing config", []string{"eval-file", "--config", filepath.Join(dir, "nope.json")}, "nope.json"},
		{"malformed config", []string{"eval-file", "--config", bad}, "line 3"},
		{"no script", []string{"eval-file"}, "no test script"},
		{"bad vlan", []string{"eval", "--vlans", "1 x", "print(1)"}, `"x" is not a number`},
		{"vlan range", []string{"eval", "--vlans", "300", "print(1)"}, "out of range"},
		{"bad timeout", []string{"eval", "--global-timeout", "soon", "print(1)"}, "positive number"},
		{"missing output dir", []string{"eval", "-o", filepath.Join(dir, "nope"), "print(1)"}, "output directory"},
		{"missing script file", []string{"run", filepath.Join(dir, "nope.py")}, "nope.py"},
		{"deps with arguments", []string{"deps", "qemu"}, "takes no arguments"},
		{"version with arguments", []string{"version", "x"}, "takes no arguments"},
		{"unknown backend", []string{"eval", "--backend", "bochs", "print(1)"}, `unknown backend "bochs" (--backend, or the config's "backend"); choose one of: cloud-hypervisor, firecracker, microvm, qemu`},
		{"unknown backend in the config", []string{"eval", "--config", badBackend, "print(1)"}, `unknown backend "bochs"`},
		{"unknown network", []string{"eval", "--net", "slirp", "print(1)"}, `--net: unknown network kind "slirp"; choose vde or tap`},
		{"unknown network in the config", []string{"eval", "--config", badNet, "print(1)"}, `network "slirp": VLANs are "vde" (VDE switches) or "tap"`},
		{"warm-from not a directory", []string{"eval", "--warm-from", filepath.Join(dir, "nope"), "print(1)"}, "not a directory of warm entries"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := vmdriver(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit code %d, want %d", code, exitUsage)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.want)
			}
		})
	}
}

func TestEvalWithoutMachines(t *testing.T) {
	code, stdout, stderr := vmdriver(t, "eval", "print(1 + 1)")
	if code != exitOK || stdout != "2\n" {
		t.Fatalf("code %d stdout %q stderr %s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "test script finished in") {
		t.Errorf("no final timing line in %q", stderr)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "good.py", "start_all()\nserver.wait_for_unit(\"x\")\n")
	syntax := writeFile(t, dir, "syntax.py", "start_all()\nif True\n    pass\n")
	unknown := writeFile(t, dir, "unknown.py", "start_all()\nservre.succeed(\"true\")\n")
	misspelt := writeFile(t, dir, "misspelt.py", "server.wait_for_unti(\"x\")\n")
	class := writeFile(t, dir, "class.py", "x = 1\nclass Foo:\n    pass\n")
	scripts := "--start-scripts=/nonexistent/run-server-vm"
	for _, tt := range []struct {
		name, path string
		code       int
		want       string
	}{
		{"good", good, exitOK, "ok"},
		{"syntax", syntax, exitUsage, "syntax.py:2:"},
		{"unknown machine", unknown, exitUsage, "did you mean server"},
		{"class", class, exitOK, "ok, runs on CPython"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := vmdriver(t, "check", scripts, tt.path)
			if code != tt.code || !strings.Contains(stdout+stderr, tt.want) {
				t.Fatalf("code %d (want %d), output %q (want %q)", code, tt.code, stdout+stderr, tt.want)
			}
		})
	}
	// A misspelt method is found by check, before anything boots, and
	// the name is suggested.
	code, _, stderr := vmdriver(t, "eval-file", "--start-scripts=/nonexistent/run-server-vm", misspelt)
	if code != exitUsage || !strings.Contains(stderr, "misspelt.py:1:8") || !strings.Contains(stderr, "did you mean wait_for_unit?") {
		t.Fatalf("misspelt method: code %d, stderr %q", code, stderr)
	}
}

// The end-to-end runs below boot the minimal guest for real.

func minimalScript(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM")
	}
	testenv.NeedQEMU(t)
	return testenv.StartScript(t, "minimal")
}

type junitSuites struct {
	Suites []struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
		Cases    []struct {
			Name    string    `xml:"name,attr"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitSuites {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var j junitSuites
	if err := xml.Unmarshal(data, &j); err != nil {
		t.Fatalf("junit: %v\n%s", err, data)
	}
	if len(j.Suites) != 1 {
		t.Fatalf("junit has %d suites", len(j.Suites))
	}
	return j
}

func TestRunPassAndFail(t *testing.T) {
	start := minimalScript(t)
	out := t.TempDir()
	script := writeFile(t, out, "test.py", `
start_all()
with subtest("works"):
    minimal.succeed("true")
with subtest("breaks"):
    minimal.succeed("echo about to fail; exit 7")
`)
	code, _, stderr := vmdriver(t, "eval-file", "--start-scripts", start, "-o", out, "--junit-xml", "report.xml", script)
	if code != exitFail {
		t.Fatalf("exit code %d, want %d; stderr:\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{"!!!", "test.py:6", "exit code 7", `subtest: breaks`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	j := readJUnit(t, filepath.Join(out, "report.xml"))
	s := j.Suites[0]
	if s.Failures != 1 || len(s.Cases) != 2 || s.Cases[0].Failure != nil || s.Cases[1].Failure == nil {
		t.Errorf("junit: %+v", s)
	}

	// The same machine, passing, through the JSON config.
	cfg := writeFile(t, out, "config.json", `{"vms": {"minimal": {"name": "minimal", "start_script": "`+start+`"}}, "vlans": [], "global_timeout": 600, "test_script": "`+writeFile(t, out, "ok.py", "minimal.succeed('true')\n")+`"}`)
	code, _, stderr = vmdriver(t, "eval-file", "--config", cfg, "--log-format", "json")
	if code != exitOK {
		t.Fatalf("config run: exit %d\n%s", code, stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("--log-format json wrote a non-JSON line %q: %v", line, err)
		}
	}
}

func TestRunGlobalTimeout(t *testing.T) {
	start := minimalScript(t)
	script := writeFile(t, t.TempDir(), "slow.py", "minimal.succeed('sleep 600')\n")
	t0 := time.Now()
	code, _, stderr := vmdriver(t, "run", "--start-scripts", start, "--global-timeout", "20", script)
	if code != exitTimeout {
		t.Fatalf("exit code %d, want %d\n%s", code, exitTimeout, stderr)
	}
	if !strings.Contains(stderr, "timeout reached") {
		t.Errorf("stderr does not say the timeout was reached:\n%s", stderr)
	}
	if d := time.Since(t0); d > 2*time.Minute {
		t.Errorf("the run took %s despite a 20 s global timeout", d)
	}
	assertNoQEMU(t, stderr)
}

// assertNoQEMU checks that the QEMU pids the run logged are gone.
func assertNoQEMU(t *testing.T, log string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, "QEMU running (pid ")
		if i < 0 {
			continue
		}
		var pid int
		if _, err := fmtSscanf(line[i:], "QEMU running (pid %d)", &pid); err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("QEMU pid %d still running after the run", pid)
		}
	}
}

func TestInteractive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in := strings.NewReader("x = 20 + 1\nprint(x * 2)\nfor i in [1, 2]:\n    print(i)\n\nprint(undefined_name)\nprint(\"still here\")\n")
	var o, e bytes.Buffer
	code := run(ctx, []string{"eval-file", "-I"}, in, &o, &e)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, e.String())
	}
	for _, want := range []string{"42\n", "1\n2\n", "still here\n"} {
		if !strings.Contains(o.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, o.String())
		}
	}
	if !strings.Contains(e.String(), "undefined_name") {
		t.Errorf("the REPL did not report the undefined name: %s", e.String())
	}
}

// TestNixOSCommandLine runs the nixos-test-driver command line, in the
// current (--config) and the older (positional script, env defaults)
// spellings.
func TestNixOSCommandLine(t *testing.T) {
	dir := t.TempDir()
	script := writeFile(t, dir, "script.py", "print(\"ran\")\n")
	cfg := writeFile(t, dir, "config.json", `{"vms": {}, "vlans": [], "global_timeout": 60, "test_script": "`+script+`"}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// --keep-vm-state keeps a stable state directory: keep it in here.
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("TMPDIR", dir)
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"config", []string{"--config", cfg, "--log-level", "info", "-o", dir}, nil},
		{"short config", []string{"-c", cfg, "--junit-xml", "j.xml", "--output_directory", dir}, nil},
		{"older flags", []string{"--keep-vm-state", "--global-timeout", "60", script}, nil},
		{"environment", nil, map[string]string{"testScript": script, "globalTimeout": "60", "logLevel": "warning"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var o, e bytes.Buffer
			code := runTest(ctx, cmdCompat, "nixos-test-driver", tt.args, strings.NewReader(""), &o, &e)
			if code != exitOK || o.String() != "ran\n" {
				t.Fatalf("exit %d, stdout %q, stderr %s", code, o.String(), e.String())
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "j.xml")); err != nil {
		t.Errorf("--junit-xml relative to the output directory: %v", err)
	}
}
