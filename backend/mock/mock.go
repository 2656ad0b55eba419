// Package mock is an in-process fake hypervisor for unit tests.
//
// It fakes what a hypervisor does, not what a guest's shell does: the
// lifecycle (start, boot delay, the banner over the real backdoor
// protocol through an in-memory pipe, power-off, crash, kill, reboot,
// exit status), control-plane events, monitor and raw control commands,
// the serial console, screenshots, keys, network links, port forwards
// and snapshots (Instance.Snapshot, Backend.Restore: "boot once, fork
// many"). Code above the backend (Machine, the driver, scripts) runs the
// code path it runs on QEMU.
//
// The guest (*Guest, handed to WithGuest or returned by Backend.Guest)
// has no shell: tests script its answer to each command, keyed by the
// command's intent through package guestcmd's builders. What commands do
// in a real shell is tested on real guests (package integration).
//
// Nothing here touches the host beyond the snapshot directories and the
// paths given to Screenshot; all goroutines end when an instance exits
// or is closed.
package mock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// DefaultBootTimeout is what BootTimeout reports unless WithBootTimeout
// says otherwise.
const DefaultBootTimeout = 10 * time.Second

// firstPID is the first fake process id handed out. It is above Linux's
// largest pid_max, so it can never name a real process.
const firstPID = 5_000_000

// Option configures a Backend.
type Option func(*Backend)

// WithGuest calls fn with every new guest, before it boots or is
// restored, so a test can script it (answers, links, hardware). fn runs
// inside Start and Restore.
func WithGuest(fn func(name string, g *Guest)) Option {
	return func(b *Backend) { b.onGuest = append(b.onGuest, fn) }
}

// WithBootDelay sets every guest's delay between the start of a boot
// and its shell's banner.
func WithBootDelay(d time.Duration) Option { return func(b *Backend) { b.bootDelay = d } }

// WithBootTimeout sets what BootTimeout reports.
func WithBootTimeout(d time.Duration) Option { return func(b *Backend) { b.bootTimeout = d } }

// WithStartHook calls fn with every Spec at Start and Restore, before
// anything is created; an error from fn fails that Start or Restore (to
// test start failures, or to inspect the Spec a caller built).
func WithStartHook(fn func(spec backend.Spec) error) Option {
	return func(b *Backend) { b.startHook = fn }
}

// WithBareInstances makes Start return instances that implement only
// backend.Instance and none of the optional capability interfaces, to
// test how callers report backend.ErrUnsupported.
func WithBareInstances() Option { return func(b *Backend) { b.bare = true } }

// Backend is the mock backend. It is safe for concurrent use.
type Backend struct {
	onGuest     []func(name string, g *Guest)
	bootDelay   time.Duration
	bootTimeout time.Duration
	startHook   func(spec backend.Spec) error
	bare        bool

	mu       sync.Mutex
	nextPID  int
	guests   map[string]*Guest
	starts   map[string]int
	restores map[string]int
}

var _ backend.Backend = (*Backend)(nil)

// New returns a mock backend.
func New(opts ...Option) *Backend {
	b := &Backend{
		bootTimeout: DefaultBootTimeout,
		nextPID:     firstPID,
		guests:      map[string]*Guest{},
		starts:      map[string]int{},
		restores:    map[string]int{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Name returns "mock".
func (b *Backend) Name() string { return "mock" }

// Hypervisor returns "mock".
func (b *Backend) Hypervisor() string { return "mock" }

// WarmKey makes mock machines warm-startable: the mock has no binary or
// arguments of its own, so its part of the key is constant.
func (b *Backend) WarmKey(spec backend.Spec) (string, error) { return "mock-warm-1\n", nil }

// BootTimeout returns DefaultBootTimeout or the WithBootTimeout value.
func (b *Backend) BootTimeout() time.Duration { return b.bootTimeout }

// Guest returns the guest of the latest Start or Restore of the named
// machine, or nil if it was never started.
func (b *Backend) Guest(name string) *Guest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.guests[name]
}

// Starts reports how many times the named machine was started.
func (b *Backend) Starts(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.starts[name]
}

// Start creates a new guest for spec and begins booting it. It returns at
// once; Instance.Shell waits for the banner.
func (b *Backend) Start(ctx context.Context, spec backend.Spec) (backend.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mock: start %s: %w", spec.Name, err)
	}
	if err := b.hook(spec); err != nil {
		return nil, fmt.Errorf("mock: start %s: %w", spec.Name, err)
	}
	return b.launch(spec, b.newGuest(spec.Name), false), nil
}

// hook runs the WithStartHook function.
func (b *Backend) hook(spec backend.Spec) error {
	if b.startHook == nil {
		return nil
	}
	return b.startHook(spec)
}

// newGuest makes a guest and lets the WithGuest callbacks script it.
func (b *Backend) newGuest(name string) *Guest {
	g := newGuest(name, b.bootDelay)
	for _, fn := range b.onGuest {
		fn(name, g)
	}
	return g
}

// launch starts an instance of g with a new pid and counts it as a start
// or (restored) a restore.
func (b *Backend) launch(spec backend.Spec, g *Guest, restored bool) backend.Instance {
	b.mu.Lock()
	b.nextPID++
	pid := b.nextPID
	b.guests[spec.Name] = g
	if restored {
		b.restores[spec.Name]++
	} else {
		b.starts[spec.Name]++
	}
	b.mu.Unlock()
	inst := newInstance(spec, g, pid, restored)
	if b.bare {
		return bareInstance{inst}
	}
	return inst
}

// bareInstance hides every optional capability of an Instance.
type bareInstance struct{ backend.Instance }
