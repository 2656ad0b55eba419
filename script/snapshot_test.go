package script_test

import (
	"strings"
	"testing"
)

func TestSnapshotFork(t *testing.T) {
	e := machines(t, "server")
	e.mustRun(lines(
		`s = server.snapshot()`,
		`assert s.machine == "server", s.machine`,
		`assert s.name == "snap-1", s.name`,
		`assert s.size > 0`,
		`assert type(s) == "Snapshot"`,
		`server.succeed("echo later > /root/f")`,
		`c = create_machine(snapshot=s)`,
		`assert c.name == "server-1", c.name`,
		`c.fail("cat /root/f")`,
		`assert c.succeed("hostname") == "server-1\n"`,
		`named = create_machine(snapshot=s, name="extra")`,
		`assert named.succeed("hostname") == "extra\n"`,
		`clones = server.fork(2)`,
		`assert [m.name for m in clones] == ["server-2", "server-3"], [m.name for m in clones]`,
		`assert clones[0].succeed("cat /root/f") == "later\n"`,
		`clones[0].succeed("echo mine > /root/g")`,
		`clones[1].fail("cat /root/g")`,
		`assert server.succeed("hostname") == "server\n"`,
	))
}

func TestSnapshotForkErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"fork of zero", `server.fork(0)`, "n must be a whole number from 1 to 64"},
		{"fork of a string", `server.fork("2")`, "fork: for parameter n: got string, want int"},
		{"not a snapshot", `create_machine(snapshot="x")`, "snapshot must be what machine.snapshot() returned"},
		{"both", `create_machine("run-x-vm", snapshot=server.snapshot())`, "either a start_command or snapshot="},
		{"neither", `create_machine()`, "give a start_command"},
		{"bad name", `server.snapshot("a/b")`, `snapshot name "a/b"`},
		{"name taken", "s = server.snapshot()\ncreate_machine(snapshot=s, name=\"server\")", `"server" exists already`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := machines(t, "server")
			err := e.run(tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
