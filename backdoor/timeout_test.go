package backdoor

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var sleepSeq atomic.Int64

// uniqueSleep returns an argument for sleep(1) that no other process on
// the host uses: secs, then this test process's pid and a counter as
// fractional digits, so the test can find (and clean up) that sleep by
// its command line. It never lasts less than secs seconds, far longer
// than any test here waits.
func uniqueSleep(t testing.TB, secs int) string {
	arg := fmt.Sprintf("%d.%d%03d", secs, os.Getpid(), sleepSeq.Add(1))
	t.Cleanup(func() {
		// Only if the test failed: a sleep the guest did not end.
		for _, pid := range sleepers(t, arg) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return arg
}

// sleepers returns the pids of live `sleep arg` processes.
func sleepers(t testing.TB, arg string) []int {
	t.Helper()
	want := []byte("sleep\x00" + arg + "\x00")
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range cmdlines {
		b, err := os.ReadFile(f) // empty for a zombie; gone if it exited
		if err != nil || !bytes.HasSuffix(b, want) {
			continue
		}
		if base := bytes.TrimSuffix(b, want); len(base) > 0 && !bytes.HasSuffix(base, []byte("/")) {
			continue // not argv[0] = sleep or …/sleep
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestTimeoutEndsProcessGroup: RunOptions.Timeout ends everything the
// command started (its process group), reports 124, and leaves the shell
// ready. Without that, a compound command's sleep outlived busybox
// timeout holding stdout, and the Run hung (its ctx here ends long before
// the sleeps would).
func TestTimeoutEndsProcessGroup(t *testing.T) {
	big := strings.Repeat("x", argChunk+argChunk/2) // sent in two chunks
	for _, g := range guests(t) {
		if !g.realShell {
			continue // the fake enforces no time limit (GuestRequest.Timeout)
		}
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder()
			s := readyShell(t, g.start(t), WithLogf(logs.logf))
			tests := []struct {
				name   string
				cmd    func(sleep string) string
				opts   RunOptions
				status int
				out    string
				// minimum is a lower bound of the run time: the command
				// cannot end sooner (not a speed check).
				minimum time.Duration
			}{
				{
					name:    "compound command",
					cmd:     func(sl string) string { return "echo started; sleep " + sl + "; echo not-reached" },
					opts:    RunOptions{Timeout: time.Second},
					status:  124,
					out:     "started\n",
					minimum: time.Second,
				},
				{
					name:   "background child",
					cmd:    func(sl string) string { return "sleep " + sl + " & echo bg; wait" },
					opts:   RunOptions{Timeout: time.Second},
					status: 124,
					out:    "bg\n",
				},
				{
					name:   "chunked command",
					cmd:    func(sl string) string { return "s='" + big + "'; echo ${#s}; sleep " + sl },
					opts:   RunOptions{Timeout: time.Second},
					status: 124,
					out:    strconv.Itoa(len(big)) + "\n",
				},
				{
					name: "TERM ignored: KILL 2 s later",
					cmd:  func(sl string) string { return "trap '' TERM; echo ignoring; sleep " + sl },
					opts: RunOptions{Timeout: time.Second},
					// The watchdog's KILL ends it, else it would hang.
					status:  124,
					out:     "ignoring\n",
					minimum: 3 * time.Second,
				},
				{
					name:   "TERM trapped",
					cmd:    func(sl string) string { return "trap 'echo cleanup; exit 7' TERM; sleep " + sl + " & wait" },
					opts:   RunOptions{Timeout: time.Second},
					status: 124,
					out:    "cleanup\n",
				},
				{
					name:   "in time: own status",
					cmd:    func(string) string { return "echo in time; exit 3" },
					opts:   RunOptions{Timeout: 10 * time.Second},
					status: 3,
					out:    "in time\n",
				},
				{
					name:   "in time: own signal is not a timeout",
					cmd:    func(string) string { return "echo bye; kill -TERM $$" },
					opts:   RunOptions{Timeout: 10 * time.Second},
					status: 143,
					out:    "bye\n",
				},
				{
					name:   "in time: chunked",
					cmd:    func(string) string { return "s='" + big + "'; echo ${#s}; exit 5" },
					opts:   RunOptions{Timeout: 10 * time.Second},
					status: 5,
					out:    strconv.Itoa(len(big)) + "\n",
				},
			}
			for _, tc := range tests {
				sleep := uniqueSleep(t, 97)
				start := time.Now()
				r := run(t, s, tc.cmd(sleep), tc.opts)
				took := time.Since(start)
				if r.Status != tc.status || string(r.Output) != tc.out {
					t.Errorf("%s: got (%d, %q), want (%d, %q)", tc.name, r.Status, trunc(r.Output), tc.status, tc.out)
				}
				if took < tc.minimum {
					t.Errorf("%s: took %v, but it cannot end before %v", tc.name, took, tc.minimum)
				}
				if pids := sleepers(t, sleep); len(pids) > 0 {
					t.Errorf("%s: `sleep %s` still running (pids %v)", tc.name, sleep, pids)
				}
				// The next command runs at once: the shell is not busy.
				if r := run(t, s, "echo next", RunOptions{}); string(r.Output) != "next\n" {
					t.Errorf("%s: next command: got %q", tc.name, r.Output)
				}
			}
			logs.mu.Lock()
			defer logs.mu.Unlock()
			for _, m := range logs.msgs {
				if strings.Contains(m, "background process") {
					t.Errorf("logged %q", m)
				}
			}
		})
	}
}

// TestTimeoutFallback: on a guest without setsid the prelude falls back
// to timeout(1) (busybox's here, hence 143).
func TestTimeoutFallback(t *testing.T) {
	applets := slices.DeleteFunc(slices.Clone(busyboxApplets), func(s string) bool { return s == "setsid" })
	for _, counted := range []bool{true, false} {
		t.Run(fmt.Sprintf("counted=%v", counted), func(t *testing.T) {
			t.Parallel()
			s := readyShell(t, startBash(t, bashOptions{path: busyboxOnly(t, applets...), ports: counted}))
			big := strings.Repeat("y", argChunk+1)
			tests := []struct {
				name   string
				cmd    string
				opts   RunOptions
				status int
				out    string
			}{
				{"no setsid", "command -v setsid || echo none", RunOptions{}, 0, "none\n"},
				{"timeout", "sleep 5", RunOptions{Timeout: 300 * time.Millisecond}, 143, ""},
				{"in time", "echo in time; exit 4", RunOptions{Timeout: 10 * time.Second}, 4, "in time\n"},
				{"nounset", "echo $1", RunOptions{Timeout: 10 * time.Second}, 1, ""},
				{"chunked", "s='" + big + "'; echo ${#s}", RunOptions{Timeout: 10 * time.Second}, 0, strconv.Itoa(len(big)) + "\n"},
				{"after all that", "echo ok", RunOptions{}, 0, "ok\n"},
			}
			for _, tc := range tests {
				r := run(t, s, tc.cmd, tc.opts)
				if r.Status != tc.status || string(r.Output) != tc.out {
					t.Errorf("%s: got (%d, %q), want (%d, %q)", tc.name, r.Status, trunc(r.Output), tc.status, tc.out)
				}
			}
		})
	}
}
