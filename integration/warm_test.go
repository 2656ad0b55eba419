package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// infoLog records a machine's info lines and passes everything to t.Logf.
type infoLog struct {
	t     *testing.T
	mu    sync.Mutex
	lines []string
}

func (l *infoLog) Info(m, msg string) {
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	l.mu.Unlock()
	l.t.Logf("%s: %s", m, msg)
}
func (l *infoLog) Warn(m, msg string)    { l.t.Logf("%s: warning: %s", m, msg) }
func (l *infoLog) Serial(m, line string) {}
func (l *infoLog) Nested(m, msg string) func(error) {
	return func(error) {}
}

func (l *infoLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

// TestWarm starts each guest kind cold with a fresh warm cache, then warm
// from the entry that run saved: the same machine (name, addresses), a
// fresh machine-id and clock, its share mounted again, the boot's console
// lines still matchable. A changed start script boots cold; two warm runs
// at once both start warm; a truncated entry is replaced by a cold boot.
func TestWarm(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, k := range guestKinds {
		t.Run(k.name, func(t *testing.T) {
			cache := t.TempDir()
			run := func(t *testing.T, opts ...machine.Option) (*machine.Machine, *infoLog) {
				log := &infoLog{t: t}
				m := boot(t, k, append([]machine.Option{machine.WithWarm(cache), machine.WithLogger(log)}, opts...)...)
				return m, log
			}
			ctx := testCtx(t, 10*time.Minute)
			idOf := func(m *machine.Machine) string {
				out, err := m.Succeed(ctx, "cat /etc/machine-id 2>/dev/null || echo none")
				if err != nil {
					t.Fatal(err)
				}
				return out
			}

			cold, coldLog := run(t)
			if !coldLog.has("cold start: no warm entry yet") || !coldLog.has("saved a warm entry") {
				t.Fatalf("the first run did not boot cold and save an entry")
			}
			coldID := idOf(cold)
			must(t, cold.Close())

			warm, warmLog := run(t)
			if !warmLog.has("started warm in") {
				t.Fatalf("the second run did not start warm")
			}
			if out, err := warm.Succeed(ctx, "hostname"); err != nil || out != k.name+"\n" {
				t.Errorf("hostname after a warm start = %q, %v", out, err)
			}
			if id := idOf(warm); k.systemd && id == coldID {
				t.Errorf("machine-id %q is the cold run's: want a fresh one", id)
			}
			out, err := warm.Succeed(ctx, "date +%s")
			must(t, err)
			secs, _ := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
			if skew := time.Since(time.Unix(secs, 0)); skew < -5*time.Second || skew > 5*time.Second {
				t.Errorf("the guest clock is %s off the host's after a warm start", skew)
			}
			must(t, os.WriteFile(filepath.Join(warm.SharedDir(), "from-host"), []byte("this run's share\n"), 0o644))
			if out, err := warm.Succeed(ctx, "cat /tmp/shared/from-host"); err != nil || out != "this run's share\n" {
				t.Errorf("the share after a warm start: %q, %v", out, err)
			}
			if err := warm.WaitForConsoleText(ctx, "Linux version", machine.Timeout(10*time.Second)); err != nil {
				t.Errorf("the boot's console lines were not replayed: %v", err)
			}
			if k.systemd {
				if out, err := warm.Succeed(ctx, "systemctl is-system-running"); err != nil || out != "running\n" {
					t.Errorf("systemctl is-system-running after a warm start = %q, %v", out, err)
				}
			}
			must(t, warm.Close())

			// Two runs at once share the entry.
			var wg sync.WaitGroup
			logs := make([]*infoLog, 2)
			for i := range logs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var m *machine.Machine
					m, logs[i] = run(t)
					if _, err := m.Succeed(ctx, "true"); err != nil {
						t.Errorf("concurrent warm run %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			for i, l := range logs {
				if !l.has("started warm in") {
					t.Errorf("concurrent run %d did not start warm", i)
				}
			}

			// A changed start script is another machine: cold.
			script, err := os.ReadFile(testenv.StartScript(t, k.name))
			must(t, err)
			changed := filepath.Join(t.TempDir(), "run-"+k.name+"-vm")
			must(t, os.WriteFile(changed, append(script, []byte("# changed\n")...), 0o755))
			_, chLog := run(t, machine.WithStartScript(changed))
			if !chLog.has("cold start: no warm entry yet") {
				t.Errorf("a changed start script started warm")
			}

			// A truncated entry: reported, replaced by a cold boot.
			entries, err := filepath.Glob(filepath.Join(cache, "*", "state.*"))
			must(t, err)
			if len(entries) == 0 {
				t.Fatalf("no saved state in %s", cache)
			}
			for _, e := range entries {
				must(t, os.Truncate(e, 100))
			}
			_, brokenLog := run(t)
			if !brokenLog.has("is unusable and is replaced") || !brokenLog.has("saved a warm entry") {
				t.Errorf("a truncated entry was not replaced by a cold boot")
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Sprint(err))
	}
}
