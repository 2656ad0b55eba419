package qemu

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func probe(api int, apiErr error, cpuinfo string, cpuErr error) hostProbe {
	return hostProbe{
		kvmAPIVersion: func() (int, error) { return api, apiErr },
		cpuinfo:       func() ([]byte, error) { return []byte(cpuinfo), cpuErr },
	}
}

const (
	cpuVMX = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n\nprocessor\t: 1\nflags\t\t: fpu vme de pse vmx sse2\n"
	cpuSVM = "processor\t: 0\nflags\t\t: fpu svm lm\n"
	cpuPVM = "processor\t: 0\nflags\t\t: fpu vme de pse hypervisor sse2 vmxnotreally\nvmx flags\t: vnmi\n"
)

func TestDetectAccel(t *testing.T) {
	tcg := []string{"-machine", "accel=tcg"}
	tests := []struct {
		name       string
		pref       string
		probe      hostProbe
		wantKVM    bool
		wantArgs   []string
		wantReason string
		wantErr    bool
	}{
		{"auto, kvm with vmx", AccelAuto, probe(12, nil, cpuVMX, nil), true, nil, "API version 12", false},
		{"empty means auto", "", probe(12, nil, cpuSVM, nil), true, nil, "vmx/svm", false},
		{"auto, no /dev/kvm", AccelAuto, probe(0, os.ErrNotExist, cpuVMX, nil), false, tcg, "not usable", false},
		{"auto, /dev/kvm not writable", AccelAuto, probe(0, os.ErrPermission, cpuVMX, nil), false, tcg, "permission denied", false},
		{"auto, odd API version", AccelAuto, probe(11, nil, cpuVMX, nil), false, tcg, "API version 11", false},
		{"auto, PVM: device but no vmx/svm", AccelAuto, probe(12, nil, cpuPVM, nil), false, tcg, "lack vmx/svm", false},
		{"auto, cpuinfo unreadable", AccelAuto, probe(12, nil, "", errors.New("boom")), false, tcg, "boom", false},
		{"tcg requested on a KVM host", AccelTCG, probe(12, nil, cpuVMX, nil), false, tcg, "requested", false},
		{"kvm requested on a KVM host", AccelKVM, probe(12, nil, cpuVMX, nil), true, []string{"-machine", "accel=kvm"}, "requested", false},
		{"kvm requested without KVM", AccelKVM, probe(0, os.ErrNotExist, "", nil), true, []string{"-machine", "accel=kvm"}, "may fail", false},
		{"unknown accelerator", "hvf", probe(12, nil, cpuVMX, nil), false, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := detectAccel(tt.pref, tt.probe)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "unknown QEMU accelerator") {
					t.Fatalf("detectAccel(%q) error = %v, want unknown accelerator", tt.pref, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.KVM != tt.wantKVM || !slices.Equal(got.Args, tt.wantArgs) {
				t.Errorf("detectAccel(%q) = KVM %v args %q, want KVM %v args %q", tt.pref, got.KVM, got.Args, tt.wantKVM, tt.wantArgs)
			}
			if !strings.Contains(got.Reason, tt.wantReason) {
				t.Errorf("reason %q does not mention %q", got.Reason, tt.wantReason)
			}
		})
	}
}

func TestHasVirtFlag(t *testing.T) {
	tests := []struct {
		cpuinfo string
		want    bool
	}{
		{cpuVMX, true},
		{cpuSVM, true},
		{cpuPVM, false},
		{"", false},
		{"model name\t: Intel vmx edition\n", false},
	}
	for _, tt := range tests {
		if got := hasVirtFlag([]byte(tt.cpuinfo)); got != tt.want {
			t.Errorf("hasVirtFlag(%q) = %v, want %v", tt.cpuinfo, got, tt.want)
		}
	}
}

func TestBackendOptions(t *testing.T) {
	kvmHost := probe(12, nil, cpuVMX, nil)
	tcgHost := probe(0, os.ErrNotExist, "", nil)
	tests := []struct {
		name        string
		env         map[string]string
		probe       hostProbe
		opts        []Option
		wantTimeout time.Duration
		wantErr     string
	}{
		{"tcg default", nil, tcgHost, nil, 5 * time.Minute, ""},
		{"kvm default", nil, kvmHost, nil, 2 * time.Minute, ""},
		{"scaled by option", nil, tcgHost, []Option{WithTimeoutScale(2)}, 10 * time.Minute, ""},
		{"env scale wins", map[string]string{EnvTimeoutScale: "0.5"}, kvmHost, []Option{WithTimeoutScale(3)}, time.Minute, ""},
		{"env accel wins", map[string]string{EnvAccel: "tcg"}, kvmHost, []Option{WithAccel(AccelKVM)}, 5 * time.Minute, ""},
		{"bad env scale", map[string]string{EnvTimeoutScale: "fast"}, tcgHost, nil, 5 * time.Minute, "VMDRIVER_TIMEOUT_SCALE"},
		{"negative scale", nil, tcgHost, []Option{WithTimeoutScale(-1)}, 5 * time.Minute, "not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackend(func(k string) string { return tt.env[k] }, tt.probe, tt.opts...)
			if b.Name() != "qemu" {
				t.Errorf("Name() = %q", b.Name())
			}
			if got := b.BootTimeout(); got != tt.wantTimeout {
				t.Errorf("BootTimeout() = %v, want %v", got, tt.wantTimeout)
			}
			if tt.wantErr == "" && b.configErr != nil {
				t.Errorf("unexpected config error %v", b.configErr)
			}
			if tt.wantErr != "" && (b.configErr == nil || !strings.Contains(b.configErr.Error(), tt.wantErr)) {
				t.Errorf("config error = %v, want one mentioning %q", b.configErr, tt.wantErr)
			}
		})
	}
}
