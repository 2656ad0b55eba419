package machine

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// Systemctl runs `systemctl q` (q is shell text, not quoted) and returns
// its status and output; a non-zero status is not an error. AsUser runs
// it against that user's manager; Timeout limits it (default
// DefaultCommandTimeout).
func (m *Machine) Systemctl(ctx context.Context, q string, opts ...UnitOption) (int, string, error) {
	return m.systemctl(ctx, func(user string) string { return guestcmd.Systemctl(q, user) }, opts)
}

// systemctl runs the systemctl command cmd builds for the user of opts.
func (m *Machine) systemctl(ctx context.Context, cmd func(user string) string, opts []UnitOption) (int, string, error) {
	c := unitOptions(opts)
	r, err := m.exec(ctx, cmd(c.user), execParams{guestTimeout: c.waitTimeout(DefaultCommandTimeout)})
	if err != nil {
		return 0, "", err
	}
	return r.Status, r.Output, nil
}

// StartJob runs `systemctl start UNIT`.
func (m *Machine) StartJob(ctx context.Context, unit string, opts ...UnitOption) (int, string, error) {
	return m.systemctl(ctx, func(user string) string { return guestcmd.StartUnit(unit, user) }, opts)
}

// StopJob runs `systemctl stop UNIT`.
func (m *Machine) StopJob(ctx context.Context, unit string, opts ...UnitOption) (int, string, error) {
	return m.systemctl(ctx, func(user string) string { return guestcmd.StopUnit(unit, user) }, opts)
}

var propertyLine = regexp.MustCompile(`(?m)^([^=\n]+)=(.*)$`)

// GetUnitInfo returns the unit's properties as `systemctl show` prints
// them. A non-zero status gives an error wrapping ErrCheckFailed.
func (m *Machine) GetUnitInfo(ctx context.Context, unit string, opts ...UnitOption) (map[string]string, error) {
	status, out, err := m.systemctl(ctx, func(user string) string { return guestcmd.UnitInfo(unit, user) }, opts)
	if err != nil {
		return nil, err
	}
	if status != 0 {
		return nil, fmt.Errorf("machine %s: retrieving systemctl info for unit %s%s failed with exit code %d: %w",
			m.name, unit, userSuffix(unitOptions(opts).user), status, ErrCheckFailed)
	}
	info := map[string]string{}
	for _, sm := range propertyLine.FindAllStringSubmatch(out, -1) {
		info[sm[1]] = sm[2]
	}
	return info, nil
}

// GetUnitProperty returns one property of the unit.
func (m *Machine) GetUnitProperty(ctx context.Context, unit, property string, opts ...UnitOption) (string, error) {
	status, out, err := m.systemctl(ctx, func(user string) string { return guestcmd.UnitProperty(unit, property, user) }, opts)
	if err != nil {
		return "", err
	}
	if status != 0 {
		return "", fmt.Errorf("machine %s: retrieving systemctl property %s for unit %s%s failed with exit code %d: %w",
			m.name, property, unit, userSuffix(unitOptions(opts).user), status, ErrCheckFailed)
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, property+"="); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("machine %s: systemctl show %s printed no %s property (output %q); is the property name right?",
		m.name, unit, property, out)
}

func userSuffix(user string) string {
	if user == "" {
		return ""
	}
	return " (user " + user + ")"
}

// RequireUnitState checks once that the unit's ActiveState is state and
// returns an error wrapping ErrCheckFailed if it is not.
func (m *Machine) RequireUnitState(ctx context.Context, unit, state string, opts ...UnitOption) error {
	got, err := m.GetUnitProperty(ctx, unit, "ActiveState", opts...)
	if err != nil {
		return err
	}
	if got != state {
		return fmt.Errorf("machine %s: expected unit %s to be in state %q but it is in state %q: %w", m.name, unit, state, got, ErrCheckFailed)
	}
	return nil
}

// WaitForUnit waits until the unit is active. A unit in state "failed"
// ends the wait at once (error wrapping ErrCheckFailed). Unlike the
// NixOS driver, an inactive unit with no pending job does not fail at
// once (its start may be queued a moment later): the wait goes on until
// its deadline, and the timeout error says that the unit is inactive and
// has no pending job. Options: AsUser, Timeout (default
// DefaultWaitTimeout), Interval.
func (m *Machine) WaitForUnit(ctx context.Context, unit string, opts ...UnitOption) error {
	c := unitOptions(opts)
	title := "waiting for unit " + unit
	if c.user != "" {
		title += " with user " + c.user
	}
	what := fmt.Sprintf("unit %s%s to become active", unit, userSuffix(c.user))
	return m.Nested(title, func() error {
		return m.retry(ctx, what, c, func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
			uo := []UnitOption{AsUser(c.user), Timeout(budget)}
			state, err := m.GetUnitProperty(ctx, unit, "ActiveState", uo...)
			if err != nil {
				return false, "", err
			}
			switch state {
			case "active":
				return true, "", nil
			case "failed":
				return false, "", fmt.Errorf("machine %s: unit %q%s reached state \"failed\": %w", m.name, unit, userSuffix(c.user), ErrCheckFailed)
			case "inactive":
				_, jobs, err := m.systemctl(ctx, guestcmd.ListJobs, uo)
				if err != nil {
					return false, "", err
				}
				if strings.Contains(jobs, "No jobs") || !strings.Contains(jobs, unit) {
					// Re-read: the unit may have changed meanwhile.
					info, err := m.GetUnitInfo(ctx, unit, uo...)
					if err != nil {
						return false, "", err
					}
					switch info["ActiveState"] {
					case "active":
						return true, "", nil
					case "failed":
						return false, "", fmt.Errorf("machine %s: unit %q%s reached state \"failed\": %w", m.name, unit, userSuffix(c.user), ErrCheckFailed)
					}
					return false, fmt.Sprintf("unit %s is inactive and has no pending job", unit), nil
				}
				return false, fmt.Sprintf("unit %s is inactive with a job pending", unit), nil
			}
			return false, fmt.Sprintf("unit %s is %s", unit, state), nil
		})
	})
}
