// Package vmtest gives a Go test a ready machine in one call, the way
// testcontainers-go gives it a container:
//
//	func TestWeb(t *testing.T) {
//		m := vmtest.Minimal(t)
//		out, err := m.Succeed(t.Context(), "uname -r")
//		...
//	}
//
// It builds one of the project's test guests (or finds it in the image
// cache: a rebuild of an unchanged guest takes well under a second),
// starts it on QEMU under the test's context, logs through t.Logf and
// closes it when the test ends. Network starts several machines on
// virtual LANs of their own.
//
// Without QEMU or the tools an image build needs, the test is skipped
// with the reason; with VMDRIVER_REQUIRE_VM=1 or CI=true it fails instead,
// so CI never passes by skipping. Building the systemd and desktop
// guests needs root (debootstrap); the minimal one does not.
package vmtest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/vlan"
)

// Option configures Start, Minimal, Systemd, Desktop and Network.
type Option func(*config) error

type config struct {
	name     string
	backend  backend.Backend
	cacheDir string
	outbound bool
	noVGA    bool
	packages []string
	opts     []machine.Option
}

// WithName names the machine (default: the guest kind, "minimal",
// "systemd" or "desktop"); it is also the guest's host name. Network
// ignores it.
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" || strings.ContainsAny(name, ":,/ ") {
			return fmt.Errorf("vmtest: WithName(%q): want a host name (letters, digits, -)", name)
		}
		c.name = name
		return nil
	}
}

// WithMachineOptions passes options on to every machine.New (timeouts,
// warm starts, a logger of your own, ...).
func WithMachineOptions(opts ...machine.Option) Option {
	return func(c *config) error { c.opts = append(c.opts, opts...); return nil }
}

// WithBackend runs the machines on b instead of QEMU.
func WithBackend(b backend.Backend) Option {
	return func(c *config) error {
		if b == nil {
			return errors.New("vmtest: WithBackend needs a backend")
		}
		c.backend = b
		return nil
	}
}

// WithCacheDir keeps guest images in dir instead of the user cache
// (images.DefaultCacheDir).
func WithCacheDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return errors.New("vmtest: WithCacheDir needs a directory")
		}
		c.cacheDir = dir
		return nil
	}
}

// WithNetOutbound builds guests that can reach the host's networks through
// QEMU's NAT (image build --net-outbound). By default guests reach nothing
// beyond their own VLANs and forwarded ports.
func WithNetOutbound() Option { return func(c *config) error { c.outbound = true; return nil } }

// WithNoVGA gives the machines no display device (image build
// --no-vga): the desktop guest then runs its X session on Xvfb.
func WithNoVGA() Option { return func(c *config) error { c.noVGA = true; return nil } }

// WithPackages installs extra Debian packages, with their dependencies,
// into the systemd and desktop guests (image build --packages).
func WithPackages(pkgs ...string) Option {
	return func(c *config) error {
		if len(pkgs) == 0 {
			return errors.New("vmtest: WithPackages needs at least one package")
		}
		c.packages = append(c.packages, pkgs...)
		return nil
	}
}

// Minimal starts the minimal guest (busybox init, seconds to a shell).
func Minimal(t testing.TB, opts ...Option) *machine.Machine {
	t.Helper()
	return Start(t, images.Minimal, opts...)
}

// Systemd starts the systemd guest (Debian with systemd as PID 1).
func Systemd(t testing.TB, opts ...Option) *machine.Machine {
	t.Helper()
	return Start(t, images.Systemd, opts...)
}

// Desktop starts the desktop guest: the systemd guest with alice logged
// into X display :0 (xterm, xdotool, wmctrl; Xorg, or Xvfb WithNoVGA).
func Desktop(t testing.TB, opts ...Option) *machine.Machine {
	t.Helper()
	return Start(t, images.Desktop, opts...)
}

// Start starts one machine of the given guest kind.
func Start(t testing.TB, kind images.Kind, opts ...Option) *machine.Machine {
	t.Helper()
	c := configure(t, opts)
	name := c.name
	if name == "" {
		name = string(kind)
	}
	scripts := build(t, c, kind, []string{name})
	return machine.StartT(t, c.backend, name, append([]machine.Option{machine.WithStartScript(scripts[0])}, c.opts...)...)
}

// Network starts machines of one guest kind on virtual LANs: each node is
// "NAME:VLAN[,VLAN...]" (or "NAME" for none), as `vmdriver image build`
// takes it. NIC i of a node on VLAN v is ethI with 192.168.v.N/24, N
// numbering the nodes by sorted name. It starts a switch per VLAN, then
// the machines, and returns them by name; everything stops when the test
// ends.
func Network(t testing.TB, kind images.Kind, nodes []string, opts ...Option) map[string]*machine.Machine {
	t.Helper()
	c := configure(t, opts)
	names, vlans, err := parseNodes(nodes)
	if err != nil {
		t.Fatal(err)
	}
	scripts := build(t, c, kind, nodes)
	var env []string
	dir := t.TempDir()
	for _, nr := range vlans {
		sw, err := vlan.Start(t.Context(), nr, dir)
		if err != nil {
			if errors.Is(err, hosttools.ErrMissing) {
				need(t, err)
			}
			t.Fatalf("vmtest: starting VLAN %d: %v", nr, err)
		}
		t.Cleanup(func() {
			if err := sw.Close(); err != nil {
				t.Errorf("vmtest: stopping VLAN %d: %v", nr, err)
			}
		})
		env = append(env, sw.Env())
	}
	// Start returns once the hypervisor runs; the guests boot side by
	// side, and the first command to each waits for its shell.
	ms := make(map[string]*machine.Machine, len(names))
	for i, name := range names {
		ms[name] = machine.StartT(t, c.backend, name, append([]machine.Option{machine.WithStartScript(scripts[i]), machine.WithEnv(env...)}, c.opts...)...)
	}
	return ms
}

func configure(t testing.TB, opts []Option) *config {
	t.Helper()
	c := &config{}
	for _, o := range opts {
		if err := o(c); err != nil {
			t.Fatal(err)
		}
	}
	if c.backend == nil {
		testenv.NeedQEMU(t)
		c.backend = qemu.New()
	}
	return c
}

// buildMu serialises image builds within the process: parallel tests
// asking for the same guest wait for one build instead of racing.
var buildMu sync.Mutex

// build writes the start scripts of nodes into a directory of the test's.
func build(t testing.TB, c *config, kind images.Kind, nodes []string) []string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	scripts, err := images.Build(t.Context(), images.Options{
		Kind:        kind,
		OutDir:      t.TempDir(),
		Names:       nodes,
		CacheDir:    c.cacheDir,
		NetOutbound: c.outbound,
		NoVGA:       c.noVGA,
		Packages:    c.packages,
		Logf:        func(format string, args ...any) { t.Logf("vmtest: "+format, args...) },
	})
	switch {
	case errors.Is(err, hosttools.ErrMissing), errors.Is(err, images.ErrNeedRoot):
		need(t, err)
	case err != nil:
		t.Fatalf("vmtest: building the %s guest: %v", kind, err)
	}
	return scripts
}

// need skips the test for a missing prerequisite, or fails it where
// everything must be installed (VMDRIVER_REQUIRE_VM=1, CI=true).
func need(t testing.TB, err error) {
	t.Helper()
	if testenv.Required() {
		t.Fatalf("vmtest: %v", err)
	}
	t.Skipf("vmtest: %v", err)
}

// parseNodes splits "NAME:1,2" nodes into names and the sorted VLANs.
func parseNodes(nodes []string) (names []string, vlans []int, err error) {
	if len(nodes) == 0 {
		return nil, nil, errors.New("vmtest: Network needs at least one node")
	}
	for _, n := range nodes {
		name, list, _ := strings.Cut(n, ":")
		if name == "" || slices.Contains(names, name) {
			return nil, nil, fmt.Errorf("vmtest: node %q: want a unique NAME[:VLAN,...]", n)
		}
		names = append(names, name)
		for _, v := range strings.Split(list, ",") {
			if v == "" {
				continue
			}
			nr, err := strconv.Atoi(v)
			if err != nil || nr < 1 {
				return nil, nil, fmt.Errorf("vmtest: node %q: VLAN %q is not a positive number", n, v)
			}
			if !slices.Contains(vlans, nr) {
				vlans = append(vlans, nr)
			}
		}
	}
	slices.Sort(vlans)
	return names, vlans, nil
}
