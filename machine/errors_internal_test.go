package machine

import (
	"strings"
	"testing"
)

func TestCommandErrorShowsOutputTail(t *testing.T) {
	var b strings.Builder
	for i := 0; i < 10000; i++ {
		b.WriteString("line\n")
	}
	b.WriteString("the reason it failed\n")
	e := &CommandError{Machine: "m", Command: "c", Status: 1, Output: b.String()}
	msg := e.Error()
	if !strings.Contains(msg, "the reason it failed") || !strings.Contains(msg, "earlier output left out") {
		t.Errorf("message lacks the tail or the cut marker:\n%s", msg)
	}
	if n := strings.Count(msg, "\n"); n > errorOutputLines+3 {
		t.Errorf("message has %d lines", n)
	}
	short := (&CommandError{Machine: "m", Command: "c", Status: 1, Output: "a\nb\n"}).Error()
	if strings.Contains(short, "left out") || !strings.HasSuffix(short, "    a\n    b") {
		t.Errorf("short output changed: %q", short)
	}
}
