package mock

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// Request is one command as the guest receives it: its text and the
// guest-side timeout the caller asked for (0 for none).
type Request = backdoor.GuestRequest

// Reply is the guest's answer to one command.
type Reply struct {
	// Out is the command's stdout.
	Out string
	// Status is its exit status.
	Status int
	// Console is written to the serial console, where a real guest's
	// stderr goes.
	Console string
	// Hold keeps stdout open this long after the status, like a
	// background child of the command would.
	Hold time.Duration
}

// Handler computes the answer to a command each time it runs. ctx ends
// when the guest stops or reboots; a handler that waits must return
// then.
type Handler func(ctx context.Context, req Request) Reply

// Matcher answers the commands it recognises (ok) among those without an
// answer of their own.
type Matcher func(ctx context.Context, req Request) (r Reply, ok bool)

// StatusUnscripted is the exit status of a command nobody scripted (as
// bash's for a command not found).
const StatusUnscripted = 127

// ControlCall is one recorded RawCommander call.
type ControlCall struct {
	Command string
	Args    map[string]any
}

// Guest is the scriptable guest of one started or restored instance. It
// has no shell: tests tell it what to answer to each command, keyed by
// the command's text as package guestcmd builds it (or as the test's own
// Machine.Succeed sends it). A command without an answer exits with
// StatusUnscripted and names itself on the serial console. Out of the
// box it answers guestcmd.PowerOff and guestcmd.ForcePowerOff (as a
// command or as raw input) by powering off.
//
// All methods are safe for concurrent use, also while commands run.
type Guest struct {
	name string

	mu   sync.Mutex
	inst *Instance

	bootDelay  time.Duration
	noBanner   bool
	boots      int
	ignoreACPI bool
	restored   bool
	hardware   Hardware
	snapErr    error
	state      map[string]string

	answers  map[string]Handler
	matchers []Matcher
	commands []string
	raw      []string

	consoleIn      []byte
	keys           []string
	monitorCmds    []string
	monitorReplies map[string]string
	controlCalls   []ControlCall
	controlReplies map[string]any

	links    []backend.Link // links.go
	calls    []LinkCall
	forwards []PortForward
}

func newGuest(name string, bootDelay time.Duration) *Guest {
	g := &Guest{
		name:           name,
		links:          slices.Clone(DefaultLinks),
		bootDelay:      bootDelay,
		hardware:       DefaultHardware,
		state:          map[string]string{},
		answers:        map[string]Handler{},
		monitorReplies: map[string]string{},
		controlReplies: map[string]any{},
	}
	powerOff := func(ctx context.Context, _ Request) Reply {
		// Like a real power-off, the command never reports back.
		g.PowerOff()
		<-ctx.Done()
		return Reply{Status: 143}
	}
	g.answers[guestcmd.PowerOff()] = powerOff
	g.answers[guestcmd.ForcePowerOff()] = powerOff
	return g
}

// locked returns what fn returns, run with g.mu held.
func locked[T any](g *Guest, fn func() T) T {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fn()
}

// set runs fn with g.mu held.
func (g *Guest) set(fn func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn()
}

func (g *Guest) attach(in *Instance) { g.set(func() { g.inst = in }) }

// Instance returns the instance the guest runs in.
func (g *Guest) Instance() *Instance { return locked(g, func() *Instance { return g.inst }) }

// SharedDir returns the host directory the guest sees at /tmp/shared
// (Spec.SharedDir).
func (g *Guest) SharedDir() string { return g.Instance().spec.SharedDir }

// Done is closed when the guest's instance has exited.
func (g *Guest) Done() <-chan struct{} { return g.Instance().Done() }

// Answer makes the guest answer the command cmd with r every time.
func (g *Guest) Answer(cmd string, r Reply) {
	g.AnswerFunc(cmd, func(context.Context, Request) Reply { return r })
}

// AnswerFunc makes the guest answer the command cmd with what h returns
// (for answers that change over time). It replaces an earlier answer.
func (g *Guest) AnswerFunc(cmd string, h Handler) { g.set(func() { g.answers[cmd] = h }) }

// Handle adds m, consulted (in the order added) for every command that
// has no answer of its own.
func (g *Guest) Handle(m Matcher) { g.set(func() { g.matchers = append(g.matchers, m) }) }

// Commands returns every command the guest received, in order.
func (g *Guest) Commands() []string {
	return locked(g, func() []string { return slices.Clone(g.commands) })
}

// RawInput returns every unframed line the guest's shell received (such
// as "poweroff").
func (g *Guest) RawInput() []string { return locked(g, func() []string { return slices.Clone(g.raw) }) }

// SetState sets a value of the guest's state: a place for answers to
// keep what a real guest would keep on its disk or in its memory. Unlike
// answers, the state is saved in snapshots and restored with them.
func (g *Guest) SetState(key, value string) { g.set(func() { g.state[key] = value }) }

// State returns a value of the guest's state ("" if unset).
func (g *Guest) State(key string) string { return locked(g, func() string { return g.state[key] }) }

// lookup finds the handler for cmd: its answer, the first matcher that
// takes it, or the unscripted answer.
func (g *Guest) lookup(ctx context.Context, req Request) Reply {
	g.mu.Lock()
	h, ok := g.answers[req.Command]
	ms := slices.Clone(g.matchers)
	g.mu.Unlock()
	if ok {
		return h(ctx, req)
	}
	for _, m := range ms {
		if r, ok := m(ctx, req); ok {
			return r
		}
	}
	return Reply{Status: StatusUnscripted, Console: fmt.Sprintf("mock: no answer scripted for %q (see Guest.Answer)\n", req.Command)}
}

// serve is the backdoor.GuestHandler of the guest.
func (g *Guest) serve(ctx context.Context, req Request) backdoor.GuestReply {
	// A paused guest runs nothing until it is resumed.
	if in := g.Instance(); in != nil && !in.gate.wait(ctx.Done()) {
		return backdoor.GuestReply{Status: 143}
	}
	g.set(func() { g.commands = append(g.commands, req.Command) })
	r := g.lookup(ctx, req)
	if r.Console != "" {
		g.ConsoleText(r.Console)
	}
	return backdoor.GuestReply{Output: []byte(r.Out), Status: r.Status, Hold: r.Hold}
}

// rawText handles an unframed line written to the guest's shell, which
// the real shell runs with nobody reading its output: its answer runs
// with a context that has already ended.
func (g *Guest) rawText(line string) {
	g.set(func() { g.raw = append(g.raw, line) })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := g.lookup(ctx, Request{Command: line}); r.Console != "" {
		g.ConsoleText(r.Console)
	}
}

// SetNoBanner makes the guest's shell never become ready (a guest whose
// backdoor service does not start).
func (g *Guest) SetNoBanner(v bool) { g.set(func() { g.noBanner = v }) }

// IgnorePowerButton makes the guest ignore ACPI power-down requests.
func (g *Guest) IgnorePowerButton(v bool) { g.set(func() { g.ignoreACPI = v }) }

// startBoot counts a boot and returns its settings.
func (g *Guest) startBoot() (delay time.Duration, noBanner bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.boots++
	return g.bootDelay, g.noBanner
}

// Boots reports how many times the guest began booting (1 after Start, 2
// after one reboot). A restored guest did not boot: it starts with the
// count of the guest its snapshot was taken from.
func (g *Guest) Boots() int { return locked(g, func() int { return g.boots }) }

// Restored reports whether the guest was restored from a snapshot rather
// than booted (it stays true after a reboot).
func (g *Guest) Restored() bool { return locked(g, func() bool { return g.restored }) }

// ConsoleLine writes line and a newline to the serial console.
func (g *Guest) ConsoleLine(line string) { g.ConsoleText(line + "\n") }

// ConsoleText writes text verbatim to the serial console (partial lines
// and \r\n endings included).
func (g *Guest) ConsoleText(text string) {
	if in := g.Instance(); in != nil {
		in.consoleWrite(text)
	}
}

// ConsoleInput returns what was typed into the serial console.
func (g *Guest) ConsoleInput() []byte {
	return locked(g, func() []byte { return slices.Clone(g.consoleIn) })
}

// Keys returns every key sent, in order.
func (g *Guest) Keys() []string { return locked(g, func() []string { return slices.Clone(g.keys) }) }

// SetMonitorReply scripts the monitor's answer to command ("" without
// one).
func (g *Guest) SetMonitorReply(command, reply string) {
	g.set(func() { g.monitorReplies[command] = reply })
}

// MonitorCommands returns every monitor command received.
func (g *Guest) MonitorCommands() []string {
	return locked(g, func() []string { return slices.Clone(g.monitorCmds) })
}

// SetControlReply scripts the RawCommander reply to command.
func (g *Guest) SetControlReply(command string, reply any) {
	g.set(func() { g.controlReplies[command] = reply })
}

// ControlCommands returns every RawCommander call received.
func (g *Guest) ControlCommands() []ControlCall {
	return locked(g, func() []ControlCall { return slices.Clone(g.controlCalls) })
}

// The recorders of the instance's calls.

func (g *Guest) monitor(cmd string) string {
	return locked(g, func() string {
		g.monitorCmds = append(g.monitorCmds, cmd)
		return g.monitorReplies[cmd]
	})
}

func (g *Guest) control(cmd string, args map[string]any) (any, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.controlCalls = append(g.controlCalls, ControlCall{Command: cmd, Args: maps.Clone(args)})
	reply, ok := g.controlReplies[cmd]
	return reply, ok
}

func (g *Guest) recordKey(key string) { g.set(func() { g.keys = append(g.keys, key) }) }

func (g *Guest) recordConsoleInput(b []byte) {
	g.set(func() { g.consoleIn = append(g.consoleIn, b...) })
}

// EmitEvent queues a control-plane event for EventSource.WaitEvent.
func (g *Guest) EmitEvent(name string, data map[string]any) {
	if in := g.Instance(); in != nil {
		in.emit(newEvent(name, data))
	}
}

// Crash ends the hypervisor as if it died: the shell connection drops,
// Done closes and ExitErr reports err (ErrCrashed when nil).
func (g *Guest) Crash(err error) {
	if err == nil {
		err = ErrCrashed
	}
	if in := g.Instance(); in != nil {
		in.exit(err)
	}
}

// PowerOff powers the guest off cleanly (SHUTDOWN event, exit status 0).
func (g *Guest) PowerOff() {
	if in := g.Instance(); in != nil {
		in.powerOff("guest-shutdown")
	}
}

// Reboot reboots the guest, as ctrl-alt-delete does.
func (g *Guest) Reboot() {
	if in := g.Instance(); in != nil {
		in.reboot()
	}
}
