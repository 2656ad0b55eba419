package machine_test

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

func TestSystemctl(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Systemd("").SetUnit("nginx.service", "active", "running")
		g.Systemd("alice").SetUnit("pipewire.service", "active", "running")
		g.Systemd("o'brien").SetUnit("app.service", "failed", "failed")
	})
	ctx := testCtx(t)
	tests := []struct {
		name       string
		q          string
		opts       []machine.UnitOption
		wantStatus int
		wantOut    string
		wantCmd    string
	}{
		{"system", "is-active nginx.service", nil, 0, "active\n", "systemctl is-active nginx.service"},
		{"system inactive", "is-active pipewire.service", nil, 3, "inactive\n", ""},
		{"user", "is-active pipewire.service", []machine.UnitOption{machine.AsUser("alice")}, 0, "active\n",
			`su -l alice --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-active pipewire.service'`},
		{"user name needing quotes", "is-active app.service", []machine.UnitOption{machine.AsUser("o'brien")}, 3, "failed\n",
			`su -l 'o'\''brien' --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-active app.service'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out, err := e.m.Systemctl(ctx, tt.q, tt.opts...)
			must(t, err)
			if status != tt.wantStatus || out != tt.wantOut {
				t.Errorf("Systemctl(%q) = %d %q, want %d %q", tt.q, status, out, tt.wantStatus, tt.wantOut)
			}
			if tt.wantCmd != "" && !slices.Contains(e.guest().Commands(), tt.wantCmd) {
				t.Errorf("command %q not sent; got %q", tt.wantCmd, e.guest().Commands())
			}
		})
	}
}

func TestStartStopJob(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Systemd("").SetUnit("my app.service", "inactive", "dead")
		g.Systemd("bob").SetUnit("timer.service", "inactive", "dead")
	})
	ctx := testCtx(t)
	sd := e.guest().Systemd("")

	status, _, err := e.m.StartJob(ctx, "my app.service")
	must(t, err)
	if a, _, _ := sd.Unit("my app.service"); status != 0 || a != "active" {
		t.Errorf("after StartJob: status %d, state %s", status, a)
	}
	if !slices.Contains(e.guest().Commands(), "systemctl start 'my app.service'") {
		t.Errorf("unit name not quoted: %q", e.guest().Commands())
	}
	status, _, err = e.m.StopJob(ctx, "my app.service")
	must(t, err)
	if a, _, _ := sd.Unit("my app.service"); status != 0 || a != "inactive" {
		t.Errorf("after StopJob: status %d, state %s", status, a)
	}
	status, _, err = e.m.StartJob(ctx, "missing.service")
	must(t, err)
	if status != 5 {
		t.Errorf("start of a missing unit: status %d, want 5", status)
	}
	_, _, err = e.m.StartJob(ctx, "timer.service", machine.AsUser("bob"))
	must(t, err)
	if a, _, _ := e.guest().Systemd("bob").Unit("timer.service"); a != "active" {
		t.Errorf("user unit state %s", a)
	}
}

func TestGetUnitInfoAndProperty(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Systemd("").SetUnit("web server.service", "active", "running")
		g.Systemd("").SetProperty("web server.service", "MainPID", "42")
		g.Systemd("").SetProperty("web server.service", "Description", "A = B")
	})
	ctx := testCtx(t)
	info, err := e.m.GetUnitInfo(ctx, "web server.service")
	must(t, err)
	for k, v := range map[string]string{"ActiveState": "active", "SubState": "running", "MainPID": "42", "Description": "A = B", "Id": "web server.service"} {
		if info[k] != v {
			t.Errorf("info[%s] = %q, want %q", k, info[k], v)
		}
	}
	pid, err := e.m.GetUnitProperty(ctx, "web server.service", "MainPID")
	must(t, err)
	if pid != "42" {
		t.Errorf("MainPID = %q", pid)
	}
	_, err = e.m.GetUnitProperty(ctx, "web server.service", "NoSuchProperty")
	wantErrContains(t, err, "NoSuchProperty")

	e.guest().Handle(func(cmd string) (string, int, bool) {
		return "", 1, strings.Contains(cmd, "broken.service")
	})
	_, err = e.m.GetUnitInfo(ctx, "broken.service")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("err = %v, want ErrCheckFailed", err)
	}
	wantErrContains(t, err, "broken.service", "exit code 1")
}

func TestRequireUnitState(t *testing.T) {
	e := started(t, func(g *mock.Guest) { g.Systemd("").SetUnit("db.service", "activating", "start") })
	ctx := testCtx(t)
	must(t, e.m.RequireUnitState(ctx, "db.service", "activating"))
	err := e.m.RequireUnitState(ctx, "db.service", "active")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, `expected unit db.service to be in state "active" but it is in state "activating"`)
}

// unitFlipper makes unit active after n `systemctl show` probes of it.
func unitFlipper(user, unit string, n int32, calls *atomic.Int32) func(g *mock.Guest) {
	return func(g *mock.Guest) {
		g.Systemd(user).SetUnit(unit, "inactive", "dead")
		g.Handle(func(cmd string) (string, int, bool) {
			if strings.Contains(cmd, "show "+unit+" --property=ActiveState") && calls.Add(1) >= n {
				g.Systemd(user).SetUnit(unit, "active", "running")
			}
			return "", 0, false
		})
	}
}

func TestWaitForUnit(t *testing.T) {
	t.Run("already active", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) { g.Systemd("").SetUnit("sshd.service", "active", "running") })
		must(t, e.m.WaitForUnit(testCtx(t), "sshd.service"))
		if !e.log.has("finished", "waiting for unit sshd.service") {
			t.Error("no nested block")
		}
	})
	t.Run("inactive without jobs keeps polling", func(t *testing.T) {
		// The NixOS driver fails at once here; a start queued a moment
		// later must still be waited for.
		var calls atomic.Int32
		e := started(t, unitFlipper("", "late.service", 4, &calls))
		must(t, e.m.WaitForUnit(testCtx(t), "late.service", machine.Interval(time.Millisecond)))
		if calls.Load() != 4 {
			t.Errorf("%d probes, want 4", calls.Load())
		}
		if !slices.Contains(e.guest().Commands(), "systemctl list-jobs --full 2>&1") {
			t.Error("pending jobs were never checked")
		}
	})
	t.Run("user unit", func(t *testing.T) {
		var calls atomic.Int32
		e := started(t, unitFlipper("alice", "dbus.service", 2, &calls))
		must(t, e.m.WaitForUnit(testCtx(t), "dbus.service", machine.AsUser("alice"), machine.Interval(time.Millisecond)))
		if !e.log.has("nested", "waiting for unit dbus.service with user alice") {
			t.Errorf("log:\n%s", e.log.dump())
		}
	})
	t.Run("failed fails at once", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) { g.Systemd("").SetUnit("bad.service", "failed", "failed") })
		err := e.m.WaitForUnit(testCtx(t), "bad.service", machine.Timeout(time.Hour))
		if !errors.Is(err, machine.ErrCheckFailed) || errors.Is(err, machine.ErrTimeout) {
			t.Fatalf("err = %v, want ErrCheckFailed at once", err)
		}
		wantErrContains(t, err, `unit "bad.service" reached state "failed"`)
	})
	t.Run("becomes failed while waiting", func(t *testing.T) {
		var calls atomic.Int32
		e := started(t, func(g *mock.Guest) {
			g.Systemd("").SetUnit("crashy.service", "activating", "start")
			g.Handle(func(cmd string) (string, int, bool) {
				if strings.Contains(cmd, "show crashy.service") && calls.Add(1) == 3 {
					g.Systemd("").SetUnit("crashy.service", "failed", "failed")
				}
				return "", 0, false
			})
		})
		err := e.m.WaitForUnit(testCtx(t), "crashy.service", machine.Interval(time.Millisecond))
		if !errors.Is(err, machine.ErrCheckFailed) {
			t.Fatalf("err = %v", err)
		}
	})
	timeouts := []struct {
		name  string
		setup func(g *mock.Guest)
		want  string
	}{
		{"timeout names the missing job", func(g *mock.Guest) { g.Systemd("").SetUnit("idle.service", "inactive", "dead") },
			"unit idle.service is inactive and has no pending job"},
		{"timeout with a job pending", func(g *mock.Guest) {
			g.Systemd("").SetUnit("idle.service", "inactive", "dead")
			g.Systemd("").AddJob("idle.service", "start")
		}, "unit idle.service is inactive with a job pending"},
		{"timeout while activating", func(g *mock.Guest) { g.Systemd("").SetUnit("idle.service", "activating", "start") },
			"unit idle.service is activating"},
	}
	for _, tt := range timeouts {
		t.Run(tt.name, func(t *testing.T) {
			e := started(t, tt.setup)
			e.guest().ConsoleLine("systemd[1]: Starting idle...")
			err := e.m.WaitForUnit(testCtx(t), "idle.service", machine.Timeout(100*time.Millisecond), machine.Interval(20*time.Millisecond))
			if !errors.Is(err, machine.ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			wantErrContains(t, err, "unit idle.service to become active", tt.want, "systemd[1]: Starting idle...")
		})
	}
}
