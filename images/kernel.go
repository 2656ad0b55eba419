package images

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Kernel modules the guests load, in the order the brief's measurements
// used; dependencies found in modules.dep are added before each.
var (
	// baseModules give the virtio transports (PCI for -M pc, MMIO for
	// -M microvm, whose devices QEMU names on the kernel command line as
	// virtio_mmio.device=), the virtio console (backdoor), net, block,
	// rng, the 9p share, and QEMU fw_cfg in sysfs, through which the
	// start script passes the machine's VLAN network (guest/vmdriver-net).
	baseModules = []string{
		"virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci",
		"virtio_mmio",
		"virtio_console", "virtio_net", "virtio_blk", "virtio_rng",
		"netfs", "9pnet", "9pnet_virtio", "9p", "qemu_fw_cfg",
	}
	// rootModules mount the systemd guest's ext4 root. ext4 and jbd2
	// have a soft dependency on crc32c, which only crc32c_generic
	// provides on a TCG CPU without SSE4.2.
	rootModules = []string{"crc32c_generic", "ext4"}
	// systemdExtraModules live only in the systemd root file system:
	// the ACPI power button and evdev let QMP system_powerdown reach
	// logind, and systemd loads autofs4 itself at start.
	systemdExtraModules = []string{"button", "evdev", "autofs4"}
	// vsockModules give the systemd guest its vsock device, loaded by the
	// initramfs only for boots with vmdriver.backdoor=vsock (Firecracker,
	// whose guests get their shell over vsock, guest/backdoor-vsock).
	vsockModules = []string{"vmw_vsock_virtio_transport"}
)

// kernelTree is an unpacked kernel package.
type kernelTree struct {
	root    string // where the .deb was unpacked
	version string // e.g. 6.1.0-56-amd64
	modDir  string // root/lib/modules/<version>
	vmlinuz string
	deps    map[string]modEntry
	builtin map[string]bool
}

// modEntry is one line of modules.dep.
type modEntry struct {
	path string   // relative to the modules directory
	deps []string // module paths, in modules.dep order
}

// prepareKernel unpacks the kernel package into dir, runs depmod on it
// (the package ships no modules.dep; its postinst would make one) and
// reads the module tables.
func prepareKernel(ctx context.Context, deb, dir string) (*kernelTree, error) {
	if err := unpackDeb(ctx, deb, dir); err != nil {
		return nil, fmt.Errorf("unpack kernel: %w", err)
	}
	var modBase string
	for _, cand := range []string{"lib/modules", "usr/lib/modules"} {
		if fi, err := os.Stat(filepath.Join(dir, cand)); err == nil && fi.IsDir() {
			modBase = cand
			break
		}
	}
	if modBase == "" {
		return nil, fmt.Errorf("kernel package %s has no lib/modules directory", filepath.Base(deb))
	}
	vers, err := os.ReadDir(filepath.Join(dir, modBase))
	if err != nil {
		return nil, err
	}
	if len(vers) != 1 {
		return nil, fmt.Errorf("kernel package %s has %d module trees, want exactly one", filepath.Base(deb), len(vers))
	}
	k := &kernelTree{root: dir, version: vers[0].Name()}
	k.modDir = filepath.Join(dir, modBase, k.version)
	k.vmlinuz = filepath.Join(dir, "boot", "vmlinuz-"+k.version)
	if _, err := os.Stat(k.vmlinuz); err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", filepath.Base(deb), err)
	}
	if _, err := os.Stat(filepath.Join(k.modDir, "modules.dep")); err != nil {
		if _, err := run(ctx, command{name: "depmod", args: []string{"-b", dir, k.version}}); err != nil {
			return nil, fmt.Errorf("generate modules.dep: %w", err)
		}
	}
	dep, err := os.ReadFile(filepath.Join(k.modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	k.deps = parseModulesDep(string(dep))
	builtin, err := os.ReadFile(filepath.Join(k.modDir, "modules.builtin"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	k.builtin = parseModulesBuiltin(string(builtin))
	return k, nil
}

// moduleName turns a module path into its name as modprobe spells it:
// kernel/drivers/char/hw_random/virtio-rng.ko.xz -> virtio_rng.
func moduleName(p string) string {
	base := path.Base(p)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// parseModulesDep parses modules.dep ("path: dep dep ...") into entries
// keyed by module name.
func parseModulesDep(text string) map[string]modEntry {
	out := map[string]modEntry{}
	for _, line := range strings.Split(text, "\n") {
		p, deps, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		p = strings.TrimSpace(p)
		out[moduleName(p)] = modEntry{path: p, deps: strings.Fields(deps)}
	}
	return out
}

// parseModulesBuiltin parses modules.builtin into a set of names.
func parseModulesBuiltin(text string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Fields(text) {
		out[moduleName(line)] = true
	}
	return out
}

// resolveModules returns the module paths to load, in load order, for the
// wanted modules: every module comes after everything it depends on, and
// modules built into the kernel are skipped. modules.dep lists the full
// dependency closure with the deepest dependency last, so loading the
// list backwards (recursively, to be safe) is a valid order.
func resolveModules(deps map[string]modEntry, builtin map[string]bool, want []string) ([]string, error) {
	var order []string
	done := map[string]bool{}
	byPath := map[string]string{}
	for name, e := range deps {
		byPath[e.path] = name
	}
	var visit func(name string, stack []string) error
	visit = func(name string, stack []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		if done[name] {
			return nil
		}
		e, ok := deps[name]
		if !ok {
			if builtin[name] {
				done[name] = true
				return nil
			}
			return fmt.Errorf("kernel module %s is neither in modules.dep nor built in", name)
		}
		for _, s := range stack {
			if s == name {
				return fmt.Errorf("kernel module dependency cycle: %s", strings.Join(append(stack, name), " -> "))
			}
		}
		stack = append(stack, name)
		for i := len(e.deps) - 1; i >= 0; i-- {
			dn, ok := byPath[e.deps[i]]
			if !ok {
				dn = moduleName(e.deps[i])
			}
			if err := visit(dn, stack); err != nil {
				return err
			}
		}
		done[name] = true
		order = append(order, e.path)
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// Compressed kernel payload formats we can unpack.
var (
	magicXZ   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicGzip = []byte{0x1f, 0x8b, 0x08}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicELF  = []byte{0x7f, 'E', 'L', 'F'}
)

// errNoPVH says the extracted kernel cannot be booted over PVH.
var errNoPVH = errors.New("kernel has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY)")

// bzPayload returns the compressed kernel inside a bzImage, using the
// boot-protocol header (payload_offset/payload_length, protocol 2.08+).
func bzPayload(bz []byte) ([]byte, error) {
	if len(bz) < 0x250 || string(bz[0x202:0x206]) != "HdrS" {
		return nil, errors.New("not a bzImage (no HdrS boot header)")
	}
	if v := binary.LittleEndian.Uint16(bz[0x206:]); v < 0x208 {
		return nil, fmt.Errorf("bzImage boot protocol %#x is older than 2.08 (no payload fields)", v)
	}
	setupSects := int(bz[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(bz[0x248:]))
	n := int(binary.LittleEndian.Uint32(bz[0x24c:]))
	if start < 0 || n <= 0 || start+n > len(bz) {
		return nil, errors.New("bzImage payload fields point outside the file")
	}
	return bz[start : start+n], nil
}

// extractVmlinux writes the uncompressed ELF kernel inside the bzImage
// at bzPath to out. Booting it over PVH (-kernel vmlinux) skips the
// firmware decompression that costs seconds under TCG.
func extractVmlinux(ctx context.Context, bzPath, out string) error {
	bz, err := os.ReadFile(bzPath)
	if err != nil {
		return err
	}
	payload, err := bzPayload(bz)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	switch {
	case bytes.HasPrefix(payload, magicXZ):
		// The kernel build appends the uncompressed size after the
		// stream: --single-stream ignores it.
		_, err = run(ctx, command{name: "xz", args: []string{"-dc", "--single-stream"}, stdin: bytes.NewReader(payload), stdout: f})
	case bytes.HasPrefix(payload, magicZstd) && len(payload) > 4:
		_, err = run(ctx, command{name: "zstd", args: []string{"-dcq"}, stdin: bytes.NewReader(payload[:len(payload)-4]), stdout: f})
	case bytes.HasPrefix(payload, magicGzip):
		var zr *gzip.Reader
		zr, err = gzip.NewReader(bytes.NewReader(payload))
		if err == nil {
			zr.Multistream(false)
			_, err = io.Copy(f, zr)
		}
	default:
		return fmt.Errorf("bzImage payload compression not supported (magic % x): only xz, zstd and gzip", payload[:min(6, len(payload))])
	}
	if err != nil {
		return fmt.Errorf("decompress kernel: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return checkPVH(out)
}

// checkPVH verifies that file is an ELF kernel with a PVH entry note,
// which QEMU needs to boot it directly.
func checkPVH(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, magicELF) {
		return fmt.Errorf("decompressed kernel does not start with \\x7fELF")
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("decompressed kernel: %w", err)
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		if hasNote(data, "Xen", 18) {
			return nil
		}
	}
	return errNoPVH
}

// hasNote reports whether an ELF note section holds a note with the given
// owner name and type.
func hasNote(data []byte, name string, typ uint32) bool {
	align4 := func(n uint32) uint32 { return (n + 3) &^ 3 }
	for len(data) >= 12 {
		namesz := binary.LittleEndian.Uint32(data[0:])
		descsz := binary.LittleEndian.Uint32(data[4:])
		t := binary.LittleEndian.Uint32(data[8:])
		data = data[12:]
		if uint64(align4(namesz))+uint64(align4(descsz)) > uint64(len(data)) {
			return false
		}
		n := strings.TrimRight(string(data[:namesz]), "\x00")
		if n == name && t == typ {
			return true
		}
		data = data[align4(namesz)+align4(descsz):]
	}
	return false
}
