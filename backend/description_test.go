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

func TestCmdlineWithNet(t *testing.T) {
	base := backend.Description{Name: "a", Cmdline: "console=ttyS0 vmdriver.net=fw_cfg quiet",
		Hosts: "127.0.0.1 localhost\n::1 localhost ip6-localhost\n192.168.1.1 a\n",
		Net:   "eth1 52:54:00:12:01:01 192.168.1.1/24\n"}
	for _, tt := range []struct {
		name    string
		edit    func(d *backend.Description)
		want    string
		wantErr string
	}{
		{"hosts and interfaces", nil,
			"console=ttyS0 vmdriver.net=cmdline vmdriver.hosts=127.0.0.1,localhost;::1,localhost,ip6-localhost;192.168.1.1,a vmdriver.nics=eth1,52:54:00:12:01:01,192.168.1.1/24 quiet", ""},
		{"hosts only", func(d *backend.Description) { d.Net = "" },
			"console=ttyS0 vmdriver.net=cmdline vmdriver.hosts=127.0.0.1,localhost;::1,localhost,ip6-localhost;192.168.1.1,a quiet", ""},
		{"no network", func(d *backend.Description) { d.Cmdline, d.Hosts, d.Net = "console=ttyS0 quiet", "", "" }, "console=ttyS0 quiet", ""},
		{"a character the line cannot carry", func(d *backend.Description) { d.Hosts += "10.0.0.1 x;y\n" }, "", "cannot carry"},
		{"too long", func(d *backend.Description) {
			d.Hosts += strings.Repeat("192.168.1.2 a-rather-long-machine-name\n", 60)
		}, "", "does not fit the kernel command line (2 KiB)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := base
			if tt.edit != nil {
				tt.edit(&d)
			}
			got, err := d.CmdlineWithNet()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CmdlineWithNet = %q, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("CmdlineWithNet =\n %q, %v\nwant\n %q", got, err, tt.want)
			}
		})
	}
}
