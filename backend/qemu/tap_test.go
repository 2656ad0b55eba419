package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/faketap"
)

func TestOpenTAPs(t *testing.T) {
	desc := func(nics ...backend.NICDescription) *backend.Description {
		return &backend.Description{Name: "m", Kernel: "k", MemoryMiB: 64, CPUs: 1, NICs: nics}
	}
	user := backend.NICDescription{VLAN: 0, MAC: "52:54:00:12:34:56"}
	v1 := backend.NICDescription{VLAN: 1, MAC: "52:54:00:12:01:01"}
	v2 := backend.NICDescription{VLAN: 2, MAC: "52:54:00:12:02:01"}
	const ours = "#!/bin/sh\n# reads QEMU_TAP_FD_1\n"
	for _, tt := range []struct {
		name    string
		script  string // "" for none
		desc    *backend.Description
		microvm bool
		first   int
		wantEnv string
		wantFDs string
		wantErr string
	}{
		{"script with two VLANs", ours, desc(user, v1, v2), false, 4, "[QEMU_TAP_FD_1=4 QEMU_TAP_FD_2=5]", "map[1:4 2:5]", ""},
		{"after a RAM file", ours, desc(user, v2), false, 5, "[QEMU_TAP_FD_2=5]", "map[1:5]", ""},
		{"microvm", "", desc(user, v1), true, 4, "[QEMU_TAP_FD_1=4]", "map[1:4]", ""},
		{"no VLAN NIC", ours, desc(user), false, 4, "[]", "map[]", ""},
		{"foreign script", "#!/bin/sh\nexec qemu -netdev vde,sock=$QEMU_VDE_SOCKET_1\n", desc(user, v1), false, 4, "", "",
			"cannot put its NICs on TAP devices (it does not read QEMU_TAP_FD_<n>; only scripts from `vmdriver image build` do): use VDE switches (--net vde)"},
		{"no description", ours, nil, false, 4, "", "", "TAP networks need the machine's description"},
		{"two NICs on a VLAN", ours, desc(v1, v1), false, 4, "", "", "two NICs on VLAN 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "run-m-vm")
			if tt.script != "" {
				if err := os.WriteFile(script, []byte(tt.script), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.desc != nil {
				data, _ := json.Marshal(tt.desc)
				if err := os.WriteFile(filepath.Join(dir, "k"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(backend.DescriptionPath(script), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			nets := &faketap.Networks{}
			spec := backend.Spec{Name: "m", StartScript: script, TAPs: nets}
			desc, err := machineDescription(spec, tt.microvm)
			var p tapPlan
			if err == nil {
				p, err = openTAPs(spec, desc, tt.microvm, tt.first)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("openTAPs = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.close()
			if got := fmt.Sprint(p.env); got != tt.wantEnv {
				t.Errorf("env %s, want %s", got, tt.wantEnv)
			}
			if got := fmt.Sprint(p.fds); got != tt.wantFDs {
				t.Errorf("fds %s, want %s", got, tt.wantFDs)
			}
			if len(p.files) != len(p.fds) {
				t.Errorf("%d files for %d NICs", len(p.files), len(p.fds))
			}
		})
	}
	// Without TAP networks nothing is opened.
	if d, err := machineDescription(backend.Spec{StartScript: "/nonexistent"}, false); d != nil || err != nil {
		t.Errorf("description without TAP networks = %v, %v; want none loaded", d, err)
	}
	if p, err := openTAPs(backend.Spec{StartScript: "/nonexistent"}, nil, false, 4); err != nil || len(p.files) != 0 {
		t.Errorf("openTAPs without TAP networks = %+v, %v", p, err)
	}
}
