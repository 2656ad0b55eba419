package qemu

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestScriptMemoryMiB(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		env          []string
		mib          int64
		why          string
	}{
		{"ours", "exec qemu-system-x86_64 \\\n    -m 512 \\\n    -smp 1", nil, 512, ""},
		{"nixpkgs", `exec /nix/store/x-qemu/bin/qemu-kvm -cpu max -name m -m 1024 -smp 1 "$@"`, nil, 1024, ""},
		{"gigabytes", "qemu -m 2G", nil, 2048, ""},
		{"twice the same", "qemu -m 512\nqemu -m 512", nil, 512, ""},
		{"no -m", "qemu -smp 1", nil, 0, "0 memory sizes"},
		{"two sizes", "qemu -m 512\nqemu -m 1024", nil, 0, "2 memory sizes"},
		{"own backend", "qemu -m 512 -object memory-backend-ram,id=x,size=512M", nil, 0, "sets up guest memory itself"},
		{"numa", "qemu -m 512 -numa node", nil, 0, "sets up guest memory itself"},
		{"mem-path", "qemu -m 512 -mem-path /dev/hugepages", nil, 0, "sets up guest memory itself"},
		{"QEMU_OPTS sets -m", "qemu -m 512", []string{"QEMU_OPTS=-m 1024"}, 0, "QEMU_OPTS sets -m"},
		{"-machine is not -m", "qemu -machine pc -m 256", nil, 256, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "run-m-vm")
			if err := os.WriteFile(p, []byte(tt.script), 0o755); err != nil {
				t.Fatal(err)
			}
			mib, why := scriptMemoryMiB(p, tt.env)
			if mib != tt.mib || !strings.Contains(why, tt.why) || (tt.why == "") != (why == "") {
				t.Errorf("scriptMemoryMiB = %d, %q; want %d, %q", mib, why, tt.mib, tt.why)
			}
		})
	}
}

func TestRAMPlanArgs(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "ram")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tt := range []struct {
		name string
		plan ramPlan
		want []string
	}{
		{"default", ramPlan{}, nil},
		{"live", ramPlan{mib: 512, live: f}, []string{"-object", "memory-backend-file,id=vmdriver-ram,size=512M,mem-path=/proc/self/fd/4,share=on", "-machine", "memory-backend=vmdriver-ram"}},
		{"frozen", ramPlan{mib: 512, frozen: "/s,nap/ram"}, []string{"-object", "memory-backend-file,id=vmdriver-ram,size=512M,mem-path=/s,,nap/ram,share=off", "-machine", "memory-backend=vmdriver-ram"}},
		{"streamed", ramPlan{mib: 256}, []string{"-object", "memory-backend-ram,id=vmdriver-ram,size=256M", "-machine", "memory-backend=vmdriver-ram"}},
	} {
		if got := tt.plan.args(); !slices.Equal(got, tt.want) {
			t.Errorf("%s: args = %q, want %q", tt.name, got, tt.want)
		}
	}
}
