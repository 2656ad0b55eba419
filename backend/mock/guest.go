package mock

import (
	"context"
	"image/color"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// CommandHandler answers a guest command before the built-in fake
// commands do. It returns handled=false to pass the command on.
type CommandHandler func(cmd string) (out string, status int, handled bool)

// RequestHandler is the full form of CommandHandler: it sees the
// guest-side timeout and can set GuestReply.Hold (a background process
// holding stdout). It must return when ctx ends.
type RequestHandler func(ctx context.Context, req backdoor.GuestRequest) (reply backdoor.GuestReply, handled bool)

// ControlCall is one recorded RawCommander call.
type ControlCall struct {
	Command string
	Args    map[string]any
}

// Guest is the programmable fake guest of one started instance. All its
// methods are safe for concurrent use, also while commands run.
//
// Built-in commands (after custom handlers): true, false, :, echo [-n],
// exit N, sleep SECS, test/[ -e|-f|-d PATH, cat PATH, mkdir -p, cp -r,
// rm -rf, sync, systemctl (see Systemd), su -l USER --shell /bin/sh -c
// CMD, nc -z ADDR PORT, nc -z -U|-uU PATH, poweroff [-f], halt, reboot,
// date [+FORMAT] and date -s @SECS[.FRAC] (the guest clock), hostname
// [NAME] (also written as /proc/sys/kernel/hostname), ip -o link|addr, ip link set dev X address MAC, ip addr
// add|del|flush, ip neigh flush (ident.go), the base64 upload pipeline
// `printf %s B64 | base64 -d >|>> PATH`, and `fold ... /dev/vcsN` (TTY
// text, Guest.SetTTY). Anything else exits 127 with "command not found"
// on the console. Paths under /tmp/shared are the host's Spec.SharedDir.
//
// A command is run as a bash script under `set -e`, as the real backdoor
// runs it: lines and `;` lists, `&&`, `||`, and redirections (>, >>, 2>,
// 2>&1, >&2, &>, <) of files, /dev/null and /dev/urandom work; a failing
// command outside && and || ends the script with its status.
type Guest struct {
	name string

	mu   sync.Mutex
	inst *Instance

	bootDelay  time.Duration
	noBanner   bool
	preBanner  string
	boots      int
	ignoreACPI bool

	handlers    []CommandHandler
	reqHandlers []RequestHandler
	commands    []string
	raw         []string

	managers    map[string]*Systemd
	files       map[string]*fnode
	ports       map[string]bool
	unixStream  map[string]bool
	unixDgram   map[string]bool
	tty         map[int]string
	screen      color.RGBA
	screenshots []string

	consoleIn      []byte
	onConsoleInput func(data []byte)
	keys           []string

	monitorCmds    []string
	monitorReplies map[string]string
	monitorHandler func(cmd string) (string, error)

	controlCalls   []ControlCall
	controlReplies map[string]any

	hostname    string
	clockOffset time.Duration // guest clock minus host clock
	urandom     [][]byte      // writes to /dev/urandom since start or restore
	hardware    Hardware
	snapErr     error // SetSnapshotError
	restored    bool

	net *netState // links, addresses and port forwards (links.go); own lock
}

func newGuest(name string, bootDelay time.Duration) *Guest {
	g := &Guest{
		name:           name,
		bootDelay:      bootDelay,
		managers:       map[string]*Systemd{},
		files:          map[string]*fnode{},
		ports:          map[string]bool{},
		unixStream:     map[string]bool{},
		unixDgram:      map[string]bool{},
		tty:            map[int]string{},
		screen:         defaultScreen,
		monitorReplies: map[string]string{},
		controlReplies: map[string]any{},
		net:            newNetState(),
		hostname:       name,
		hardware:       DefaultHardware,
	}
	for _, d := range []string{"/", "/tmp", "/root", "/etc", "/run"} {
		g.files[d] = &fnode{dir: true, mode: 0o755}
	}
	g.files["/etc/hostname"] = &fnode{data: []byte(name + "\n"), mode: 0o644}
	g.files["/etc/machine-id"] = &fnode{data: []byte(machineID(name) + "\n"), mode: 0o444}
	return g
}

func (g *Guest) attach(in *Instance) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inst = in
}

func (g *Guest) instance() *Instance {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.inst
}

// Instance returns the instance the guest runs in.
func (g *Guest) Instance() *Instance { return g.instance() }

// Name returns the machine's name.
func (g *Guest) Name() string { return g.name }

// PID returns the fake pid of the guest's instance.
func (g *Guest) PID() int { return g.instance().PID() }

// Done is closed when the guest's instance has exited.
func (g *Guest) Done() <-chan struct{} { return g.instance().Done() }

// SetBootDelay sets how long each boot takes before the shell banner.
// Set it from the WithGuest callback to affect the first boot.
func (g *Guest) SetBootDelay(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.bootDelay = d
}

// SetNoBanner makes the guest's shell never become ready (a guest whose
// backdoor service does not start).
func (g *Guest) SetNoBanner(v bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.noBanner = v
}

// SetPreBanner sets text the guest shell writes before its banner.
func (g *Guest) SetPreBanner(text string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.preBanner = text
}

// IgnorePowerButton makes the guest ignore ACPI power-down requests.
func (g *Guest) IgnorePowerButton(v bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ignoreACPI = v
}

func (g *Guest) ignoresPowerButton() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ignoreACPI
}

func (g *Guest) bootSettings() (time.Duration, bool, string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bootDelay, g.noBanner, g.preBanner
}

func (g *Guest) countBoot() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.boots++
}

// Boots reports how many times the guest began booting (1 after Start, 2
// after one reboot). A restored guest did not boot: it starts with the
// count of the guest its snapshot was taken from.
func (g *Guest) Boots() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.boots
}

// Handle adds a custom command handler, consulted (in order, after
// request handlers) before the built-in commands.
func (g *Guest) Handle(h CommandHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.handlers = append(g.handlers, h)
}

// HandleRequest adds a full request handler, consulted first.
func (g *Guest) HandleRequest(h RequestHandler) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reqHandlers = append(g.reqHandlers, h)
}

// Commands returns every command the guest shell received, in order.
func (g *Guest) Commands() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.commands)
}

// RawInput returns every unframed text the guest shell received (such as
// "poweroff\n").
func (g *Guest) RawInput() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.raw)
}

// ConsoleLine writes line and a newline to the serial console.
func (g *Guest) ConsoleLine(line string) { g.ConsoleText(line + "\n") }

// ConsoleText writes text verbatim to the serial console (partial lines
// and \r\n endings included).
func (g *Guest) ConsoleText(text string) {
	if in := g.instance(); in != nil {
		in.consoleWrite(text)
	}
}

// ConsoleInput returns what was typed into the serial console.
func (g *Guest) ConsoleInput() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.consoleIn)
}

// OnConsoleInput calls fn with every write to the serial console.
func (g *Guest) OnConsoleInput(fn func(data []byte)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.onConsoleInput = fn
}

func (g *Guest) consoleInput(data []byte) {
	g.mu.Lock()
	g.consoleIn = append(g.consoleIn, data...)
	fn := g.onConsoleInput
	g.mu.Unlock()
	if fn != nil {
		fn(slices.Clone(data))
	}
}

// Keys returns every key sent, in order.
func (g *Guest) Keys() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.keys)
}

func (g *Guest) recordKey(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.keys = append(g.keys, key)
}

// SetScreenColor sets the colour of every screenshot.
func (g *Guest) SetScreenColor(c color.RGBA) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.screen = c
}

func (g *Guest) screenColor() color.RGBA {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.screen
}

// Screenshots returns the paths screenshots were written to.
func (g *Guest) Screenshots() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.screenshots)
}

func (g *Guest) recordScreenshot(path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.screenshots = append(g.screenshots, path)
}

// SetTTY sets the text shown on virtual terminal n (/dev/vcsN).
func (g *Guest) SetTTY(n int, text string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tty[n] = text
}

// SetMonitorReply scripts the monitor's answer to command.
func (g *Guest) SetMonitorReply(command, reply string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.monitorReplies[command] = reply
}

// HandleMonitor answers monitor commands that have no scripted reply.
func (g *Guest) HandleMonitor(fn func(command string) (string, error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.monitorHandler = fn
}

// MonitorCommands returns every monitor command received.
func (g *Guest) MonitorCommands() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.monitorCmds)
}

func (g *Guest) monitor(cmd string) (string, error) {
	g.mu.Lock()
	g.monitorCmds = append(g.monitorCmds, cmd)
	reply, ok := g.monitorReplies[cmd]
	h := g.monitorHandler
	g.mu.Unlock()
	if ok {
		return reply, nil
	}
	if h != nil {
		return h(cmd)
	}
	return "", nil
}

// SetControlReply scripts the RawCommander reply to command.
func (g *Guest) SetControlReply(command string, reply any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.controlReplies[command] = reply
}

// ControlCommands returns every RawCommander call received.
func (g *Guest) ControlCommands() []ControlCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.controlCalls)
}

func (g *Guest) control(cmd string, args map[string]any) (any, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.controlCalls = append(g.controlCalls, ControlCall{Command: cmd, Args: maps.Clone(args)})
	r, ok := g.controlReplies[cmd]
	return r, ok
}

// EmitEvent queues a control-plane event for EventSource.WaitEvent.
func (g *Guest) EmitEvent(name string, data map[string]any) {
	if in := g.instance(); in != nil {
		in.emit(eventOf(name, data))
	}
}

// Crash ends the hypervisor as if it died: the shell connection drops,
// Done closes and ExitErr reports err (ErrCrashed when nil).
func (g *Guest) Crash(err error) {
	if err == nil {
		err = ErrCrashed
	}
	if in := g.instance(); in != nil {
		in.exit(err)
	}
}

// PowerOff powers the guest off cleanly (SHUTDOWN event, exit status 0),
// as its `poweroff` command does.
func (g *Guest) PowerOff() {
	if in := g.instance(); in != nil {
		in.powerOff("guest-shutdown")
	}
}

// Reboot reboots the guest, as ctrl-alt-delete or `reboot` do.
func (g *Guest) Reboot() {
	if in := g.instance(); in != nil {
		in.reboot()
	}
}

// OpenPort marks TCP port open on localhost.
func (g *Guest) OpenPort(port int) { g.OpenPortAt("localhost", port) }

// ClosePort marks TCP port closed on localhost.
func (g *Guest) ClosePort(port int) { g.ClosePortAt("localhost", port) }

// OpenPortAt marks TCP port open on addr, as `nc -z addr port` sees it.
func (g *Guest) OpenPortAt(addr string, port int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ports[portKey(addr, port)] = true
}

// ClosePortAt marks TCP port closed on addr.
func (g *Guest) ClosePortAt(addr string, port int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.ports, portKey(addr, port))
}

// OpenUnixSocket makes a listening unix socket (stream or datagram) exist
// at path.
func (g *Guest) OpenUnixSocket(path string, datagram bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if datagram {
		g.unixDgram[cleanPath(path)] = true
	} else {
		g.unixStream[cleanPath(path)] = true
	}
}

// CloseUnixSocket removes the unix socket at path.
func (g *Guest) CloseUnixSocket(path string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.unixDgram, cleanPath(path))
	delete(g.unixStream, cleanPath(path))
}

// Systemd returns the fake service manager of user ("" is the system
// manager), creating it on first use.
func (g *Guest) Systemd(user string) *Systemd {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.managerLocked(user)
}

func (g *Guest) managerLocked(user string) *Systemd {
	s := g.managers[user]
	if s == nil {
		s = &Systemd{g: g, user: user, units: map[string]*unit{}}
		g.managers[user] = s
	}
	return s
}
