package script_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/script"
)

// testTimeout bounds every test's blocking calls.
const testTimeout = 30 * time.Second

func testCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// recLogger and recReporter record what a run logs and reports.
type (
	recLogger   = testenv.Log
	recReporter = testenv.Reporter
)

// env is a driver on the mock backend with recording logger and reporter.
type env struct {
	t      *testing.T
	b      *mock.Backend
	d      *driver.Driver
	log    *recLogger
	rep    *recReporter
	stdout *bytes.Buffer
	outDir string
}

type envConfig struct {
	machines      []string
	globalTimeout time.Duration
	guest         func(name string, g *mock.Guest)
	// logger, if set, replaces the recording logger.
	logger driver.Logger
}

func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	e := &env{t: t, log: &recLogger{}, rep: &recReporter{}, stdout: &bytes.Buffer{}, outDir: t.TempDir()}
	opts := []mock.Option{mock.WithGuest(guestAnswers)}
	if cfg.guest != nil {
		opts = append(opts, mock.WithGuest(cfg.guest))
	}
	e.b = mock.New(opts...)
	dc := driver.Config{OutputDir: e.outDir, GlobalTimeout: cfg.globalTimeout}
	for _, n := range cfg.machines {
		dc.Machines = append(dc.Machines, driver.MachineConfig{Name: n, StartScript: "/nonexistent/run-" + n + "-vm"})
	}
	var log driver.Logger = e.log
	if cfg.logger != nil {
		log = cfg.logger
	}
	d, err := driver.New(e.t.Context(), dc, driver.WithBackend(e.b), driver.WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e.d = d
	return e
}

// machines makes an env with one machine per name.
func machines(t *testing.T, names ...string) *env {
	t.Helper()
	return newEnv(t, envConfig{machines: names})
}

// run runs src as the test script.
func (e *env) run(src string) error {
	e.t.Helper()
	return script.Run(testCtx(e.t), e.opts(src))
}

func (e *env) opts(src string) script.Options {
	return script.Options{Driver: e.d, Filename: "test.py", Source: []byte(src), Stdout: e.stdout, Reporter: e.rep}
}

// mustRun runs src and fails the test on error.
func (e *env) mustRun(src string) {
	e.t.Helper()
	if err := e.run(src); err != nil {
		e.t.Fatalf("script failed: %v\n%s", err, traceback(err))
	}
}

// guestFiles are the files the test scripts write (with `echo CONTENT >
// PATH`), test (`test -e PATH`) and read (`cat PATH`), with the content
// they write: the guests keep them in their state, which snapshots save.
var guestFiles = map[string]string{
	"/tmp/setup": "base", "/tmp/one": "1", "/tmp/two": "2", "/root/f": "later", "/root/g": "mine",
	"/etc/hello": "hello from the guest",
}

// guestAnswers scripts what every guest of these tests answers: the
// tests' own commands (true, false, exit N, echo WORDS, sleep, hostname,
// the files of guestFiles), the driver's sync, what snapshots and warm
// starts ask, and a clone's identity fix-up (recognised by the host name
// it sets: its own, or its original's for a forked subtest).
func guestAnswers(name string, g *mock.Guest) {
	for _, c := range []string{"true", "sync", guestcmd.ListMounts9p(), guestcmd.Settle()} {
		g.Answer(c, mock.Reply{})
	}
	g.Answer("false", mock.Reply{Status: 1})
	for n := 1; n < 10; n++ {
		g.Answer(fmt.Sprintf("exit %d", n), mock.Reply{Status: n})
	}
	g.Answer("hostname", mock.Reply{Out: name + "\n"})
	g.SetState("/etc/hello", guestFiles["/etc/hello"]+"\n")
	for path, content := range guestFiles {
		g.AnswerFunc("echo "+content+" > "+path, func(context.Context, mock.Request) mock.Reply {
			g.SetState(path, content+"\n")
			return mock.Reply{}
		})
		g.AnswerFunc("test -e "+path, func(context.Context, mock.Request) mock.Reply {
			return mock.Reply{Status: missing(g.State(path))}
		})
		g.AnswerFunc("cat "+path, func(context.Context, mock.Request) mock.Reply {
			return mock.Reply{Out: g.State(path), Status: missing(g.State(path))}
		})
	}
	g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
		if words, ok := strings.CutPrefix(req.Command, "echo "); ok && !strings.ContainsAny(words, "<>|;&") {
			return mock.Reply{Out: words + "\n"}, true
		}
		origin, _, _ := strings.Cut(name, "-")
		return mock.Reply{}, strings.HasPrefix(req.Command, "sleep ") ||
			strings.Contains(req.Command, guestcmd.SetHostname(name)) || strings.Contains(req.Command, guestcmd.SetHostname(origin))
	})
}

// missing is the status of a test or read of a file with content: 1 when
// there is none.
func missing(content string) int {
	if content == "" {
		return 1
	}
	return 0
}

// guest returns the named machine's current guest.
func (e *env) guest(name string) *mock.Guest {
	e.t.Helper()
	g := e.b.Guest(name)
	if g == nil {
		e.t.Fatalf("machine %s was never started", name)
	}
	return g
}

// commands returns the guest's commands, without the driver's own `sync`.
func (e *env) commands(name string) []string {
	var out []string
	for _, c := range e.guest(name).Commands() {
		if c != "sync" {
			out = append(out, c)
		}
	}
	return out
}

func traceback(err error) string {
	var se *script.ScriptError
	if errors.As(err, &se) {
		return se.Traceback()
	}
	return ""
}

// scriptErr runs src, requires a *ScriptError and returns it.
func (e *env) scriptErr(src string) *script.ScriptError {
	e.t.Helper()
	err := e.run(src)
	var se *script.ScriptError
	if !errors.As(err, &se) {
		e.t.Fatalf("want a *ScriptError, got %T: %v", err, err)
	}
	return se
}

// wantErr runs src and requires an error whose message contains every
// one of parts.
func (e *env) wantErr(src string, parts ...string) *script.ScriptError {
	e.t.Helper()
	se := e.scriptErr(src)
	for _, p := range parts {
		if !strings.Contains(se.Msg, p) {
			e.t.Errorf("error %q does not contain %q", se.Msg, p)
		}
	}
	return se
}

// lines joins script lines.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }
