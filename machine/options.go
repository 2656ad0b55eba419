package machine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// Defaults, as in the NixOS driver.
const (
	// DefaultCommandTimeout is the host-side deadline of a command that
	// has no Timeout, and the guest-side limit of Execute.
	DefaultCommandTimeout = 15 * time.Minute
	// DefaultWaitTimeout bounds every WaitFor/WaitUntil call without a
	// Timeout option.
	DefaultWaitTimeout = 15 * time.Minute
	// DefaultEventTimeout bounds WaitForQMPEvent.
	DefaultEventTimeout = 10 * time.Minute
	// DefaultRetryInterval is the pause between two attempts of a wait.
	DefaultRetryInterval = time.Second
	// DefaultKeyDelay is the pause after each key SendKey presses.
	DefaultKeyDelay = 10 * time.Millisecond
)

// Option configures a Machine (see New). An option given a value it
// cannot use makes New fail with an error saying which and why, rather
// than fall back to a default silently.
type Option func(*config) error

// ErrBadOption is wrapped by the error New returns for an option given
// an unusable value.
var ErrBadOption = errors.New("invalid machine option")

func badOption(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadOption}, args...)...)
}

// nonEmpty is an option that sets a path-like string, refusing "".
func nonEmpty(name, v string, set func(c *config)) Option {
	return func(c *config) error {
		if v == "" {
			return badOption("%s needs a non-empty value", name)
		}
		set(c)
		return nil
	}
}

// positive is an option that sets a duration, refusing d <= 0.
func positive(name string, d time.Duration, set func(c *config)) Option {
	return func(c *config) error {
		if d <= 0 {
			return badOption("%s needs a positive duration, got %s", name, d)
		}
		set(c)
		return nil
	}
}

type config struct {
	startScript    string
	stateDir       string
	sharedDir      string
	outputDir      string
	env            []string
	taps           backend.TAPNetworks
	logger         Logger
	bootTimeout    time.Duration
	commandTimeout time.Duration
	heldWarning    time.Duration
	allowReboot    bool
	keepState      bool
	nodeNumbers    *NodeNumbers
	sameAddresses  bool
	warmDir        string
	warmReadOnly   bool
}

// WithStartScript sets the hypervisor start script (for QEMU, a nixpkgs
// run-NAME-vm script).
func WithStartScript(path string) Option {
	return nonEmpty("WithStartScript", path, func(c *config) { c.startScript = path })
}

// WithStateDir sets the machine's state directory. It is created (0700)
// if missing and never removed. Without it the machine uses a private
// temporary directory that Close removes unless WithKeepState.
func WithStateDir(dir string) Option {
	return nonEmpty("WithStateDir", dir, func(c *config) { c.stateDir = dir })
}

// WithSharedDir sets the host directory the guest sees at /tmp/shared
// (default: "shared" in the state directory).
func WithSharedDir(dir string) Option {
	return nonEmpty("WithSharedDir", dir, func(c *config) { c.sharedDir = dir })
}

// WithOutputDir sets where screenshots and CopyFromMachine results go
// (default ".").
func WithOutputDir(dir string) Option {
	return nonEmpty("WithOutputDir", dir, func(c *config) { c.outputDir = dir })
}

// WithEnv adds KEY=VALUE pairs to the hypervisor's environment.
func WithEnv(kv ...string) Option {
	return func(c *config) error {
		for _, e := range kv {
			if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
				return badOption("WithEnv: %q is not KEY=VALUE", e)
			}
		}
		c.env = append(c.env, kv...)
		return nil
	}
}

// WithTAPs puts the machine's VLAN NICs on TAP devices of these networks
// (a *vlan.Bridges) instead of VDE switches.
func WithTAPs(n backend.TAPNetworks) Option {
	return func(c *config) error {
		if n == nil {
			return badOption("WithTAPs needs TAP networks (vlan.StartBridges)")
		}
		c.taps = n
		return nil
	}
}

// WithLogger sets the Logger (default: discard everything).
func WithLogger(l Logger) Option {
	return func(c *config) error {
		if l == nil {
			return badOption("WithLogger needs a Logger (DiscardLogger() logs nothing)")
		}
		c.logger = l
		return nil
	}
}

// WithBootTimeout bounds the wait for the guest's shell after a start or
// reboot (default: the backend's BootTimeout).
func WithBootTimeout(d time.Duration) Option {
	return positive("WithBootTimeout", d, func(c *config) { c.bootTimeout = d })
}

// WithCommandTimeout sets the host-side deadline of commands that have no
// Timeout option (default DefaultCommandTimeout).
func WithCommandTimeout(d time.Duration) Option {
	return positive("WithCommandTimeout", d, func(c *config) { c.commandTimeout = d })
}

// WithHeldStdoutWarning sets how long after a command exited with a
// background process still holding its stdout the machine warns about it
// (default: the backdoor package's few seconds).
func WithHeldStdoutWarning(d time.Duration) Option {
	return positive("WithHeldStdoutWarning", d, func(c *config) { c.heldWarning = d })
}

// WithAllowReboot keeps the hypervisor running when the guest reboots;
// without it a reboot ends the hypervisor (QEMU -no-reboot).
func WithAllowReboot() Option { return func(c *config) error { c.allowReboot = true; return nil } }

// WithNodeNumbers sets where clones restored from this machine's
// snapshots (and a machine made by Restore) take their node number: the
// last byte of their VLAN addresses and MACs. A driver shares one
// allocator among all its machines; without this option a process-wide
// one is used.
func WithNodeNumbers(n *NodeNumbers) Option {
	return func(c *config) error {
		if n == nil {
			return badOption("WithNodeNumbers needs a *NodeNumbers (NewNodeNumbers)")
		}
		c.nodeNumbers = n
		return nil
	}
}

// WithSameAddresses makes a machine restored from a snapshot keep the
// original's host name, MACs and addresses (its clock, machine-id and
// random number generator are still its own). It is for clones that get
// networks of their own (fresh switches through WithEnv), where they
// stand in for the original.
func WithSameAddresses() Option { return func(c *config) error { c.sameAddresses = true; return nil } }

// WithKeepState keeps the default private state directory on Close.
func WithKeepState() Option { return func(c *config) error { c.keepState = true; return nil } }

// callConfig collects the per-call options of every method.
type callConfig struct {
	timeout    time.Duration
	hasTimeout bool
	interval   time.Duration
	noReturn   bool
	noOutput   bool
	user       string
	addr       string
	delay      time.Duration
	hasDelay   bool
	quiet      bool
}

// ExecOption tunes Execute, Succeed and Fail.
type ExecOption interface{ applyExec(*callConfig) }

// WaitOption tunes the WaitFor and WaitUntil methods.
type WaitOption interface{ applyWait(*callConfig) }

// UnitOption tunes the systemd methods.
type UnitOption interface{ applyUnit(*callConfig) }

// PortOption tunes WaitForOpenPort and WaitForClosedPort.
type PortOption interface{ applyPort(*callConfig) }

// KeyOption tunes SendKey and SendChars.
type KeyOption interface{ applyKey(*callConfig) }

// TimeoutOption is returned by Timeout; it applies to every kind of call.
type TimeoutOption struct{ d time.Duration }

func (o TimeoutOption) applyExec(c *callConfig) { c.timeout, c.hasTimeout = o.d, true }
func (o TimeoutOption) applyWait(c *callConfig) { c.timeout, c.hasTimeout = o.d, true }
func (o TimeoutOption) applyUnit(c *callConfig) { c.timeout, c.hasTimeout = o.d, true }
func (o TimeoutOption) applyPort(c *callConfig) { c.timeout, c.hasTimeout = o.d, true }

// Timeout bounds a call. For Execute, Succeed and Fail it is the
// guest-side limit (the guest's `timeout` ends the command with status
// 124) and the host deadline is a little later; for waits it is the
// whole wait's deadline.
func Timeout(d time.Duration) TimeoutOption { return TimeoutOption{d} }

// IntervalOption is returned by Interval.
type IntervalOption struct{ d time.Duration }

func (o IntervalOption) applyWait(c *callConfig) { c.interval = o.d }
func (o IntervalOption) applyUnit(c *callConfig) { c.interval = o.d }
func (o IntervalOption) applyPort(c *callConfig) { c.interval = o.d }

// Interval sets the pause between two attempts of a polling wait
// (default DefaultRetryInterval).
func Interval(d time.Duration) IntervalOption { return IntervalOption{d} }

type execFlag struct{ noReturn, noOutput bool }

func (o execFlag) applyExec(c *callConfig) {
	c.noReturn = c.noReturn || o.noReturn
	c.noOutput = c.noOutput || o.noOutput
}

// NoCheckReturn makes Execute read the output but not require an exit
// status (for commands that end the machine): the status is then -1
// unless it arrived anyway.
func NoCheckReturn() ExecOption { return execFlag{noReturn: true} }

// NoCheckOutput makes Execute send the command and return (-2, "") at
// once, without waiting for anything.
func NoCheckOutput() ExecOption { return execFlag{noOutput: true} }

type userOption string

func (o userOption) applyUnit(c *callConfig) { c.user = string(o) }

// AsUser makes a systemd call talk to user's service manager
// (`systemctl --user` run through `su -l user`).
func AsUser(user string) UnitOption { return userOption(user) }

type addrOption string

func (o addrOption) applyPort(c *callConfig) { c.addr = string(o) }

// Addr sets the address a port wait probes (default "localhost").
func Addr(addr string) PortOption { return addrOption(addr) }

type keyOption struct {
	delay    time.Duration
	setDelay bool
	quiet    bool
}

func (o keyOption) applyKey(c *callConfig) {
	if o.setDelay {
		c.delay, c.hasDelay = o.delay, true
	}
	c.quiet = c.quiet || o.quiet
}

// Delay sets the pause after each key (default DefaultKeyDelay; 0 for
// none).
func Delay(d time.Duration) KeyOption { return keyOption{delay: d, setDelay: true} }

// Quiet stops SendKey from logging each key.
func Quiet() KeyOption { return keyOption{quiet: true} }

// fold applies opts to c in order, skipping nil ones.
func fold[O any](c callConfig, opts []O, apply func(O, *callConfig)) callConfig {
	for _, o := range opts {
		if any(o) != nil {
			apply(o, &c)
		}
	}
	return c
}

func execOptions(opts []ExecOption) callConfig {
	return fold(callConfig{}, opts, ExecOption.applyExec)
}

func waitOptions(opts []WaitOption) callConfig {
	return fold(callConfig{}, opts, WaitOption.applyWait)
}

func unitOptions(opts []UnitOption) callConfig {
	return fold(callConfig{}, opts, UnitOption.applyUnit)
}

func portOptions(opts []PortOption) callConfig {
	return fold(callConfig{addr: "localhost"}, opts, PortOption.applyPort)
}

func keyOptions(opts []KeyOption) callConfig {
	return fold(callConfig{delay: DefaultKeyDelay}, opts, KeyOption.applyKey)
}

// waitTimeout is the wait deadline of c, or def.
func (c callConfig) waitTimeout(def time.Duration) time.Duration {
	if c.hasTimeout {
		return c.timeout
	}
	return def
}

func (c callConfig) retryInterval() time.Duration {
	if c.interval > 0 {
		return c.interval
	}
	return DefaultRetryInterval
}
