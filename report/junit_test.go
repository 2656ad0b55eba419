package report_test

import (
	"bytes"
	"encoding/xml"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/report"
)

// parsed JUnit, for re-parsing what WriteJUnit wrote.
type xSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    int      `xml:"tests,attr"`
	Failures int      `xml:"failures,attr"`
	Suites   []xSuite `xml:"testsuite"`
}

type xSuite struct {
	Name      string  `xml:"name,attr"`
	Tests     int     `xml:"tests,attr"`
	Failures  int     `xml:"failures,attr"`
	Time      string  `xml:"time,attr"`
	Cases     []xCase `xml:"testcase"`
	SystemOut string  `xml:"system-out"`
}

type xCase struct {
	Name      string `xml:"name,attr"`
	Classname string `xml:"classname,attr"`
	Time      string `xml:"time,attr"`
	Failure   *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	SystemOut string `xml:"system-out"`
}

// junitOf runs script on a JUnit-recording Logger and returns the XML.
func junitOf(t *testing.T, script func(l *report.Logger, clk *fakeClock)) string {
	t.Helper()
	clk := newFakeClock()
	l := report.New(report.Options{Out: &bytes.Buffer{}, JUnit: true, Now: clk.Now, SerialToOut: false})
	script(l, clk)
	var buf bytes.Buffer
	if err := l.WriteJUnit(&buf); err != nil {
		t.Fatalf("WriteJUnit: %v", err)
	}
	return buf.String()
}

func parseJUnit(t *testing.T, s string) xSuites {
	t.Helper()
	var doc xSuites
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("JUnit does not re-parse: %v\n%s", err, s)
	}
	if len(doc.Suites) != 1 {
		t.Fatalf("got %d suites, want 1", len(doc.Suites))
	}
	return doc
}

func TestJUnitGolden(t *testing.T) {
	got := junitOf(t, func(l *report.Logger, clk *fakeClock) {
		l.Info("", "setup")
		boot := l.Subtest("boot")
		l.Info("server", "up")
		clk.Advance(time.Second)
		inner := l.Subtest("inner")
		n := l.Nested("server", "wait")
		l.Serial("server", "login:")
		clk.Advance(500 * time.Millisecond)
		n(nil)
		inner(nil)
		boot(nil)
		fail := l.Subtest("fail")
		clk.Advance(time.Second)
		fail(errors.New("command failed\nexit code 1"))
		l.Info("", "test script finished in 2.50s")
	})
	want := `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="3" failures="1" time="2.500">
  <testsuite name="vmdriver" tests="3" failures="1" errors="0" time="2.500" timestamp="2026-01-02T03:04:05">
    <testcase name="boot" classname="vmdriver" time="1.000">
      <system-out><![CDATA[subtest: boot
  server: up
(finished: subtest: boot, in 1.50 seconds)
]]></system-out>
    </testcase>
    <testcase name="boot/inner" classname="vmdriver" time="0.500">
      <system-out><![CDATA[subtest: inner
  server: wait
    server # login:
  server: (finished: wait, in 0.50 seconds)
(finished: subtest: inner, in 0.50 seconds)
]]></system-out>
    </testcase>
    <testcase name="fail" classname="vmdriver" time="1.000">
      <failure message="command failed" type="failure"><![CDATA[command failed
exit code 1]]></failure>
      <system-out><![CDATA[subtest: fail
(failed: subtest: fail, in 1.00 seconds)
]]></system-out>
    </testcase>
    <system-out><![CDATA[setup
test script finished in 2.50s
]]></system-out>
  </testsuite>
</testsuites>
`
	if got != want {
		t.Errorf("JUnit mismatch\ngot:\n%s\nwant:\n%s", got, want)
	}
	parseJUnit(t, got)
}

func TestJUnitCases(t *testing.T) {
	type wantCase struct {
		name, time, failure string // failure "" = passed
		outHas              string
	}
	tests := []struct {
		name      string
		script    func(l *report.Logger, clk *fakeClock)
		cases     []wantCase
		suiteOut  string
		suiteTime string
	}{
		{
			name: "no subtests: one main case with the whole log",
			script: func(l *report.Logger, clk *fakeClock) {
				l.Info("m", "hello")
				clk.Advance(3 * time.Second)
			},
			cases:     []wantCase{{name: "main", time: "3.000", outHas: "m: hello\n"}},
			suiteTime: "3.000",
		},
		{
			name: "no subtests and a failure",
			script: func(l *report.Logger, clk *fakeClock) {
				clk.Advance(time.Second)
				l.Failure("boom", &report.Location{File: "t.star", Line: 2, Col: 1})
			},
			cases:     []wantCase{{name: "main", time: "1.000", failure: "t.star:2:1: boom", outHas: "!!! boom\n"}},
			suiteTime: "1.000",
		},
		{
			name: "failure outside passing subtests adds a failed main",
			script: func(l *report.Logger, clk *fakeClock) {
				s := l.Subtest("ok")
				clk.Advance(time.Second)
				s(nil)
				clk.Advance(2 * time.Second)
				l.Failure("late", nil)
			},
			cases: []wantCase{
				{name: "ok", time: "1.000", outHas: "subtest: ok\n"},
				{name: "main", time: "2.000", failure: "late", outHas: "!!! late\n"},
			},
			suiteTime: "3.000",
		},
		{
			name: "failure after a failed subtest is not counted twice",
			script: func(l *report.Logger, clk *fakeClock) {
				s := l.Subtest("bad")
				clk.Advance(time.Second)
				s(errors.New("boom"))
				l.Failure("boom", nil)
			},
			cases:     []wantCase{{name: "bad", time: "1.000", failure: "boom"}},
			suiteOut:  "!!! boom\n",
			suiteTime: "1.000",
		},
		{
			name: "unfinished subtest fails",
			script: func(l *report.Logger, clk *fakeClock) {
				l.Subtest("hang")
				l.Failure("inside", nil)
				clk.Advance(time.Minute)
			},
			cases:     []wantCase{{name: "hang", time: "60.000", failure: "subtest did not finish", outHas: "!!! inside\n"}},
			suiteTime: "60.000",
		},
		{
			name: "control characters are escaped",
			script: func(l *report.Logger, _ *fakeClock) {
				s := l.Subtest("ctl\x01")
				l.Serial("m", "nul\x00 esc\x1b[2J bs\b ffff\uffff del\x7f")
				s(errors.New("bad\x02 \xff"))
			},
			cases: []wantCase{{
				name: `ctl\x01`, time: "0.000", failure: `bad\x02 ` + "\uFFFD",
				outHas: `m # nul\x00 esc bs\x08 ffff\uffff del\x7f` + "\n",
			}},
			suiteTime: "0.000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := junitOf(t, tt.script)
			doc := parseJUnit(t, raw)
			suite := doc.Suites[0]
			failures := 0
			for _, c := range tt.cases {
				if c.failure != "" {
					failures++
				}
			}
			if doc.Tests != len(tt.cases) || suite.Tests != len(tt.cases) || doc.Failures != failures || suite.Failures != failures {
				t.Errorf("counts: tests %d/%d failures %d/%d, want %d and %d", doc.Tests, suite.Tests, doc.Failures, suite.Failures, len(tt.cases), failures)
			}
			if suite.Time != tt.suiteTime {
				t.Errorf("suite time = %s, want %s", suite.Time, tt.suiteTime)
			}
			if suite.SystemOut != tt.suiteOut {
				t.Errorf("suite system-out = %q, want %q", suite.SystemOut, tt.suiteOut)
			}
			if len(suite.Cases) != len(tt.cases) {
				t.Fatalf("got %d cases, want %d:\n%s", len(suite.Cases), len(tt.cases), raw)
			}
			for i, w := range tt.cases {
				c := suite.Cases[i]
				if c.Name != w.name || c.Time != w.time || c.Classname != "vmdriver" {
					t.Errorf("case %d = %q %q %q, want %q %q vmdriver", i, c.Name, c.Time, c.Classname, w.name, w.time)
				}
				switch {
				case w.failure == "" && c.Failure != nil:
					t.Errorf("case %q failed (%q), want pass", c.Name, c.Failure.Message)
				case w.failure != "" && c.Failure == nil:
					t.Errorf("case %q passed, want failure %q", c.Name, w.failure)
				case w.failure != "" && (c.Failure.Message != w.failure || c.Failure.Text != w.failure):
					t.Errorf("case %q failure = %q / %q, want %q", c.Name, c.Failure.Message, c.Failure.Text, w.failure)
				}
				if !strings.Contains(c.SystemOut, w.outHas) {
					t.Errorf("case %q system-out = %q, want it to contain %q", c.Name, c.SystemOut, w.outHas)
				}
			}
		})
	}
}

func TestJUnitDisabled(t *testing.T) {
	l := report.New(report.Options{})
	if err := l.WriteJUnit(&bytes.Buffer{}); !errors.Is(err, report.ErrJUnitDisabled) {
		t.Fatalf("WriteJUnit without Options.JUnit = %v, want ErrJUnitDisabled", err)
	}
}

func TestWriteJUnitFile(t *testing.T) {
	l := report.New(report.Options{JUnit: true, Name: "my-test"})
	l.Info("", "hi")
	path := filepath.Join(t.TempDir(), "junit.xml")
	if err := l.WriteJUnitFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := parseJUnit(t, string(b))
	if s := doc.Suites[0]; s.Name != "my-test" || len(s.Cases) != 1 || s.Cases[0].Classname != "my-test" {
		t.Errorf("suite = %+v, want name and classname my-test with one case", s)
	}
	if err := l.WriteJUnitFile(filepath.Join(t.TempDir(), "missing", "junit.xml")); err == nil {
		t.Errorf("WriteJUnitFile into a missing directory succeeded")
	}
}
