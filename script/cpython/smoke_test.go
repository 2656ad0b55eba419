package cpython_test

import "testing"

func TestSmoke(t *testing.T) {
	e := newEnv(t, "server")
	e.mustRun(lines(
		`start_all()`,
		`out = server.succeed("echo hi")`,
		`print(repr(out), server.name, server.booted, machines)`,
		`st, o = server.execute("exit 3")`,
		`print(st, repr(o))`,
		`with subtest("x"):`,
		`    server.succeed("true")`,
	))
	t.Log(e.stdout.String())
	for _, l := range e.log.all() {
		t.Log(l)
	}
}
