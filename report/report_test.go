package report_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/report"
)

var _ machine.Logger = (*report.Logger)(nil)

// fakeClock is an injectable clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// run creates a Logger writing to a buffer with opts (plus the fake
// clock), runs script and returns what was written.
func run(t *testing.T, opts report.Options, script func(l *report.Logger, clk *fakeClock)) string {
	t.Helper()
	var buf bytes.Buffer
	clk := newFakeClock()
	opts.Out, opts.Now = &buf, clk.Now
	l := report.New(opts)
	script(l, clk)
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.String()
}

func TestText(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name   string
		opts   report.Options
		script func(l *report.Logger, clk *fakeClock)
		want   string
	}{
		{
			name: "nesting and durations",
			opts: report.Options{SerialToOut: true},
			script: func(l *report.Logger, clk *fakeClock) {
				l.Info("", "starting")
				end := l.Nested("", "run the VM test script")
				l.Info("server", "booting")
				inner := l.Nested("server", "waiting for unit")
				l.Serial("server", "[  OK  ] Started foo.")
				clk.Advance(1500 * time.Millisecond)
				inner(nil)
				clk.Advance(sec)
				end(nil)
				l.Info("", "test script finished in 2.50s")
			},
			want: `starting
run the VM test script
  server: booting
  server: waiting for unit
    server # [  OK  ] Started foo.
  server: (finished: waiting for unit, in 1.50 seconds)
(finished: run the VM test script, in 2.50 seconds)
test script finished in 2.50s
`,
		},
		{
			name: "failed block and subtests",
			script: func(l *report.Logger, clk *fakeClock) {
				outer := l.Subtest("outer")
				clk.Advance(sec)
				inner := l.Subtest("inner")
				n := l.Nested("client", "succeed false")
				clk.Advance(250 * time.Millisecond)
				n(errors.New("exit code 1"))
				inner(errors.New("exit code 1"))
				outer(nil)
			},
			want: `subtest: outer
  subtest: inner
    client: succeed false
    client: (failed: succeed false, in 0.25 seconds)
  (failed: subtest: inner, in 0.25 seconds)
(finished: subtest: outer, in 1.25 seconds)
`,
		},
		{
			name: "levels at info",
			opts: report.Options{SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				l.Debug("m", "hidden")
				l.Info("m", "info")
				l.Warn("m", "careful")
				l.Error("", "broken")
			},
			want: "m: info\nm: warning: careful\nerror: broken\n",
		},
		{
			name: "levels at debug",
			opts: report.Options{Level: report.LevelDebug},
			script: func(l *report.Logger, _ *fakeClock) {
				l.Debug("m", "shown")
				l.Info("m", "info")
			},
			want: "m: shown\nm: info\n",
		},
		{
			name: "level warning hides info, blocks and serial",
			opts: report.Options{Level: report.LevelWarning, SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("", "block")
				l.Info("m", "info")
				l.Serial("m", "serial")
				l.Warn("m", "careful")
				end(nil)
				l.Failure("boom", nil)
			},
			want: "  m: warning: careful\n!!! boom\n",
		},
		{
			name: "level error still shows failures",
			opts: report.Options{Level: report.LevelError},
			script: func(l *report.Logger, _ *fakeClock) {
				l.Warn("m", "careful")
				l.Error("m", "bad")
				l.Failure("boom", nil)
			},
			want: "m: error: bad\n!!! boom\n",
		},
		{
			name: "serial off then toggled on and off",
			script: func(l *report.Logger, _ *fakeClock) {
				l.Serial("m", "one")
				l.SetSerialOutput(true)
				l.Serial("m", "two")
				l.Serial("", "no machine")
				l.SetSerialOutput(false)
				l.Serial("m", "three")
				l.Info("m", "done")
			},
			want: "m # two\n# no machine\nm: done\n",
		},
		{
			name: "failure with location",
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("", "run the VM test script")
				l.Failure("command \"false\" failed\nexit code 1\n", &report.Location{
					File: "test.star", Line: 12, Col: 9, Source: "\tserver.succeed(\"false\")",
				})
				end(errors.New("failed"))
			},
			want: "run the VM test script\n" +
				"!!! test.star:12:9:\n" +
				"!!!     \tserver.succeed(\"false\")\n" +
				"!!!     \t       ^\n" +
				"!!! command \"false\" failed\n" +
				"!!! exit code 1\n" +
				"(failed: run the VM test script, in 0.00 seconds)\n",
		},
		{
			name: "failure with location but no source",
			script: func(l *report.Logger, _ *fakeClock) {
				l.Failure("boom", &report.Location{File: "t.star", Line: 3})
			},
			want: "!!! t.star:3:\n!!! boom\n",
		},
		{
			name: "multi-line messages repeat the prefix",
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("", "b")
				l.Info("m", "line 1\nline 2\n")
				end(nil)
			},
			want: "b\n  m: line 1\n  m: line 2\n(finished: b, in 0.00 seconds)\n",
		},
		{
			name: "control characters sanitized",
			opts: report.Options{SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				l.Serial("m", "\x1b[0;32m  OK  \x1b[0m bell\a nul\x00 csi\u009b tab\tend\r")
				l.Info("m", "bad utf8 \xff\xfe done")
				l.Serial("m", "title \x1b]0;hi\x07 after")
			},
			want: "m #   OK   bell\\x07 nul\\x00 csi\\x9b tab\tend\n" +
				"m: bad utf8 \uFFFD done\n" +
				"m # title  after\n",
		},
		{
			name: "out of order and repeated ends",
			script: func(l *report.Logger, clk *fakeClock) {
				a := l.Nested("a", "start a")
				b := l.Nested("b", "start b")
				clk.Advance(sec)
				a(nil)
				a(errors.New("ignored: already ended"))
				l.Info("", "one block open")
				b(nil)
				l.Info("", "none open")
			},
			want: `a: start a
  b: start b
a: (finished: start a, in 1.00 seconds)
  one block open
  b: (finished: start b, in 1.00 seconds)
none open
`,
		},
		{
			name: "colour",
			opts: report.Options{Color: true, SerialToOut: true, Level: report.LevelDebug},
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("m", "block")
				l.Info("m", "plain")
				l.Debug("m", "debug")
				l.Serial("m", "serial")
				l.Warn("m", "warn")
				l.Error("m", "err")
				end(errors.New("x"))
				s := l.Subtest("st")
				s(nil)
				l.Failure("boom", nil)
			},
			want: "\x1b[1;32mm: block\x1b[0m\n" +
				"  m: plain\n" +
				"  \x1b[2mm: debug\x1b[0m\n" +
				"  \x1b[2mm # serial\x1b[0m\n" +
				"  \x1b[33mm: warning: warn\x1b[0m\n" +
				"  \x1b[31mm: error: err\x1b[0m\n" +
				"\x1b[31mm: (failed: block, in 0.00 seconds)\x1b[0m\n" +
				"\x1b[1;32msubtest: st\x1b[0m\n" +
				"(finished: subtest: st, in 0.00 seconds)\n" +
				"\x1b[31m!!! boom\x1b[0m\n",
		},
		{
			name: "no colour has no escapes",
			opts: report.Options{Color: false, SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("m", "block")
				l.Warn("m", "warn")
				end(errors.New("x"))
				l.Failure("boom", nil)
			},
			want: "m: block\n  m: warning: warn\nm: (failed: block, in 0.00 seconds)\n!!! boom\n",
		},
		{
			name: "closed logger writes nothing more",
			opts: report.Options{SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				l.Info("", "before")
				_ = l.Close()
				l.Info("", "after")
				l.Serial("m", "after")
			},
			want: "before\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, tt.opts, tt.script)
			if got != tt.want {
				t.Errorf("output mismatch\ngot:\n%s\nwant:\n%s\ngot  %q\nwant %q", got, tt.want, got, tt.want)
			}
		})
	}
}

type failingWriter struct{ n int }

func (w *failingWriter) Write(p []byte) (int, error) {
	w.n++
	return 0, errors.New("disk full")
}

func TestCloseReportsWriteError(t *testing.T) {
	w := &failingWriter{}
	l := report.New(report.Options{Out: w})
	l.Info("", "one")
	l.Info("", "two")
	err := l.Close()
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Close() = %v, want the write error", err)
	}
	if w.n != 1 {
		t.Errorf("writes after the first error: got %d writes, want 1", w.n)
	}
}

func TestColorFor(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	t.Setenv("NO_COLOR", "")
	t.Setenv("TERM", "xterm")
	if report.ColorFor(f) {
		t.Errorf("ColorFor(regular file) = true, want false")
	}
	if report.ColorFor(nil) {
		t.Errorf("ColorFor(nil) = true, want false")
	}
}

func TestLevelAndFormatText(t *testing.T) {
	levels := []struct {
		in      string
		want    report.Level
		wantErr bool
	}{
		{"debug", report.LevelDebug, false},
		{"INFO", report.LevelInfo, false},
		{"warn", report.LevelWarning, false},
		{"warning", report.LevelWarning, false},
		{"error", report.LevelError, false},
		{"loud", 0, true},
	}
	for _, tt := range levels {
		var v report.Level
		err := v.UnmarshalText([]byte(tt.in))
		if tt.wantErr {
			if !errors.Is(err, report.ErrUnknownLevel) {
				t.Errorf("Level.UnmarshalText(%q) error = %v, want ErrUnknownLevel", tt.in, err)
			}
			continue
		}
		if err != nil || v != tt.want {
			t.Errorf("Level.UnmarshalText(%q) = %v, %v; want %v", tt.in, v, err, tt.want)
		}
		if b, _ := v.MarshalText(); tt.in != "warn" && string(b) != strings.ToLower(tt.in) {
			t.Errorf("Level(%d).MarshalText() = %q, want %q", v, b, strings.ToLower(tt.in))
		}
	}
	var f report.Format
	if err := f.UnmarshalText([]byte("json")); err != nil || f != report.FormatJSON {
		t.Errorf(`Format.UnmarshalText("json") = %v, %v`, f, err)
	}
	if err := f.UnmarshalText([]byte("yaml")); !errors.Is(err, report.ErrUnknownFormat) {
		t.Errorf(`Format.UnmarshalText("yaml") error = %v, want ErrUnknownFormat`, err)
	}
	if report.LevelDebug.String() != "debug" || report.FormatText.String() != "text" {
		t.Errorf("String spellings changed")
	}
	if var0 := (report.Options{}).Level; var0 != report.LevelInfo {
		t.Errorf("zero Level = %v, want info", var0)
	}
}

// TestConcurrent logs from 8 goroutines (with -race) while the script
// thread opens and closes blocks, and checks every line came out whole.
func TestConcurrent(t *testing.T) {
	const goroutines, lines = 8, 300
	payload := strings.Repeat("x", 200)
	for _, format := range []report.Format{report.FormatText, report.FormatJSON} {
		t.Run(format.String(), func(t *testing.T) {
			var buf bytes.Buffer // unsynchronized: the race detector checks the Logger's locking
			l := report.New(report.Options{Out: &buf, Format: format, SerialToOut: true, JUnit: true})
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					name := fmt.Sprintf("vm%d", g)
					for i := range lines {
						if i%2 == 0 {
							l.Serial(name, fmt.Sprintf("%d %s", i, payload))
						} else {
							l.Info(name, fmt.Sprintf("%d %s", i, payload))
						}
					}
				})
			}
			for i := range 50 {
				end := l.Subtest(fmt.Sprintf("s%d", i))
				inner := l.Nested("", "inner")
				inner(nil)
				end(nil)
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			lineRE := regexp.MustCompile(`^(?:  )*(?:(vm\d)(?:: | # )(\d+) ` + payload + `|subtest: s\d+|inner|\(finished: (?:subtest: s\d+|inner), in \d+\.\d\d seconds\))$`)
			seen := map[string]int{}
			sc := bufio.NewScanner(&buf)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if format == report.FormatJSON {
					var rec struct{ Machine, Msg string }
					if err := json.Unmarshal([]byte(line), &rec); err != nil {
						t.Fatalf("line is not JSON (%v): %q", err, line)
					}
					if rec.Machine != "" {
						if !strings.HasSuffix(rec.Msg, " "+payload) {
							t.Fatalf("torn message: %q", line)
						}
						seen[rec.Machine]++
					}
					continue
				}
				m := lineRE.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("torn or unexpected line: %q", line)
				}
				if m[1] != "" {
					seen[m[1]]++
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			for g := range goroutines {
				if n := seen[fmt.Sprintf("vm%d", g)]; n != lines {
					t.Errorf("vm%d: %d lines, want %d", g, n, lines)
				}
			}
			var junit bytes.Buffer
			if err := l.WriteJUnit(&junit); err != nil {
				t.Fatal(err)
			}
			if got := strings.Count(junit.String(), payload); got != goroutines*lines {
				t.Errorf("junit holds %d machine lines, want %d", got, goroutines*lines)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	clk := newFakeClock()
	var buf bytes.Buffer
	l := report.New(report.Options{Out: &buf, Format: report.FormatJSON, Color: true, Now: clk.Now})
	sub := l.Subtest("boot")
	end := l.Nested("server", "start <vm> & wait")
	l.Serial("server", "hidden: serial off")
	l.SetSerialOutput(true)
	l.Serial("server", "raw \x1b[1m\x07")
	clk.Advance(1500 * time.Millisecond)
	l.Warn("server", "slow")
	end(errors.New("timed out"))
	sub(nil)
	l.Failure("timed out", &report.Location{File: "t.star", Line: 4, Col: 2, Source: " x()"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	type rec struct {
		Time      string   `json:"time"`
		Level     string   `json:"level"`
		Machine   string   `json:"machine"`
		Msg       string   `json:"msg"`
		Kind      string   `json:"kind"`
		Depth     *int     `json:"depth"`
		DurationS *float64 `json:"duration_s"`
		Error     string   `json:"error"`
		File      string   `json:"file"`
		Line      int      `json:"line"`
		Col       int      `json:"col"`
		Source    string   `json:"source"`
	}
	f := func(v float64) *float64 { return &v }
	t0, t1 := "2026-01-02T03:04:05Z", "2026-01-02T03:04:06.5Z"
	want := []rec{
		{Time: t0, Level: "info", Msg: "boot", Kind: "subtest_start"},
		{Time: t0, Level: "info", Machine: "server", Msg: "start <vm> & wait", Kind: "nested_start"},
		{Time: t0, Level: "info", Machine: "server", Msg: "raw \x1b[1m\x07", Kind: "serial"},
		{Time: t1, Level: "warning", Machine: "server", Msg: "slow", Kind: "line"},
		{Time: t1, Level: "info", Machine: "server", Msg: "start <vm> & wait", Kind: "nested_end", DurationS: f(1.5), Error: "timed out"},
		{Time: t1, Level: "info", Msg: "boot", Kind: "subtest_end", DurationS: f(1.5)},
		{Time: t1, Level: "error", Msg: "timed out", Kind: "failure", File: "t.star", Line: 4, Col: 2, Source: " x()"},
	}
	depths := []int{0, 1, 2, 2, 1, 0, 0}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		if strings.Contains(line, "\x1b[31m") {
			t.Errorf("line %d has colour in JSON: %q", i, line)
		}
		var got rec
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("line %d does not parse: %v: %s", i, err, line)
		}
		if got.Depth == nil || *got.Depth != depths[i] {
			t.Errorf("line %d depth = %v, want %d", i, got.Depth, depths[i])
		}
		got.Depth = nil
		w := want[i]
		if (got.DurationS == nil) != (w.DurationS == nil) || (got.DurationS != nil && *got.DurationS != *w.DurationS) {
			t.Errorf("line %d duration_s = %v, want %v", i, got.DurationS, w.DurationS)
		}
		got.DurationS, w.DurationS = nil, nil
		if got != w {
			t.Errorf("line %d:\ngot  %+v\nwant %+v", i, got, w)
		}
	}
}

func BenchmarkSerialLine(b *testing.B) {
	for _, junit := range []bool{false, true} {
		b.Run(fmt.Sprintf("junit=%v", junit), func(b *testing.B) {
			var buf bytes.Buffer
			l := report.New(report.Options{Out: &buf, SerialToOut: true, JUnit: junit})
			end := l.Nested("", "block")
			defer end(nil)
			line := "[  OK  ] Started \x1b[0;1;39mJournal Service\x1b[0m."
			for b.Loop() {
				buf.Reset()
				l.Serial("server", line)
			}
		})
	}
}
