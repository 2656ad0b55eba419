package script_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// TestForkedModulesLogInTheirSubtest: a module's host command logs into
// the block of the subtest that ran it, also with subtests side by side.
func TestForkedModulesLogInTheirSubtest(t *testing.T) {
	var out bytes.Buffer
	log := report.New(report.Options{Out: &out})
	e := newEnv(t, envConfig{machines: []string{"machine"}, logger: log})
	src := lines(
		`import subprocess`,
		`start_all()`,
		`subprocess.run(["echo", "in-set-up"], capture_output=True)`,
		`with subtest("one"):`,
		`    subprocess.run(["echo", "in-one"], capture_output=True)`,
		`with subtest("two"):`,
		`    subprocess.run(["echo", "in-two"], capture_output=True)`,
		`with subtest("three"):`,
		`    subprocess.run(["echo", "in-three"], capture_output=True)`,
	)
	opts := e.opts(src)
	opts.Logger, opts.Reporter = log, log
	opts.ForkSubtests, opts.Jobs = true, 3
	if err := script.Run(testCtx(t), opts); err != nil {
		t.Fatal(err)
	}
	log.Close()

	where := map[string]string{} // host command -> the subtest block it is in
	open := ""
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "subtest: "):
			open = strings.TrimPrefix(line, "subtest: ")
		case strings.HasPrefix(line, "(finished: subtest: "):
			open = ""
		}
		if _, cmd, ok := strings.Cut(line, "running host command: echo "); ok {
			where[strings.TrimSpace(cmd)] = open
		}
	}
	want := map[string]string{"in-set-up": "", "in-one": "one", "in-two": "two", "in-three": "three"}
	for cmd, block := range want {
		got, ok := where[cmd]
		if !ok {
			t.Errorf("no log line for host command %s:\n%s", cmd, out.String())
		} else if got != block {
			t.Errorf("host command %s logged in block %q, want %q:\n%s", cmd, got, block, out.String())
		}
	}
}
