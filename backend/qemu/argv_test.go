package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestDriverArgs(t *testing.T) {
	base := []string{
		"-qmp", "unix:/s/qmp,server=on,wait=off",
		"-chardev", "socket,id=shell,fd=3",
		"-device", "virtio-serial",
		"-device", "virtconsole,chardev=shell",
		"-device", "vmgenid,guid=auto",
		"-serial", "stdio",
	}
	cat := func(parts ...[]string) []string { return slices.Concat(parts...) }
	tests := []struct {
		name string
		opts argvOptions
		want []string
	}{
		{"headless", argvOptions{StateDir: "/s", ShellFD: 3},
			cat(base, []string{"-no-reboot", "-nographic"})},
		{"display", argvOptions{StateDir: "/s", ShellFD: 3, Display: true},
			cat(base, []string{"-no-reboot"})},
		{"reboot allowed", argvOptions{StateDir: "/s", ShellFD: 3, AllowReboot: true, Display: true},
			base},
		{"tcg and extras last", argvOptions{StateDir: "/s", ShellFD: 3, Accel: []string{"-machine", "accel=tcg"}, Extra: []string{"-m", "512"}},
			cat(base, []string{"-no-reboot", "-nographic", "-machine", "accel=tcg", "-m", "512"})},
		{"state dir cleaned", argvOptions{StateDir: "/s/", ShellFD: 3, Display: true, AllowReboot: true},
			base},
		{"shell on another fd", argvOptions{StateDir: "/s", ShellFD: 7, Display: true, AllowReboot: true},
			slices.Concat(base[:3], []string{"socket,id=shell,fd=7"}, base[4:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := driverArgs(tt.opts); !slices.Equal(got, tt.want) {
				t.Errorf("driverArgs =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

func TestHasDisplay(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"DISPLAY": ":0"}, true},
		{map[string]string{"WAYLAND_DISPLAY": "wayland-0"}, true},
		{map[string]string{"DISPLAY": ""}, false},
	}
	for _, tt := range tests {
		if got := hasDisplay(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("hasDisplay(%v) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

func TestBuildEnv(t *testing.T) {
	tests := []struct {
		name    string
		shared  string
		extra   []string
		want    []string
		wantErr string
	}{
		{"no shared dir", "", nil,
			[]string{"HOME=/root", "TMPDIR=/old", "TMPDIR=/st", "USE_TMPDIR=1"}, ""},
		{"shared dir and extras", "/sh", []string{"QEMU_VDE_SOCKET_1=/v/1.ctl", "QEMU_OPTS=-m 512"},
			[]string{"HOME=/root", "TMPDIR=/old", "TMPDIR=/st", "USE_TMPDIR=1", "SHARED_DIR=/sh", "QEMU_VDE_SOCKET_1=/v/1.ctl", "QEMU_OPTS=-m 512"}, ""},
		{"value with = and spaces", "", []string{"QEMU_NET_OPTS=hostfwd=tcp::2222-:22"},
			[]string{"HOME=/root", "TMPDIR=/old", "TMPDIR=/st", "USE_TMPDIR=1", "QEMU_NET_OPTS=hostfwd=tcp::2222-:22"}, ""},
		{"not KEY=VALUE", "", []string{"oops"}, nil, "not KEY=VALUE"},
		{"empty key", "", []string{"=x"}, nil, "not KEY=VALUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildEnv([]string{"HOME=/root", "TMPDIR=/old"}, "/st", tt.shared, tt.extra)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("buildEnv error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("buildEnv =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}
