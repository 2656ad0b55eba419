package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

func TestParseSourcesList(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []aptSource
	}{
		{"plain", "deb http://m.example/debian bookworm main contrib\n",
			[]aptSource{{URI: "http://m.example/debian", Suite: "bookworm", Components: []string{"main", "contrib"}}}},
		{"comments and deb-src skipped", "# deb http://x/ bookworm main\ndeb-src http://m/ bookworm main\n\ndeb http://m/ bookworm main # trailing\n",
			[]aptSource{{URI: "http://m/", Suite: "bookworm", Components: []string{"main"}}}},
		{"options", "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://m/ bookworm main\n",
			[]aptSource{{URI: "http://m/", Suite: "bookworm", Components: []string{"main"}, SignedBy: "/usr/share/keyrings/k.gpg"}}},
		{"spaced options", "deb [ arch=amd64 ] http://m/ bookworm-updates main\n",
			[]aptSource{{URI: "http://m/", Suite: "bookworm-updates", Components: []string{"main"}}}},
		{"truncated line", "deb http://m/\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseSourcesList(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseDeb822Sources(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []aptSource
	}{
		{"debian default", `Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://m/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://m/debian-security
Suites: bookworm-security
Components: main
`, []aptSource{
			{URI: "http://m/debian", Suite: "bookworm", Components: []string{"main"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg"},
			{URI: "http://m/debian", Suite: "bookworm-updates", Components: []string{"main"}, SignedBy: "/usr/share/keyrings/debian-archive-keyring.gpg"},
			{URI: "http://m/debian-security", Suite: "bookworm-security", Components: []string{"main"}},
		}},
		{"disabled and source-only stanzas", "Types: deb\nURIs: http://a/\nSuites: bookworm\nEnabled: no\n\nTypes: deb-src\nURIs: http://b/\nSuites: bookworm\n", nil},
		{"both types, two URIs", "Types: deb-src deb\nURIs: http://a/ http://b/\nSuites: trixie\nComponents: main non-free\n",
			[]aptSource{
				{URI: "http://a/", Suite: "trixie", Components: []string{"main", "non-free"}},
				{URI: "http://b/", Suite: "trixie", Components: []string{"main", "non-free"}},
			}},
		{"inline key is not a keyring path", "Types: deb\nURIs: http://a/\nSuites: bookworm\nSigned-By: -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
			[]aptSource{{URI: "http://a/", Suite: "bookworm"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseDeb822Sources(tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestHostMirror(t *testing.T) {
	type file struct{ path, data string }
	tests := []struct {
		name    string
		files   []file
		wantURI string
		wantErr string
	}{
		{"sources.list wins over parts", []file{
			{"os-release", "ID=debian\nVERSION_CODENAME=bookworm\n"},
			{"apt/sources.list", "deb http://first/ bookworm main\n"},
			{"apt/sources.list.d/a.sources", "Types: deb\nURIs: http://second/\nSuites: bookworm\n"},
		}, "http://first/", ""},
		{"security suite skipped, parts in name order, disabled files ignored", []file{
			{"os-release", "VERSION_CODENAME=\"bookworm\"\n"},
			{"apt/sources.list.d/a.list.disabled", "deb http://never/ bookworm main\n"},
			{"apt/sources.list.d/b.sources", "Types: deb\nURIs: http://sec/\nSuites: bookworm-security\n"},
			{"apt/sources.list.d/c.list", "deb http://main/ bookworm main\n"},
		}, "http://main/", ""},
		{"no matching suite", []file{
			{"os-release", "VERSION_CODENAME=trixie\n"},
			{"apt/sources.list", "deb http://m/ bookworm main\n"},
		}, "", `no ` + "`deb`" + ` source for suite "trixie"`},
		{"no codename", []file{{"os-release", "ID=debian\n"}}, "", "no VERSION_CODENAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			etc := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(etc, f.path)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, _, err := hostMirror(etc)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.URI != tt.wantURI {
				t.Errorf("mirror %q, want %q", m.URI, tt.wantURI)
			}
		})
	}
}

func TestParseAptShowAndExactDep(t *testing.T) {
	text := `Package: linux-image-amd64
Version: 6.1.192-2
Depends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)
Description: Linux for 64-bit PCs (meta-package)
 This package depends on the latest Linux kernel.

Package: bash-static
Version: 5.2.15-2+b13
Depends: passwd (>= 1:4.0.3-10), debianutils (>= 5.6-0.1)

Package: bash-static
Version: 5.0-1
`
	m := parseAptShow(text)
	if got := m["bash-static"].Version; got != "5.2.15-2+b13" {
		t.Errorf("bash-static version %q, want the first (candidate) stanza", got)
	}
	tests := []struct{ depends, name, version string }{
		{m["linux-image-amd64"].Depends, "linux-image-6.1.0-56-amd64", "6.1.192-2"},
		{m["bash-static"].Depends, "passwd", ""},
		{"linux-image-6.12.9-amd64-unsigned | linux-image-6.12.9-amd64 (= 1)", "linux-image-6.12.9-amd64-unsigned", ""},
		{"foo:any (= 2.0)", "foo", "2.0"},
	}
	for _, tt := range tests {
		n, v := exactDep(tt.depends)
		if n != tt.name || v != tt.version {
			t.Errorf("exactDep(%q) = %q, %q; want %q, %q", tt.depends, n, v, tt.name, tt.version)
		}
	}
}

func TestResolveModules(t *testing.T) {
	dep := parseModulesDep(`kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/a.ko: kernel/fs/b.ko
kernel/fs/b.ko: kernel/fs/a.ko
`)
	builtin := parseModulesBuiltin("kernel/crypto/crc32c_generic.ko\n")
	tests := []struct {
		name    string
		want    []string
		order   []string
		wantErr string
	}{
		{"virtio_pci pulls its closure in order", []string{"virtio_pci"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/virtio/virtio_pci_modern_dev.ko", "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
			"kernel/drivers/virtio/virtio_pci.ko"}, ""},
		{"explicit order kept, no duplicates", []string{"virtio_ring", "virtio", "virtio_net", "virtio"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
			"kernel/net/core/failover.ko", "kernel/drivers/net/net_failover.ko", "kernel/drivers/net/virtio_net.ko"}, ""},
		{"dashes and compression normalised", []string{"virtio-rng"}, []string{
			"kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
			"kernel/drivers/char/hw_random/virtio-rng.ko.xz"}, ""},
		{"built-in skipped", []string{"crc32c_generic", "virtio_ring"}, []string{"kernel/drivers/virtio/virtio_ring.ko"}, ""},
		{"missing module", []string{"ext4"}, nil, "ext4 is neither in modules.dep nor built in"},
		{"cycle", []string{"a"}, nil, "cycle: a -> b -> a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolveModules(dep, builtin, tt.want)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.order) {
				t.Errorf("order\n got %q\nwant %q", got, tt.order)
			}
		})
	}
}

// readNewc parses a newc archive independently of the writer.
func readNewc(t *testing.T, data []byte) map[string]cpioEntry {
	t.Helper()
	out := map[string]cpioEntry{}
	for {
		if len(data) < 110 || string(data[:6]) != "070701" {
			t.Fatalf("bad newc header at %q", data[:min(len(data), 16)])
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(data[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		mode, size, rmaj, rmin, nsize := field(1), field(6), field(9), field(10), field(11)
		if field(2) != 0 || field(3) != 0 {
			t.Errorf("entry not owned by root")
		}
		name := string(data[110 : 110+nsize-1])
		off := (110 + int(nsize) + 3) &^ 3
		body := data[off : off+int(size)]
		data = data[(off+int(size)+3)&^3:]
		if name == "TRAILER!!!" {
			if len(data) != 0 {
				t.Errorf("%d bytes after the trailer", len(data))
			}
			return out
		}
		out[name] = cpioEntry{mode: mode, data: body, major: rmaj, minor: rmin}
	}
}

func TestCPIO(t *testing.T) {
	tr := newCPIOTree()
	tr.File("bin/busybox", 0o755, []byte("ELF-ish"))
	tr.Symlink("/usr/bin/awk", "/bin/busybox")
	tr.CharDev("dev/console", 0o600, 5, 1)
	tr.Dir("tmp", 0o1777)
	tr.File("etc/a-b", 0o644, []byte("odd length!"))
	tr.File("etc/empty", 0o644, nil)
	var buf bytes.Buffer
	if _, err := tr.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive length %d not a multiple of 4", buf.Len())
	}
	got := readNewc(t, buf.Bytes())
	want := map[string]struct {
		mode uint32
		data string
	}{
		"bin":         {syscall.S_IFDIR | 0o755, ""},
		"bin/busybox": {syscall.S_IFREG | 0o755, "ELF-ish"},
		"usr":         {syscall.S_IFDIR | 0o755, ""},
		"usr/bin":     {syscall.S_IFDIR | 0o755, ""},
		"usr/bin/awk": {syscall.S_IFLNK | 0o777, "/bin/busybox"},
		"dev":         {syscall.S_IFDIR | 0o755, ""},
		"dev/console": {syscall.S_IFCHR | 0o600, ""},
		"tmp":         {syscall.S_IFDIR | 0o1777, ""},
		"etc":         {syscall.S_IFDIR | 0o755, ""},
		"etc/a-b":     {syscall.S_IFREG | 0o644, "odd length!"},
		"etc/empty":   {syscall.S_IFREG | 0o644, ""},
	}
	if len(got) != len(want) {
		t.Errorf("archive has %d entries, want %d: %v", len(got), len(want), slices.Sorted(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		}))
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if g.mode != w.mode || string(g.data) != w.data {
			t.Errorf("%s: mode %o data %q, want %o %q", name, g.mode, g.data, w.mode, w.data)
		}
	}
	if c := got["dev/console"]; c.major != 5 || c.minor != 1 {
		t.Errorf("dev/console is %d:%d, want 5:1", c.major, c.minor)
	}

	// Cross-check with GNU cpio (`make deps` installs it).
	{
		cmd := exec.Command(testenv.NeedCommand(t, "cpio"), "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -it: %v", err)
		}
		names := strings.Fields(string(out))
		idx := func(n string) int { return slices.Index(names, n) }
		if len(names) != len(want) || idx("usr") > idx("usr/bin") || idx("usr/bin") > idx("usr/bin/awk") {
			t.Errorf("cpio lists %q: want every entry, parents first", names)
		}
	}
}

// fakeELF returns a minimal ELF64 file with one PT_NOTE segment holding
// the given note.
func fakeELF(noteName string, noteType uint32) []byte {
	var note bytes.Buffer
	name := append([]byte(noteName), 0)
	binary.Write(&note, binary.LittleEndian, []uint32{uint32(len(name)), 4, noteType})
	note.Write(pad4(name))
	binary.Write(&note, binary.LittleEndian, uint32(0x1000000))
	const ehsize, phsize = 64, 56
	var f bytes.Buffer
	f.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	binary.Write(&f, binary.LittleEndian, struct {
		Type, Machine              uint16
		Version                    uint32
		Entry, Phoff, Shoff        uint64
		Flags                      uint32
		Ehsize, Phentsize, Phnum   uint16
		Shentsize, Shnum, Shstrndx uint16
	}{2, 62, 1, 0, ehsize, 0, 0, ehsize, phsize, 1, 64, 0, 0})
	binary.Write(&f, binary.LittleEndian, struct {
		Type, Flags                      uint32
		Off, Vaddr, Paddr, Filesz, Memsz uint64
		Align                            uint64
	}{4, 4, ehsize + phsize, 0, 0, uint64(note.Len()), uint64(note.Len()), 4})
	f.Write(note.Bytes())
	return f.Bytes()
}

// fakeBzImage wraps payload in a bzImage boot header (protocol 2.15).
func fakeBzImage(payload []byte) []byte {
	const setupSects = 2
	bz := make([]byte, (setupSects+1)*512)
	bz[0x1f1] = setupSects
	copy(bz[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(bz[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(bz[0x248:], 100) // payload_offset
	binary.LittleEndian.PutUint32(bz[0x24c:], uint32(len(payload)+4))
	bz = append(bz, make([]byte, 100)...)
	bz = append(bz, payload...)
	return append(bz, 1, 2, 3, 4) // the size trailer the kernel build appends
}

func TestExtractVmlinux(t *testing.T) {
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	xz := func(b []byte) []byte {
		cmd := exec.Command(testenv.NeedCommand(t, "xz"), "-c", "--check=crc32")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	pvh := fakeELF("Xen", 18)
	tests := []struct {
		name    string
		bz      func() []byte
		wantErr error
		errText string
	}{
		{"gzip PVH kernel", func() []byte { return fakeBzImage(gz(pvh)) }, nil, ""},
		{"xz PVH kernel", func() []byte { return fakeBzImage(xz(pvh)) }, nil, ""},
		{"no PVH note", func() []byte { return fakeBzImage(gz(fakeELF("GNU", 3))) }, errNoPVH, ""},
		{"not ELF", func() []byte { return fakeBzImage(gz([]byte("MZ not a kernel"))) }, nil, `\x7fELF`},
		{"unknown compression", func() []byte { return fakeBzImage([]byte("BZh91AY&SY")) }, nil, "not supported"},
		{"not a bzImage", func() []byte { return make([]byte, 4096) }, nil, "not a bzImage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			in, out := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "vmlinux")
			if err := os.WriteFile(in, tt.bz(), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := extractVmlinux(ctx, in, out)
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
			case tt.errText != "":
				if err == nil || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.errText)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile(out)
				if !bytes.Equal(got, pvh) {
					t.Errorf("extracted %d bytes, want the %d-byte ELF", len(got), len(pvh))
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Options{Kind: Minimal, OutDir: "/o", Names: []string{"machine", "m-2_b:3"}}
	tests := []struct {
		name string
		mod  func(*Options)
		want error
		text string
	}{
		{"ok", func(*Options) {}, nil, ""},
		{"no kind", func(o *Options) { o.Kind = "" }, ErrBadOptions, "no kind"},
		{"unknown kind", func(o *Options) { o.Kind = "nixos" }, ErrBadOptions, `unknown kind "nixos"`},
		{"no out dir", func(o *Options) { o.OutDir = "" }, ErrBadOptions, "output directory"},
		{"no names", func(o *Options) { o.Names = nil }, ErrBadOptions, "no machine names"},
		{"bad spec", func(o *Options) { o.Names = []string{"a:"} }, ErrBadOptions, "empty VLAN list"},
		{"desktop", func(o *Options) { o.Kind, o.NoVGA = Desktop, true }, nil, ""},
		{"packages", func(o *Options) { o.Kind, o.Packages = Systemd, []string{"jq", "g++", "libc6.1", "xserver-xorg-core"} }, nil, ""},
		{"packages on minimal", func(o *Options) { o.Packages = []string{"jq"} }, ErrBadOptions, "build --kind systemd or desktop"},
		{"upper case package", func(o *Options) { o.Kind, o.Packages = Desktop, []string{"JQ"} }, ErrBadOptions, `"JQ" is not a Debian package name`},
		{"one-letter package", func(o *Options) { o.Kind, o.Packages = Systemd, []string{"j"} }, ErrBadOptions, "at least two characters"},
		{"option as package", func(o *Options) { o.Kind, o.Packages = Systemd, []string{"--purge"} }, ErrBadOptions, "not a Debian package name"},
		{"version pin", func(o *Options) { o.Kind, o.Packages = Systemd, []string{"jq=1.6"} }, ErrBadOptions, "no versions"},
		{"empty package", func(o *Options) { o.Kind, o.Packages = Systemd, []string{""} }, ErrBadOptions, "not a Debian package name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mod(&o)
			nodes, err := validate(o)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if len(nodes) != len(o.Names) {
					t.Fatalf("validate returned %d nodes for %d names", len(nodes), len(o.Names))
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.want, tt.text)
			}
		})
	}
}

// TestRenderScript runs rendered start scripts against fake
// qemu-system-x86_64 and qemu-img programs that record their argv.
func TestRenderScript(t *testing.T) {
	bin := t.TempDir()
	record := `#!/bin/sh
for a in "$@"; do printf '%s\000' "$a"; done > "$RECORD_DIR/$(basename "$0").args"
`
	for _, p := range []string{"qemu-system-x86_64", "qemu-img"} {
		if err := os.WriteFile(filepath.Join(bin, p), []byte(record), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	minimal := &image{kind: Minimal, dir: "/c/images/minimal-x", kernel: "/c/images/minimal-x/vmlinux",
		initrd: "/c/images/minimal-x/initrd", memMiB: 512, params: minimalParams}
	systemd := &image{kind: Systemd, dir: "/c/i/systemd-y", kernel: "/c/i/systemd-y/vmlinux",
		initrd: "/c/i/systemd-y/initrd", disk: "/c/i/systemd y/root.img", memMiB: 512, params: systemdParams}
	desktop := &image{kind: Desktop, dir: "/c/i/desktop-z", kernel: "/c/i/desktop-z/vmlinux",
		initrd: "/c/i/desktop-z/initrd", disk: "/c/i/desktop-z/root.img", memMiB: 1024, params: systemdParams}

	argAfter := func(args []string, flag string) string {
		for i, a := range args {
			if a == flag && i+1 < len(args) {
				return args[i+1]
			}
		}
		return ""
	}
	tests := []struct {
		name  string
		img   *image
		opts  scriptOptions     // image build --net-outbound, --no-vga
		specs []string          // the build's machines; the script is vm1's. Default: vm1 alone.
		env   map[string]string // values may use {work}
		extra []string
		// failure, if set, says the script must fail with this on stderr.
		failure string
		check   func(t *testing.T, args, imgArgs []string, work string)
	}{
		{"minimal defaults", minimal, scriptOptions{}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				want := []string{"-name", "vm1", "-machine", "pc,accel=kvm:tcg", "-m", "512", "-smp", "1",
					"-device", "virtio-rng-pci", "-netdev", "user,id=user.0,restrict=on",
					"-device", "virtio-net-pci,netdev=user.0,romfile=",
					"-virtfs", "local,path=" + work + "/tmp/xchg,security_model=none,mount_tag=shared",
					"-kernel", "/c/images/minimal-x/vmlinux", "-initrd", "/c/images/minimal-x/initrd",
					"-append", minimalParams + " systemd.hostname=vm1"}
				if !reflect.DeepEqual(args, want) {
					t.Errorf("argv\n got %q\nwant %q", args, want)
				}
				if fi, err := os.Stat(work + "/tmp/xchg"); err != nil || !fi.IsDir() {
					t.Errorf("SHARED_DIR default not created: %v", err)
				}
				for _, forbidden := range []string{"-serial", "-monitor", "-qmp", "-display", "-nographic", "-no-reboot", "-chardev"} {
					if slices.Contains(args, forbidden) {
						t.Errorf("script passes %s, which belongs to the driver", forbidden)
					}
				}
				if imgArgs != nil {
					t.Errorf("minimal script ran qemu-img %q", imgArgs)
				}
			}},
		{"env options and extra args", minimal, scriptOptions{}, nil, map[string]string{
			"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "SHARED_DIR": "{work}/sh,ared",
			"QEMU_NET_OPTS": "hostfwd=tcp:127.0.0.1:2222-:22", "QEMU_KERNEL_PARAMS": "quiet loglevel=3",
			"QEMU_OPTS": "-cpu max  -vga none"}, []string{"-qmp", "unix:/s p/qmp,server=on,wait=off"}, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if got := argAfter(args, "-netdev"); got != "user,id=user.0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22" {
					t.Errorf("-netdev %q", got)
				}
				if got := argAfter(args, "-virtfs"); got != "local,path="+work+"/sh,,ared,security_model=none,mount_tag=shared" {
					t.Errorf("-virtfs %q (commas must be doubled)", got)
				}
				if got := argAfter(args, "-append"); got != minimalParams+" systemd.hostname=vm1 quiet loglevel=3" {
					t.Errorf("-append %q", got)
				}
				tailWant := []string{"-cpu", "max", "-vga", "none", "-qmp", "unix:/s p/qmp,server=on,wait=off"}
				if got := args[len(args)-len(tailWant):]; !reflect.DeepEqual(got, tailWant) {
					t.Errorf("argv ends %q, want $QEMU_OPTS split then \"$@\" intact: %q", got, tailWant)
				}
			}},
		{"own temp dir without USE_TMPDIR", minimal, scriptOptions{}, nil, map[string]string{"TMPDIR": "{work}/tmp"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				v := argAfter(args, "-virtfs")
				if !strings.HasPrefix(v, "local,path="+work+"/tmp/vmdriver-vm.") || !strings.Contains(v, "/xchg,") {
					t.Errorf("-virtfs %q: want a fresh mktemp dir under TMPDIR", v)
				}
			}},
		{"systemd creates the overlay", systemd, scriptOptions{}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				disk := work + "/cwd/vm1.qcow2"
				wantImg := []string{"create", "-q", "-f", "qcow2", "-b", "/c/i/systemd y/root.img", "-F", "raw", disk}
				if !reflect.DeepEqual(imgArgs, wantImg) {
					t.Errorf("qemu-img %q, want %q", imgArgs, wantImg)
				}
				if got := argAfter(args, "-drive"); got != "file="+disk+",if=none,id=root,format=qcow2" {
					t.Errorf("-drive %q", got)
				}
				if got := argAfter(args, "-append"); !strings.Contains(got, "root=/dev/vda") {
					t.Errorf("-append %q lacks root=/dev/vda", got)
				}
			}},
		{"systemd keeps an existing disk", systemd, scriptOptions{}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "NIX_DISK_IMAGE": "{work}/existing.qcow2"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if imgArgs != nil {
					t.Errorf("qemu-img ran although NIX_DISK_IMAGE exists: %q", imgArgs)
				}
				if got := argAfter(args, "-drive"); got != "file="+work+"/existing.qcow2,if=none,id=root,format=qcow2" {
					t.Errorf("-drive %q", got)
				}
			}},
		{"vlan nics after eth0", minimal, scriptOptions{}, []string{"zed:2", "vm1:1,2", "a"}, map[string]string{
			"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1",
			"QEMU_VDE_SOCKET_1": "{work}/s,w1", "QEMU_VDE_SOCKET_2": "{work}/sw2"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				// Sorted: a=1, vm1=2, zed=3.
				i := slices.Index(args, "virtio-net-pci,netdev=user.0,romfile=")
				if i < 0 {
					t.Fatalf("no user NIC in %q", args)
				}
				want := []string{
					"-device", "virtio-net-pci,netdev=vlan1,mac=52:54:00:12:01:02,romfile=",
					"-netdev", "vde,sock=" + work + "/s,,w1,id=vlan1",
					"-device", "virtio-net-pci,netdev=vlan2,mac=52:54:00:12:02:02,romfile=",
					"-netdev", "vde,sock=" + work + "/sw2,id=vlan2",
					"-fw_cfg", "name=opt/vmdriver/hosts,string=127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n192.168.1.2 vm1\n192.168.2.3 zed",
					"-fw_cfg", "name=opt/vmdriver/net,string=eth1 52:54:00:12:01:02 192.168.1.2/24\neth2 52:54:00:12:02:02 192.168.2.2/24",
					"-virtfs",
				}
				if got := args[i+1 : min(len(args), i+1+len(want))]; !reflect.DeepEqual(got, want) {
					t.Errorf("after the user NIC (eth0)\n got %q\nwant %q", got, want)
				}
				if got := argAfter(args, "-append"); got != minimalParams+" systemd.hostname=vm1 vmdriver.net=fw_cfg" {
					t.Errorf("-append %q", got)
				}
			}},
		{"vlan socket unset", minimal, scriptOptions{}, []string{"vm1:1,7"}, map[string]string{
			"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "QEMU_VDE_SOCKET_1": "{work}/sw1"}, nil,
			"neither QEMU_VDE_SOCKET_7 nor QEMU_TAP_FD_7 is set, but vm1 has a NIC on VLAN 7: start the driver with --vlans including 7", nil},
		{"vlan nics on TAP devices", minimal, scriptOptions{}, []string{"vm1:1,2"}, map[string]string{
			"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1",
			"QEMU_TAP_FD_1": "5", "QEMU_TAP_FD_2": "6", "QEMU_VDE_SOCKET_2": "{work}/sw2"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				// The driver's TAP descriptor wins over a switch.
				joined := strings.Join(args, " ")
				for _, want := range []string{"-netdev tap,fd=5,id=vlan1", "-netdev tap,fd=6,id=vlan2"} {
					if !strings.Contains(joined, want) {
						t.Errorf("argv lacks %q: %q", want, args)
					}
				}
				if strings.Contains(joined, "vde") {
					t.Errorf("argv has a VDE netdev: %q", args)
				}
			}},
		{"bare machine in a vlan build", minimal, scriptOptions{}, []string{"vm1", "b:1"}, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if slices.Contains(args, "vde") || strings.Contains(strings.Join(args, " "), "netdev=vlan") {
					t.Errorf("a bare machine got a VLAN NIC: %q", args)
				}
				var fwcfg []string
				for i, a := range args {
					if a == "-fw_cfg" {
						fwcfg = append(fwcfg, args[i+1])
					}
				}
				want := []string{"name=opt/vmdriver/hosts,string=127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n127.0.1.1 vm1\n192.168.1.1 b"}
				if !reflect.DeepEqual(fwcfg, want) {
					t.Errorf("-fw_cfg %q, want %q", fwcfg, want)
				}
				if got := argAfter(args, "-append"); !strings.HasSuffix(got, " systemd.hostname=vm1 vmdriver.net=fw_cfg") {
					t.Errorf("-append %q", got)
				}
			}},
		{"systemd with a vlan", systemd, scriptOptions{}, []string{"vm1:5"}, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "QEMU_VDE_SOCKET_5": "/vde5"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				joined := strings.Join(args, " ")
				if !strings.Contains(joined, "-device virtio-net-pci,netdev=user.0,romfile= -device virtio-net-pci,netdev=vlan1,mac=52:54:00:12:05:01,romfile= -netdev vde,sock=/vde5,id=vlan1 ") {
					t.Errorf("argv lacks the VLAN NIC right after eth0: %q", args)
				}
				if got := argAfter(args, "-drive"); got != "file="+work+"/cwd/vm1.qcow2,if=none,id=root,format=qcow2" {
					t.Errorf("-drive %q", got)
				}
			}},
		{"outbound by request", systemd, scriptOptions{outbound: true}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "QEMU_NET_OPTS": "hostfwd=tcp::2222-:22"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if got := argAfter(args, "-netdev"); got != "user,id=user.0,hostfwd=tcp::2222-:22" {
					t.Errorf("-netdev %q, want no restrict=on", got)
				}
				if got := argAfter(args, "-append"); !strings.HasSuffix(got, " systemd.hostname=vm1 vmdriver.outbound=1") {
					t.Errorf("-append %q lacks vmdriver.outbound=1", got)
				}
			}},
		{"desktop on the VGA", desktop, scriptOptions{}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if slices.Contains(args, "-vga") {
					t.Errorf("argv %q chooses a VGA card: QEMU's default (std) is the one the guest drives", args)
				}
				if got := argAfter(args, "-m"); got != "1024" {
					t.Errorf("-m %q, want 1024", got)
				}
				if got := argAfter(args, "-append"); strings.Contains(got, "vmdriver.display") {
					t.Errorf("-append %q names a display", got)
				}
			}},
		{"desktop without a display device", desktop, scriptOptions{noVGA: true}, nil, map[string]string{"TMPDIR": "{work}/tmp", "USE_TMPDIR": "1", "QEMU_KERNEL_PARAMS": "quiet"}, nil, "",
			func(t *testing.T, args, imgArgs []string, work string) {
				if got := argAfter(args, "-vga"); got != "none" {
					t.Errorf("-vga %q, want none", got)
				}
				if got := argAfter(args, "-append"); !strings.HasSuffix(got, " systemd.hostname=vm1 vmdriver.display=none quiet") {
					t.Errorf("-append %q does not end in vmdriver.display=none and the user's parameters", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			work := t.TempDir()
			for _, d := range []string{"tmp", "cwd", "rec"} {
				if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(work, "existing.qcow2"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			specs := tt.specs
			if specs == nil {
				specs = []string{"vm1"}
			}
			nodes, err := ParseNodes(specs)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(nodes, func(n Node) bool { return n.Name == "vm1" })
			script := filepath.Join(work, "run-vm1-vm")
			if err := os.WriteFile(script, []byte(renderScript(tt.img, nodes, nodes[i], tt.opts)), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, script, tt.extra...)
			cmd.Dir = filepath.Join(work, "cwd")
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "RECORD_DIR=" + filepath.Join(work, "rec")}
			for k, v := range tt.env {
				cmd.Env = append(cmd.Env, k+"="+strings.ReplaceAll(v, "{work}", work))
			}
			out, err := cmd.CombinedOutput()
			if tt.failure != "" {
				if err == nil || !strings.Contains(string(out), tt.failure) {
					t.Fatalf("start script: %v, output %q; want a failure saying %q", err, out, tt.failure)
				}
				if _, err := os.Stat(filepath.Join(work, "rec", "qemu-system-x86_64.args")); err == nil {
					t.Error("the failing script still ran qemu-system-x86_64")
				}
				return
			}
			if err != nil {
				t.Fatalf("start script: %v\n%s", err, out)
			}
			read := func(name string) []string {
				data, err := os.ReadFile(filepath.Join(work, "rec", name+".args"))
				if os.IsNotExist(err) {
					return nil
				}
				if err != nil {
					t.Fatal(err)
				}
				return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
			}
			args := read("qemu-system-x86_64")
			if args == nil {
				t.Fatal("the script did not exec qemu-system-x86_64")
			}
			// Isolation is the default of every start script.
			if got := argAfter(args, "-netdev"); !tt.opts.outbound && !strings.HasPrefix(got, "user,id=user.0,restrict=on") {
				t.Errorf("-netdev %q: the user-mode NIC is not restricted", got)
			}
			tt.check(t, args, read("qemu-img"), work)
		})
	}
}

func TestRootfsPackages(t *testing.T) {
	sys := rootfsPackages(Systemd, nil)
	if !slices.Equal(sys, systemdInclude) {
		t.Errorf("systemd packages %q, want %q", sys, systemdInclude)
	}
	desk := rootfsPackages(Desktop, nil)
	if !slices.Equal(desk[:len(systemdInclude)], systemdInclude) || !slices.Equal(desk[len(systemdInclude):], desktopInclude) {
		t.Errorf("desktop packages %q, want the systemd guest's, then %q", desk, desktopInclude)
	}
	got := rootfsPackages(Desktop, []string{"tree", "jq", "xterm", "tree", "bash"})
	if want := append(slices.Clone(desk), "jq", "tree"); !slices.Equal(got, want) {
		t.Errorf("with extras: %q, want %q", got, want)
	}
}

// TestPlanHash checks what names a cache entry: the package set and its
// versions and the kind, not the order or repetition of extra packages.
func TestPlanHash(t *testing.T) {
	mk := func(kind Kind, extra ...string) *plan {
		p := &plan{kind: kind, kernelPkg: pkgInfo{Package: "linux-image-6.1.0-57-amd64", Version: "6.1.192-3"},
			busybox: pkgInfo{Package: "busybox-static", Version: "1"}, bash: pkgInfo{Package: "bash-static", Version: "5"}}
		for _, n := range rootfsPackages(kind, extra) {
			p.include = append(p.include, pkgInfo{Package: n, Version: "1.0"})
		}
		return p
	}
	base := mk(Systemd).hash()
	if got := mk(Systemd, "tree", "jq").hash(); got != mk(Systemd, "jq", "tree", "jq").hash() {
		t.Error("the order or repetition of extra packages changes the hash")
	} else if got == base {
		t.Error("extra packages do not change the hash")
	}
	if mk(Desktop).hash() == base {
		t.Error("the desktop and systemd guests hash alike")
	}
	v := mk(Systemd, "jq")
	h := v.hash()
	v.include[len(v.include)-1].Version = "1.1"
	if v.hash() == h {
		t.Error("an extra package's version does not change the hash")
	}
}

func TestRootImageSize(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		used int64
		want string
	}{
		{0, "1G"}, {285 * mib, "1G"}, {512 * mib, "1G"}, {513 * mib, "2G"}, {647 * mib, "2G"}, {3 << 30, "4G"},
	} {
		if got := rootImageSize(tt.used); got != tt.want {
			t.Errorf("rootImageSize(%d MiB) = %s, want %s", tt.used/mib, got, tt.want)
		}
	}
}

func TestPublish(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "minimal-abc")
	mk := func(content string) string {
		d, err := os.MkdirTemp(parent, ".build-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, manifestFile), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	won, err := publish(mk("first"), dir)
	if err != nil || !won {
		t.Fatalf("first publish: won=%v err=%v", won, err)
	}
	loser := mk("second")
	won, err = publish(loser, dir)
	if err != nil || won {
		t.Fatalf("second publish: won=%v err=%v, want a quiet loss", won, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, manifestFile)); string(got) != "first" {
		t.Errorf("published image was replaced: manifest %q", got)
	}
	// A leftover directory without a manifest is not an image.
	broken := filepath.Join(parent, "systemd-def")
	if err := os.MkdirAll(filepath.Join(broken, "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := publish(mk("x"), broken); err == nil {
		t.Error("publish over a half image succeeded silently")
	}
}

func TestClearRootPassword(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", "root::19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n", ""},
		{"daemon:*:1::::::\n", "", "no root entry"},
	}
	for _, tt := range tests {
		got, err := clearRootPassword(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("err = %v, want %q", err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("clearRootPassword(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:          "/a/b",
		`/a\040b`:       "/a b",
		`/tab\011x\134`: "/tab\tx\\",
		`/odd\04`:       `/odd\04`,
	} {
		if got := unescapeMountinfo(in); got != want {
			t.Errorf("unescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"abc":       "abc",
		"/c/x y":    "'/c/x y'",
		"it's":      `'it'\''s'`,
		"":          "''",
		"$(reboot)": "'$(reboot)'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
		out, err := exec.Command("sh", "-c", "printf %s "+shellQuote(in)).Output()
		if err != nil || string(out) != in {
			t.Errorf("sh sees %q, want %q (%v)", out, in, err)
		}
	}
}

func TestRemoveTreeUnmounts(t *testing.T) {
	if !isRoot() {
		t.Skip("mounting needs root")
	}
	dir := filepath.Join(t.TempDir(), "rootfs")
	mp := filepath.Join(dir, "proc dir")
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mp, "tmpfs", 0, ""); err != nil {
		t.Skipf("cannot mount tmpfs here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mp, syscall.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(mp, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := removeTree(dir); err != nil {
		t.Fatalf("removeTree: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists: %v", dir, err)
	}
	data, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(data), `proc\040dir`) {
		t.Errorf("mount point still mounted")
	}
}
