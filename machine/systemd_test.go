package machine_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/machine"
)

func TestSystemctl(t *testing.T) {
	tests := []struct {
		name, q, user string
		reply         mock.Reply
	}{
		{"system", "is-active nginx.service", "", mock.Reply{Out: "active\n"}},
		{"system inactive", "is-active pipewire.service", "", mock.Reply{Out: "inactive\n", Status: 3}},
		{"user", "is-active pipewire.service", "alice", mock.Reply{Out: "active\n"}},
		{"user name needing quotes", "is-active app.service", "o'brien", mock.Reply{Out: "failed\n", Status: 3}},
	}
	e := started(t, func(g *mock.Guest) {
		for _, tt := range tests {
			g.Answer(guestcmd.Systemctl(tt.q, tt.user), tt.reply)
		}
	})
	ctx := testCtx(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, out, err := e.m.Systemctl(ctx, tt.q, machine.AsUser(tt.user), machine.Timeout(time.Minute))
			must(t, err)
			if status != tt.reply.Status || out != tt.reply.Out {
				t.Errorf("Systemctl(%q) = %d %q, want %d %q", tt.q, status, out, tt.reply.Status, tt.reply.Out)
			}
		})
	}
}

func TestStartStopJob(t *testing.T) {
	var timeouts []time.Duration
	e := started(t, func(g *mock.Guest) {
		g.AnswerFunc(guestcmd.StartUnit("my app.service", ""), func(_ context.Context, req mock.Request) mock.Reply {
			timeouts = append(timeouts, req.Timeout)
			return mock.Reply{}
		})
		g.Answer(guestcmd.StopUnit("my app.service", ""), mock.Reply{})
		g.Answer(guestcmd.StartUnit("missing.service", ""), mock.Reply{Status: 5})
		g.Answer(guestcmd.StartUnit("timer.service", "bob"), mock.Reply{Out: "started\n"})
	})
	ctx := testCtx(t)
	tests := []struct {
		fn         func(*machine.Machine, context.Context, string, ...machine.UnitOption) (int, string, error)
		unit       string
		opts       []machine.UnitOption
		wantStatus int
		wantOut    string
	}{
		{(*machine.Machine).StartJob, "my app.service", nil, 0, ""},
		{(*machine.Machine).StopJob, "my app.service", nil, 0, ""},
		{(*machine.Machine).StartJob, "missing.service", nil, 5, ""},
		{(*machine.Machine).StartJob, "timer.service", []machine.UnitOption{machine.AsUser("bob")}, 0, "started\n"},
	}
	for _, tt := range tests {
		status, out, err := tt.fn(e.m, ctx, tt.unit, tt.opts...)
		must(t, err)
		if status != tt.wantStatus || out != tt.wantOut {
			t.Errorf("%s: %d %q, want %d %q", tt.unit, status, out, tt.wantStatus, tt.wantOut)
		}
	}
	if !slices.Equal(timeouts, []time.Duration{machine.DefaultCommandTimeout}) {
		t.Errorf("guest-side timeouts %v, want the default command timeout", timeouts)
	}
}

func TestGetUnitInfoAndProperty(t *testing.T) {
	e := started(t, func(g *mock.Guest) {
		g.Answer(guestcmd.UnitInfo("web server.service", ""), mock.Reply{
			Out: "Id=web server.service\nActiveState=active\nSubState=running\nMainPID=42\nDescription=A = B\nEmpty=\n"})
		g.Answer(guestcmd.UnitProperty("web server.service", "MainPID", ""), mock.Reply{Out: "MainPID=42\n"})
		g.Answer(guestcmd.UnitProperty("web server.service", "NoSuchProperty", ""), mock.Reply{})
		g.Answer(guestcmd.UnitInfo("broken.service", ""), mock.Reply{Status: 1})
		g.Answer(guestcmd.UnitProperty("broken.service", "MainPID", "alice"), mock.Reply{Status: 1})
	})
	ctx := testCtx(t)
	info, err := e.m.GetUnitInfo(ctx, "web server.service")
	must(t, err)
	want := map[string]string{"Id": "web server.service", "ActiveState": "active", "SubState": "running", "MainPID": "42", "Description": "A = B", "Empty": ""}
	if len(info) != len(want) {
		t.Errorf("info = %q, want %q", info, want)
	}
	for k, v := range want {
		if got, ok := info[k]; !ok || got != v {
			t.Errorf("info[%s] = %q, want %q", k, got, v)
		}
	}
	pid, err := e.m.GetUnitProperty(ctx, "web server.service", "MainPID")
	must(t, err)
	if pid != "42" {
		t.Errorf("MainPID = %q", pid)
	}
	_, err = e.m.GetUnitProperty(ctx, "web server.service", "NoSuchProperty")
	wantErrContains(t, err, "printed no NoSuchProperty property")

	_, err = e.m.GetUnitInfo(ctx, "broken.service")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("err = %v, want ErrCheckFailed", err)
	}
	wantErrContains(t, err, "broken.service", "exit code 1")
	_, err = e.m.GetUnitProperty(ctx, "broken.service", "MainPID", machine.AsUser("alice"))
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Errorf("err = %v, want ErrCheckFailed", err)
	}
	wantErrContains(t, err, "property MainPID for unit broken.service (user alice)", "exit code 1")
}

func TestRequireUnitState(t *testing.T) {
	e := started(t, func(g *mock.Guest) { fakeUnit(g, "", "db.service", "activating", nil) })
	ctx := testCtx(t)
	must(t, e.m.RequireUnitState(ctx, "db.service", "activating"))
	err := e.m.RequireUnitState(ctx, "db.service", "active")
	if !errors.Is(err, machine.ErrCheckFailed) {
		t.Fatalf("err = %v", err)
	}
	wantErrContains(t, err, `expected unit db.service to be in state "active" but it is in state "activating"`)
}

// fakeUnit answers the systemctl queries of WaitForUnit about unit of
// user's manager: its ActiveState is the guest's state "unit USER UNIT"
// (initially state), list-jobs lists a start job for it while the state
// "jobs USER" is set. probe, if set, runs before each ActiveState
// property query with its number (from 1).
func fakeUnit(g *mock.Guest, user, unit, state string, probe func(n int32)) {
	key := unitKey(user, unit)
	g.SetState(key, state)
	var probes atomic.Int32
	g.AnswerFunc(guestcmd.UnitProperty(unit, "ActiveState", user), func(context.Context, mock.Request) mock.Reply {
		if probe != nil {
			probe(probes.Add(1))
		}
		return mock.Reply{Out: "ActiveState=" + g.State(key) + "\n"}
	})
	g.AnswerFunc(guestcmd.UnitInfo(unit, user), func(context.Context, mock.Request) mock.Reply {
		return mock.Reply{Out: "Id=" + unit + "\nActiveState=" + g.State(key) + "\n"}
	})
	g.AnswerFunc(guestcmd.ListJobs(user), func(context.Context, mock.Request) mock.Reply {
		if g.State("jobs "+user) == "" {
			return mock.Reply{Out: "No jobs running.\n"}
		}
		return mock.Reply{Out: "JOB UNIT TYPE STATE\n1 " + unit + " start waiting\n\n1 jobs listed.\n"}
	})
}

// unitKey is the guest state holding a fake unit's ActiveState.
func unitKey(user, unit string) string { return "unit " + user + " " + unit }

// becomes sets the state of unit (see fakeUnit) at probe n.
func becomes(g *mock.Guest, user, unit, state string, n int32) func(int32) {
	return func(k int32) {
		if k == n {
			g.SetState(unitKey(user, unit), state)
		}
	}
}

func TestWaitForUnit(t *testing.T) {
	t.Run("already active", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) { fakeUnit(g, "", "sshd.service", "active", nil) })
		must(t, e.m.WaitForUnit(testCtx(t), "sshd.service"))
		if !e.log.has("finished", "waiting for unit sshd.service") {
			t.Error("no nested block")
		}
	})
	t.Run("inactive without jobs keeps polling", func(t *testing.T) {
		// The NixOS driver fails at once here; a start queued a moment
		// later must still be waited for.
		var probes atomic.Int32
		e := started(t, func(g *mock.Guest) {
			fakeUnit(g, "", "late.service", "inactive", func(n int32) {
				probes.Store(n)
				becomes(g, "", "late.service", "active", 4)(n)
			})
		})
		must(t, e.m.WaitForUnit(testCtx(t), "late.service", machine.Interval(time.Millisecond)))
		if probes.Load() != 4 {
			t.Errorf("%d probes, want 4", probes.Load())
		}
		if !slices.Contains(e.guest().Commands(), guestcmd.ListJobs("")) {
			t.Error("pending jobs were never checked")
		}
	})
	t.Run("active on the re-read", func(t *testing.T) {
		// The unit starts between the property probe and the re-read.
		e := started(t, func(g *mock.Guest) {
			fakeUnit(g, "", "quick.service", "inactive", nil)
			g.AnswerFunc(guestcmd.ListJobs(""), func(context.Context, mock.Request) mock.Reply {
				g.SetState(unitKey("", "quick.service"), "active")
				return mock.Reply{Out: "No jobs running.\n"}
			})
		})
		must(t, e.m.WaitForUnit(testCtx(t), "quick.service", machine.Timeout(time.Hour)))
	})
	t.Run("user unit", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) {
			fakeUnit(g, "alice", "dbus.service", "inactive", becomes(g, "alice", "dbus.service", "active", 2))
		})
		must(t, e.m.WaitForUnit(testCtx(t), "dbus.service", machine.AsUser("alice"), machine.Interval(time.Millisecond)))
		if !e.log.has("nested", "waiting for unit dbus.service with user alice") {
			t.Errorf("log:\n%s", e.log.dump())
		}
	})
	t.Run("failed fails at once", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) { fakeUnit(g, "", "bad.service", "failed", nil) })
		err := e.m.WaitForUnit(testCtx(t), "bad.service", machine.Timeout(time.Hour))
		if !errors.Is(err, machine.ErrCheckFailed) || errors.Is(err, machine.ErrTimeout) {
			t.Fatalf("err = %v, want ErrCheckFailed at once", err)
		}
		wantErrContains(t, err, `unit "bad.service" reached state "failed"`)
	})
	t.Run("becomes failed while waiting", func(t *testing.T) {
		e := started(t, func(g *mock.Guest) {
			fakeUnit(g, "", "crashy.service", "activating", becomes(g, "", "crashy.service", "failed", 3))
		})
		err := e.m.WaitForUnit(testCtx(t), "crashy.service", machine.Interval(time.Millisecond))
		if !errors.Is(err, machine.ErrCheckFailed) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("systemctl fails", func(t *testing.T) {
		// No systemd: the property query exits 127.
		e := started(t, nil)
		err := e.m.WaitForUnit(testCtx(t), "multi-user.target", machine.Timeout(time.Hour))
		if !errors.Is(err, machine.ErrCheckFailed) || errors.Is(err, machine.ErrTimeout) {
			t.Fatalf("err = %v, want ErrCheckFailed at once", err)
		}
		wantErrContains(t, err, "multi-user.target", "exit code 127")
	})
	timeouts := []struct {
		name  string
		state string
		jobs  bool
		want  string
	}{
		{"timeout names the missing job", "inactive", false, "unit idle.service is inactive and has no pending job"},
		{"timeout with a job pending", "inactive", true, "unit idle.service is inactive with a job pending"},
		{"timeout while activating", "activating", false, "unit idle.service is activating"},
	}
	for _, tt := range timeouts {
		t.Run(tt.name, func(t *testing.T) {
			e := started(t, func(g *mock.Guest) {
				fakeUnit(g, "", "idle.service", tt.state, nil)
				if tt.jobs {
					g.SetState("jobs ", "start")
				}
			})
			e.guest().ConsoleLine("systemd[1]: Starting idle...")
			err := e.m.WaitForUnit(testCtx(t), "idle.service", machine.Timeout(100*time.Millisecond), machine.Interval(20*time.Millisecond))
			if !errors.Is(err, machine.ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", err)
			}
			wantErrContains(t, err, "unit idle.service to become active", tt.want, "systemd[1]: Starting idle...")
		})
	}
}
