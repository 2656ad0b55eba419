package api

import (
	"context"
	"maps"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/machine"
)

// The parameters most methods share.
var (
	pTimeout     = Param{Name: "timeout", Type: Seconds, Default: machine.DefaultWaitTimeout}
	pTimeoutNone = Param{Name: "timeout", Type: Seconds}
	pUser        = Param{Name: "user", Type: Str}
)

func req(name string, t Type) Param { return Param{Name: name, Type: t, Required: true} }

// Attrs are the Machine's data attributes.
var Attrs = []Attr{
	{Name: "name", Type: "str", Doc: "The machine's name (a clone keeps its original's).", Get: func(m *machine.Machine) any { return m.Name() }},
	{Name: "state_dir", Type: "str", Doc: "The machine's private state directory on the host.", Get: func(m *machine.Machine) any { return m.StateDir() }},
	{Name: "shared_dir", Type: "str", Doc: "The host directory the guest sees at /tmp/shared.", Get: func(m *machine.Machine) any { return m.SharedDir() }},
	{Name: "out_dir", Type: "str", Doc: "The run's output directory (screenshots, copied files).", Get: func(m *machine.Machine) any { return m.OutputDir() }},
	{Name: "booted", Type: "bool", Doc: "Whether the hypervisor is running.", Get: func(m *machine.Machine) any { return m.Booted() }},
	{Name: "connected", Type: "bool", Doc: "Whether the guest's root shell is connected.", Get: func(m *machine.Machine) any { return m.Connected() }},
	{Name: "pid", Type: "int | None", Doc: "The hypervisor's process id, None when it is not running.", Get: func(m *machine.Machine) any {
		if pid := m.PID(); pid != 0 {
			return pid
		}
		return nil
	}},
}

// Methods are the NixOS driver's Machine methods, in the order the docs
// list them.
var Methods = []Method{
	// Lifecycle.
	{Name: "start", Params: []Param{{Name: "allow_reboot", Type: Bool, Default: false}}, Returns: "None",
		Doc: "Start the machine's hypervisor; the guest boots in the background.", Call: mStart},
	{Name: "shutdown", Returns: "None", Doc: "Power the guest off cleanly and wait for the hypervisor to exit.",
		Call: lifecycle(func(m *machine.Machine, ctx context.Context) error { return m.Shutdown(ctx) })},
	{Name: "crash", Returns: "None", Doc: "Stop the hypervisor at once, as if the power cord were pulled.",
		Call: lifecycle((*machine.Machine).Crash)},
	{Name: "halt", Returns: "None", Doc: "Halt the guest and wait for the hypervisor to exit.",
		Call: lifecycle(func(m *machine.Machine, ctx context.Context) error { return m.Halt(ctx) })},
	{Name: "reboot", Returns: "None", Doc: "Reboot the guest (the machine keeps its hypervisor).",
		Call: lifecycle((*machine.Machine).Reboot)},
	{Name: "wait_for_shutdown", Params: []Param{pTimeoutNone}, Returns: "None",
		Doc: "Wait until the hypervisor has exited.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForShutdown(ctx, waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "is_up", Returns: "bool", Doc: "Whether the machine is booted and its shell connected.",
		Call: func(_ context.Context, r *Request) (any, error) { return r.Machine.IsUp(), nil }},

	// Commands.
	{Name: "execute", Params: []Param{req("command", Str), {Name: "check_return", Type: Bool, Default: true},
		{Name: "check_output", Type: Bool, Default: true}, pTimeout}, Returns: "(int, str)",
		Doc: "Run a shell command as root; return its exit status and output.", Call: mExecute},
	{Name: "succeed", Params: []Param{{Name: "commands", Type: Str, Variadic: true}, pTimeoutNone}, Returns: "str",
		Doc: "Run each command; fail unless each exits 0; return their joined output.", Call: mCheck(false)},
	{Name: "fail", Params: []Param{{Name: "commands", Type: Str, Variadic: true}, pTimeoutNone}, Returns: "str",
		Doc: "Run each command; fail if one exits 0; return their joined output.", Call: mCheck(true)},
	{Name: "wait_until_succeeds", Params: []Param{req("command", Str), pTimeout}, Returns: "str",
		Doc: "Retry a command about once a second until it exits 0; return its output.", Call: mWaitUntil(false)},
	{Name: "wait_until_fails", Params: []Param{req("command", Str), pTimeout}, Returns: "str",
		Doc: "Retry a command about once a second until it exits non-zero; return its output.", Call: mWaitUntil(true)},
	{Name: "sleep", Params: []Param{{Name: "secs", Type: Seconds}, {Name: "duration", Type: Seconds}}, Returns: "None",
		Doc: "Sleep on the host; the guest keeps running.", Call: mSleep},

	// systemd.
	{Name: "systemctl", Params: []Param{req("q", Str), pUser}, Returns: "(int, str)",
		Doc: "Run systemctl with the given arguments (for a user's manager with user=).", Call: func(ctx context.Context, r *Request) (any, error) {
			return statusOutput(r.Machine.Systemctl(ctx, r.Args.Str("q"), unitOpts(r.Args, nil)...))
		}},
	{Name: "start_job", Params: []Param{req("name", Str), pUser}, Returns: "(int, str)",
		Doc: "Start a unit (systemctl start).", Call: mJob((*machine.Machine).StartJob)},
	{Name: "stop_job", Params: []Param{req("name", Str), pUser}, Returns: "(int, str)",
		Doc: "Stop a unit (systemctl stop).", Call: mJob((*machine.Machine).StopJob)},
	{Name: "get_unit_info", Params: []Param{req("unit", Str), pUser}, Returns: "dict",
		Doc: "A unit's properties, as systemctl show gives them.", Call: func(ctx context.Context, r *Request) (any, error) {
			info, err := r.Machine.GetUnitInfo(ctx, r.Args.Str("unit"), unitOpts(r.Args, nil)...)
			if err != nil {
				return nil, err
			}
			return info, nil
		}},
	{Name: "get_unit_property", Params: []Param{req("unit", Str), req("property", Str), pUser}, Returns: "str",
		Doc: "One property of a unit.", Call: func(ctx context.Context, r *Request) (any, error) {
			return str(r.Machine.GetUnitProperty(ctx, r.Args.Str("unit"), r.Args.Str("property"), unitOpts(r.Args, nil)...))
		}},
	{Name: "require_unit_state", Params: []Param{req("unit", Str), {Name: "require_state", Type: Str, Default: "active"}}, Returns: "None",
		Doc: "Fail unless a unit is in the given state.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.RequireUnitState(ctx, r.Args.Str("unit"), r.Args.Str("require_state"))
		}},
	{Name: "wait_for_unit", Params: []Param{req("unit", Str), pUser, pTimeout}, Returns: "None",
		Doc: "Wait until a unit is active; fail at once if it failed.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForUnit(ctx, r.Args.Str("unit"), unitOpts(r.Args, r.Args.timeout("timeout"))...)
		}},

	// Waits.
	{Name: "wait_for_file", Params: []Param{req("filename", Str), pTimeout}, Returns: "None",
		Doc: "Wait until a file exists in the guest.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForFile(ctx, r.Args.Str("filename"), waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "wait_for_open_port", Params: []Param{req("port", Int), {Name: "addr", Type: Str, Default: "localhost"}, pTimeout}, Returns: "None",
		Doc: "Wait until a TCP port accepts connections in the guest.", Call: mWaitForPort(true)},
	{Name: "wait_for_closed_port", Params: []Param{req("port", Int), {Name: "addr", Type: Str, Default: "localhost"}, pTimeout}, Returns: "None",
		Doc: "Wait until nothing listens on a TCP port in the guest.", Call: mWaitForPort(false)},
	{Name: "wait_for_open_unix_socket", Params: []Param{req("addr", Str), {Name: "is_datagram", Type: Bool, Default: false}, pTimeout}, Returns: "None",
		Doc: "Wait until a unix socket accepts connections in the guest.", Call: func(ctx context.Context, r *Request) (any, error) {
			a := r.Args
			return nil, r.Machine.WaitForOpenUnixSocket(ctx, a.Str("addr"), a.Bool("is_datagram"), waitOpts(a.timeout("timeout"))...)
		}},

	// Console and control plane.
	{Name: "wait_for_console_text", Params: []Param{req("regex", Regex), pTimeoutNone}, Returns: "None",
		Doc: "Wait until a serial console line matches (the machine's wait deadline applies without timeout=).", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForConsoleText(ctx, r.Args.Str("regex"), waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "get_console_log", Returns: "str", Doc: "The serial console output so far.",
		Call: func(_ context.Context, r *Request) (any, error) { return r.Machine.ConsoleLog(), nil }},
	{Name: "send_console", Params: []Param{req("chars", Str)}, Returns: "None",
		Doc: "Type characters into the serial console.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.SendConsole(ctx, r.Args.Str("chars"))
		}},
	{Name: "send_monitor_command", Params: []Param{req("command", Str)}, Returns: "str",
		Doc: "Run a hypervisor monitor command (QEMU's HMP); return its output.", Call: func(ctx context.Context, r *Request) (any, error) {
			return str(r.Machine.SendMonitorCommand(ctx, r.Args.Str("command")))
		}},
	{Name: "wait_for_qmp_event", Params: []Param{req("event_filter", Function), {Name: "timeout", Type: Seconds, Default: machine.DefaultEventTimeout}}, Returns: "dict",
		Doc: "Wait for a control-plane event the filter accepts; return it as {event, data, timestamp}.", Call: mWaitForQMPEvent},

	// Screen and keyboard.
	{Name: "screenshot", Params: []Param{req("filename", Str)}, Returns: "None",
		Doc: "Save the screen as a PNG in the output directory.", Call: func(ctx context.Context, r *Request) (any, error) {
			_, err := r.Machine.Screenshot(ctx, r.Args.Str("filename"))
			return nil, err
		}},
	{Name: "send_key", Params: []Param{req("key", Str), {Name: "delay", Type: Seconds, Default: machine.DefaultKeyDelay}, {Name: "log", Type: Bool, Default: true}}, Returns: "None",
		Doc: "Press a key or chord in QEMU's key names (\"ctrl-alt-delete\").", Call: func(ctx context.Context, r *Request) (any, error) {
			opts := []machine.KeyOption{keyDelay(r.Args)}
			if !r.Args.Bool("log") {
				opts = append(opts, machine.Quiet())
			}
			return nil, r.Machine.SendKey(ctx, r.Args.Str("key"), opts...)
		}},
	{Name: "send_chars", Params: []Param{req("chars", Str), {Name: "delay", Type: Seconds, Default: machine.DefaultKeyDelay}}, Returns: "None",
		Doc: "Type a string on the keyboard.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.SendChars(ctx, r.Args.Str("chars"), keyDelay(r.Args))
		}},
	{Name: "get_tty_text", Params: []Param{req("tty", TTY)}, Returns: "str",
		Doc: "The text on a virtual terminal.", Call: func(ctx context.Context, r *Request) (any, error) {
			return str(r.Machine.GetTTYText(ctx, r.Args.Int("tty")))
		}},
	{Name: "wait_until_tty_matches", Params: []Param{req("tty", TTY), req("regexp", Regex), pTimeout}, Returns: "None",
		Doc: "Wait until a virtual terminal's text matches.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitUntilTTYMatches(ctx, r.Args.Int("tty"), r.Args.Str("regexp"), waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "dump_tty_contents", Params: []Param{req("tty", TTY)}, Returns: "None",
		Doc: "Log a virtual terminal's text.", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.DumpTTYContents(ctx, r.Args.Int("tty"))
		}},

	// Files.
	{Name: "copy_from_host", Params: []Param{req("source", Str), req("target", Str)}, Returns: "None",
		Doc: "Copy a host file or directory into the guest (through the shared directory).", Call: mCopyFromHost(false)},
	{Name: "copy_from_host_via_shell", Params: []Param{req("source", Str), req("target", Str)}, Returns: "None",
		Doc: "Copy a host file into the guest through the root shell (no shared directory needed).", Call: mCopyFromHost(true)},
	{Name: "copy_from_machine", Params: []Param{req("source", Str), {Name: "target_dir", Type: Str, Default: ""}}, Returns: "None",
		Doc: "Copy a guest file or directory into the output directory.", Call: mCopyFromMachine},
	{Name: "copy_from_vm", Params: []Param{req("source", Str), {Name: "target_dir", Type: Str, Default: ""}}, Returns: "None",
		Doc: "Another name for copy_from_machine.", Call: mCopyFromMachine, Alias: "copy_from_machine"},

	// Snapshots.
	{Name: "snapshot", Params: []Param{{Name: "name", Type: Str, Default: ""}}, Returns: "Snapshot",
		Doc: "Save the running machine's whole state; create_machine(snapshot=) restores it.", Call: func(ctx context.Context, r *Request) (any, error) {
			snap, err := r.Env.Driver().Snapshot(ctx, r.Machine, r.Args.Str("name"))
			if err != nil {
				return nil, err
			}
			return snap, nil
		}},
	{Name: "fork", Params: []Param{req("n", Int)}, Returns: "list of Machine",
		Doc: "n running clones of the machine, restored from one snapshot.", Call: mFork},

	// Networks.
	{Name: "block", Returns: "None", Doc: "Cut every VLAN link of the machine.",
		Call: lifecycle((*machine.Machine).Block)},
	{Name: "unblock", Returns: "None", Doc: "Restore every VLAN link of the machine.",
		Call: lifecycle((*machine.Machine).Unblock)},
	{Name: "links", Returns: "list of dict",
		Doc: "The machine's network links: {name, vlan, mac, up, restricted}; vlan 0 is the user-mode network.", Call: mLinks},
	{Name: "forward_port", Params: []Param{{Name: "host_port", Type: Int, Default: 8080}, {Name: "guest_port", Type: Int, Default: 80}}, Returns: "None",
		Doc: "Forward a host TCP port on 127.0.0.1 to a guest port (user-mode network).", Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.ForwardPort(ctx, r.Args.Int("host_port"), r.Args.Int("guest_port"))
		}},

	// Logging.
	{Name: "log", Params: []Param{req("msg", Text)}, Returns: "None", Doc: "Log a message under the machine's name.",
		Call: func(_ context.Context, r *Request) (any, error) {
			r.Machine.Log(r.Args.Str("msg"))
			return nil, nil
		}},
	{Name: "nested", Params: []Param{req("msg", Text), {Name: "attrs", Type: Any}}, Returns: "context manager",
		Doc: "A log block under the machine's name, for a with statement.", Call: func(_ context.Context, r *Request) (any, error) {
			m, msg := r.Machine, r.Args.Str("msg")
			return Block{Msg: msg, Open: func() func(error) { return m.Logger().Nested(m.Name(), msg) }}, nil
		}},

	// X11 and OCR (display :0, as NixOS tests use it).
	{Name: "wait_for_x", Params: []Param{pTimeout}, Returns: "None", Doc: "Wait until the X server on display :0 is up.",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForX(ctx, waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "wait_for_window", Params: []Param{req("regexp", Regex), pTimeout}, Returns: "None", Doc: "Wait until an X11 window's title matches.",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForWindow(ctx, r.Args.Str("regexp"), waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "get_window_names", Returns: "list of str", Doc: "The titles of the X11 windows.",
		Call: func(ctx context.Context, r *Request) (any, error) { return strList(r.Machine.GetWindowNames(ctx)) }},
	{Name: "wait_for_text", Params: []Param{req("regex", Regex), pTimeout}, Returns: "None",
		Doc: "Wait until OCR of the screen matches; each try reads a fresh screenshot, OCR variants side by side, the first match wins.",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, r.Machine.WaitForText(ctx, r.Args.Str("regex"), waitOpts(r.Args.timeout("timeout"))...)
		}},
	{Name: "get_screen_text", Returns: "str", Doc: "OCR of the screen (tesseract).",
		Call: func(ctx context.Context, r *Request) (any, error) { return str(r.Machine.GetScreenText(ctx)) }},
	{Name: "get_screen_text_variants", Returns: "list of str", Doc: "OCR of the screen through each preprocessing variant.",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return strList(r.Machine.GetScreenTextVariants(ctx))
		}},

	// Not supported yet.
	{Name: "switch_root", Returns: "None", Doc: "Continue a guest whose shell runs in its initrd (testing.initrdBackdoor) into stage 2.",
		Call: lifecycle((*machine.Machine).SwitchRoot)},
	{Name: "shell_interact", Returns: "None", Unsupported: "interactive shells", Doc: "Attach the terminal to the guest's root shell."},
	{Name: "console_interact", Returns: "None", Unsupported: "interactive consoles", Doc: "Attach the terminal to the serial console."},
	{Name: "ssh_backdoor_command", Returns: "str", Unsupported: "the SSH backdoor", Doc: "The ssh command line that reaches the guest."},
}

// ---- helpers ----

func waitOpts(t *machine.TimeoutOption) []machine.WaitOption {
	if t == nil {
		return nil
	}
	return []machine.WaitOption{*t}
}

// unitOpts are the user= parameter and an optional timeout.
func unitOpts(a Args, t *machine.TimeoutOption) []machine.UnitOption {
	var opts []machine.UnitOption
	if user := a.Str("user"); user != "" {
		opts = append(opts, machine.AsUser(user))
	}
	if t != nil {
		opts = append(opts, *t)
	}
	return opts
}

func str(s string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}

func strList(ss []string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out, nil
}

func statusOutput(status int, out string, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	return Tuple{status, out}, nil
}

// keyDelay is the delay= parameter (None: no pause).
func keyDelay(a Args) machine.KeyOption {
	d, _ := a.Duration("delay")
	return machine.Delay(d)
}

// ---- methods ----

func mStart(ctx context.Context, r *Request) (any, error) {
	if r.Args.Bool("allow_reboot") {
		return nil, r.Args.Errorf("allow_reboot=True is not supported: machine %s's reboot behaviour is fixed when it is created", r.Machine.Name())
	}
	return nil, r.Machine.Start(ctx)
}

// lifecycle adapts a method without parameters or result.
func lifecycle(fn func(m *machine.Machine, ctx context.Context) error) Call {
	return func(ctx context.Context, r *Request) (any, error) { return nil, fn(r.Machine, ctx) }
}

func mExecute(ctx context.Context, r *Request) (any, error) {
	a := r.Args
	d, ok := a.Duration("timeout")
	if !ok {
		d = 0 // None: no guest-side limit
	}
	opts := []machine.ExecOption{machine.Timeout(d)}
	if !a.Bool("check_return") {
		opts = append(opts, machine.NoCheckReturn())
	}
	if !a.Bool("check_output") {
		opts = append(opts, machine.NoCheckOutput())
	}
	res, err := r.Machine.Execute(ctx, a.Str("command"), opts...)
	return statusOutput(res.Status, res.Output, err)
}

func mCheck(wantFailure bool) Call {
	return func(ctx context.Context, r *Request) (any, error) {
		var opts []machine.ExecOption
		if t := r.Args.timeout("timeout"); t != nil {
			opts = append(opts, *t)
		}
		run := r.Machine.Succeed
		if wantFailure {
			run = r.Machine.Fail
		}
		var out strings.Builder
		for _, c := range r.Args.List("commands") {
			o, err := run(ctx, c.(string), opts...)
			if err != nil {
				return nil, err
			}
			out.WriteString(o)
		}
		return out.String(), nil
	}
}

func mWaitUntil(wantFailure bool) Call {
	return func(ctx context.Context, r *Request) (any, error) {
		opts := waitOpts(r.Args.timeout("timeout"))
		if wantFailure {
			return str(r.Machine.WaitUntilFails(ctx, r.Args.Str("command"), opts...))
		}
		return str(r.Machine.WaitUntilSucceeds(ctx, r.Args.Str("command"), opts...))
	}
}

func mSleep(ctx context.Context, r *Request) (any, error) {
	secs, hasSecs := r.Args.Duration("secs")
	dur, hasDur := r.Args.Duration("duration")
	switch {
	case hasSecs && hasDur:
		return nil, r.Args.Errorf("give secs or duration, not both")
	case hasSecs:
		return nil, r.Machine.Sleep(ctx, secs)
	case hasDur:
		return nil, r.Machine.Sleep(ctx, dur)
	}
	return nil, r.Args.Errorf("missing argument for duration")
}

func mJob(fn func(m *machine.Machine, ctx context.Context, unit string, opts ...machine.UnitOption) (int, string, error)) Call {
	return func(ctx context.Context, r *Request) (any, error) {
		return statusOutput(fn(r.Machine, ctx, r.Args.Str("name"), unitOpts(r.Args, nil)...))
	}
}

func mWaitForPort(open bool) Call {
	return func(ctx context.Context, r *Request) (any, error) {
		a := r.Args
		opts := []machine.PortOption{machine.Addr(a.Str("addr"))}
		if t := a.timeout("timeout"); t != nil {
			opts = append(opts, *t)
		}
		if open {
			return nil, r.Machine.WaitForOpenPort(ctx, a.Int("port"), opts...)
		}
		return nil, r.Machine.WaitForClosedPort(ctx, a.Int("port"), opts...)
	}
}

func mWaitForQMPEvent(ctx context.Context, r *Request) (any, error) {
	filter := r.Args.Func("event_filter")
	var filterErr error
	ev, err := r.Machine.WaitForQMPEvent(ctx, func(ev backend.Event) bool {
		if filterErr != nil {
			return true
		}
		ok, err := filter(EventDict(ev))
		if err != nil {
			filterErr = err
			return true // stop waiting; the error is returned below
		}
		return ok
	}, waitOpts(r.Args.timeout("timeout"))...)
	if filterErr != nil {
		return nil, filterErr
	}
	if err != nil {
		return nil, err
	}
	return EventDict(ev), nil
}

// EventDict is a control-plane event as scripts see it, shaped like a
// QMP event: {"event", "data", "timestamp": {"seconds", "microseconds"}}.
func EventDict(ev backend.Event) Dict {
	data := map[string]any{}
	maps.Copy(data, ev.Data)
	return Dict{
		{"event", ev.Name},
		{"data", data},
		{"timestamp", Dict{{"seconds", ev.Time.Unix()}, {"microseconds", int64(ev.Time.Nanosecond() / 1000)}}},
	}
}

func mCopyFromHost(viaShell bool) Call {
	return func(ctx context.Context, r *Request) (any, error) {
		src, dst := r.Args.Str("source"), r.Args.Str("target")
		if viaShell {
			return nil, r.Machine.CopyFromHostViaShell(ctx, src, dst)
		}
		return nil, r.Machine.CopyFromHost(ctx, src, dst)
	}
}

func mCopyFromMachine(ctx context.Context, r *Request) (any, error) {
	_, err := r.Machine.CopyFromMachine(ctx, r.Args.Str("source"), r.Args.Str("target_dir"))
	return nil, err
}

func mFork(ctx context.Context, r *Request) (any, error) {
	n := r.Args.Int("n")
	if n < 1 || n > 64 {
		return nil, r.Args.Errorf("n must be a whole number from 1 to 64, got %d", n)
	}
	clones, err := r.Env.Driver().Fork(ctx, r.Machine, n)
	if err != nil {
		return nil, err
	}
	return clones, nil
}

func mLinks(ctx context.Context, r *Request) (any, error) {
	ls, err := r.Machine.Links(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]any, len(ls))
	for i, l := range ls {
		out[i] = Dict{{"name", l.Name}, {"vlan", l.VLAN}, {"mac", l.MAC}, {"up", l.Up}, {"restricted", l.Restricted}}
	}
	return out, nil
}
