package driver

import (
	"strings"
	"sync"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/internal/testenv"
)

// tapOnly is the mock backend taking TAP networks only, as Firecracker
// and cloud-hypervisor do.
type tapOnly struct{ *mock.Backend }

func (tapOnly) VLANKinds() []string { return []string{backend.TAP} }

func TestNetworkKind(t *testing.T) {
	for _, tt := range []struct {
		name    string
		b       backend.Backend
		network string
		want    string // kind, or the error's text
	}{
		{"vde backend by default", mock.New(), "", backend.VDE},
		{"tap backend by default", tapOnly{mock.New()}, "", backend.TAP},
		{"vde asked of a tap backend", tapOnly{mock.New()}, backend.VDE, "vde networks are unsupported by mock: its VLAN NICs take tap (--net tap)"},
		{"tap asked of a vde backend", mock.New(), backend.TAP, "tap networks are unsupported by mock: its VLAN NICs take vde (--net vde)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			privateTmp(t)
			d, err := New(t.Context(), Config{Network: tt.network, OutputDir: t.TempDir()}, WithBackend(tt.b), WithLogger(newRecLogger()))
			if err != nil {
				if !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("New = %v, want %q", err, tt.want)
				}
				return
			}
			defer d.Close()
			if d.netKind != tt.want {
				t.Errorf("kind %q, want %q", d.netKind, tt.want)
			}
		})
	}
}

// TestTAPNetworks runs a driver on TAP networks: bridges in a namespace
// of the run's own, every machine's spec pointing at them, a forked
// subtest's clones on bridges of their own, and nothing left after Close.
func TestTAPNetworks(t *testing.T) {
	testenv.NeedTAP(t)
	privateTmp(t)
	var (
		mu   sync.Mutex
		taps = map[string]backend.TAPNetworks{}
	)
	b := mock.New(mock.WithGuest(guestAnswers), mock.WithStartHook(func(spec backend.Spec) error {
		mu.Lock()
		defer mu.Unlock()
		taps[spec.Name] = spec.TAPs
		return nil
	}))
	d, err := New(t.Context(), Config{
		Machines:  []MachineConfig{{Name: "a", StartScript: "/x/run-a-vm"}, {Name: "b", StartScript: "/x/run-b-vm"}},
		VLANs:     []int{2, 1},
		Network:   backend.TAP,
		OutputDir: t.TempDir(),
	}, WithBackend(tapOnly{b}), WithLogger(newRecLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vl := d.VLANs()
	if len(vl) != 2 || vl[0] != (VLAN{Nr: 1, Kind: backend.TAP, Bridge: "br1"}) || vl[1].Bridge != "br2" {
		t.Errorf("VLANs() = %+v", vl)
	}
	if len(d.Switches()) != 0 {
		t.Errorf("VDE switches on a TAP run: %v", d.Switches())
	}
	bridges := d.Bridges()
	if bridges == nil {
		t.Fatal("no bridges")
	}
	// A forked subtest's machines (fresh ones: nothing runs yet) get
	// bridges of their own.
	clones, release, err := d.ForkAll(t.Context(), newRecLogger())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clones {
		if _, err := c.Succeed(t.Context(), "true"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	own := taps[clones["a"].Name()]
	if own == nil || own == backend.TAPNetworks(bridges) || taps[clones["b"].Name()] != own {
		t.Errorf("clones' TAP networks = %v / %v, want one set of their own (the run's: %v)", own, taps[clones["b"].Name()], bridges)
	}
	mu.Unlock()
	forkInode := own.(interface{ Inode() uint64 }).Inode()
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if h := testenv.NetNSHolders(forkInode); len(h) != 0 {
		t.Errorf("the forked subtest's namespace is still held after release: %v", h)
	}

	if err := d.StartAll(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, m := range d.Machines() {
		if _, err := m.Succeed(t.Context(), "true"); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	if taps["a"] != bridges || taps["b"] != bridges {
		t.Errorf("machines' TAP networks = %v, want the run's %v", taps, bridges)
	}
	mu.Unlock()

	inode := bridges.Inode()
	if len(testenv.NetNSHolders(inode)) == 0 {
		t.Fatal("the run's namespace is not held while it runs: the check cannot see it")
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if h := testenv.NetNSHolders(inode); len(h) != 0 {
		t.Errorf("the run's namespace is still held after Close: %v", h)
	}
}
