package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

func TestSubprocess(t *testing.T) {
	runSnippets(t, []snippet{
		{"run capture", `subprocess = import_("subprocess")
r = subprocess.run(["echo", "hi"], capture_output=True)
res = [r.returncode, r.stdout, r.stderr, r.args, str(r)]`,
			`[0, b"hi\n", b"", ["echo", "hi"], "CompletedProcess(args=[\"echo\", \"hi\"], returncode=0, stdout=b\"hi\\n\", stderr=b\"\")"]`, ""},
		{"run text", `subprocess = import_("subprocess")
res = [subprocess.run(["printf", "a\\r\\nb"], capture_output=True, text=True).stdout,
       subprocess.run(["echo", "x"], stdout=subprocess.PIPE, universal_newlines=True).stdout,
       subprocess.run(["echo", "x"], stdout=subprocess.PIPE, encoding="utf-8").stdout]`,
			`["a\nb", "x\n", "x\n"]`, ""},
		{"shell", `subprocess = import_("subprocess")
r = subprocess.run("echo $((1+2)); exit 3", shell=True, stdout=subprocess.PIPE, text=True)
res = [r.returncode, r.stdout, r.stderr]`, `[3, "3\n", None]`, ""},
		{"shell with list", `subprocess = import_("subprocess")
res = subprocess.run(["echo $0 $1", "a", "b"], shell=True, capture_output=True, text=True).stdout`, `"a b\n"`, ""},
		{"string without shell is a program name", `subprocess = import_("subprocess")
res = subprocess.run("echo hi")`, "", `subprocess.run: no such file or directory: "echo hi" (not found in PATH)`},
		{"missing program", `subprocess = import_("subprocess")
res = subprocess.run(["/nonexistent/prog"])`, "", `subprocess.run: no such file or directory: "/nonexistent/prog"`},
		{"check", `subprocess = import_("subprocess")
res = subprocess.run(["sh", "-c", "echo oops >&2; exit 3"], capture_output=True, check=True)`,
			"", "subprocess.run: command [\"sh\", \"-c\", \"echo oops >&2; exit 3\"] returned non-zero exit status 3; stderr:\noops"},
		{"check_returncode", `subprocess = import_("subprocess")
r = subprocess.run(["false"])
r.check_returncode()`, "", `CompletedProcess.check_returncode: command ["false"] returned non-zero exit status 1`},
		{"check_output", `subprocess = import_("subprocess")
res = [subprocess.check_output(["echo", "out"]), subprocess.check_output("echo $0", shell=True, text=True)]`, `[b"out\n", "/bin/sh\n"]`, ""},
		{"check_output fails", `subprocess = import_("subprocess")
res = subprocess.check_output(["sh", "-c", "exit 3"])`, "", `subprocess.check_output: command ["sh", "-c", "exit 3"] returned non-zero exit status 3`},
		{"check_output with stdout", `subprocess = import_("subprocess")
res = subprocess.check_output(["true"], stdout=subprocess.PIPE)`, "", "subprocess.check_output: stdout argument not allowed"},
		{"call and check_call", `subprocess = import_("subprocess")
res = [subprocess.call(["sh", "-c", "exit 4"]), subprocess.check_call(["true"]), subprocess.call("exit 5", shell=True)]`, `[4, 0, 5]`, ""},
		{"check_call fails", `subprocess = import_("subprocess")
res = subprocess.check_call(["false"])`, "", `subprocess.check_call: command ["false"] returned non-zero exit status 1`},
		{"signal", `subprocess = import_("subprocess")
res = subprocess.run(["sh", "-c", "kill -9 $$"]).returncode`, `-9`, ""},
		{"signal with check", `subprocess = import_("subprocess")
res = subprocess.run(["sh", "-c", "kill -9 $$"], check=True)`, "", `subprocess.run: command ["sh", "-c", "kill -9 $$"] died with signal 9`},
		{"input", `subprocess = import_("subprocess")
res = [subprocess.run(["cat"], input="abc", capture_output=True, text=True).stdout, subprocess.run(["cat"], input=b"\x00\x01", capture_output=True).stdout]`,
			`["abc", b"\x00\x01"]`, ""},
		{"stdin is /dev/null", `subprocess = import_("subprocess")
res = subprocess.run(["cat"], capture_output=True).stdout`, `b""`, ""},
		{"stdin and input", `subprocess = import_("subprocess")
res = subprocess.run(["cat"], input="x", stdin=subprocess.PIPE)`, "", "subprocess.run: stdin and input arguments may not both be used"},
		{"stderr to stdout", `subprocess = import_("subprocess")
r = subprocess.run(["sh", "-c", "echo a; echo b >&2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
res = [r.stdout, r.stderr]`, `["a\nb\n", None]`, ""},
		{"devnull", `subprocess = import_("subprocess")
r = subprocess.run(["sh", "-c", "echo a; echo b >&2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
res = [r.stdout, r.stderr]`, `[None, b"b\n"]`, ""},
		{"capture_output and stdout", `subprocess = import_("subprocess")
res = subprocess.run(["true"], capture_output=True, stdout=subprocess.PIPE)`, "", "stdout and stderr arguments may not be used with capture_output"},
		{"bad stdout", `subprocess = import_("subprocess")
res = subprocess.run(["true"], stdout=5)`, "", "subprocess.run: stdout: want subprocess.PIPE, DEVNULL, a file object or None, got 5"},
		{"env replaces the environment", `subprocess = import_("subprocess")
os = import_("os")
res = subprocess.run(["sh", "-c", "echo $FOO:$HOME"], env={"FOO": "x", "PATH": os.environ["PATH"]}, capture_output=True, text=True).stdout`, `"x:\n"`, ""},
		{"env searches the child PATH", `subprocess = import_("subprocess")
res = subprocess.run(["echo", "x"], env={"PATH": "/nonexistent"})`, "", `no such file or directory: "echo" (not found in PATH)`},
		{"os.environ reaches children", `subprocess = import_("subprocess")
os = import_("os")
os.environ["VMD_CHILD"] = "from script"
res = subprocess.run("echo $VMD_CHILD", shell=True, capture_output=True, text=True).stdout`, `"from script\n"`, ""},
		{"cwd", `subprocess = import_("subprocess")
Path = import_("pathlib", "Path")
res = [subprocess.run(["pwd"], cwd=tmp, capture_output=True, text=True).stdout == tmp + "\n",
       subprocess.run(["pwd"], cwd=Path(tmp), capture_output=True, text=True).stdout == tmp + "\n"]`, `[True, True]`, ""},
		{"stdout to file", `subprocess = import_("subprocess")
for f in with_(open(tmp + "/out", "w")):
    f.write("first\n")
    subprocess.run(["echo", "hi"], stdout=f)
    f.write("last\n")
res = open(tmp + "/out").read()`, `"first\nhi\nlast\n"`, ""},
		{"timeout", `subprocess = import_("subprocess")
res = subprocess.run(["sleep", "30"], timeout=0.2)`, "", `subprocess.run: command ["sleep", "30"] timed out after 0.2 seconds`},
		{"timeout as timedelta", `subprocess = import_("subprocess")
timedelta = import_("datetime", "timedelta")
res = subprocess.run(["sleep", "30"], timeout=timedelta(milliseconds=200))`, "", `timed out after 0.2 seconds`},
		{"timeout not reached", `subprocess = import_("subprocess")
res = subprocess.run(["true"], timeout=60).returncode`, `0`, ""},
		{"bad timeout", `subprocess = import_("subprocess")
res = subprocess.run(["true"], timeout="1")`, "", "subprocess.run: timeout must be a non-negative number of seconds or a timedelta"},
		{"exception builders", `subprocess = import_("subprocess")
e = subprocess.CalledProcessError(2, ["a", "b"], output=b"o")
t = subprocess.TimeoutExpired("cmd", 5)
res = [str(e), e.returncode, e.output, e.cmd, str(t), t.timeout, str(subprocess.CalledProcessError(-9, "x"))]`,
			`["Command [\"a\", \"b\"] returned non-zero exit status 2", 2, b"o", ["a", "b"], "Command \"cmd\" timed out after 5 seconds", 5, "Command \"x\" died with signal 9"]`, ""},
		{"raise builds the message", `subprocess = import_("subprocess")
fail(subprocess.CalledProcessError(1, "make"))`, "", `Command "make" returned non-zero exit status 1`},
		{"Popen", `subprocess = import_("subprocess")
res = subprocess.Popen(["true"])`, "", "subprocess.Popen: not supported: use subprocess.run"},
		{"positional extras", `subprocess = import_("subprocess")
res = subprocess.run(["true"], 1)`, "", "subprocess.run: want 1 positional argument (args), got 2"},
		{"empty args", `subprocess = import_("subprocess")
res = subprocess.run([])`, "", "subprocess.run: args is empty"},
	}, tmpDir)
}

func TestSubprocessSentinels(t *testing.T) {
	cases := []struct {
		src  string
		want error
	}{
		{`subprocess.check_call(["false"])`, ErrCalledProcess},
		{`subprocess.run(["sleep", "30"], timeout=0.1)`, ErrTimeoutExpired},
	}
	for _, c := range cases {
		m := newModules(t, Host{})
		_, err := execScript(t, m, "subprocess = import_(\"subprocess\")\n"+c.src, nil)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: error %v, want %v", c.src, err, c.want)
		}
	}
}

// logRecorder collects Host.Log and Host.Nested calls.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, s)
}

func (r *logRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

func TestHostLogging(t *testing.T) {
	t.Run("nested", func(t *testing.T) {
		var rec logRecorder
		m := newModules(t, Host{
			Log: func(_ *starlark.Thread, msg string) { rec.add("log: " + msg) },
			Nested: func(_ *starlark.Thread, msg string) func(error) {
				rec.add("begin: " + msg)
				return func(err error) { rec.add(fmt.Sprintf("end: %v", err)) }
			},
		})
		_, err := execScript(t, m, `subprocess = import_("subprocess")
os = import_("os")
time = import_("time")
subprocess.run(["echo", "it's"], capture_output=True)
os.system("exit 2")
time.sleep(0)
subprocess.check_call(["false"])`, nil)
		if err == nil {
			t.Fatal("check_call(false) succeeded")
		}
		want := []string{
			`begin: running host command: echo 'it'"'"'s'`,
			`end: <nil>`,
			`begin: running host command: /bin/sh -c 'exit 2'`,
			`log: host command exited with status 2`,
			`end: <nil>`,
			`begin: running host command: false`,
			`log: host command exited with status 1`,
			`end: subprocess.check_call: command ["false"] returned non-zero exit status 1`,
		}
		if got := rec.get(); !slices.Equal(got, want) {
			t.Errorf("log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("log only", func(t *testing.T) {
		var rec logRecorder
		var stdout, stderr bytes.Buffer
		m := newModules(t, Host{Log: func(_ *starlark.Thread, msg string) { rec.add(msg) }, Stdout: &stdout, Stderr: &stderr})
		if _, err := execScript(t, m, `subprocess = import_("subprocess")
subprocess.run(["sh", "-c", "echo to-out; echo to-err >&2"])`, nil); err != nil {
			t.Fatal(err)
		}
		if got, want := rec.get(), []string{"running host command: sh -c 'echo to-out; echo to-err >&2'"}; !slices.Equal(got, want) {
			t.Errorf("log %q, want %q", got, want)
		}
		if stdout.String() != "to-out\n" || stderr.String() != "to-err\n" {
			t.Errorf("uncaptured output: stdout %q, stderr %q; want to Host.Stdout and Host.Stderr", stdout.String(), stderr.String())
		}
	})
}

func syscallKill(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// waitGone waits until pid has exited (gone or a zombie). Another process
// reaps it, so there is nothing to wait on but /proc; the deadline bounds it.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		i := bytes.LastIndexByte(data, ')')
		if i >= 0 && i+2 < len(data) && (data[i+2] == 'Z' || data[i+2] == 'X') {
			return
		}
		if time.Now().After(deadline) {
			_ = syscallKill(pid)
			t.Fatalf("process %d survived its command's group kill: %s", pid, data)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitFile waits for a file that a child process writes, up to a deadline.
func waitFile(t *testing.T, path string, done <-chan struct{}) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if data, err := os.ReadFile(path); err == nil && bytes.HasSuffix(data, []byte("\n")) {
			return data
		}
		select {
		case <-done:
			t.Fatalf("script ended before writing %s", path)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within 10s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPid(t *testing.T, data []byte) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatalf("bad pid file %q: %v", data, err)
	}
	return pid
}

// TestSubprocessTimeoutKillsGroup: a timeout kills the command's children too.
func TestSubprocessTimeoutKillsGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	m := newModules(t, Host{})
	_, err := execScript(t, m, `subprocess = import_("subprocess")
shlex = import_("shlex")
subprocess.run(["sh", "-c", "sleep 30 & echo $! > " + shlex.quote(pidfile) + "; wait"], timeout=2)`,
		starlark.StringDict{"pidfile": starlark.String(pidFile)})
	if !errors.Is(err, ErrTimeoutExpired) {
		t.Fatalf("error %v, want a timeout", err)
	}
	data, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("the shell did not write its child's pid within the 2s timeout: %v", rerr)
	}
	waitGone(t, readPid(t, data))
}

// TestSubprocessCancel: cancelling Host.Context ends a running command and
// kills its process group.
func TestSubprocessCancel(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := newModules(t, Host{Context: func(*starlark.Thread) context.Context { return ctx }})

	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		_, err = execScript(t, m, `subprocess = import_("subprocess")
subprocess.run(["sh", "-c", "sleep 30 & echo $! > \"$0\"; wait", pidfile], capture_output=True)`,
			starlark.StringDict{"pidfile": starlark.String(pidFile)})
	}()
	pid := readPid(t, waitFile(t, pidFile, done))
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("subprocess.run did not return within 10s of cancellation")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("error %v, want cancellation", err)
	}
	waitGone(t, pid)
}

func TestSubprocessCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var rec logRecorder
	m := newModules(t, Host{Context: func(*starlark.Thread) context.Context { return ctx }, Log: func(_ *starlark.Thread, msg string) { rec.add(msg) }})
	marker := filepath.Join(t.TempDir(), "ran")
	_, err := execScript(t, m, `os = import_("os")
shlex = import_("shlex")
os.system("touch " + shlex.quote(marker))`, starlark.StringDict{"marker": starlark.String(marker)})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "os.system: not started") {
		t.Fatalf("error %v, want os.system: not started: context canceled", err)
	}
	if _, statErr := os.Stat(marker); statErr == nil {
		t.Fatal("command ran despite cancellation")
	}
	if got := rec.get(); len(got) != 1 || !strings.HasPrefix(got[0], "running host command: /bin/sh -c") {
		t.Errorf("log %q, want the one command line", got)
	}
}

func TestTimeSleep(t *testing.T) {
	t.Run("returns", func(t *testing.T) {
		m := newModules(t, Host{})
		globals, err := execScript(t, m, `time = import_("time")
a = time.monotonic()
b = time.perf_counter()
time.sleep(0.01)
time.sleep(0)
res = [time.sleep(0.001), time.monotonic() - a >= 0.01, time.perf_counter() > b, time.time() > 1.7e9, time.time_ns() > 1700000000 * 1000000000, type(time.monotonic_ns())]`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := globals["res"].String(), `[None, True, True, True, True, "int"]`; got != want {
			t.Errorf("res = %s, want %s", got, want)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		m := newModules(t, Host{Context: func(*starlark.Thread) context.Context { return ctx }})
		done := make(chan error, 1)
		go func() {
			_, err := execScript(t, m, `time = import_("time")
time.sleep(3600)`, nil)
			done <- err
		}()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "time.sleep: interrupted") {
				t.Errorf("error %v, want time.sleep: interrupted: context canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("time.sleep did not return within 10s of cancellation")
		}
	})
	t.Run("errors", func(t *testing.T) {
		runSnippets(t, []snippet{
			{"negative", `time = import_("time")
time.sleep(-1)`, "", "time.sleep: sleep length must be non-negative"},
			{"string", `time = import_("time")
time.sleep("1")`, "", "time.sleep: want int or float seconds, got string"},
			{"strftime", `time = import_("time")
res = len(time.strftime("%Y-%m-%d %H:%M:%S"))`, "19", ""},
			{"strftime bad", `time = import_("time")
res = time.strftime("%Q")`, "", "time.strftime: unsupported format directive %Q"},
		}, nil)
	})
}
