package report

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// ErrJUnitDisabled is returned by WriteJUnit when Options.JUnit was off,
// so nothing was recorded.
var ErrJUnitDisabled = errors.New("junit recording is off: set Options.JUnit")

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string      `xml:"name,attr"`
	Tests     int         `xml:"tests,attr"`
	Failures  int         `xml:"failures,attr"`
	Errors    int         `xml:"errors,attr"`
	Time      string      `xml:"time,attr"`
	Timestamp string      `xml:"timestamp,attr"`
	Cases     []junitCase `xml:"testcase"`
	SystemOut *cdata      `xml:"system-out,omitempty"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut *cdata        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"`
}

// cdata keeps multi-line logs readable in the file (encoding/xml would
// write every newline of plain character data as "&#xA;").
type cdata struct {
	Text string `xml:",cdata"`
}

func newCDATA(s string) *cdata {
	if s == "" {
		return nil
	}
	return &cdata{Text: s}
}

// WriteJUnit writes the JUnit XML report of the run so far: one test case
// per subtest (nested ones named "outer/inner"; a case's time excludes its
// nested subtests) with its log lines as system-out. A case "main" stands
// for the script outside subtests when there were no subtests, or when a
// Failure was reported outside subtests and no subtest failed (so CI
// never shows a failed run as all green); it then holds the lines logged
// outside subtests, which otherwise go to the suite's system-out.
// Subtests still open count as failed.
func (l *Logger) WriteJUnit(w io.Writer) error {
	doc, err := l.junitReport()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	if _, err := io.WriteString(w, "\n"); err != nil {
		return fmt.Errorf("write junit report: %w", err)
	}
	return nil
}

// WriteJUnitFile writes the JUnit report to path (see WriteJUnit),
// replacing the file.
func (l *Logger) WriteJUnitFile(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create junit report: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close junit report: %w", cerr)
		}
	}()
	return l.WriteJUnit(f)
}

func (l *Logger) junitReport() (*junitSuites, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.junit {
		return nil, ErrJUnitDisabled
	}
	now := l.now()
	total := now.Sub(l.start)

	// A subtest's own time is its duration minus its direct children's.
	dur := func(s *subtest) time.Duration {
		if s.done {
			return s.end.Sub(s.start)
		}
		return now.Sub(s.start)
	}
	var cases []junitCase
	failures := 0
	topLevel := time.Duration(0)
	anySubFailed := false
	for _, s := range l.subs {
		own := dur(s)
		for _, c := range s.children {
			own -= dur(c)
		}
		if s.parent == nil {
			topLevel += dur(s)
		}
		c := junitCase{
			Name:      xmlSafe(s.name),
			Classname: xmlSafe(l.name),
			Time:      seconds(own),
			SystemOut: newCDATA(s.out.String()),
		}
		switch {
		case !s.done:
			c.Failure = newFailure("subtest did not finish")
		case s.failure != nil:
			c.Failure = newFailure(*s.failure)
		}
		if c.Failure != nil {
			failures++
			anySubFailed = true
		}
		cases = append(cases, c)
	}

	suiteOut := l.mainOut.String()
	if len(l.subs) == 0 || (l.mainFailure != nil && !anySubFailed) {
		c := junitCase{
			Name:      "main",
			Classname: xmlSafe(l.name),
			Time:      seconds(total - topLevel),
			SystemOut: newCDATA(suiteOut),
		}
		if l.mainFailure != nil {
			c.Failure = newFailure(*l.mainFailure)
			failures++
		}
		suiteOut = ""
		cases = append(cases, c)
	}

	return &junitSuites{
		Tests:    len(cases),
		Failures: failures,
		Time:     seconds(total),
		Suites: []junitSuite{{
			Name:      xmlSafe(l.name),
			Tests:     len(cases),
			Failures:  failures,
			Time:      seconds(total),
			Timestamp: l.start.UTC().Format("2006-01-02T15:04:05"),
			Cases:     cases,
			SystemOut: newCDATA(suiteOut),
		}},
	}, nil
}

// newFailure makes a <failure>: the first line of msg as the message
// attribute, all of it as the body.
func newFailure(msg string) *junitFailure {
	first, _, _ := strings.Cut(msg, "\n")
	return &junitFailure{Message: xmlSafe(first), Type: "failure", Text: xmlSafe(msg)}
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", max(d, 0).Seconds()) }

// xmlSafe returns s with the characters XML 1.0 forbids escaped (see
// appendSanitized), keeping line breaks.
func xmlSafe(s string) string {
	lines := strings.Split(s, "\n")
	var b []byte
	for i, line := range lines {
		if i > 0 {
			b = append(b, '\n')
		}
		b = appendSanitized(b, line)
	}
	return string(b)
}
