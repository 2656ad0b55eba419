package api

import (
	"context"
	"errors"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
)

// Globals are the functions a test script sees besides its machines.
var Globals = []Method{
	{Name: "start_all", Returns: "None", Doc: "Start every machine in parallel (a forked subtest: its clones).",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, driver.StartMachines(ctx, r.Env.Logger(), r.Env.Machines())
		}},
	{Name: "join_all", Returns: "None", Doc: "Wait until every machine has powered off.",
		Call: func(ctx context.Context, r *Request) (any, error) {
			return nil, driver.JoinMachines(ctx, r.Env.Machines())
		}},
	{Name: "subtest", Params: []Param{req("name", Str)}, Returns: "context manager", Engine: true,
		Doc: "A named log block for a with statement; its failure is reported under its name."},
	{Name: "retry", Params: []Param{req("fn", Function), {Name: "timeout", Type: Seconds, Default: machine.DefaultWaitTimeout},
		{Name: "timeout_seconds", Type: Seconds, Deprecated: "timeout"}}, Returns: "None",
		Doc: "Call fn(last_try) about once a second until it returns a true value.", Call: gRetry},
	{Name: "polling_condition", Params: []Param{{Name: "fun", Type: Function}, {Name: "interval", Type: Seconds, Default: driver.DefaultPollingInterval, KeywordOnly: true},
		{Name: "seconds_interval", Type: Seconds, KeywordOnly: true, Deprecated: "interval"}, {Name: "description", Type: Str, KeywordOnly: true}},
		Returns: "condition", Engine: true,
		Doc: "A condition checked before every machine command while its with block runs (also a decorator)."},
	{Name: "create_machine", Params: []Param{{Name: "start_command", Type: Str}, {Name: "name", Type: Str, KeywordOnly: true},
		{Name: "keep_machine_state", Type: Bool, Default: false, KeywordOnly: true},
		{Name: "keep_vm_state", Type: Bool, Default: false, KeywordOnly: true, Deprecated: "keep_machine_state"},
		{Name: "snapshot", Type: Snapshot, KeywordOnly: true}}, Returns: "Machine",
		Doc: "A machine from a start script, or restored from a snapshot; released with the run.", Call: gCreateMachine},
	{Name: "serial_stdout_on", Returns: "None", Doc: "Echo the machines' serial consoles in the log.",
		Call: func(_ context.Context, r *Request) (any, error) { r.Env.SetSerialOutput(true); return nil, nil }},
	{Name: "serial_stdout_off", Returns: "None", Doc: "Stop echoing the machines' serial consoles.",
		Call: func(_ context.Context, r *Request) (any, error) { r.Env.SetSerialOutput(false); return nil, nil }},
	{Name: "test_script", Returns: "None", Engine: true, Doc: "Run the configured test script again (in the interactive shell)."},
}

// Value is a global that is not a function.
type Value struct {
	// Name is the global's name.
	Name string
	// Type describes the value for the docs.
	Type string
	// Doc is one line saying what it is.
	Doc string
}

// Values are the globals that are not functions. Every machine is also a
// global under its name (pythonized, as driver.PythonName gives it).
var Values = []Value{
	{Name: "machines", Type: "list of Machine", Doc: "The configured machines."},
	{Name: "machine", Type: "Machine", Doc: "The only machine of a one-machine test (deprecated: use its name)."},
	{Name: "driver", Type: "namespace", Doc: "The run: out_dir (the output directory) and machines."},
	{Name: "vlans", Type: "list of VLan", Doc: "The virtual LANs by number; each also a global vlanN, with nr, socket_dir and pid."},
	{Name: "log", Type: "namespace", Doc: "The run's log; its functions are listed under Log."},
	{Name: "t", Type: "namespace", Doc: "unittest-style assertions (assertEqual, assertIn, assertTrue, ...), failing the test with a message."},
}

// LogFuncs are the functions of the `log` global, writing to the calling
// thread's log.
var LogFuncs = []Method{
	{Name: "info", Params: logParams, Returns: "None", Doc: "Log a message.", Call: logLine(false)},
	{Name: "warning", Params: logParams, Returns: "None", Doc: "Log a warning.", Call: logLine(true)},
	{Name: "warn", Params: logParams, Returns: "None", Doc: "Another name for warning.", Call: logLine(true), Alias: "warning"},
	{Name: "error", Params: logParams, Returns: "None", Doc: "Log an error and end the test with it, as the NixOS driver's logger does.",
		Call: func(_ context.Context, r *Request) (any, error) {
			msg := r.Args.Str("message")
			r.Env.Logger().Warn("", "error: "+msg)
			return nil, errors.New(msg)
		}},
	{Name: "nested", Params: logParams, Returns: "context manager", Doc: "A log block, for a with statement.",
		Call: func(_ context.Context, r *Request) (any, error) {
			log, msg := r.Env.Logger(), r.Args.Str("message")
			return Block{Msg: msg, Open: func() func(error) { return log.Nested("", msg) }}, nil
		}},
}

var logParams = []Param{req("message", Text), {Name: "attributes", Type: Any}}

func logLine(warn bool) Call {
	return func(_ context.Context, r *Request) (any, error) {
		if warn {
			r.Env.Logger().Warn("", r.Args.Str("message"))
		} else {
			r.Env.Logger().Info("", r.Args.Str("message"))
		}
		return nil, nil
	}
}

func gRetry(ctx context.Context, r *Request) (any, error) {
	a := r.Args
	timeout, err := a.DurationOf("timeout", "timeout_seconds", machine.DefaultWaitTimeout)
	if err != nil {
		return nil, err
	}
	fn := a.Func("fn")
	return nil, driver.Retry(ctx, timeout, func(_ context.Context, last bool) (bool, error) { return fn(last) })
}

var errNoStart = errors.New("create_machine: give a start_command, or snapshot= to restore a machine from a snapshot")

func gCreateMachine(ctx context.Context, r *Request) (any, error) {
	a, d := r.Args, r.Env.Driver()
	if snap, ok := a.Value("snapshot").(*machine.Snapshot); ok {
		if a.Value("start_command") != nil {
			return nil, a.Errorf("give either a start_command or snapshot=, not both")
		}
		m, err := d.Restore(ctx, snap, a.Str("name"))
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	if a.Value("start_command") == nil {
		return nil, errNoStart
	}
	opts := []driver.CreateOption{driver.Named(a.Str("name"))}
	if a.Bool("keep_machine_state") || a.Bool("keep_vm_state") {
		opts = append(opts, driver.KeepState())
	}
	m, err := d.CreateMachine(a.Str("start_command"), opts...)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Lookup finds a Machine method by name.
func Lookup(name string) (*Method, bool) {
	for i := range Methods {
		if Methods[i].Name == name {
			return &Methods[i], true
		}
	}
	return nil, false
}
