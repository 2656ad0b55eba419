package mock

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Systemd is the fake service manager of one user (or the system). It
// answers `systemctl show UNIT [--property=P]`, `start`, `stop`,
// `restart`, `is-active`, `is-failed`, `status`, `list-jobs`,
// `daemon-reload`, `enable` and `disable`, as systemd prints them.
// Unit names without a suffix get ".service", like systemctl does.
type Systemd struct {
	g     *Guest
	user  string
	units map[string]*unit
	jobs  []job
	next  int
}

type unit struct {
	active, sub string
	props       map[string]string
	startFails  bool
}

type job struct {
	id         int
	unit, kind string
}

// unitName adds ".service" to a name without a unit suffix.
func unitName(name string) string {
	if i := strings.LastIndexByte(name, '.'); i > 0 && i < len(name)-1 && !strings.ContainsAny(name[i:], "/") {
		return name
	}
	return name + ".service"
}

func (s *Systemd) unitLocked(name string) *unit {
	name = unitName(name)
	u := s.units[name]
	if u == nil {
		u = &unit{active: "inactive", sub: "dead", props: map[string]string{}}
		s.units[name] = u
	}
	return u
}

// SetUnit creates or changes a unit's ActiveState and SubState.
func (s *Systemd) SetUnit(name, activeState, subState string) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	u := s.unitLocked(name)
	u.active, u.sub = activeState, subState
}

// SetProperty sets any other property `systemctl show` prints.
func (s *Systemd) SetProperty(name, key, value string) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.unitLocked(name).props[key] = value
}

// SetStartFails makes `systemctl start` of the unit fail (state failed,
// exit status 1).
func (s *Systemd) SetStartFails(name string, fails bool) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.unitLocked(name).startFails = fails
}

// RemoveUnit forgets a unit (it becomes "not-found").
func (s *Systemd) RemoveUnit(name string) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	delete(s.units, unitName(name))
}

// Unit returns a unit's ActiveState and SubState; ok is false for an
// unknown unit.
func (s *Systemd) Unit(name string) (activeState, subState string, ok bool) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	u := s.units[unitName(name)]
	if u == nil {
		return "inactive", "dead", false
	}
	return u.active, u.sub, true
}

// AddJob queues a pending job (such as "start") for the unit, listed by
// `systemctl list-jobs`.
func (s *Systemd) AddJob(name, kind string) {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.next++
	s.jobs = append(s.jobs, job{id: s.next, unit: unitName(name), kind: kind})
}

// ClearJobs removes every pending job.
func (s *Systemd) ClearJobs() {
	s.g.mu.Lock()
	defer s.g.mu.Unlock()
	s.jobs = nil
}

// systemctl runs one systemctl invocation (args after "systemctl"); it
// returns stdout, stderr and the exit status. s.g.mu must be held.
func (s *Systemd) systemctl(args []string) (stdout, stderr string, status int) {
	var props []string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--no-pager", a == "--full", a == "-l", a == "--no-block", a == "--user", a == "--system", a == "--quiet", a == "-q", a == "--no-legend":
		case strings.HasPrefix(a, "--property="):
			props = append(props, strings.Split(strings.TrimPrefix(a, "--property="), ",")...)
		case (a == "--property" || a == "-p") && i+1 < len(args):
			i++
			props = append(props, strings.Split(args[i], ",")...)
		case strings.HasPrefix(a, "-"):
			return "", fmt.Sprintf("systemctl: unrecognized option '%s'\n", a), 1
		default:
			rest = append(rest, a)
		}
	}
	if len(rest) == 0 {
		return "", "mock systemctl: no verb\n", 1
	}
	verb, units := rest[0], rest[1:]
	switch verb {
	case "show":
		var b strings.Builder
		for i, name := range units {
			if i > 0 {
				b.WriteString("\n")
			}
			s.show(&b, unitName(name), props)
		}
		return b.String(), "", 0
	case "start", "restart", "reload", "reload-or-restart", "try-restart":
		for _, name := range units {
			n := unitName(name)
			u := s.units[n]
			if u == nil {
				return "", fmt.Sprintf("Failed to %s %s: Unit %s not found.\n", verb, n, n), 5
			}
			if u.startFails {
				u.active, u.sub = "failed", "failed"
				return "", fmt.Sprintf("Job for %s failed because the control process exited with error code.\nSee \"systemctl status %s\" and \"journalctl -xeu %s\" for details.\n", n, n, n), 1
			}
			u.active, u.sub = "active", "running"
			s.dropJobs(n)
		}
		return "", "", 0
	case "stop":
		for _, name := range units {
			n := unitName(name)
			if u := s.units[n]; u != nil {
				u.active, u.sub = "inactive", "dead"
			}
			s.dropJobs(n)
		}
		return "", "", 0
	case "is-active", "is-failed":
		want := map[string]string{"is-active": "active", "is-failed": "failed"}[verb]
		var b strings.Builder
		status := 3
		if verb == "is-failed" {
			status = 1
		}
		for _, name := range units {
			st := "inactive"
			if u := s.units[unitName(name)]; u != nil {
				st = u.active
			}
			b.WriteString(st + "\n")
			if st == want {
				status = 0
			}
		}
		return b.String(), "", status
	case "status":
		var b strings.Builder
		status := 0
		for _, name := range units {
			n := unitName(name)
			u := s.units[n]
			if u == nil {
				return b.String(), fmt.Sprintf("Unit %s could not be found.\n", n), 4
			}
			fmt.Fprintf(&b, "● %s\n     Active: %s (%s)\n", n, u.active, u.sub)
			if u.active != "active" {
				status = 3
			}
		}
		return b.String(), "", status
	case "list-jobs":
		if len(s.jobs) == 0 {
			return "No jobs running.\n", "", 0
		}
		var b strings.Builder
		fmt.Fprintf(&b, "JOB UNIT TYPE STATE\n")
		for _, j := range s.jobs {
			fmt.Fprintf(&b, "%d %s %s waiting\n", j.id, j.unit, j.kind)
		}
		fmt.Fprintf(&b, "\n%d jobs listed.\n", len(s.jobs))
		return b.String(), "", 0
	case "daemon-reload", "enable", "disable", "mask", "unmask", "reset-failed":
		return "", "", 0
	}
	return "", fmt.Sprintf("Unknown command verb '%s'.\n", verb), 1
}

func (s *Systemd) dropJobs(n string) {
	s.jobs = slices.DeleteFunc(s.jobs, func(j job) bool { return j.unit == n })
}

// show prints a unit's properties like `systemctl show`.
func (s *Systemd) show(b *strings.Builder, name string, only []string) {
	all := map[string]string{"Id": name, "Names": name}
	if u := s.units[name]; u != nil {
		for k, v := range u.props {
			all[k] = v
		}
		all["LoadState"] = "loaded"
		all["ActiveState"] = u.active
		all["SubState"] = u.sub
	} else {
		all["LoadState"] = "not-found"
		all["ActiveState"] = "inactive"
		all["SubState"] = "dead"
	}
	if len(only) > 0 {
		for _, k := range only {
			if v, ok := all[k]; ok {
				fmt.Fprintf(b, "%s=%s\n", k, v)
			}
		}
		return
	}
	keys := slices.Sorted(maps.Keys(all))
	for _, k := range keys {
		fmt.Fprintf(b, "%s=%s\n", k, all[k])
	}
}
