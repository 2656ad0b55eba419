package script

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
)

// machineValue is a machine as scripts see it: the NixOS driver's
// Machine API over a *machine.Machine.
//
// In a forked subtest (Options.ForkSubtests) the same value acts on the
// subtest's clone of the machine: methods look the machine up in their
// thread's fork (forkOf), so a function defined in set-up acts on the
// clones when a subtest calls it. Data attributes (booted, pid, ...)
// have no thread to look at; a forked subtest's own globals therefore
// name clone-bound values (clone set), which read the clone's.
type machineValue struct {
	s *Session
	// m is the machine the value names: for a clone-bound value, the
	// original it was cloned from.
	m *machine.Machine
	// clone, if set, is the forked subtest's clone the value acts on.
	clone *machine.Machine
}

// Machines are equal when they name the same machine: a forked subtest's
// clone-bound value equals the original's.
var (
	_ starlark.HasAttrs   = (*machineValue)(nil)
	_ starlark.Comparable = (*machineValue)(nil)
)

func (mv *machineValue) String() string       { return fmt.Sprintf("<Machine '%s'>", mv.m.Name()) }
func (mv *machineValue) Type() string         { return "Machine" }
func (mv *machineValue) Freeze()              {}
func (mv *machineValue) Truth() starlark.Bool { return starlark.True }
func (mv *machineValue) Hash() (uint32, error) {
	h := fnv.New32a()
	h.Write([]byte(mv.m.Name()))
	return h.Sum32(), nil
}

// CompareSameType supports == and != only.
func (mv *machineValue) CompareSameType(op syntax.Token, y starlark.Value, _ int) (bool, error) {
	same := mv.m == namedMachine(y)
	switch op {
	case syntax.EQL:
		return same, nil
	case syntax.NEQ:
		return !same, nil
	}
	return false, fmt.Errorf("%s %s %s: machines are not ordered", mv.Type(), op, y.Type())
}

// namedMachine is the machine a Machine value names (the original, for a
// clone-bound value), or nil.
func namedMachine(v starlark.Value) *machine.Machine {
	switch v := v.(type) {
	case *machineValue:
		return v.m
	case *machineAlias:
		return v.mv.m
	}
	return nil
}

// on returns the machine the value acts on in thread th.
func (mv *machineValue) on(th *starlark.Thread) *machine.Machine {
	if mv.clone != nil {
		return mv.clone
	}
	if fs := forkOf(th); fs != nil {
		if c := fs.clones[mv.m.Name()]; c != nil {
			return c
		}
	}
	return mv.m
}

// machineAttrs are the machine's data attributes.
var machineAttrs = map[string]func(m *machine.Machine) starlark.Value{
	"name":       func(m *machine.Machine) starlark.Value { return starlark.String(m.Name()) },
	"state_dir":  func(m *machine.Machine) starlark.Value { return starlark.String(m.StateDir()) },
	"shared_dir": func(m *machine.Machine) starlark.Value { return starlark.String(m.SharedDir()) },
	"out_dir":    func(m *machine.Machine) starlark.Value { return starlark.String(m.OutputDir()) },
	"booted":     func(m *machine.Machine) starlark.Value { return starlark.Bool(m.Booted()) },
	"connected":  func(m *machine.Machine) starlark.Value { return starlark.Bool(m.Connected()) },
	"pid": func(m *machine.Machine) starlark.Value {
		if pid := m.PID(); pid != 0 {
			return starlark.MakeInt(pid)
		}
		return starlark.None
	},
}

// methodFunc implements one machine method.
type methodFunc func(c *call) (starlark.Value, error)

// call is one machine method call.
type call struct {
	mv     *machineValue
	m      *machine.Machine
	th     *starlark.Thread
	ctx    context.Context
	fn     string
	args   starlark.Tuple
	kwargs []starlark.Tuple
}

func (c *call) unpack(names []string, vals ...*starlark.Value) error {
	return unpack(c.fn, c.args, c.kwargs, names, vals...)
}

// stringArg unpacks a method's single required string parameter.
func (c *call) stringArg(name string) (string, error) {
	var v starlark.Value
	if err := c.unpack([]string{name}, &v); err != nil {
		return "", err
	}
	return toStr(c.fn, name, v)
}

// machineMethods are the NixOS driver's Machine methods.
var machineMethods map[string]methodFunc

// unsupported are NixOS driver methods vmdriver does not offer yet.
var unsupported = map[string]string{
	"wait_for_x":               "waiting for X11",
	"wait_for_window":          "waiting for X11 windows",
	"get_window_names":         "listing X11 windows",
	"wait_for_text":            "OCR",
	"get_screen_text":          "OCR",
	"get_screen_text_variants": "OCR",
	"switch_root":              "switching root from the initrd",
	"shell_interact":           "interactive shells",
	"console_interact":         "interactive consoles",
	"ssh_backdoor_command":     "the SSH backdoor",
}

func init() {
	machineMethods = map[string]methodFunc{
		"start":                     mStart,
		"shutdown":                  lifecycle((*machine.Machine).Shutdown),
		"crash":                     lifecycle(func(m *machine.Machine, ctx context.Context, _ ...machine.WaitOption) error { return m.Crash(ctx) }),
		"halt":                      lifecycle((*machine.Machine).Halt),
		"reboot":                    lifecycle(func(m *machine.Machine, ctx context.Context, _ ...machine.WaitOption) error { return m.Reboot(ctx) }),
		"wait_for_shutdown":         mWaitForShutdown,
		"is_up":                     mIsUp,
		"execute":                   mExecute,
		"succeed":                   mCheck(false),
		"fail":                      mCheck(true),
		"wait_until_succeeds":       mWaitUntil(false),
		"wait_until_fails":          mWaitUntil(true),
		"sleep":                     mSleep,
		"systemctl":                 mSystemctl,
		"start_job":                 mJob((*machine.Machine).StartJob),
		"stop_job":                  mJob((*machine.Machine).StopJob),
		"get_unit_info":             mGetUnitInfo,
		"get_unit_property":         mGetUnitProperty,
		"require_unit_state":        mRequireUnitState,
		"wait_for_unit":             mWaitForUnit,
		"wait_for_file":             mWaitForFile,
		"wait_for_open_port":        mWaitForPort(true),
		"wait_for_closed_port":      mWaitForPort(false),
		"wait_for_open_unix_socket": mWaitForUnixSocket,
		"wait_for_console_text":     mWaitForConsoleText,
		"get_console_log":           mGetConsoleLog,
		"send_console":              mSendConsole,
		"send_monitor_command":      mSendMonitorCommand,
		"wait_for_qmp_event":        mWaitForQMPEvent,
		"screenshot":                mScreenshot,
		"send_key":                  mSendKey,
		"send_chars":                mSendChars,
		"copy_from_host":            mCopyFromHost(false),
		"copy_from_host_via_shell":  mCopyFromHost(true),
		"copy_from_machine":         mCopyFromMachine,
		"copy_from_vm":              mCopyFromMachine,
		"get_tty_text":              mGetTTYText,
		"wait_until_tty_matches":    mWaitUntilTTYMatches,
		"dump_tty_contents":         mDumpTTYContents,
		"snapshot":                  mSnapshot,
		"fork":                      mFork,
		"block":                     mSetLinks((*machine.Machine).Block),
		"unblock":                   mSetLinks((*machine.Machine).Unblock),
		"links":                     mLinks,
		"forward_port":              mForwardPort,
		"log":                       mLog,
		"nested":                    mNested,
	}
	for name, what := range unsupported {
		machineMethods[name] = notSupported(what)
	}
}

// AttrNames lists the attributes and methods.
func (mv *machineValue) AttrNames() []string {
	names := make([]string, 0, len(machineAttrs)+len(machineMethods))
	for n := range machineAttrs {
		names = append(names, n)
	}
	for n := range machineMethods {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Attr returns an attribute or a bound method; a misspelt name gets the
// closest one suggested.
func (mv *machineValue) Attr(name string) (starlark.Value, error) {
	if name == "name" {
		// A clone keeps its original's name for the script.
		return starlark.String(mv.m.Name()), nil
	}
	if a, ok := machineAttrs[name]; ok {
		if mv.clone != nil {
			return a(mv.clone), nil
		}
		return a(mv.m), nil
	}
	fn, ok := machineMethods[name]
	if !ok {
		return nil, noAttr(fmt.Sprintf("machine %s", mv.m.Name()), name, mv.AttrNames())
	}
	return mv.s.builtin(name, func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		ctx, err := contextOf(th)
		if err != nil {
			return nil, err
		}
		return fn(&call{mv: mv, m: mv.on(th), th: th, ctx: ctx, fn: name, args: args, kwargs: kwargs})
	}).BindReceiver(mv), nil
}

// machineAlias is the implicit `machine` of a single-machine test: the
// machine under another name that warns, once, that it is deprecated.
type machineAlias struct {
	mv   *machineValue
	once interface{ Do(func()) }
}

var (
	_ starlark.HasAttrs   = (*machineAlias)(nil)
	_ starlark.Comparable = (*machineAlias)(nil)
)

func (a *machineAlias) String() string        { return a.mv.String() }
func (a *machineAlias) Type() string          { return a.mv.Type() }
func (a *machineAlias) Freeze()               {}
func (a *machineAlias) Truth() starlark.Bool  { return starlark.True }
func (a *machineAlias) Hash() (uint32, error) { return a.mv.Hash() }
func (a *machineAlias) AttrNames() []string   { return a.mv.AttrNames() }

// CompareSameType compares the machine the alias names.
func (a *machineAlias) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	return a.mv.CompareSameType(op, y, depth)
}

func (a *machineAlias) Attr(name string) (starlark.Value, error) {
	a.once.Do(func() {
		a.mv.s.log.Warn("", fmt.Sprintf("using the implicit name `machine` for the only machine is deprecated; call it by its name, %s", driver.PythonName(a.mv.m.Name())))
	})
	return a.mv.Attr(name)
}

// ---- argument helpers ----

// timeoutOpt converts a timeout argument into a machine.Timeout option:
// absent gives def (0: the method's own default), None none.
func (c *call) timeoutOpt(v starlark.Value, def time.Duration) (*machine.TimeoutOption, error) {
	d, ok, err := toDuration(c.fn, "timeout", v, def)
	if err != nil || !ok || (v == nil && def == 0) {
		return nil, err
	}
	t := machine.Timeout(d)
	return &t, nil
}

func waitOpts(t *machine.TimeoutOption) []machine.WaitOption {
	if t == nil {
		return nil
	}
	return []machine.WaitOption{*t}
}

func unitOpts(user string, t *machine.TimeoutOption) []machine.UnitOption {
	var opts []machine.UnitOption
	if user != "" {
		opts = append(opts, machine.AsUser(user))
	}
	if t != nil {
		opts = append(opts, *t)
	}
	return opts
}

func none(err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return starlark.None, nil
}

func str(s string, err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return starlark.String(s), nil
}

func statusOutput(status int, out string, err error) (starlark.Value, error) {
	if err != nil {
		return nil, err
	}
	return starlark.Tuple{starlark.MakeInt(status), starlark.String(out)}, nil
}

const defaultWait = 900 * time.Second

// ---- methods ----

// start(allow_reboot=False)
func mStart(c *call) (starlark.Value, error) {
	var allow starlark.Value
	if err := c.unpack([]string{"allow_reboot?"}, &allow); err != nil {
		return nil, err
	}
	if toBool(allow, false) {
		return nil, fmt.Errorf("start: allow_reboot=True is not supported: machine %s's reboot behaviour is fixed when it is created", c.m.Name())
	}
	return none(c.m.Start(c.ctx))
}

func lifecycle(fn func(m *machine.Machine, ctx context.Context, opts ...machine.WaitOption) error) methodFunc {
	return func(c *call) (starlark.Value, error) {
		if err := c.unpack(nil); err != nil {
			return nil, err
		}
		return none(fn(c.m, c.ctx))
	}
}

// wait_for_shutdown(timeout=None)
func mWaitForShutdown(c *call) (starlark.Value, error) {
	var timeoutV starlark.Value
	if err := c.unpack([]string{"timeout?"}, &timeoutV); err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, 0)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitForShutdown(c.ctx, waitOpts(t)...))
}

func mIsUp(c *call) (starlark.Value, error) {
	if err := c.unpack(nil); err != nil {
		return nil, err
	}
	return starlark.Bool(c.m.IsUp()), nil
}

// execute(command, check_return=True, check_output=True, timeout=900)
func mExecute(c *call) (starlark.Value, error) {
	var cmdV, checkReturn, checkOutput, timeoutV starlark.Value
	if err := c.unpack([]string{"command", "check_return?", "check_output?", "timeout?"}, &cmdV, &checkReturn, &checkOutput, &timeoutV); err != nil {
		return nil, err
	}
	cmd, err := toStr(c.fn, "command", cmdV)
	if err != nil {
		return nil, err
	}
	d, ok, err := toDuration(c.fn, "timeout", timeoutV, defaultWait)
	if err != nil {
		return nil, err
	}
	if !ok {
		d = 0 // no guest-side limit
	}
	opts := []machine.ExecOption{machine.Timeout(d)}
	if !toBool(checkReturn, true) {
		opts = append(opts, machine.NoCheckReturn())
	}
	if !toBool(checkOutput, true) {
		opts = append(opts, machine.NoCheckOutput())
	}
	r, err := c.m.Execute(c.ctx, cmd, opts...)
	return statusOutput(r.Status, r.Output, err)
}

// succeed(*commands, timeout=None) / fail(*commands, timeout=None)
func mCheck(wantFailure bool) methodFunc {
	return func(c *call) (starlark.Value, error) {
		var cmdsV, timeoutV starlark.Value
		if err := c.unpack([]string{"*commands", "timeout?"}, &cmdsV, &timeoutV); err != nil {
			return nil, err
		}
		t, err := c.timeoutOpt(timeoutV, 0)
		if err != nil {
			return nil, err
		}
		var opts []machine.ExecOption
		if t != nil {
			opts = append(opts, *t)
		}
		var out strings.Builder
		cmds, _ := cmdsV.(starlark.Tuple)
		for i, v := range cmds {
			cmd, ok := v.(starlark.String)
			if !ok {
				return nil, fmt.Errorf("%s: for command %d: got %s, want string", c.fn, i+1, v.Type())
			}
			run := c.m.Succeed
			if wantFailure {
				run = c.m.Fail
			}
			o, err := run(c.ctx, string(cmd), opts...)
			if err != nil {
				return nil, err
			}
			out.WriteString(o)
		}
		return starlark.String(out.String()), nil
	}
}

// wait_until_succeeds(command, timeout=900) / wait_until_fails(...)
func mWaitUntil(wantFailure bool) methodFunc {
	return func(c *call) (starlark.Value, error) {
		var cmdV, timeoutV starlark.Value
		if err := c.unpack([]string{"command", "timeout?"}, &cmdV, &timeoutV); err != nil {
			return nil, err
		}
		cmd, err := toStr(c.fn, "command", cmdV)
		if err != nil {
			return nil, err
		}
		t, err := c.timeoutOpt(timeoutV, defaultWait)
		if err != nil {
			return nil, err
		}
		if wantFailure {
			return str(c.m.WaitUntilFails(c.ctx, cmd, waitOpts(t)...))
		}
		return str(c.m.WaitUntilSucceeds(c.ctx, cmd, waitOpts(t)...))
	}
}

// sleep(secs=None, duration=None)
func mSleep(c *call) (starlark.Value, error) {
	var secsV, durV starlark.Value
	if err := c.unpack([]string{"secs?", "duration?"}, &secsV, &durV); err != nil {
		return nil, err
	}
	switch {
	case !isNone(secsV) && !isNone(durV):
		return nil, errors.New("sleep: give secs or duration, not both")
	case isNone(secsV) && isNone(durV):
		return nil, errors.New("sleep: missing argument for duration")
	}
	v, param := durV, "duration"
	if !isNone(secsV) {
		v, param = secsV, "secs"
	}
	d, _, err := toDuration(c.fn, param, v, 0)
	if err != nil {
		return nil, err
	}
	return none(c.m.Sleep(c.ctx, d))
}

// userArg converts the optional user parameter.
func (c *call) user(v starlark.Value) (string, error) { return toOptStr(c.fn, "user", v, "") }

// systemctl(q, user=None)
func mSystemctl(c *call) (starlark.Value, error) {
	var qV, userV starlark.Value
	if err := c.unpack([]string{"q", "user?"}, &qV, &userV); err != nil {
		return nil, err
	}
	q, err := toStr(c.fn, "q", qV)
	if err != nil {
		return nil, err
	}
	user, err := c.user(userV)
	if err != nil {
		return nil, err
	}
	return statusOutput(c.m.Systemctl(c.ctx, q, unitOpts(user, nil)...))
}

// start_job(name, user=None) / stop_job(name, user=None)
func mJob(fn func(m *machine.Machine, ctx context.Context, unit string, opts ...machine.UnitOption) (int, string, error)) methodFunc {
	return func(c *call) (starlark.Value, error) {
		var nameV, userV starlark.Value
		if err := c.unpack([]string{"name", "user?"}, &nameV, &userV); err != nil {
			return nil, err
		}
		name, err := toStr(c.fn, "name", nameV)
		if err != nil {
			return nil, err
		}
		user, err := c.user(userV)
		if err != nil {
			return nil, err
		}
		return statusOutput(fn(c.m, c.ctx, name, unitOpts(user, nil)...))
	}
}

// get_unit_info(unit, user=None) -> dict
func mGetUnitInfo(c *call) (starlark.Value, error) {
	var unitV, userV starlark.Value
	if err := c.unpack([]string{"unit", "user?"}, &unitV, &userV); err != nil {
		return nil, err
	}
	unit, err := toStr(c.fn, "unit", unitV)
	if err != nil {
		return nil, err
	}
	user, err := c.user(userV)
	if err != nil {
		return nil, err
	}
	info, err := c.m.GetUnitInfo(c.ctx, unit, unitOpts(user, nil)...)
	if err != nil {
		return nil, err
	}
	keys := make([]string, 0, len(info))
	for k := range info {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	d := starlark.NewDict(len(info))
	for _, k := range keys {
		d.SetKey(starlark.String(k), starlark.String(info[k]))
	}
	return d, nil
}

// get_unit_property(unit, property, user=None)
func mGetUnitProperty(c *call) (starlark.Value, error) {
	var unitV, propV, userV starlark.Value
	if err := c.unpack([]string{"unit", "property", "user?"}, &unitV, &propV, &userV); err != nil {
		return nil, err
	}
	unit, err := toStr(c.fn, "unit", unitV)
	if err != nil {
		return nil, err
	}
	prop, err := toStr(c.fn, "property", propV)
	if err != nil {
		return nil, err
	}
	user, err := c.user(userV)
	if err != nil {
		return nil, err
	}
	return str(c.m.GetUnitProperty(c.ctx, unit, prop, unitOpts(user, nil)...))
}

// require_unit_state(unit, require_state="active")
func mRequireUnitState(c *call) (starlark.Value, error) {
	var unitV, stateV starlark.Value
	if err := c.unpack([]string{"unit", "require_state?"}, &unitV, &stateV); err != nil {
		return nil, err
	}
	unit, err := toStr(c.fn, "unit", unitV)
	if err != nil {
		return nil, err
	}
	state, err := toOptStr(c.fn, "require_state", stateV, "active")
	if err != nil {
		return nil, err
	}
	return none(c.m.RequireUnitState(c.ctx, unit, state))
}

// wait_for_unit(unit, user=None, timeout=900)
func mWaitForUnit(c *call) (starlark.Value, error) {
	var unitV, userV, timeoutV starlark.Value
	if err := c.unpack([]string{"unit", "user?", "timeout?"}, &unitV, &userV, &timeoutV); err != nil {
		return nil, err
	}
	unit, err := toStr(c.fn, "unit", unitV)
	if err != nil {
		return nil, err
	}
	user, err := c.user(userV)
	if err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, defaultWait)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitForUnit(c.ctx, unit, unitOpts(user, t)...))
}

// wait_for_file(filename, timeout=900)
func mWaitForFile(c *call) (starlark.Value, error) {
	var fileV, timeoutV starlark.Value
	if err := c.unpack([]string{"filename", "timeout?"}, &fileV, &timeoutV); err != nil {
		return nil, err
	}
	file, err := toStr(c.fn, "filename", fileV)
	if err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, defaultWait)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitForFile(c.ctx, file, waitOpts(t)...))
}

// wait_for_open_port(port, addr="localhost", timeout=900) and
// wait_for_closed_port(...)
func mWaitForPort(open bool) methodFunc {
	return func(c *call) (starlark.Value, error) {
		var portV, addrV, timeoutV starlark.Value
		if err := c.unpack([]string{"port", "addr?", "timeout?"}, &portV, &addrV, &timeoutV); err != nil {
			return nil, err
		}
		port, err := toInt(c.fn, "port", portV)
		if err != nil {
			return nil, err
		}
		addr, err := toOptStr(c.fn, "addr", addrV, "localhost")
		if err != nil {
			return nil, err
		}
		t, err := c.timeoutOpt(timeoutV, defaultWait)
		if err != nil {
			return nil, err
		}
		opts := []machine.PortOption{machine.Addr(addr)}
		if t != nil {
			opts = append(opts, *t)
		}
		if open {
			return none(c.m.WaitForOpenPort(c.ctx, port, opts...))
		}
		return none(c.m.WaitForClosedPort(c.ctx, port, opts...))
	}
}

// wait_for_open_unix_socket(addr, is_datagram=False, timeout=900)
func mWaitForUnixSocket(c *call) (starlark.Value, error) {
	var addrV, dgramV, timeoutV starlark.Value
	if err := c.unpack([]string{"addr", "is_datagram?", "timeout?"}, &addrV, &dgramV, &timeoutV); err != nil {
		return nil, err
	}
	addr, err := toStr(c.fn, "addr", addrV)
	if err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, defaultWait)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitForOpenUnixSocket(c.ctx, addr, toBool(dgramV, false), waitOpts(t)...))
}

// wait_for_console_text(regex, timeout=None): without a timeout the
// machine's default wait deadline still applies.
func mWaitForConsoleText(c *call) (starlark.Value, error) {
	var reV, timeoutV starlark.Value
	if err := c.unpack([]string{"regex", "timeout?"}, &reV, &timeoutV); err != nil {
		return nil, err
	}
	re, err := c.regex("regex", reV)
	if err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, 0)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitForConsoleText(c.ctx, re, waitOpts(t)...))
}

// regex converts a Python regular expression argument to Go syntax.
func (c *call) regex(param string, v starlark.Value) (string, error) {
	s, err := toStr(c.fn, param, v)
	if err != nil {
		return "", err
	}
	re, err := pyRegex(s)
	if err != nil {
		return "", fmt.Errorf("%s: for parameter %s: %w", c.fn, param, err)
	}
	return re, nil
}

// pyRegex translates the Python regular expression syntax that differs
// from Go's RE2: \Z is \z; backreferences and lookaround do not exist
// in RE2 and are reported.
func pyRegex(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == '\\' && i+1 < len(p):
			next := p[i+1]
			i++
			switch {
			case next == 'Z':
				b.WriteString(`\z`)
			case next >= '1' && next <= '9':
				return "", fmt.Errorf("regular expression %q: backreferences (\\%c) are not supported", p, next)
			default:
				b.WriteByte('\\')
				b.WriteByte(next)
			}
		case ch == '(' && strings.HasPrefix(p[i:], "(?P="):
			return "", fmt.Errorf("regular expression %q: backreferences ((?P=...)) are not supported", p)
		case ch == '(' && (strings.HasPrefix(p[i:], "(?=") || strings.HasPrefix(p[i:], "(?!") || strings.HasPrefix(p[i:], "(?<=") || strings.HasPrefix(p[i:], "(?<!")):
			return "", fmt.Errorf("regular expression %q: lookahead and lookbehind are not supported", p)
		default:
			b.WriteByte(ch)
		}
	}
	out := b.String()
	if _, err := regexp.Compile(out); err != nil {
		return "", fmt.Errorf("regular expression %q: %w", p, err)
	}
	return out, nil
}

func mGetConsoleLog(c *call) (starlark.Value, error) {
	if err := c.unpack(nil); err != nil {
		return nil, err
	}
	return starlark.String(c.m.ConsoleLog()), nil
}

// send_console(chars)
func mSendConsole(c *call) (starlark.Value, error) {
	chars, err := c.stringArg("chars")
	if err != nil {
		return nil, err
	}
	return none(c.m.SendConsole(c.ctx, chars))
}

// send_monitor_command(command) -> str
func mSendMonitorCommand(c *call) (starlark.Value, error) {
	cmd, err := c.stringArg("command")
	if err != nil {
		return nil, err
	}
	return str(c.m.SendMonitorCommand(c.ctx, cmd))
}

// wait_for_qmp_event(event_filter, timeout=600) -> dict. The filter gets
// the event as QMP shows it: {"event", "data", "timestamp"}.
func mWaitForQMPEvent(c *call) (starlark.Value, error) {
	var filterV, timeoutV starlark.Value
	if err := c.unpack([]string{"event_filter", "timeout?"}, &filterV, &timeoutV); err != nil {
		return nil, err
	}
	if _, ok := filterV.(starlark.Callable); !ok {
		return nil, typeError(c.fn, "event_filter", filterV, "a function")
	}
	t, err := c.timeoutOpt(timeoutV, machine.DefaultEventTimeout)
	if err != nil {
		return nil, err
	}
	var filterErr error
	ev, err := c.m.WaitForQMPEvent(c.ctx, func(ev backend.Event) bool {
		if filterErr != nil {
			return true
		}
		v, err := c.mv.s.call(c.th, filterV, starlark.Tuple{eventDict(ev)}, nil)
		if err != nil {
			filterErr = err
			return true // stop waiting; the error is returned below
		}
		return bool(v.Truth())
	}, waitOpts(t)...)
	if filterErr != nil {
		return nil, filterErr
	}
	if err != nil {
		return nil, err
	}
	return eventDict(ev), nil
}

func eventDict(ev backend.Event) *starlark.Dict {
	d := starlark.NewDict(3)
	d.SetKey(starlark.String("event"), starlark.String(ev.Name))
	data := toStarlark(map[string]any(ev.Data))
	if ev.Data == nil {
		data = starlark.NewDict(0)
	}
	d.SetKey(starlark.String("data"), data)
	ts := starlark.NewDict(2)
	ts.SetKey(starlark.String("seconds"), starlark.MakeInt64(ev.Time.Unix()))
	ts.SetKey(starlark.String("microseconds"), starlark.MakeInt64(int64(ev.Time.Nanosecond()/1000)))
	d.SetKey(starlark.String("timestamp"), ts)
	return d
}

// screenshot(filename)
func mScreenshot(c *call) (starlark.Value, error) {
	name, err := c.stringArg("filename")
	if err != nil {
		return nil, err
	}
	_, err = c.m.Screenshot(c.ctx, name)
	return none(err)
}

// keyDelay converts the delay parameter (None: no pause).
func (c *call) keyDelay(v starlark.Value) (machine.KeyOption, error) {
	d, ok, err := toDuration(c.fn, "delay", v, machine.DefaultKeyDelay)
	if err != nil {
		return nil, err
	}
	if !ok {
		d = 0
	}
	return machine.Delay(d), nil
}

// send_key(key, delay=0.01, log=True)
func mSendKey(c *call) (starlark.Value, error) {
	var keyV, delayV, logV starlark.Value
	if err := c.unpack([]string{"key", "delay?", "log?"}, &keyV, &delayV, &logV); err != nil {
		return nil, err
	}
	key, err := toStr(c.fn, "key", keyV)
	if err != nil {
		return nil, err
	}
	delay, err := c.keyDelay(delayV)
	if err != nil {
		return nil, err
	}
	opts := []machine.KeyOption{delay}
	if !toBool(logV, true) {
		opts = append(opts, machine.Quiet())
	}
	return none(c.m.SendKey(c.ctx, key, opts...))
}

// send_chars(chars, delay=0.01)
func mSendChars(c *call) (starlark.Value, error) {
	var charsV, delayV starlark.Value
	if err := c.unpack([]string{"chars", "delay?"}, &charsV, &delayV); err != nil {
		return nil, err
	}
	chars, err := toStr(c.fn, "chars", charsV)
	if err != nil {
		return nil, err
	}
	delay, err := c.keyDelay(delayV)
	if err != nil {
		return nil, err
	}
	return none(c.m.SendChars(c.ctx, chars, delay))
}

// copy_from_host(source, target) / copy_from_host_via_shell(source, target)
func mCopyFromHost(viaShell bool) methodFunc {
	return func(c *call) (starlark.Value, error) {
		var srcV, dstV starlark.Value
		if err := c.unpack([]string{"source", "target"}, &srcV, &dstV); err != nil {
			return nil, err
		}
		src, err := toStr(c.fn, "source", srcV)
		if err != nil {
			return nil, err
		}
		dst, err := toStr(c.fn, "target", dstV)
		if err != nil {
			return nil, err
		}
		if viaShell {
			return none(c.m.CopyFromHostViaShell(c.ctx, src, dst))
		}
		return none(c.m.CopyFromHost(c.ctx, src, dst))
	}
}

// copy_from_machine(source, target_dir="") (also copy_from_vm)
func mCopyFromMachine(c *call) (starlark.Value, error) {
	var srcV, dirV starlark.Value
	if err := c.unpack([]string{"source", "target_dir?"}, &srcV, &dirV); err != nil {
		return nil, err
	}
	src, err := toStr(c.fn, "source", srcV)
	if err != nil {
		return nil, err
	}
	dir, err := toOptStr(c.fn, "target_dir", dirV, "")
	if err != nil {
		return nil, err
	}
	_, err = c.m.CopyFromMachine(c.ctx, src, dir)
	return none(err)
}

// get_tty_text(tty) -> str
func mGetTTYText(c *call) (starlark.Value, error) {
	var ttyV starlark.Value
	if err := c.unpack([]string{"tty"}, &ttyV); err != nil {
		return nil, err
	}
	tty, err := toTTY(c.fn, "tty", ttyV)
	if err != nil {
		return nil, err
	}
	return str(c.m.GetTTYText(c.ctx, tty))
}

// wait_until_tty_matches(tty, regexp, timeout=900)
func mWaitUntilTTYMatches(c *call) (starlark.Value, error) {
	var ttyV, reV, timeoutV starlark.Value
	if err := c.unpack([]string{"tty", "regexp", "timeout?"}, &ttyV, &reV, &timeoutV); err != nil {
		return nil, err
	}
	tty, err := toTTY(c.fn, "tty", ttyV)
	if err != nil {
		return nil, err
	}
	re, err := c.regex("regexp", reV)
	if err != nil {
		return nil, err
	}
	t, err := c.timeoutOpt(timeoutV, defaultWait)
	if err != nil {
		return nil, err
	}
	return none(c.m.WaitUntilTTYMatches(c.ctx, tty, re, waitOpts(t)...))
}

// dump_tty_contents(tty)
func mDumpTTYContents(c *call) (starlark.Value, error) {
	var ttyV starlark.Value
	if err := c.unpack([]string{"tty"}, &ttyV); err != nil {
		return nil, err
	}
	tty, err := toTTY(c.fn, "tty", ttyV)
	if err != nil {
		return nil, err
	}
	return none(c.m.DumpTTYContents(c.ctx, tty))
}

// block() / unblock(): cut or restore every VLAN link of the machine
// (the NixOS driver cuts only the first).
func mSetLinks(fn func(m *machine.Machine, ctx context.Context) error) methodFunc {
	return func(c *call) (starlark.Value, error) {
		if err := c.unpack(nil); err != nil {
			return nil, err
		}
		return none(fn(c.m, c.ctx))
	}
}

// links() -> list of {"name", "vlan", "mac", "up", "restricted"} dicts,
// vlan 0 being the user-mode network (restricted: no packet leaves it).
func mLinks(c *call) (starlark.Value, error) {
	if err := c.unpack(nil); err != nil {
		return nil, err
	}
	ls, err := c.m.Links(c.ctx)
	if err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(ls))
	for i, l := range ls {
		d := starlark.NewDict(5)
		d.SetKey(starlark.String("name"), starlark.String(l.Name))
		d.SetKey(starlark.String("vlan"), starlark.MakeInt(l.VLAN))
		d.SetKey(starlark.String("mac"), starlark.String(l.MAC))
		d.SetKey(starlark.String("up"), starlark.Bool(l.Up))
		d.SetKey(starlark.String("restricted"), starlark.Bool(l.Restricted))
		out[i] = d
	}
	return starlark.NewList(out), nil
}

// forward_port(host_port=8080, guest_port=80)
func mForwardPort(c *call) (starlark.Value, error) {
	var hostV, guestV starlark.Value
	if err := c.unpack([]string{"host_port?", "guest_port?"}, &hostV, &guestV); err != nil {
		return nil, err
	}
	host, guest := 8080, 80
	var err error
	if !isNone(hostV) {
		if host, err = toInt(c.fn, "host_port", hostV); err != nil {
			return nil, err
		}
	}
	if !isNone(guestV) {
		if guest, err = toInt(c.fn, "guest_port", guestV); err != nil {
			return nil, err
		}
	}
	return none(c.m.ForwardPort(c.ctx, host, guest))
}

// log(msg)
func mLog(c *call) (starlark.Value, error) {
	var msgV starlark.Value
	if err := c.unpack([]string{"msg"}, &msgV); err != nil {
		return nil, err
	}
	c.m.Log(strOf(msgV))
	return starlark.None, nil
}

// nested(msg, attrs=None): a log block for this machine.
func mNested(c *call) (starlark.Value, error) {
	var msgV, attrsV starlark.Value
	if err := c.unpack([]string{"msg", "attrs?"}, &msgV, &attrsV); err != nil {
		return nil, err
	}
	msg, m := strOf(msgV), c.m
	return &nestedCM{msg: msg, open: func() func(error) { return m.Logger().Nested(m.Name(), msg) }}, nil
}

func notSupported(what string) methodFunc {
	return func(c *call) (starlark.Value, error) {
		return nil, fmt.Errorf("%s: not supported yet (%s)", c.fn, what)
	}
}
