package machine_test

import (
	"bytes"
	"errors"
	"regexp"
	"testing"

	"github.com/vmdriver/vmdriver/machine"
)

func TestTextLogger(t *testing.T) {
	var buf bytes.Buffer
	l := machine.NewTextLogger(&buf)
	l.Info("web", "starting vm")
	l.Warn("web", "slow")
	l.Serial("web", "login:")
	l.Info("", "global")
	end := l.Nested("web", "must succeed: true")
	end(nil)
	end = l.Nested("web", "must fail: true")
	end(errors.New("x"))
	want := `^web: starting vm
web: warning: slow
web # login:
global
web: must succeed: true
web: \(finished: must succeed: true, in \d+\.\d\d seconds\)
web: must fail: true
web: \(failed: must fail: true, in \d+\.\d\d seconds\)
$`
	if !regexp.MustCompile(want).MatchString(buf.String()) {
		t.Errorf("output:\n%s", buf.String())
	}
}

func TestMultiLogger(t *testing.T) {
	a, b := &recLogger{}, &recLogger{}
	l := machine.MultiLogger(a, nil, b)
	l.Info("m", "hi")
	l.Warn("m", "careful")
	l.Serial("m", "line")
	l.Nested("m", "block")(errors.New("boom"))
	for _, r := range []*recLogger{a, b} {
		for _, kind := range []string{"info", "warn", "serial", "nested", "failed"} {
			if r.count(kind, "") != 1 {
				t.Errorf("%s entries: %d, want 1\n%s", kind, r.count(kind, ""), r.dump())
			}
		}
	}
	machine.DiscardLogger().Nested("m", "x")(nil) // must not panic
}
