package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestForkSubtestsUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"jobs zero", []string{"eval", "--fork-subtests", "-j", "0", "print(1)"}, `want a whole number of at least 1, got "0"`},
		{"jobs negative", []string{"eval", "--fork-subtests", "--jobs=-3", "print(1)"}, `got "-3"`},
		{"jobs not a number", []string{"run", "--fork-subtests", "--jobs", "many", "x.py"}, `got "many"`},
		{"jobs without forking", []string{"eval", "-j", "2", "print(1)"}, "-j/--jobs applies only with --fork-subtests"},
		{"interactive", []string{"eval-file", "--fork-subtests", "-I"}, "cannot be combined with -I/--interactive"},
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

// TestForkSubtestsCheck: check --fork-subtests finds what only a forked
// run cannot do, at its position, and boots nothing.
func TestForkSubtestsCheck(t *testing.T) {
	dir := t.TempDir()
	between := writeFile(t, dir, "between.py", "with subtest(\"a\"):\n    pass\nx = 1\nwith subtest(\"b\"):\n    pass\n")
	shared := writeFile(t, dir, "shared.py", "with subtest(\"a\"):\n    y = 1\nwith subtest(\"b\"):\n    print(y)\n")
	for _, tt := range []struct {
		name, path string
		want       string
	}{
		{"statement between subtests", between, "between.py:3:1: --fork-subtests runs every subtest from the state after set-up"},
		{"name from another subtest", shared, "shared.py:4:11: undefined: y (it is bound only in the subtest at line 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, _ := vmdriver(t, "check", tt.path); code != exitOK {
				t.Fatalf("without --fork-subtests the script is fine, got exit %d", code)
			}
			code, _, stderr := vmdriver(t, "check", "--fork-subtests", tt.path)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, exitUsage, stderr, tt.want)
			}
			// A run stops there too, before the driver starts.
			code, _, stderr = vmdriver(t, "eval-file", "--fork-subtests", tt.path)
			if code != exitUsage || !strings.Contains(stderr, tt.want) {
				t.Fatalf("run: exit %d (want %d), stderr %q", code, exitUsage, stderr)
			}
		})
	}
}

// TestForkSubtestsWithoutMachines runs the whole CLI path with no
// machines to clone: every subtest is reported, one failure fails the
// run, and the log keeps each subtest's lines together.
func TestForkSubtestsWithoutMachines(t *testing.T) {
	out := t.TempDir()
	script := writeFile(t, out, "suite.py", `setting = "from set-up"
with subtest("one"):
    log.info("one sees " + setting)
with subtest("two"):
    fail("two breaks")
with subtest("three"):
    setting = "three's own"
    log.info("three sees " + setting)
log.info("tail sees " + setting)
`)
	code, _, stderr := vmdriver(t, "eval-file", "--fork-subtests", "-j", "3", "-o", out, "--junit-xml", "j.xml", script)
	if code != exitFail {
		t.Fatalf("exit code %d, want %d\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{
		"subtest: one\n  one sees from set-up\n(finished: subtest: one",
		"subtest: three\n  three sees three's own\n(finished: subtest: three",
		"tail sees from set-up",
		"suite.py:5:9:\n!!!         fail(\"two breaks\")",
		`Test "two" failed with error: "two breaks"`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	j := readJUnit(t, filepath.Join(out, "j.xml"))
	s := j.Suites[0]
	failed := map[string]bool{}
	for _, c := range s.Cases {
		failed[c.Name] = c.Failure != nil
	}
	if s.Tests != 3 || s.Failures != 1 || len(failed) != 3 || failed["one"] || !failed["two"] || failed["three"] {
		t.Errorf("junit: %+v", s)
	}

	// No top-level subtest: a warning, and the script runs as usual.
	plain := writeFile(t, out, "plain.py", "print('ran')\n")
	code, stdout, stderr := vmdriver(t, "eval-file", "--fork-subtests", plain)
	if code != exitOK || stdout != "ran\n" || !strings.Contains(stderr, "nothing to fork") {
		t.Errorf("exit %d, stdout %q, stderr %s", code, stdout, stderr)
	}
}
