package report_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/report"
)

// A branch is what forked subtests log to, so it must be a driver.Logger
// (a machine.Logger with subtests).
var _ interface {
	Info(machine, msg string)
	Warn(machine, msg string)
	Serial(machine, line string)
	Nested(machine, msg string) func(error)
	Subtest(name string) func(error)
} = (*report.Logger)(nil)

func TestBranchText(t *testing.T) {
	sec := time.Second
	tests := []struct {
		name   string
		opts   report.Options
		script func(l *report.Logger, clk *fakeClock)
		want   string
	}{
		{
			name: "parallel subtests print whole, in merge order",
			script: func(l *report.Logger, clk *fakeClock) {
				a, mergeA := l.Branch()
				b, mergeB := l.Branch()
				endA := a.Subtest("a")
				endB := b.Subtest("b")
				a.Info("m-1", "in a")
				b.Info("m-2", "in b")
				l.Info("", "parent line")
				clk.Advance(sec)
				a.Info("m-1", "still a")
				endB(nil)
				mergeB()
				endA(errors.New("boom"))
				a.Failure(`Test "a" failed with error: "boom"`, &report.Location{File: "t.py", Line: 3})
				mergeA()
			},
			want: `parent line
subtest: b
  m-2: in b
(finished: subtest: b, in 1.00 seconds)
subtest: a
  m-1: in a
  m-1: still a
(failed: subtest: a, in 1.00 seconds)
!!! t.py:3:
!!! Test "a" failed with error: "boom"
`,
		},
		{
			name: "indented at the parent's depth at merge",
			script: func(l *report.Logger, _ *fakeClock) {
				end := l.Nested("", "outer")
				c, merge := l.Branch()
				n := c.Nested("m", "inner")
				c.Info("m", "x")
				n(nil)
				merge()
				end(nil)
			},
			want: `outer
  m: inner
    m: x
  m: (finished: inner, in 0.00 seconds)
(finished: outer, in 0.00 seconds)
`,
		},
		{
			name: "after merge the child writes straight through",
			script: func(l *report.Logger, _ *fakeClock) {
				c, merge := l.Branch()
				c.Info("m", "held")
				l.Info("", "parent")
				merge()
				merge() // a second call does nothing
				c.Info("m", "late")
			},
			want: "parent\nm: held\nm: late\n",
		},
		{
			name: "serial lines follow the child's setting",
			opts: report.Options{SerialToOut: true},
			script: func(l *report.Logger, _ *fakeClock) {
				c, merge := l.Branch()
				c.Serial("m", "shown")
				c.SetSerialOutput(false)
				c.Serial("m", "hidden")
				merge()
				l.Serial("m", "parent still on")
			},
			want: "m # shown\nm # parent still on\n",
		},
		{
			name: "nested branches",
			script: func(l *report.Logger, _ *fakeClock) {
				c, merge := l.Branch()
				end := c.Subtest("outer")
				g, mergeG := c.Branch()
				g.Info("m", "grandchild")
				c.Info("m", "child")
				mergeG()
				end(nil)
				l.Info("", "parent")
				merge()
			},
			want: `parent
subtest: outer
  m: child
  m: grandchild
(finished: subtest: outer, in 0.00 seconds)
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t, tt.opts, tt.script); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestBranchJSONDepth(t *testing.T) {
	got := run(t, report.Options{Format: report.FormatJSON}, func(l *report.Logger, _ *fakeClock) {
		end := l.Nested("", "outer")
		c, merge := l.Branch()
		s := c.Subtest("s")
		c.Info("m", "x")
		s(nil)
		merge()
		end(nil)
	})
	var kinds []string
	sc := bufio.NewScanner(strings.NewReader(got))
	for sc.Scan() {
		var rec struct {
			Kind  string
			Msg   string
			Depth int
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not JSON: %q: %v", sc.Text(), err)
		}
		kinds = append(kinds, fmt.Sprintf("%s:%s:%d", rec.Kind, rec.Msg, rec.Depth))
	}
	want := "nested_start:outer:0 subtest_start:s:1 line:x:2 subtest_end:s:1 nested_end:outer:0"
	if g := strings.Join(kinds, " "); g != want {
		t.Errorf("records\n got %s\nwant %s", g, want)
	}
}

func TestBranchJUnit(t *testing.T) {
	tests := []struct {
		name   string
		script func(l *report.Logger, clk *fakeClock)
		// want is "name:pass" or "name:fail:message" per case, in order.
		want     []string
		failures int
		// out maps a case to text its system-out must contain.
		out map[string]string
	}{
		{
			name: "three forked subtests, one failed",
			script: func(l *report.Logger, clk *fakeClock) {
				l.Info("", "set-up")
				for i, name := range []string{"one", "two", "three"} {
					c, merge := l.Branch()
					end := c.Subtest(name)
					c.Info("m", "in "+name)
					clk.Advance(time.Second)
					var err error
					if i == 1 {
						err = errors.New("exit code 1")
						c.Failure(`Test "two" failed`, nil)
					}
					end(err)
					merge()
				}
			},
			want:     []string{"one:pass", "two:fail:exit code 1", "three:pass"},
			failures: 1,
			out:      map[string]string{"one": "m: in one", "three": "m: in three"},
		},
		{
			name: "nested under the parent's open subtest",
			script: func(l *report.Logger, _ *fakeClock) {
				outer := l.Subtest("outer")
				c, merge := l.Branch()
				c.Info("m", "outside the child's subtests")
				inner := c.Subtest("inner")
				deeper := c.Subtest("deeper")
				deeper(nil)
				inner(nil)
				merge()
				outer(nil)
			},
			want: []string{"outer:pass", "outer/inner:pass", "outer/inner/deeper:pass"},
			out:  map[string]string{"outer": "m: outside the child's subtests"},
		},
		{
			name: "a subtest open at merge did not finish",
			script: func(l *report.Logger, _ *fakeClock) {
				c, merge := l.Branch()
				end := c.Subtest("stuck")
				merge()
				end(nil) // too late: the parent owns it now
			},
			want:     []string{"stuck:fail:subtest did not finish"},
			failures: 1,
		},
		{
			name: "a failure outside the child's subtests fails main",
			script: func(l *report.Logger, _ *fakeClock) {
				c, merge := l.Branch()
				c.Failure("forking failed", nil)
				merge()
			},
			want:     []string{"main:fail:forking failed"},
			failures: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := parseJUnit(t, junitOf(t, tt.script))
			s := doc.Suites[0]
			var got []string
			for _, c := range s.Cases {
				g := c.Name + ":pass"
				if c.Failure != nil {
					g = c.Name + ":fail:" + c.Failure.Message
				}
				got = append(got, g)
				if want, ok := tt.out[c.Name]; ok && !strings.Contains(c.SystemOut, want) {
					t.Errorf("case %s system-out %q lacks %q", c.Name, c.SystemOut, want)
				}
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("cases\n got %q\nwant %q", got, tt.want)
			}
			if s.Failures != tt.failures || doc.Failures != tt.failures {
				t.Errorf("failures = %d (suite) %d (doc), want %d", s.Failures, doc.Failures, tt.failures)
			}
		})
	}
}

// TestBranchConcurrent logs from many branches at once, with lines
// arriving from other goroutines meanwhile, and checks that every
// branch's block comes out whole.
func TestBranchConcurrent(t *testing.T) {
	const branches, lines = 8, 100
	for _, format := range []report.Format{report.FormatText, report.FormatJSON} {
		t.Run(format.String(), func(t *testing.T) {
			var buf bytes.Buffer // unsynchronized: the race detector checks the locking
			l := report.New(report.Options{Out: &buf, Format: format, JUnit: true, SerialToOut: true})
			var wg sync.WaitGroup
			for b := range branches {
				wg.Go(func() {
					c, merge := l.Branch()
					name := fmt.Sprintf("b%d", b)
					end := c.Subtest(name)
					for i := range lines {
						c.Info(name, fmt.Sprint(i))
						l.Serial("bg", "noise") // the parent keeps logging
					}
					end(nil)
					merge()
				})
			}
			wg.Wait()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			// Outside a block only "bg" lines; inside block bN only its
			// own lines, numbered in order.
			cur, next := "", 0
			sc := bufio.NewScanner(&buf)
			for sc.Scan() {
				kind, machine, msg := "", "", ""
				if format == report.FormatJSON {
					var rec struct{ Kind, Machine, Msg string }
					if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
						t.Fatalf("not JSON: %q", sc.Text())
					}
					kind, machine, msg = rec.Kind, rec.Machine, rec.Msg
				} else {
					line := strings.TrimSpace(sc.Text())
					switch {
					case strings.HasPrefix(line, "subtest: "):
						kind, msg = "subtest_start", strings.TrimPrefix(line, "subtest: ")
					case strings.HasPrefix(line, "(finished: subtest: "):
						kind = "subtest_end"
					case strings.HasPrefix(line, "bg # "):
						kind, machine = "serial", "bg"
					default:
						kind = "line"
						machine, msg, _ = strings.Cut(line, ": ")
					}
				}
				switch kind {
				case "subtest_start":
					if cur != "" {
						t.Fatalf("block %s starts inside block %s", msg, cur)
					}
					cur, next = msg, 0
				case "subtest_end":
					if next != lines {
						t.Fatalf("block %s ended after %d lines, want %d", cur, next, lines)
					}
					cur = ""
				case "serial":
					if cur != "" {
						t.Fatalf("background line inside block %s", cur)
					}
				default:
					if machine != cur || msg != fmt.Sprint(next) {
						t.Fatalf("in block %q got %s: %s, want line %d", cur, machine, msg, next)
					}
					next++
				}
			}
			var junit bytes.Buffer
			if err := l.WriteJUnit(&junit); err != nil {
				t.Fatal(err)
			}
			doc := parseJUnit(t, junit.String())
			if n := len(doc.Suites[0].Cases); n != branches {
				t.Errorf("junit has %d cases, want %d", n, branches)
			}
		})
	}
}
