package machine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/machine"
)

// Markers the fake hypervisor prints; each must appear once in a message.
const (
	stderrMarker  = "fake-hypervisor: stderr-marker"
	consoleMarker = "guest: console-marker"
)

// fakeBackend is a hypervisor that fails as a test says, returning its
// diagnostics the way backends do (backend.Error), so that the messages
// the machine renders can be checked.
type fakeBackend struct {
	// start, when set, is Start's error.
	start error
	// exit, when set, is how the hypervisor ends as soon as the machine
	// waits for its shell (ExitErr); Shell reports it too.
	exit *backend.Error
	// exited makes the hypervisor end at that moment even when exit is
	// nil (a clean exit).
	exited bool
	// diagnostics is what Diagnostics returns.
	diagnostics string
}

func (b *fakeBackend) Name() string               { return "fake" }
func (b *fakeBackend) Hypervisor() string         { return "Fake" }
func (b *fakeBackend) BootTimeout() time.Duration { return time.Minute }

func (b *fakeBackend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	spec.Console.Write([]byte("booting\n" + consoleMarker + "\n"))
	if b.start != nil {
		return nil, b.start
	}
	return &fakeInstance{b: b, done: make(chan struct{})}, nil
}

type fakeInstance struct {
	b    *fakeBackend
	done chan struct{}
}

func (i *fakeInstance) Shell(ctx context.Context) (*backdoor.Shell, error) {
	if i.b.exit != nil || i.b.exited {
		close(i.done)
		if i.b.exit == nil {
			return nil, backend.ErrExited
		}
		e := *i.b.exit
		e.Op = "waiting for the guest's shell"
		return nil, &e
	}
	<-ctx.Done()
	return nil, &backend.Error{Op: "waiting for the guest's shell", Err: ctx.Err(),
		Stderr: []string{stderrMarker}, Console: []string{"booting", consoleMarker}}
}

func (i *fakeInstance) PID() int              { return 4242 }
func (i *fakeInstance) Done() <-chan struct{} { return i.done }
func (i *fakeInstance) ExitErr() error {
	if i.b.exit == nil || !isClosed(i.done) {
		return nil
	}
	return i.b.exit
}
func (i *fakeInstance) PowerDown(context.Context) error { return nil }
func (i *fakeInstance) Kill(context.Context) error      { return nil }
func (i *fakeInstance) Close() error {
	if !isClosed(i.done) {
		close(i.done)
	}
	return nil
}
func (i *fakeInstance) Diagnostics() string { return i.b.diagnostics }

func (i *fakeInstance) MonitorCommand(context.Context, string) (string, error) {
	if e := i.ExitErr(); e != nil {
		return "", e
	}
	return "", nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// exitedWithTails is a hypervisor that exited with status 1, as a backend
// reports it.
func exitedWithTails() *backend.Error {
	return &backend.Error{Process: "Fake", PID: 4242, Exited: true, ExitStatus: 1,
		Stderr: []string{stderrMarker}, Console: []string{"booting", consoleMarker}}
}

// TestErrorsRenderedOnce: whatever the backend reports, the machine's
// message names the machine once and quotes the hypervisor's messages
// and the console lines once each, and the sentinels still match.
func TestErrorsRenderedOnce(t *testing.T) {
	tests := []struct {
		name string
		b    *fakeBackend
		// call makes the machine fail.
		call func(ctx context.Context, m *machine.Machine) error
		want []string
		is   []error
	}{
		{
			name: "boot timeout",
			b:    &fakeBackend{},
			call: func(ctx context.Context, m *machine.Machine) error { _, err := m.Succeed(ctx, "true"); return err },
			want: []string{"timed out after", "waiting for the guest's shell: context deadline exceeded"},
			is:   []error{machine.ErrTimeout, context.DeadlineExceeded},
		},
		{
			name: "start script exits before the hypervisor is up",
			b: &fakeBackend{start: &backend.Error{Op: "waiting for the control socket", Process: "start script /x/run-vm", PID: 4242,
				Exited: true, ExitStatus: 127, Hint: "status 127: a program was not found",
				Stderr: []string{stderrMarker}, Console: []string{"booting", consoleMarker}}},
			call: func(ctx context.Context, m *machine.Machine) error { return m.Start(ctx) },
			want: []string{"starting the Fake hypervisor: waiting for the control socket: start script /x/run-vm (pid 4242) exited with status 127",
				"(status 127: a program was not found)"},
			is: []error{backend.ErrExited},
		},
		{
			name: "hypervisor exits while booting",
			b:    &fakeBackend{exit: exitedWithTails()},
			call: func(ctx context.Context, m *machine.Machine) error { _, err := m.Succeed(ctx, "true"); return err },
			want: []string{"the Fake hypervisor (pid 4242) exited with status 1"},
			is:   []error{backend.ErrExited},
		},
		{
			name: "hypervisor exits cleanly, diagnostics from the instance",
			b:    &fakeBackend{exited: true, diagnostics: "early line\n" + stderrMarker + "\n"},
			call: func(ctx context.Context, m *machine.Machine) error { _, err := m.Succeed(ctx, "true"); return err },
			want: []string{"the Fake hypervisor (pid 4242) exited cleanly"},
			is:   []error{backend.ErrExited},
		},
		{
			name: "a capability fails on an exited hypervisor",
			b:    &fakeBackend{exit: exitedWithTails()},
			call: func(ctx context.Context, m *machine.Machine) error {
				m.Succeed(ctx, "true") // the hypervisor exits
				_, err := m.SendMonitorCommand(ctx, "info status")
				return err
			},
			want: []string{`monitor command "info status": Fake (pid 4242) exited with status 1`},
			is:   []error{backend.ErrExited},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := machine.New(tt.b, "web7", machine.WithBootTimeout(100*time.Millisecond))
			must(t, err)
			t.Cleanup(func() { m.Close() })
			err = tt.call(testCtx(t), m)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			t.Logf("message:\n%s", msg)
			for _, w := range append(tt.want, "machine web7: ") {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q", w)
				}
			}
			for _, once := range []string{"web7", stderrMarker, consoleMarker} {
				if n := strings.Count(msg, once); n != 1 {
					t.Errorf("message has %q %d times, want once", once, n)
				}
			}
			for _, is := range tt.is {
				if !errors.Is(err, is) {
					t.Errorf("error does not wrap %v", is)
				}
			}
		})
	}
}

// TestBackendErrorText: a backend.Error says what failed in one line, with
// neither the machine's name nor the tails, and wraps ErrExited and its
// cause.
func TestBackendErrorText(t *testing.T) {
	tests := []struct {
		e    *backend.Error
		want string
	}{
		{&backend.Error{Op: "waiting", Err: context.DeadlineExceeded}, "waiting: context deadline exceeded"},
		{&backend.Error{Process: "QEMU", PID: 7, Exited: true, ExitStatus: 3}, "QEMU (pid 7) exited with status 3"},
		{&backend.Error{Op: "loading", Exited: true, ExitStatus: -1, Signal: 9, Err: backend.ErrSnapshotMismatch},
			"loading: the hypervisor was killed by signal 9 (killed): snapshot does not fit"},
		{&backend.Error{Exited: true, ExitStatus: -1, Hint: "try again"}, "the hypervisor exited\n(try again)"},
		{&backend.Error{Stderr: []string{stderrMarker}, Console: []string{consoleMarker}}, "hypervisor failure"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if got := errors.Is(tt.e, backend.ErrExited); got != tt.e.Exited {
			t.Errorf("%q: errors.Is(ErrExited) = %v", tt.want, got)
		}
		if tt.e.Err != nil && !errors.Is(tt.e, tt.e.Err) {
			t.Errorf("%q does not wrap its cause", tt.want)
		}
	}
}
