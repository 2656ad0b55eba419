package script_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/script"
	"github.com/vmdriver/vmdriver/vlan"
)

func TestVLANGlobals(t *testing.T) {
	testenv.NeedCommand(t, vlan.Binary)
	tmp, err := os.MkdirTemp("", "vmd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("XDG_RUNTIME_DIR", tmp) // short socket paths
	cfg := driver.Config{
		Machines:  []driver.MachineConfig{{Name: "server", StartScript: "/nonexistent/run-server-vm"}},
		VLANs:     []int{5, 1},
		OutputDir: t.TempDir(),
	}
	d, err := driver.New(t.Context(), cfg, driver.WithBackend(mock.New()), driver.WithLogger(&recLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	sw := d.VLANs()
	if len(sw) != 2 {
		t.Fatalf("driver has %d VLANs", len(sw))
	}
	src := lines(
		`assert [v.nr for v in vlans] == [1, 5]`,
		`assert vlans[0] == vlan1 and vlans[1] == vlan5 and vlan1 != vlan5`,
		fmt.Sprintf(`assert vlan1.socket_dir == %q, vlan1.socket_dir`, sw[0].SocketDir),
		fmt.Sprintf(`assert vlan5.socket_dir == %q`, sw[1].SocketDir),
		fmt.Sprintf(`assert vlan1.pid == %d and vlan5.pid == %d`, sw[0].PID, sw[1].PID),
		`assert f"{vlan5.nr}:{vlan5.socket_dir}" == "5:" + vlan5.socket_dir`,
		`assert str(vlan1) == "<VLan 1>"`,
		`assert len({vlan1: 1, vlan5: 2}) == 2`,
		`assert server.name == "server"`,
	)
	var stdout bytes.Buffer
	if err := script.Run(testCtx(t), script.Options{Driver: d, Filename: "test.py", Source: []byte(src), Stdout: &stdout}); err != nil {
		t.Fatalf("script failed: %v\n%s", err, traceback(err))
	}

	err = script.Run(testCtx(t), script.Options{Driver: d, Filename: "test.py", Source: []byte("vlan1.socketdir\n"), Stdout: &stdout})
	if err == nil || !strings.Contains(err.Error(), "did you mean socket_dir") {
		t.Errorf("misspelt attribute: %v", err)
	}
	err = script.Run(testCtx(t), script.Options{Driver: d, Filename: "test.py", Source: []byte("vlan2.nr\n"), Stdout: &stdout})
	if err == nil || !strings.Contains(err.Error(), "vlan2") {
		t.Errorf("an unconfigured VLAN resolved: %v", err)
	}

	g := script.Globals(d, script.Options{})
	for _, name := range []string{"vlan1", "vlan5", "vlans"} {
		if _, ok := g[name]; !ok {
			t.Errorf("Globals lacks %s", name)
		}
	}
}

func TestCheckVLANs(t *testing.T) {
	src := []byte("vlan1.nr\nvlan7.socket_dir\nserver.succeed('true')\n")
	if err := script.CheckWith("t.py", src, script.CheckOptions{Machines: []string{"server"}, VLANs: []int{1, 7}}); err != nil {
		t.Errorf("CheckWith with both VLANs: %v", err)
	}
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"missing VLAN", script.CheckWith("t.py", src, script.CheckOptions{Machines: []string{"server"}, VLANs: []int{1}}), "vlan7"},
		{"Check knows no VLANs", script.Check("t.py", src, []string{"server"}), "vlan1"},
	} {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to name %s", tt.name, tt.err, tt.want)
		}
	}
	// `vlans` exists (empty) in every run.
	if err := script.Check("t.py", []byte("assert vlans == []\n"), nil); err != nil {
		t.Errorf("vlans unknown to Check: %v", err)
	}
}
