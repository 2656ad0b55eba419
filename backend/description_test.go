package backend_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/backend"
)

func TestDescriptionPath(t *testing.T) {
	if got := backend.DescriptionPath("/vms/run-web-1-vm"); got != "/vms/web-1.machine.json" {
		t.Errorf("DescriptionPath = %s", got)
	}
}

func TestLoadDescription(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("a.machine.json", `{"name": "a", "kernel": "vmlinux", "cmdline": "quiet", "memory_mib": 512, "cpus": 1,
		"disks": [{"path": "/img/root.img", "format": "raw"}], "nics": [{"vlan": 0, "mac": "52:54:00:12:34:56"}]}`)
	d, err := backend.LoadDescription(good)
	if err != nil {
		t.Fatal(err)
	}
	if d.Path(d.Kernel) != filepath.Join(dir, "vmlinux") || d.Path(d.Disks[0].Path) != "/img/root.img" {
		t.Errorf("paths: %s, %s", d.Path(d.Kernel), d.Path(d.Disks[0].Path))
	}
	for name, tt := range map[string]struct{ text, want string }{
		"unknown field": {`{"name": "a", "kernel": "k", "memory_mib": 512, "cpus": 1, "ram": 5}`, `unknown field "ram"`},
		"no kernel":     {`{"name": "a", "memory_mib": 512, "cpus": 1}`, "no kernel"},
		"tiny memory":   {`{"name": "a", "kernel": "k", "memory_mib": 8, "cpus": 1}`, "memory_mib 8"},
		"bad disk":      {`{"name": "a", "kernel": "k", "memory_mib": 512, "cpus": 1, "disks": [{"path": "x", "format": "vmdk"}]}`, "disk 0"},
		"bad nic":       {`{"name": "a", "kernel": "k", "memory_mib": 512, "cpus": 1, "nics": [{"vlan": 300, "mac": "x"}]}`, "nic 0"},
	} {
		_, err := backend.LoadDescription(write(name+".json", tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %s", name, err, tt.want)
		}
	}
	_, err = backend.LoadDescription(filepath.Join(dir, "none.machine.json"))
	if !errors.Is(err, backend.ErrNoDescription) || !strings.Contains(err.Error(), "image build") {
		t.Errorf("missing description: %v", err)
	}
}
