package proc

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

func TestStatus(t *testing.T) {
	sh := testenv.NeedCommand(t, "sh")
	tests := []struct {
		script string
		want   string
		code   int
		sig    syscall.Signal
	}{
		{"exit 0", "exit status 0", 0, 0},
		{"exit 3", "exit status 3", 3, 0},
		{"kill -TERM $$", "killed by signal terminated", -1, syscall.SIGTERM},
	}
	for _, tt := range tests {
		p, err := Start(exec.Command(sh, "-c", tt.script))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-p.Exited():
		case <-time.After(10 * time.Second):
			t.Fatalf("%q did not exit", tt.script)
		}
		st := p.Status()
		if st.String() != tt.want || st.Code != tt.code || st.Signal != tt.sig {
			t.Errorf("%q: status %+v (%s), want %s", tt.script, st, st, tt.want)
		}
		if (p.Err() == nil) != (tt.code == 0) {
			t.Errorf("%q: Err = %v", tt.script, p.Err())
		}
	}
}

// TestSignalGroup: the group goes, children included, and Err is nil while
// the process runs.
func TestSignalGroup(t *testing.T) {
	sh := testenv.NeedCommand(t, "sh")
	p, err := Start(exec.Command(sh, "-c", "sleep 60 & wait"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Err() != nil {
		t.Errorf("Err while running = %v", p.Err())
	}
	if err := p.SignalGroup(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("not reaped after SIGKILL")
	}
	if st := p.Status(); st.Signal != syscall.SIGKILL {
		t.Errorf("status %s, want killed", st)
	}
	if err := p.SignalGroup(syscall.SIGKILL); err != nil {
		t.Errorf("SignalGroup of a gone group = %v", err)
	}
}
