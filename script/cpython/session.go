package cpython

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/script"
)

// handles name the engine's objects the interpreter holds (machines and
// snapshots): one number per object, for the whole run.
type handles struct {
	mu   sync.Mutex
	objs map[int]any
	ids  map[any]int
}

func newHandles() *handles { return &handles{objs: map[int]any{}, ids: map[any]int{}} }

// put returns obj's handle, making one the first time.
func (h *handles) put(obj any) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id, ok := h.ids[obj]; ok {
		return id
	}
	id := len(h.objs) + 1
	h.objs[id], h.ids[obj] = obj, id
	return id
}

// get returns the object of a wire handle (a JSON number), or nil.
func (h *handles) get(v any) any {
	n, ok := v.(json.Number)
	if !ok {
		return nil
	}
	id, err := n.Int64()
	if err != nil {
		return nil
	}
	return h.getID(int(id))
}

func (h *handles) getID(id int) any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.objs[id]
}

// keptErrors are the engine errors the interpreter raised exceptions
// for, so that the error that ends a script is the engine's own
// (errors.Is works on it). Only the latest are kept.
type keptErrors struct {
	mu   sync.Mutex
	next int
	errs map[int]error
}

const keptErrorsMax = 256

func (k *keptErrors) keep(err error) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.errs == nil {
		k.errs = map[int]error{}
	}
	k.next++
	k.errs[k.next] = err
	delete(k.errs, k.next-keptErrorsMax)
	return k.next
}

func (k *keptErrors) get(id int) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.errs[id]
}

// engine is what every connection of a run shares.
type engine struct {
	d       *driver.Driver
	opts    Options
	handles *handles
	errs    keptErrors
	aliased sync.Once
}

// block is an open log block or subtest the interpreter holds.
type block struct {
	open    func() func(error) // nil for a subtest
	ends    []func(error)
	subtest string
}

// condition is a polling condition the interpreter made.
type condition struct {
	pc     *driver.PollingCondition
	deacts []func()
}

// session serves one connection: the script's interpreter (or, with
// forked subtests, one subtest's).
type session struct {
	e    *engine
	ctx  context.Context // the run's, for callbacks
	conn *conn
	log  driver.Logger
	rep  script.Reporter
	// clones maps an original machine's name to a forked subtest's clone.
	clones     map[string]*machine.Machine
	filename   string
	blocks     blockTable
	conditions map[int]*condition
	fork       *forkRun // the forked subtest running, if any
}

// forkRun is a forked subtest in progress: what it restores and releases.
type forkRun struct {
	name    string
	opened  bool // its subtest block opened
	log     driver.Logger
	rep     script.Reporter
	release func() error
	merge   func()
}

// blockTable numbers the blocks and conditions of one session.
type blockTable struct {
	next int
	objs map[int]*block
}

func (t *blockTable) add(b *block) int {
	if t.objs == nil {
		t.objs = map[int]*block{}
	}
	t.next++
	t.objs[t.next] = b
	return t.next
}

// serve answers the interpreter's requests until it sends what the
// caller waits for: "ret" (a callback's answer) or "done" (the script's
// end).
func (s *session) serve(ctx context.Context) (inMsg, error) {
	for {
		m, err := s.conn.recv(ctx)
		if err != nil {
			return m, err
		}
		if m.Op == "ret" || m.Op == "done" {
			return m, nil
		}
		v, err := s.handle(ctx, m)
		var reply map[string]any
		if err == nil {
			var w any
			if w, err = s.wire(v); err == nil {
				reply = map[string]any{"op": "ret", "v": w}
			}
		}
		if err != nil {
			reply = map[string]any{"op": "ret", "err": s.errorOut(err)}
		}
		if err := s.conn.send(reply); err != nil {
			return inMsg{}, err
		}
	}
}

// handle serves one request.
func (s *session) handle(ctx context.Context, m inMsg) (any, error) {
	switch m.Op {
	case "call":
		return s.call(ctx, m)
	case "attr":
		mach, err := s.machine(m.M)
		if err != nil {
			return nil, err
		}
		for _, a := range api.Attrs {
			if a.Name == m.Name {
				return a.Get(mach), nil
			}
		}
		return nil, fmt.Errorf("%w: no attribute %q", ErrProtocol, m.Name)
	case "subtest":
		a, err := s.bind("subtest", engineParams("subtest"), m.A)
		if err != nil {
			return nil, err
		}
		name := a.Str("name")
		if s.fork != nil {
			s.fork.opened = true
		}
		return s.blocks.add(&block{subtest: name, ends: []func(error){s.log.Subtest(name)}}), nil
	case "enter":
		b := s.blocks.objs[m.H]
		if b == nil || b.open == nil {
			return nil, fmt.Errorf("%w: no log block %d", ErrProtocol, m.H)
		}
		b.ends = append(b.ends, b.open())
		return nil, nil
	case "end":
		return nil, s.end(m)
	case "alias":
		if ms := s.e.d.Machines(); len(ms) == 1 {
			s.e.aliased.Do(func() { s.log.Warn("", script.AliasWarning(ms[0].Name())) })
		}
		return nil, nil
	case "fork":
		return nil, s.startFork(ctx, m)
	case "unfork":
		return nil, s.endFork(m)
	case "cond":
		return s.newCondition(m)
	case "cond_on", "cond_off", "cond_wait":
		return nil, s.useCondition(ctx, m)
	}
	return nil, fmt.Errorf("%w: unknown request %q", ErrProtocol, m.Op)
}

// call calls a method or global of the table.
func (s *session) call(ctx context.Context, m inMsg) (any, error) {
	meth := lookups()[m.K][m.Fn]
	if meth == nil {
		return nil, fmt.Errorf("%w: no %s function %q", ErrProtocol, m.K, m.Fn)
	}
	var mach *machine.Machine
	if m.K == "m" {
		var err error
		if mach, err = s.machine(m.M); err != nil {
			return nil, err
		}
	}
	if meth.Unsupported != "" {
		return nil, &argError{"unsupported", fmt.Sprintf("%s: not supported yet (%s)", meth.Name, meth.Unsupported)}
	}
	a, err := s.bind(meth.Name, meth.Params, m.A)
	if err != nil {
		return nil, err
	}
	s.warnDeprecated(meth, a)
	return meth.Call(ctx, &api.Request{Machine: mach, Env: s, Args: a})
}

// warnDeprecated logs a warning for each deprecated parameter passed.
func (s *session) warnDeprecated(meth *api.Method, a api.Args) {
	for _, p := range meth.Params {
		if p.Deprecated != "" && a.Given(p.Name) {
			s.log.Warn("", fmt.Sprintf("%s: %s is deprecated, use %s", meth.Name, p.Name, p.Deprecated))
		}
	}
}

// machine is the machine a handle names, as this session acts on it (a
// forked subtest's clone of an original).
func (s *session) machine(h int) (*machine.Machine, error) {
	m, ok := s.e.handles.getID(h).(*machine.Machine)
	if !ok {
		return nil, fmt.Errorf("%w: no machine %d", ErrProtocol, h)
	}
	if c := s.clones[m.Name()]; c != nil && s.e.d.Machine(m.Name()) == m {
		return c, nil
	}
	return m, nil
}

// end closes a log block or subtest with the script's outcome; a
// failed subtest is reported under its name first.
func (s *session) end(m inMsg) error {
	b := s.blocks.objs[m.H]
	if b == nil || len(b.ends) == 0 {
		return fmt.Errorf("%w: no open block %d", ErrProtocol, m.H)
	}
	var err error
	if m.Err != nil {
		err = s.pyError(m.Err)
	}
	if b.subtest != "" && err != nil {
		loc := s.location(m.Err)
		var lp *script.Location
		if loc.Line > 0 {
			lp = &loc
		}
		script.ReportFailure(s.log, s.rep, script.SubtestFailure(b.subtest, m.Err.Msg), lp)
	}
	n := len(b.ends) - 1
	end := b.ends[n]
	b.ends = b.ends[:n]
	if n == 0 && b.open == nil {
		delete(s.blocks.objs, m.H)
	}
	end(err)
	return nil
}

// newCondition makes a polling condition of the script's function.
func (s *session) newCondition(m inMsg) (any, error) {
	const fn = "polling_condition"
	params := engineParams(fn)
	raw := make(map[string]json.RawMessage, len(m.A))
	for k, v := range m.A {
		raw[k] = v
	}
	funV, err := unmarshal(raw["fun"])
	if err != nil {
		return nil, err
	}
	tag, id := tagOf(funV)
	fid, ok := id.(json.Number)
	if tag != "fn" || !ok {
		return nil, typeErr(fn, "fun", funV, wantOf(api.Function))
	}
	delete(raw, "fun")
	a, err := s.bind(fn, params[1:], raw)
	if err != nil {
		return nil, err
	}
	interval, err := a.DurationOf("interval", "seconds_interval", driver.DefaultPollingInterval)
	if err != nil {
		return nil, &argError{"type", err.Error()}
	}
	s.warnDeprecated(&api.Method{Name: fn, Params: params}, a)
	name := m.Name
	c := &condition{}
	c.pc = &driver.PollingCondition{Interval: interval, Description: a.Str("description"), Check: func(ctx context.Context) error {
		v, err := s.callback(ctx, fid, "cond", nil)
		if err != nil {
			return err
		}
		var res struct {
			OK   bool   `json:"ok"`
			Repr string `json:"repr"`
		}
		if err := json.Unmarshal(v, &res); err != nil {
			return fmt.Errorf("%w: condition result: %w", ErrProtocol, err)
		}
		if !res.OK {
			return fmt.Errorf("%s returned %s", name, res.Repr)
		}
		return nil
	}}
	if s.conditions == nil {
		s.conditions = map[int]*condition{}
	}
	h := len(s.conditions) + 1
	s.conditions[h] = c
	return map[string]any{"h": h, "description": c.pc.Description}, nil
}

// useCondition activates, deactivates or waits for a condition.
func (s *session) useCondition(ctx context.Context, m inMsg) error {
	c := s.conditions[m.H]
	if c == nil {
		return fmt.Errorf("%w: no condition %d", ErrProtocol, m.H)
	}
	switch m.Op {
	case "cond_on":
		c.deacts = append(c.deacts, s.e.d.Activate(c.pc))
	case "cond_off":
		if n := len(c.deacts) - 1; n >= 0 {
			c.deacts[n]()
			c.deacts = c.deacts[:n]
		}
	case "cond_wait":
		a, err := s.bind("wait", []api.Param{{Name: "timeout", Type: api.Seconds, Default: machine.DefaultWaitTimeout}}, m.A)
		if err != nil {
			return err
		}
		timeout, ok := a.Duration("timeout")
		if !ok {
			timeout = machine.DefaultWaitTimeout
		}
		return s.e.d.WaitFor(ctx, c.pc, timeout)
	}
	return nil
}

// deactivateAll ends the conditions the script left active.
func (s *session) deactivateAll() {
	for _, c := range s.conditions {
		for i := len(c.deacts) - 1; i >= 0; i-- {
			c.deacts[i]()
		}
		c.deacts = nil
	}
}

// function is a script's function (a Function parameter) as Go calls it.
func (s *session) function(id any) api.Func {
	return func(args ...any) (bool, error) {
		v, err := s.callback(s.ctx, id, "truth", args)
		if err != nil {
			return false, err
		}
		var ok bool
		if err := json.Unmarshal(v, &ok); err != nil {
			return false, fmt.Errorf("%w: callback result: %w", ErrProtocol, err)
		}
		return ok, nil
	}
}

// callback calls a function of the script while a call is in progress
// and serves the requests it makes until it returns.
func (s *session) callback(ctx context.Context, id any, mode string, args []any) (json.RawMessage, error) {
	w, err := s.wireList(args)
	if err != nil {
		return nil, err
	}
	if err := s.conn.send(map[string]any{"op": "cb", "fn": id, "mode": mode, "args": w}); err != nil {
		return nil, err
	}
	m, err := s.serve(ctx)
	if err != nil {
		return nil, err
	}
	if m.Op != "ret" {
		return nil, fmt.Errorf("%w: the script ended during a callback", ErrProtocol)
	}
	if m.Err != nil {
		return nil, s.pyError(m.Err)
	}
	return m.V, nil
}

// api.Env: the session's view of the run.

// Driver is the run's driver.
func (s *session) Driver() *driver.Driver { return s.e.d }

// Machines are the configured machines as the session acts on them.
func (s *session) Machines() []*machine.Machine {
	ms := s.e.d.Machines()
	for i, m := range ms {
		if c := s.clones[m.Name()]; c != nil {
			ms[i] = c
		}
	}
	return ms
}

// Logger is the session's log.
func (s *session) Logger() driver.Logger { return s.log }

// SetSerialOutput turns the echo of serial consoles on or off.
func (s *session) SetSerialOutput(on bool) {
	switch {
	case s.rep != nil:
		s.rep.SetSerialOutput(on)
	default:
		if l, ok := s.log.(interface{ SetSerialOutput(bool) }); ok {
			l.SetSerialOutput(on)
		}
	}
}

// pyError is an exception of the script as a Go error: its message, and
// the engine error it was raised for (or machine.ErrCheckFailed for a
// failed t.assert*), so errors.Is sees what Starlark runs show.
type pyError struct {
	e     *pyErr
	cause error
}

func (e *pyError) Error() string { return e.e.Msg }

func (e *pyError) Unwrap() error { return e.cause }

func (s *session) pyError(pe *pyErr) error {
	err := &pyError{e: pe}
	switch {
	case pe.Go != nil:
		err.cause = s.e.errs.get(*pe.Go)
	case pe.Assertion:
		err.cause = machine.ErrCheckFailed
	}
	return err
}

// errorOut is an engine error as the interpreter raises it: the kind of
// exception, the message, and ids to find the error (or a callback's own
// exception) again.
func (s *session) errorOut(err error) map[string]any {
	var (
		ae *argError
		pe *pyError
	)
	out := map[string]any{"msg": err.Error()}
	switch {
	case s.ctx.Err() != nil:
		out["kind"] = "stopped"
	case errors.As(err, &ae):
		out["kind"] = ae.kind
	case errors.Is(err, driver.ErrPollingCondition):
		out["kind"] = "condition"
	case errors.As(err, &pe) && pe.e.Py != nil:
		out["py"] = *pe.e.Py
	case errors.Is(err, machine.ErrTimeout), errors.Is(err, driver.ErrRetryTimeout):
		out["kind"] = "timeout"
	case errors.Is(err, machine.ErrCheckFailed):
		out["kind"] = "assertion"
	default:
		out["kind"] = "error"
	}
	out["go"] = s.e.errs.keep(err)
	return out
}

// location is where in the script an exception happened: its innermost
// frame in the script file, else its innermost frame of any file.
func (s *session) location(pe *pyErr) script.Location {
	if pe.Syntax {
		file := pe.File
		if file == "" {
			file = s.filename
		}
		return script.Location{File: file, Line: pe.Line, Col: pe.Col, Source: pe.Src}
	}
	for i := len(pe.Frames) - 1; i >= 0; i-- {
		if f := pe.Frames[i]; f.File == s.filename {
			return script.Location{File: f.File, Line: f.Line, Col: f.Col, Source: f.Src}
		}
	}
	if n := len(pe.Frames); n > 0 {
		f := pe.Frames[n-1]
		return script.Location{File: f.File, Line: f.Line, Col: f.Col, Source: f.Src}
	}
	return script.Location{File: s.filename}
}

// scriptError is the exception that ended the script as the Starlark
// runtime reports one; a run that was cancelled names its cause.
func (s *session) scriptError(ctx context.Context, pe *pyErr) *script.ScriptError {
	se := &script.ScriptError{Msg: pe.Msg, Location: s.location(pe), Err: s.pyError(pe)}
	for _, f := range pe.Frames {
		se.Stack = append(se.Stack, script.Frame{Func: f.Func, Location: script.Location{File: f.File, Line: f.Line, Col: f.Col, Source: f.Src}})
	}
	if ctx.Err() != nil {
		stopped(ctx, se)
	}
	return se
}

// stopped rewrites se for a run that was cancelled, as the Starlark
// runtime does.
func stopped(ctx context.Context, se *script.ScriptError) {
	cause := context.Cause(ctx)
	se.Msg = "test script stopped: " + cause.Error()
	if se.Err != nil {
		se.Err = fmt.Errorf("%w (%w)", cause, se.Err)
	} else {
		se.Err = cause
	}
}

// hello is the interpreter's first message: the table, the run's
// globals, and the script.
func (s *session) hello(src []byte, check bool, opts script.CheckOptions) map[string]any {
	machines := []map[string]any{}
	if s.e.d != nil {
		for _, m := range s.e.d.Machines() {
			machines = append(machines, map[string]any{"pyname": driver.PythonName(m.Name()), "m": s.wireMachine(m)})
		}
	}
	for _, n := range opts.Machines {
		machines = append(machines, map[string]any{"pyname": driver.PythonName(n)})
	}
	vlans := []map[string]any{}
	for _, nr := range opts.VLANs {
		vlans = append(vlans, map[string]any{"nr": nr})
	}
	outDir := ""
	if s.e.d != nil {
		for _, v := range s.e.d.VLANs() {
			vlans = append(vlans, map[string]any{"nr": v.Nr, "socket_dir": v.SocketDir, "pid": v.PID, "kind": v.Kind, "bridge": v.Bridge})
		}
		outDir = s.e.d.OutputDir()
	}
	return map[string]any{
		"op": "hello", "api": tableJSON(), "machines": machines, "vlans": vlans, "out_dir": outDir,
		"filename": s.filename, "source": string(src), "check": check, "fork": opts.ForkSubtests,
	}
}

// runScript sends the script and serves it to its end.
func (s *session) runScript(ctx context.Context, it *interp, src []byte) error {
	defer s.deactivateAll()
	if err := s.conn.send(s.hello(src, false, script.CheckOptions{ForkSubtests: s.e.opts.ForkSubtests})); err != nil {
		return s.died(ctx, it, err)
	}
	m, err := s.serve(ctx)
	switch {
	case err != nil:
		return s.died(ctx, it, err)
	case m.Op != "done":
		return &script.ScriptError{Msg: "bridge protocol: a callback answer outside a callback", Location: script.Location{File: s.filename}, Err: ErrProtocol}
	case len(m.Errs) > 0:
		var errs []error
		for _, pe := range m.Errs {
			errs = append(errs, &script.ScriptError{Msg: script.BetweenSubtests, Location: s.location(pe), Err: script.ErrBetweenSubtests})
		}
		return errors.Join(errs...)
	case m.Err == nil && len(m.Failed) > 0:
		quoted := make([]string, len(m.Failed))
		for i, n := range m.Failed {
			quoted[i] = strconv.Quote(n)
		}
		return fmt.Errorf("%w: %d of %d (%s)", script.ErrSubtestsFailed, len(m.Failed), m.Subtests, strings.Join(quoted, ", "))
	case m.Err == nil:
		return nil
	case m.Err.Stopped:
		se := &script.ScriptError{Msg: "test script stopped", Location: script.Location{File: s.filename}}
		if ctx.Err() != nil {
			stopped(ctx, se)
		}
		return se
	}
	return s.scriptError(ctx, m.Err)
}

// diedWait is how long a failed connection waits for the interpreter's
// end, which explains the failure better.
const diedWait = 2 * time.Second

// died is the error of a script whose connection failed: the run was
// stopped, or the interpreter died (its stderr's end tells why).
func (s *session) died(ctx context.Context, it *interp, err error) error {
	se := &script.ScriptError{Location: script.Location{File: s.filename}}
	if ctx.Err() != nil {
		it.kill()
		stopped(ctx, se)
		return se
	}
	// A connection that failed, the interpreter's end closed or reset:
	// how it ended says more.
	select {
	case <-it.proc.Exited():
		err = it.exited()
	case <-time.After(diedWait):
		if errors.Is(err, errClosed) {
			err = it.exited()
		}
	}
	se.Msg, se.Err = err.Error(), err
	return se
}

// startFork starts a forked subtest (the interpreter forks itself once
// this returns): fresh clones of every machine, and a branch of the log
// merged whole when it ends.
func (s *session) startFork(ctx context.Context, m inMsg) error {
	if m.N == 0 {
		s.log.Warn("", "--fork-subtests: the script has no top-level subtest (a `with subtest(...):` statement outside any block), so there is nothing to fork; running it as a whole")
		return nil
	}
	if s.fork != nil {
		return fmt.Errorf("%w: a forked subtest in a forked subtest", ErrProtocol)
	}
	if m.I == 0 {
		s.log.Info("", fmt.Sprintf("running %d subtests on clones of the machines, one at a time, each in a fork of the Python interpreter", m.N))
	}
	f := &forkRun{name: m.Name, log: s.log, rep: s.rep, merge: func() {}}
	if b, ok := s.log.(script.Brancher); ok {
		child, merge := b.Branch()
		s.log, s.rep, f.merge = child, child, merge
	}
	clones, release, err := s.e.d.ForkAll(ctx, s.log)
	if err != nil {
		err = fmt.Errorf("cloning the machines: %w", err)
		end := s.log.Subtest(f.name)
		script.ReportFailure(s.log, s.rep, script.SubtestFailure(f.name, err.Error()), nil)
		end(err)
		s.log, s.rep = f.log, f.rep
		f.merge()
		return err
	}
	f.release, s.clones, s.fork = release, clones, f
	return nil
}

// endFork ends the forked subtest: a failure before its block opened is
// reported under its name, the clones are released and its log merged.
func (s *session) endFork(m inMsg) error {
	f := s.fork
	if f == nil {
		return fmt.Errorf("%w: no forked subtest to end", ErrProtocol)
	}
	if m.Err != nil && !f.opened {
		err := s.pyError(m.Err)
		loc := s.location(m.Err)
		end := s.log.Subtest(f.name)
		script.ReportFailure(s.log, s.rep, script.SubtestFailure(f.name, m.Err.Msg), &loc)
		end(err)
	}
	s.deactivateAll()
	if err := f.release(); err != nil {
		s.log.Warn("", fmt.Sprintf("releasing the clones of subtest %q: %v", f.name, err))
	}
	s.log, s.rep, s.clones, s.fork = f.log, f.rep, nil, nil
	f.merge()
	return nil
}
