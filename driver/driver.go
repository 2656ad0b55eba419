// Package driver runs one test: its machines, global timeout, subtests,
// polling conditions, output directory and teardown. It is what the
// NixOS test driver's Driver class is, for the script runtime and for Go
// programs that drive several machines.
//
// A driver runs its machines on the backend it is given (WithBackend);
// it knows no hypervisor itself. Go programs pass one explicitly:
//
//	d, err := driver.New(ctx, cfg, driver.WithBackend(qemu.New()))
//
// (package github.com/vmdriver/vmdriver/backend/qemu). The vmdriver
// command picks one with its --backend flag.
package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/vlan"
)

// ErrGlobalTimeout is returned when the run outlived its global timeout.
var ErrGlobalTimeout = errors.New("global timeout reached")

// ErrNoBackend is returned by New when no backend was given.
var ErrNoBackend = errors.New("driver: no backend to run the machines on: pass one with driver.WithBackend, such as driver.WithBackend(qemu.New()) from github.com/vmdriver/vmdriver/backend/qemu")

// Logger is what the driver logs through: a machine.Logger that also
// knows subtests (report.Logger implements it).
type Logger interface {
	machine.Logger
	// Subtest opens a subtest block; end records its outcome.
	Subtest(name string) (end func(err error))
}

// Option configures a Driver. An option given a value it cannot use
// makes New fail, saying which.
type Option func(*Driver) error

// WithBackend sets the backend the machines run on. New requires it.
func WithBackend(b backend.Backend) Option {
	return func(d *Driver) error {
		if b == nil {
			return ErrNoBackend
		}
		d.backend = b
		return nil
	}
}

// WithLogger sets where the run logs (default: plain text on stderr).
func WithLogger(l Logger) Option {
	return func(d *Driver) error {
		if l == nil {
			return errors.New("driver: WithLogger needs a Logger")
		}
		d.log = l
		return nil
	}
}

// WithMachineOptions adds options to every machine the driver creates.
func WithMachineOptions(opts ...machine.Option) Option {
	return func(d *Driver) error { d.machineOpts = append(d.machineOpts, opts...); return nil }
}

// CreateOption tunes CreateMachine.
type CreateOption func(*createConfig)

type createConfig struct {
	name      string
	keepState bool
}

// Named names the created machine (default: derived from the start
// script's file name, as MachineName gives it).
func Named(name string) CreateOption { return func(c *createConfig) { c.name = name } }

// KeepState keeps the created machine's state (its disk) across runs, as
// -K does for the configured ones.
func KeepState() CreateOption { return func(c *createConfig) { c.keepState = true } }

// Driver is one test run.
type Driver struct {
	cfg         Config
	backend     backend.Backend
	log         Logger
	machineOpts []machine.Option

	runDir    string   // private 0700 directory for this run
	runLock   *os.File // held for the run (rundir.go)
	stateRoot string   // parent of vm-state-NAME directories of this run
	keptRoot  string   // parent of those kept across runs
	sharedDir string
	vlans     vlanSet // started in New, stopped in Close
	netKind   string  // backend.VDE or backend.TAP: the kind of every VLAN of the run
	nodes     *machine.NodeNumbers
	suite     suiteState // ForkAll's snapshots

	mu         sync.Mutex
	machines   []*machine.Machine // from the configuration, sorted by name
	extra      []*machine.Machine // create_machine
	conditions []*PollingCondition
	checking   bool
	closed     bool
}

// New prepares a run: a private run directory, one VDE switch per
// configured VLAN (running when New returns), and one machine per
// configured start script (none is started yet). It needs a backend
// (WithBackend): without one it returns ErrNoBackend. On error nothing
// is left running.
//
// ctx bounds the set-up (starting the switches), not the run.
func New(ctx context.Context, cfg Config, opts ...Option) (*Driver, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.GlobalTimeout <= 0 {
		cfg.GlobalTimeout = DefaultGlobalTimeout
	}
	if cfg.OutputDir == "" {
		cfg.OutputDir = "."
	}
	d := &Driver{cfg: cfg}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(d); err != nil {
			return nil, err
		}
	}
	if d.backend == nil {
		return nil, ErrNoBackend
	}
	var err error
	if d.netKind, err = d.networkKind(); err != nil {
		return nil, err
	}
	if d.log == nil {
		d.log = plainLogger{machine.NewTextLogger(os.Stderr)}
	}
	base := tmpBase()
	// What killed runs left behind goes first.
	if removed, err := sweepRunDirs(base); len(removed) > 0 || err != nil {
		for _, dir := range removed {
			d.log.Info("", "removed "+dir+", left by a run that was killed")
		}
		if err != nil {
			d.log.Warn("", fmt.Sprintf("cleaning up after killed runs: %v", err))
		}
	}
	d.runDir, d.runLock, err = makeRunDir(base)
	if err != nil {
		return nil, err
	}
	d.stateRoot = d.runDir
	// A stable place for kept state, so the next run finds the disks
	// again (-K for every machine, or create_machine's keep option).
	d.keptRoot = filepath.Join(base, fmt.Sprintf("vmdriver-state-%d", os.Getuid()))
	d.sharedDir = filepath.Join(d.runDir, "shared-xchg")
	if err := os.Mkdir(d.sharedDir, 0o700); err != nil {
		d.Close()
		return nil, err
	}
	// The switches must listen before any machine starts: QEMU connects
	// to them as it starts and fails if they are not there.
	sctx, cancel := context.WithTimeout(ctx, vlan.StartTimeout)
	err = d.startVLANs(sctx)
	cancel()
	if err != nil {
		d.Close()
		return nil, err
	}
	machines := append([]MachineConfig(nil), cfg.Machines...)
	// The configured machines are nodes 1..N (the NixOS numbering);
	// clones take the numbers after them.
	d.nodes = machine.NewNodeNumbers()
	for k := range machines {
		d.nodes.Reserve(k + 1)
	}
	sort.Slice(machines, func(i, j int) bool { return machines[i].Name < machines[j].Name })
	if !cfg.KeepState && len(machines) > 0 {
		d.log.Info("", "machine state will be reset; to keep it, pass --keep-machine-state")
	}
	for _, mc := range machines {
		m, err := d.newMachine(mc.Name, mc.StartScript, cfg.KeepState)
		if err != nil {
			d.Close()
			return nil, err
		}
		m.SetBeforeCommand(d.checkConditions)
		d.machines = append(d.machines, m)
	}
	return d, nil
}

// tmpBase is where run directories go: $XDG_RUNTIME_DIR when set (like
// the NixOS driver), else the temp dir.
func tmpBase() string {
	if dir := os.Getenv("XDG_RUNTIME_DIR"); dir != "" {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
	}
	return os.TempDir()
}

func (d *Driver) newMachine(name, startScript string, keep bool) (*machine.Machine, error) {
	// Start scripts run with the state directory as their working
	// directory, so a relative path must be resolved now.
	if abs, err := filepath.Abs(startScript); err == nil {
		startScript = abs
	}
	root := d.stateRoot
	if keep {
		root = d.keptRoot
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("machine %s: creating the state directory: %w", name, err)
		}
	}
	state := filepath.Join(root, "vm-state-"+name)
	if !keep {
		if err := os.RemoveAll(state); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("machine %s: creating its state directory: %w", name, err)
	}
	opts := []machine.Option{
		machine.WithStartScript(startScript),
		machine.WithStateDir(state),
		machine.WithSharedDir(d.sharedDir),
		machine.WithOutputDir(d.cfg.OutputDir),
		machine.WithLogger(d.log),
		machine.WithNodeNumbers(d.nodes),
	}
	opts = append(opts, d.vlans.nets.machineOptions()...)
	if keep {
		opts = append(opts, machine.WithKeepState())
	}
	if d.cfg.Warm {
		dir := d.cfg.WarmDir
		if dir == "" {
			cache, err := images.DefaultCacheDir()
			if err != nil {
				return nil, fmt.Errorf("machine %s: warm start: %w", name, err)
			}
			dir = filepath.Join(cache, images.WarmSection)
		}
		opts = append(opts, machine.WithWarm(dir))
		if d.cfg.WarmReadOnly {
			opts = append(opts, machine.WithWarmReadOnly())
		}
	}
	opts = append(opts, d.machineOpts...)
	return machine.New(d.backend, name, opts...)
}

// Config returns the run's configuration.
func (d *Driver) Config() Config { return d.cfg }

// OutputDir is where screenshots, copied files and reports go.
func (d *Driver) OutputDir() string { return d.cfg.OutputDir }

// SharedDir is the host directory every machine sees at /tmp/shared.
func (d *Driver) SharedDir() string { return d.sharedDir }

// RunDir is the run's private directory (mode 0700), removed by Close:
// the place for what a script engine needs during the run.
func (d *Driver) RunDir() string { return d.runDir }

// Logger returns the run's logger.
func (d *Driver) Logger() Logger { return d.log }

// Machines returns the configured machines, sorted by name.
func (d *Driver) Machines() []*machine.Machine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*machine.Machine(nil), d.machines...)
}

// Machine returns the configured machine with this name, or nil.
func (d *Driver) Machine(name string) *machine.Machine {
	for _, m := range d.Machines() {
		if m.Name() == name {
			return m
		}
	}
	return nil
}

// StartAll starts every configured machine in parallel. Like the NixOS
// driver it does not wait for them to boot; the first command to each
// does. Errors are collected for all machines.
func (d *Driver) StartAll(ctx context.Context) error {
	return StartMachines(ctx, d.log, d.Machines())
}

// StartMachines starts ms in parallel in one log block, as StartAll does
// for the configured machines (a forked subtest starts its clones so).
func StartMachines(ctx context.Context, log Logger, ms []*machine.Machine) error {
	end := log.Nested("", "start all VMs")
	var g errgroup.Group
	errs := make([]error, len(ms))
	for i, m := range ms {
		g.Go(func() error {
			errs[i] = m.Start(ctx)
			return nil
		})
	}
	g.Wait()
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("failed to start the following machines: %w", err)
	}
	end(err)
	return err
}

// JoinAll waits for every configured machine to power off.
func (d *Driver) JoinAll(ctx context.Context) error { return JoinMachines(ctx, d.Machines()) }

// JoinMachines waits for every machine of ms to power off.
func JoinMachines(ctx context.Context, ms []*machine.Machine) error {
	var errs []error
	for _, m := range ms {
		errs = append(errs, m.WaitForShutdown(ctx))
	}
	return errors.Join(errs...)
}

// CreateMachine makes an extra machine from a start script, like the
// NixOS driver's create_machine: not part of Machines, no polling
// conditions, released with the run.
func (d *Driver) CreateMachine(startScript string, opts ...CreateOption) (*machine.Machine, error) {
	var c createConfig
	for _, o := range opts {
		o(&c)
	}
	name := c.name
	if name == "" {
		name = MachineName(startScript)
	}
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errors.New("the driver is closed")
	}
	m, err := d.newMachine(name, startScript, c.keepState)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.extra = append(d.extra, m)
	d.mu.Unlock()
	return m, nil
}

// Run runs fn under the global timeout. When the timeout passes, it logs
// so, releases every machine (which ends whatever fn was waiting for) and
// returns an error wrapping ErrGlobalTimeout once fn returned.
func (d *Driver) Run(ctx context.Context, fn func(ctx context.Context) error) error {
	rctx, cancel := context.WithTimeoutCause(ctx, d.cfg.GlobalTimeout, ErrGlobalTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn(rctx) }()
	select {
	case err := <-done:
		if errors.Is(context.Cause(rctx), ErrGlobalTimeout) {
			return fmt.Errorf("%w after %s: %w", ErrGlobalTimeout, d.cfg.GlobalTimeout, err)
		}
		return err
	case <-rctx.Done():
		if !errors.Is(context.Cause(rctx), ErrGlobalTimeout) {
			return <-done
		}
	}
	d.log.Warn("", fmt.Sprintf("timeout reached; test terminating... (global timeout %s)", d.cfg.GlobalTimeout))
	d.releaseMachines()
	select {
	case err := <-done:
		return fmt.Errorf("%w after %s: %w", ErrGlobalTimeout, d.cfg.GlobalTimeout, err)
	case <-time.After(30 * time.Second):
		// fn ignores its context (a script stuck in pure computation the
		// runtime failed to cancel); do not let it hold the run hostage.
		return fmt.Errorf("%w after %s (the test did not stop within 30 s of it)", ErrGlobalTimeout, d.cfg.GlobalTimeout)
	}
}

func (d *Driver) allMachines() []*machine.Machine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(append([]*machine.Machine(nil), d.machines...), d.extra...)
}

func (d *Driver) releaseMachines() {
	var wg sync.WaitGroup
	for _, m := range d.allMachines() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.Close()
		}()
	}
	wg.Wait()
}

// Close releases everything the run holds: machines (their hypervisors
// end), then the VLAN switches, then the run directory (state is kept
// only with KeepState). It is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.releaseMachines()
	err := d.stopVLANs()
	if d.runDir != "" {
		err = errors.Join(err, os.RemoveAll(d.runDir))
	}
	if d.runLock != nil {
		d.runLock.Close()
	}
	return err
}

// plainLogger adapts a machine.Logger for Driver's default.
type plainLogger struct{ machine.Logger }

func (l plainLogger) Subtest(name string) func(error) { return l.Nested("", "subtest: "+name) }
