package script_test

import (
	"context"
	"errors"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

// scriptGuest prepares every guest of the machine tests: units (nginx,
// started and stopped by the scripts, whose state the guest keeps under
// "nginx"; idle; alice's pipewire), ports, a socket, a terminal, the
// monitor, the copies of "copy" and commands that make the guest act.
func scriptGuest(_ string, g *mock.Guest) {
	g.SetState("nginx", "active")
	nginx := func(context.Context, mock.Request) mock.Reply {
		return mock.Reply{Out: "ActiveState=" + g.State("nginx") + "\n"}
	}
	for _, unit := range []string{"nginx", "nginx.service"} {
		g.AnswerFunc(guestcmd.UnitProperty(unit, "ActiveState", ""), nginx)
		g.AnswerFunc(guestcmd.StartUnit(unit, ""), func(context.Context, mock.Request) mock.Reply {
			g.SetState("nginx", "active")
			return mock.Reply{}
		})
		g.AnswerFunc(guestcmd.StopUnit(unit, ""), func(context.Context, mock.Request) mock.Reply {
			g.SetState("nginx", "inactive")
			return mock.Reply{}
		})
	}
	g.AnswerFunc(guestcmd.UnitInfo("nginx.service", ""), nginx)
	for cmd, out := range map[string]string{
		guestcmd.Systemctl("is-active nginx.service", ""):                 "active\n",
		guestcmd.Systemctl("is-active pipewire.service", "alice"):         "active\n",
		guestcmd.UnitProperty("nginx.service", "SubState", ""):            "SubState=running\n",
		guestcmd.UnitProperty("idle", "ActiveState", ""):                  "ActiveState=inactive\n",
		guestcmd.UnitProperty("pipewire", "ActiveState", "alice"):         "ActiveState=active\n",
		guestcmd.UnitProperty("pipewire.service", "ActiveState", "alice"): "ActiveState=active\n",
		guestcmd.TTYText(1): "NixOS login: \n",
	} {
		g.Answer(cmd, mock.Reply{Out: out})
	}
	for _, cmd := range []string{guestcmd.FileExists("/etc/hello"), guestcmd.PortOpen("localhost", 80),
		guestcmd.UnixSocketOpen("/run/app.sock", false), guestcmd.DumpTTY(1), guestcmd.MkdirAll("/root")} {
		g.Answer(cmd, mock.Reply{})
	}
	g.Answer(guestcmd.PortOpen("localhost", 81), mock.Reply{Status: 1})
	g.SetMonitorReply("info status", "VM status: running")
	g.AnswerFunc(guestcmd.Upload([]byte("from the host\n"), "/root/b.txt", false), func(context.Context, mock.Request) mock.Reply {
		g.SetState("/root/b.txt", "from the host\n")
		return mock.Reply{}
	})
	g.AnswerFunc("cat /root/a.txt", func(context.Context, mock.Request) mock.Reply {
		return mock.Reply{Out: g.State("/root/a.txt")}
	})
	g.Handle(func(_ context.Context, req mock.Request) (mock.Reply, bool) {
		// The copies through the shared directory, whose staging
		// directories are under /tmp/shared.
		dirs, _ := os.ReadDir(g.SharedDir())
		for _, d := range dirs {
			host, guest := filepath.Join(g.SharedDir(), d.Name()), path.Join("/tmp/shared", d.Name())
			switch req.Command {
			case guestcmd.MkdirAll(guest):
				return mock.Reply{}, true
			case guestcmd.CopyTree(path.Join(guest, "payload.txt"), "/root/a.txt"):
				data, err := os.ReadFile(filepath.Join(host, "payload.txt"))
				g.SetState("/root/a.txt", string(data))
				return mock.Reply{}, err == nil
			case guestcmd.CopyTree("/etc/hello", path.Join(guest, "hello")):
				err := os.WriteFile(filepath.Join(host, "hello"), []byte(g.State("/etc/hello")), 0o644)
				return mock.Reply{}, err == nil
			}
		}
		return mock.Reply{}, false
	})
	g.AnswerFunc("say hello", func(context.Context, mock.Request) mock.Reply {
		return mock.Reply{Console: "hello world, from the console\n"}
	})
	g.AnswerFunc("emit events", func(context.Context, mock.Request) mock.Reply {
		g.EmitEvent("RESET", map[string]any{"guest": true})
		g.EmitEvent("STOP", map[string]any{"reason": "test", "n": float64(3)})
		return mock.Reply{}
	})
}

// TestMachineMethods calls every machine method from a script and checks
// what reached the guest and what the script got back.
func TestMachineMethods(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "payload.txt")
	if err := os.WriteFile(hostFile, []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, e *env)
	}{
		{"start", lines(`server.start()`, `assert server.booted`, `assert server.pid != None`), func(t *testing.T, e *env) {
			if n := e.b.Starts("server"); n != 1 {
				t.Errorf("started %d times, want 1", n)
			}
		}},
		{"start allow_reboot", lines(`server.start(allow_reboot=False)`), nil},
		{"execute", lines(
			`status, out = server.execute("echo hi")`,
			`assert status == 0`,
			`assert out == "hi\n"`,
			`st, out = server.execute("exit 3", timeout=None)`,
			`assert st == 3`,
			`st, out = server.execute("echo x", check_return=False)`,
			`assert out == "x\n"`,
			`st, out = server.execute("echo gone", check_output=False)`,
			`assert (st, out) == (-2, "")`,
		), func(t *testing.T, e *env) {
			for _, c := range []string{"echo hi", "exit 3", "echo x", "echo gone"} {
				if !slices.Contains(e.commands("server"), c) {
					t.Errorf("guest never got %q: %q", c, e.commands("server"))
				}
			}
		}},
		{"succeed and fail", lines(
			`out = server.succeed("echo a", "echo b", timeout=10)`,
			`assert out == "a\nb\n"`,
			`assert server.fail("false", "exit 2") == ""`,
		), func(t *testing.T, e *env) {
			want := []string{"echo a", "echo b", "false", "exit 2"}
			if got := e.commands("server"); !slices.Equal(got, want) {
				t.Errorf("commands = %q, want %q", got, want)
			}
		}},
		{"wait_until", lines(
			`assert server.wait_until_succeeds("cat /etc/hello", timeout=5) == "hello from the guest\n"`,
			`server.wait_until_fails("test -e /nonexistent", timeout=5)`,
		), nil},
		{"sleep", lines(`server.sleep(0.01)`, `server.sleep(duration=0.02)`), func(t *testing.T, e *env) {
			if got := e.commands("server"); !slices.Equal(got, []string{"sleep 0.01", "sleep 0.02"}) {
				t.Errorf("commands = %q", got)
			}
		}},
		{"systemctl", lines(
			`st, out = server.systemctl("is-active nginx.service")`,
			`assert st == 0`,
			`assert out.strip() == "active"`,
			`st, out = server.systemctl("is-active pipewire.service", user="alice")`,
			`assert out.strip() == "active", out`,
			`st, _ = server.stop_job("nginx")`,
			`assert st == 0`,
			`server.require_unit_state("nginx", "inactive")`,
			`st, _ = server.start_job("nginx")`,
			`server.require_unit_state("nginx")`,
		), func(t *testing.T, e *env) {
			if state := e.guest("server").State("nginx"); state != "active" {
				t.Errorf("nginx is %s after start_job", state)
			}
		}},
		{"units", lines(
			`info = server.get_unit_info("nginx.service")`,
			`assert info["ActiveState"] == "active", info`,
			`assert type(info) == "dict"`,
			`assert server.get_unit_property("nginx.service", "SubState") == "running"`,
			`assert server.get_unit_property("pipewire", "ActiveState", user="alice") == "active"`,
			`server.wait_for_unit("nginx.service", timeout=5)`,
			`server.wait_for_unit("pipewire.service", user="alice", timeout=5)`,
		), nil},
		{"waits", lines(
			`server.wait_for_file("/etc/hello", timeout=5)`,
			`server.wait_for_open_port(80, timeout=5)`,
			`server.wait_for_closed_port(81, addr="localhost", timeout=5)`,
			`server.wait_for_open_unix_socket("/run/app.sock", is_datagram=False, timeout=5)`,
		), nil},
		{"console", lines(
			`server.succeed("say hello")`,
			`server.wait_for_console_text("hel+o (?P<who>world)")`,
			`assert "from the console" in server.get_console_log()`,
			`server.send_console("root\n")`,
		), func(t *testing.T, e *env) {
			if got := string(e.guest("server").ConsoleInput()); got != "root\n" {
				t.Errorf("console input = %q", got)
			}
		}},
		{"monitor", lines(`assert server.send_monitor_command("info status") == "VM status: running"`), func(t *testing.T, e *env) {
			if got := e.guest("server").MonitorCommands(); !slices.Contains(got, "info status") {
				t.Errorf("monitor commands = %q", got)
			}
		}},
		{"qmp event", lines(
			`seen = []`,
			`def want_stop(ev):`,
			`    seen.append(ev["event"])`,
			`    return ev["event"] == "STOP"`,
			`server.succeed("emit events")`,
			`ev = server.wait_for_qmp_event(want_stop, timeout=5)`,
			`assert ev["event"] == "STOP"`,
			`assert ev["data"] == {"n": 3, "reason": "test"}, ev["data"]`,
			`assert "seconds" in ev["timestamp"]`,
			`assert seen == ["RESET", "STOP"], seen`,
		), nil},
		{"screenshot", lines(`server.screenshot("shot")`), func(t *testing.T, e *env) {
			if _, err := os.Stat(filepath.Join(e.outDir, "shot.png")); err != nil {
				t.Error(err)
			}
		}},
		{"keys", lines(`server.send_key("ctrl-alt-f2", delay=None, log=False)`, `server.send_chars("Hi", delay=0)`, `server.send_key("a")`), func(t *testing.T, e *env) {
			if got := e.guest("server").Keys(); !slices.Equal(got, []string{"ctrl-alt-f2", "shift-h", "i", "a"}) {
				t.Errorf("keys = %q", got)
			}
		}},
		{"copy", lines(
			`server.copy_from_host("`+hostFile+`", "/root/a.txt")`,
			`server.copy_from_host_via_shell("`+hostFile+`", "/root/b.txt")`,
			`assert server.succeed("cat /root/a.txt") == "from the host\n"`,
			`server.copy_from_machine("/etc/hello")`,
			`server.copy_from_vm("/etc/hello", "sub")`,
		), func(t *testing.T, e *env) {
			if b := e.guest("server").State("/root/b.txt"); b != "from the host\n" {
				t.Errorf("/root/b.txt = %q", b)
			}
			for _, p := range []string{"hello", "sub/hello"} {
				if b, err := os.ReadFile(filepath.Join(e.outDir, p)); err != nil || string(b) != "hello from the guest\n" {
					t.Errorf("%s = %q, %v", p, b, err)
				}
			}
		}},
		{"tty", lines(
			`assert "login" in server.get_tty_text(1)`,
			`assert server.get_tty_text("1") == server.get_tty_text(1)`,
			`server.wait_until_tty_matches("1", "log.n:", timeout=5)`,
			`server.dump_tty_contents(1)`,
		), func(t *testing.T, e *env) {
			if !slices.Contains(e.commands("server"), guestcmd.DumpTTY(1)) {
				t.Errorf("no dump command: %q", e.commands("server"))
			}
		}},
		{"log and nested", lines(
			`server.log("a note")`,
			`with server.nested("a block"):`,
			`    server.log("inside")`,
		), func(t *testing.T, e *env) {
			got := e.log.All("info", "open", "ok")
			want := []string{"info|server|a note", "open|server|a block", "info|server|inside", "ok|server|a block"}
			if !containsInOrder(got, want) {
				t.Errorf("log = %q, want in order %q", got, want)
			}
		}},
		{"attributes", lines(
			`assert server.name == "server"`,
			`assert not server.booted and not server.connected and server.pid == None`,
			`assert not server.is_up()`,
			`assert server.out_dir != "" and server.state_dir != "" and server.shared_dir != ""`,
			`server.succeed("true")`,
			`assert server.is_up() and server.connected`,
			`assert str(server) == "<Machine 'server'>"`,
			`assert machines[0] == server`,
		), nil},
		{"lifecycle", lines(
			`server.start()`,
			`server.shutdown()`,
			`assert not server.booted`,
			`server.succeed("true")`,
			`server.crash()`,
			`assert not server.booted`,
			`server.succeed("true")`,
			`server.halt()`,
			`server.succeed("true")`,
			`server.reboot()`,
			`server.execute("poweroff", check_return=False)`,
			`server.wait_for_shutdown(timeout=5)`,
		), func(t *testing.T, e *env) {
			if n := e.b.Starts("server"); n != 5 {
				t.Errorf("started %d times, want 5", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{machines: []string{"server"}, guest: scriptGuest})
			e.mustRun(tt.src)
			if tt.check != nil {
				tt.check(t, e)
			}
		})
	}
}

// TestMachineMethodErrors checks failures and argument errors of machine
// methods.
func TestMachineMethodErrors(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		parts []string
		is    error
	}{
		{"succeed fails", `server.succeed("exit 4")`, []string{"command `exit 4` failed (exit code 4)"}, machine.ErrCheckFailed},
		{"fail succeeds", `server.fail("true")`, []string{"unexpectedly succeeded"}, machine.ErrCheckFailed},
		{"wait timeout", `server.wait_for_file("/nope", timeout=0.05)`, []string{"timed out"}, machine.ErrTimeout},
		{"unit state", `server.require_unit_state("idle", "active")`, nil, machine.ErrCheckFailed},
		{"bool timeout", `server.wait_for_file("/etc/hello", timeout=True)`, []string{"wait_for_file: for parameter timeout: got bool"}, nil},
		{"negative timeout", `server.wait_for_file("/etc/hello", timeout=-1)`, []string{"negative duration"}, nil},
		{"wrong type", `server.wait_for_open_port("80")`, []string{"wait_for_open_port: for parameter port: got string, want int"}, nil},
		{"missing argument", `server.wait_for_unit()`, []string{"wait_for_unit: missing argument for unit"}, nil},
		{"too many arguments", `server.wait_for_file("a", 1, 2)`, []string{"wait_for_file: got 3 positional arguments, want at most 2"}, nil},
		{"succeed non-string", `server.succeed("true", 5)`, []string{"succeed: for command 2: got int, want string"}, nil},
		{"sleep without duration", `server.sleep()`, []string{"sleep: missing argument for duration"}, nil},
		{"sleep both", `server.sleep(1, duration=1)`, []string{"not both"}, nil},
		{"allow_reboot", `server.start(allow_reboot=True)`, []string{"allow_reboot=True is not supported"}, nil},
		{"forward_port twice", lines(`server.forward_port()`, `server.forward_port(8080, 81)`), []string{"forwarding host port 8080 to guest port 81", "already forwarded"}, nil},
		{"forward_port type", `server.forward_port("8080")`, []string{"forward_port: for parameter host_port: got string, want int"}, nil},
		{"block without vlan", `server.block()`, []string{"block: machine has no VLAN network link"}, machine.ErrNoVLAN},
		{"unblock without vlan", `server.unblock()`, []string{"unblock: machine has no VLAN network link"}, machine.ErrNoVLAN},
		{"links arguments", `server.links(1)`, []string{"links: got 1 positional arguments, want at most 0"}, nil},
		{"not supported", `server.shell_interact()`, []string{"shell_interact: not supported yet (interactive shells)"}, nil},
		{"python regex", `server.wait_for_console_text("(a)\\1", timeout=1)`, []string{"backreferences"}, nil},
		{"bad tty", `server.get_tty_text("tty1")`, []string{`"tty1" is not a terminal number`}, nil},
		{"qmp filter fails", lines(`server.succeed("emit events")`, `server.wait_for_qmp_event(lambda ev: ev["nokey"], timeout=5)`), []string{`key "nokey" not in dict`}, nil},
		{"qmp filter type", `server.wait_for_qmp_event("STOP")`, []string{"event_filter: got string, want a function"}, nil},
		{"misspelt method", `server.wait_for_unti("x")`, []string{`machine server has no attribute or method "wait_for_unti" (did you mean wait_for_unit?)`}, nil},
		{"misspelt keyword", `server.wait_for_unit("x", timout=3)`, []string{`wait_for_unit: unexpected keyword argument "timout" (did you mean timeout?)`}, nil},
		{"duplicate keyword", `server.wait_for_unit("x", unit="y")`, []string{"got multiple values for argument unit"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{machines: []string{"server"}, guest: scriptGuest})
			se := e.wantErr(tt.src, tt.parts...)
			if tt.is != nil && !errors.Is(se, tt.is) {
				t.Errorf("error %v does not wrap %v", se, tt.is)
			}
		})
	}
}

// containsInOrder reports whether want is a subsequence of got.
func containsInOrder(got, want []string) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}
