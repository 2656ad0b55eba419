package machine_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// succeedAll makes a mock guest answer every command it has no other
// answer for with success and no output.
func succeedAll(_ string, g *mock.Guest) {
	g.Handle(func(context.Context, mock.Request) (mock.Reply, bool) { return mock.Reply{}, true })
}

func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The mock backend fakes a hypervisor whose guest answers what the
	// test scripts; with backend/qemu the code is the same.
	b := mock.New(mock.WithGuest(func(name string, g *mock.Guest) {
		g.Answer("echo hello", mock.Reply{Out: "hello\n"})
	}))
	m, err := machine.Start(ctx, b, "server")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	r, err := m.Execute(ctx, "echo hello", machine.Timeout(time.Minute))
	fmt.Printf("status %d, output %q, error %v\n", r.Status, r.Output, err)
	// Output: status 0, output "hello\n", error <nil>
}

func ExampleMachine_Succeed() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := mock.New(mock.WithGuest(func(name string, g *mock.Guest) {
		g.Answer("echo ready", mock.Reply{Out: "ready\n"})
		g.Answer("false", mock.Reply{Status: 1})
	}))
	m, err := machine.Start(ctx, b, "server")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	out, err := m.Succeed(ctx, "echo ready")
	fmt.Printf("%q %v\n", out, err)

	_, err = m.Succeed(ctx, "false")
	var ce *machine.CommandError
	fmt.Println(errors.As(err, &ce), ce.Status, errors.Is(err, machine.ErrCheckFailed))
	fmt.Println(err)
	// Output:
	// "ready\n" <nil>
	// true 1 true
	// machine server: command `false` failed (exit code 1)
}

// exampleT stands in for the *testing.T a real test has.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func (t *exampleT) Helper()                   {}
func (t *exampleT) Context() context.Context  { return context.Background() }
func (t *exampleT) Logf(string, ...any)       {}
func (t *exampleT) Errorf(f string, a ...any) { fmt.Printf(f+"\n", a...) }
func (t *exampleT) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }
func (t *exampleT) Cleanup(fn func())         { t.cleanups = append(t.cleanups, fn) }
func (t *exampleT) finish() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

func ExampleStartT() {
	// In a test this is func TestWeb(t *testing.T).
	t := &exampleT{}
	defer t.finish()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	b := mock.New(mock.WithGuest(succeedAll)) // port 80 is open at once
	web := machine.StartT(t, b, "web")        // closed by t.Cleanup; logs via t.Logf
	if err := web.WaitForOpenPort(ctx, 80); err != nil {
		t.Fatalf("%v", err)
	}
	fmt.Println("port 80 is open on", web.Name())
	// Output: port 80 is open on web
}

func ExampleMachine_Fork() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := mock.New(mock.WithGuest(func(name string, g *mock.Guest) {
		g.Answer("hostname", mock.Reply{Out: name + "\n"})
		succeedAll(name, g) // a clone's identity fix-up, for one
	}))
	m, err := machine.Start(ctx, b, "server")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	// Two running clones of the machine as it is now; m keeps running.
	clones, err := m.Fork(ctx, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range clones {
		defer c.Close()
		name, _ := c.Succeed(ctx, "hostname")
		fmt.Printf("%s: host name %q\n", c.Name(), name)
	}
	// Output:
	// server-1: host name "server-1\n"
	// server-2: host name "server-2\n"
}

func ExampleRestore() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// What the guest keeps goes into its state, which snapshots save.
	b := mock.New(mock.WithGuest(func(name string, g *mock.Guest) {
		g.AnswerFunc("touch /marker", func(context.Context, mock.Request) mock.Reply {
			g.SetState("/marker", "yes")
			return mock.Reply{}
		})
		g.AnswerFunc("test -e /marker", func(context.Context, mock.Request) mock.Reply {
			if g.State("/marker") == "" {
				return mock.Reply{Status: 1}
			}
			return mock.Reply{}
		})
		succeedAll(name, g)
	}))
	m, err := machine.Start(ctx, b, "server")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()

	snap, err := m.Snapshot(ctx, "ready")
	if err != nil {
		fmt.Println(err)
		return
	}
	m.Succeed(ctx, "touch /marker")

	c, err := machine.Restore(ctx, snap, "copy")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.Succeed(ctx, "test -e /marker")
	fmt.Println(snap.Name(), snap.Machine(), err != nil)
	// Output: ready server true
}
