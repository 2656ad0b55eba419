// Package mock is an in-process backend for unit tests.
//
// Every Start boots a scriptable fake guest (*Guest) that speaks the real
// backdoor protocol over an in-memory pipe; Instance.Snapshot saves a
// guest's whole state and Backend.Restore starts new guests from it
// ("boot once, fork many"), so code above the backend
// (Machine, the driver, scripts) runs exactly the code path it runs on
// QEMU. The guest has a fake systemd (also per user), a fake file system
// whose /tmp/shared is the host's Spec.SharedDir, fake TCP ports and unix
// sockets, a serial console, a monitor, control-plane events, a screen,
// a keyboard, network links and port forwards. Tests script it through the *Guest handed to WithGuest or
// returned by Backend.Guest.
//
// Nothing here touches the host beyond Spec.SharedDir and the paths given
// to Screenshot; all goroutines end when an instance exits or is closed.
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

// WithGuest calls fn with every new guest, before it boots, so a test can
// script it (units, files, handlers, boot delay). fn runs inside Start.
func WithGuest(fn func(name string, g *Guest)) Option {
	return func(b *Backend) { b.onGuest = append(b.onGuest, fn) }
}

// WithBootDelay sets every guest's delay between Start and the shell's
// ready banner (Guest.SetBootDelay overrides it per guest).
func WithBootDelay(d time.Duration) Option {
	return func(b *Backend) { b.bootDelay = d }
}

// WithBootTimeout sets what BootTimeout reports.
func WithBootTimeout(d time.Duration) Option {
	return func(b *Backend) { b.bootTimeout = d }
}

// WithStartHook calls fn with every Spec at Start and Restore, before
// anything is created; an error from fn fails that Start or Restore (to
// test start failures, or to inspect the Spec a caller built).
func WithStartHook(fn func(spec backend.Spec) error) Option {
	return func(b *Backend) { b.startHook = fn }
}

// WithBareInstances makes Start return instances that implement only
// backend.Instance and none of the optional capability interfaces, to
// test how callers report backend.ErrUnsupported.
func WithBareInstances() Option {
	return func(b *Backend) { b.bare = true }
}

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
	if b.startHook != nil {
		if err := b.startHook(spec); err != nil {
			return nil, fmt.Errorf("mock: start %s: %w", spec.Name, err)
		}
	}
	b.mu.Lock()
	b.nextPID++
	pid := b.nextPID
	b.mu.Unlock()

	g := newGuest(spec.Name, b.bootDelay)
	for _, fn := range b.onGuest {
		fn(spec.Name, g)
	}
	b.mu.Lock()
	b.guests[spec.Name] = g
	b.starts[spec.Name]++
	b.mu.Unlock()

	inst := newInstance(spec, g, pid, false)
	if b.bare {
		return bareInstance{inst}, nil
	}
	return inst, nil
}

// bareInstance hides every optional capability of an Instance.
type bareInstance struct{ backend.Instance }
