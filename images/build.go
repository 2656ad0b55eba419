package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// builder builds images into a cache directory.
type builder struct {
	cache string
	logf  func(string, ...any)
}

// image is a built (cached) guest image: everything the start scripts of
// its machines share.
type image struct {
	kind   Kind
	dir    string
	kernel string // PVH-bootable ELF vmlinux
	initrd string
	disk   string // raw ext4 root image (systemd kind), never written
	memMiB int
	// params are the kernel parameters common to all machines.
	params string
}

// Names of the files in an image directory.
const (
	vmlinuxFile  = "vmlinux"
	initrdFile   = "initrd"
	rootImgFile  = "root.img"
	manifestFile = "manifest.json"
)

// Guest sizes. The driver's benchmark pushes 64 MiB of command output
// through the minimal guest, whose whole root file system is in RAM. The
// desktop guest uses about 220 MiB at an xterm; the rest is for the
// software under test. Root images are sized by rootImageSize.
const (
	minimalMemMiB = 512
	systemdMemMiB = 512
	desktopMemMiB = 1024
	minRootImgGiB = 1
)

// Kernel parameters. ttyS0 comes last so it is /dev/console (the serial
// log); tty0 keeps a VGA text console so /dev/vcs1 exists. panic=1 with
// QEMU's -no-reboot turns a guest panic into a QEMU exit. acpi=noirq
// routes PCI interrupts from the BIOS table instead of interpreting ACPI
// link objects, which takes about 0.5 s of TCG time for our five virtio
// devices. (pci=noacpi would save the same, but then the kernel takes
// the ACPI host bridge's windows for conflicts and cannot place the VGA
// card's 16 MiB frame buffer, which the bochs DRM driver needs.)
const (
	minimalParams = "console=tty0 console=ttyS0 panic=1 acpi=noirq"
	systemdParams = minimalParams + " root=/dev/vda rw net.ifnames=0"
)

// systemdInclude are the packages debootstrap adds to minbase: minbase
// skips Recommends, so udev (device units), kmod and dbus (logind) must
// be named.
var systemdInclude = []string{
	"systemd", "systemd-sysv", "udev", "kmod", "dbus", "bash", "coreutils",
	"iproute2", "procps", "netcat-openbsd", "iputils-ping",
	// The backdoor on vsock for Firecracker (guest/backdoor-vsock).
	"socat",
	// Resolves the machine's own name (set from the kernel command line).
	"libnss-myhostname",
}

// manifest records what an image was built from, for people and tools.
type manifest struct {
	Kind     Kind              `json:"kind"`
	Builder  string            `json:"builder"`
	Packages map[string]string `json:"packages"`
	// Extra are the packages asked for with Options.Packages.
	Extra    []string  `json:"extra_packages,omitempty"`
	Kernel   string    `json:"kernel"`
	Modules  []string  `json:"modules"`
	Mirror   string    `json:"mirror,omitempty"`
	Suite    string    `json:"suite,omitempty"`
	RootSize string    `json:"root_size,omitempty"`
	Built    time.Time `json:"built"`
	Seconds  float64   `json:"build_seconds"`
}

// plan is everything that decides an image's contents; its hash names
// the cache entry.
type plan struct {
	kind       Kind
	kernelPkg  pkgInfo
	busybox    pkgInfo
	bash       pkgInfo
	include    []pkgInfo // systemd, desktop: debootstrap --include packages (a proxy for the whole set)
	extra      []string  // Options.Packages, sorted, each once (also in include)
	mirror     aptSource
	suite      string
	initrdMods []string
	// displayMods are loaded by the minimal guest's init after the
	// backdoor started (see displayModules).
	displayMods []string
	// vsockMods are loaded by the systemd guest's initramfs for a vsock
	// backdoor (see vsockModules).
	vsockMods  []string
	rootfsMods []string
}

func (p *plan) hash() string {
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\nkind %s\ngoarch %s\n", builderVersion, p.kind, runtime.GOARCH)
	for _, pk := range append([]pkgInfo{p.kernelPkg, p.busybox, p.bash}, p.include...) {
		fmt.Fprintf(h, "pkg %s=%s\n", pk.Package, pk.Version)
	}
	fmt.Fprintf(h, "mirror %s %s %v\n", p.mirror.URI, p.suite, p.mirror.Components)
	fmt.Fprintf(h, "initrd modules %v\ndisplay modules %v\nvsock modules %v\nrootfs modules %v\n", p.initrdMods, p.displayMods, p.vsockMods, p.rootfsMods)
	fmt.Fprintf(h, "params %s %s mem %d %d %d root size >= %dG\n", minimalParams, systemdParams, minimalMemMiB, systemdMemMiB, desktopMemMiB, minRootImgGiB)
	if p.kind.rootfs() {
		fmt.Fprintf(h, "rootfs config %q %q %q %v\n", systemdMasked, systemdMaskedGenerators, systemdEnabled, rootFiles)
	}
	if p.kind == Desktop {
		fmt.Fprintf(h, "desktop config %v %q %v %q %q\n", desktopFiles, desktopEnabled, desktopUsers, desktopPassword, xtermResources)
	}
	_ = fs.WalkDir(guestFiles, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if !p.kind.rootfs() && name == "guest/systemd" || p.kind != Desktop && name == "guest/desktop" {
				return fs.SkipDir
			}
			return nil
		}
		data, _ := guestFiles.ReadFile(name)
		fmt.Fprintf(h, "file %s %d\n", name, len(data))
		h.Write(data)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:20]
}

func (b *builder) imageFor(kind Kind, dir string) *image {
	img := &image{kind: kind, dir: dir,
		kernel: filepath.Join(dir, vmlinuxFile), initrd: filepath.Join(dir, initrdFile),
		memMiB: minimalMemMiB, params: minimalParams}
	switch kind {
	case Systemd:
		img.disk, img.memMiB, img.params = filepath.Join(dir, rootImgFile), systemdMemMiB, systemdParams
	case Desktop:
		img.disk, img.memMiB, img.params = filepath.Join(dir, rootImgFile), desktopMemMiB, systemdParams
	}
	return img
}

// image returns the cached image of kind with the extra packages,
// building it first if needed.
func (b *builder) image(ctx context.Context, kind Kind, extra []string) (*image, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("guest images are built for amd64 hosts only, not %s: %w", runtime.GOARCH, ErrNotSupported)
	}
	if err := hosttools.Need("apt-get", "apt-cache"); err != nil {
		return nil, err
	}
	p, err := b.plan(ctx, kind, extra)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.cache, "images", string(kind)+"-"+p.hash())
	// Stamp, then look: a Prune that took the image before the stamp
	// leaves nothing to find (a miss); one after it sees a recent stamp
	// and puts the image back. Failing to stamp (another user's cache)
	// only makes the image look older.
	_ = touch(filepath.Join(dir, lastUsedFile))
	if _, err := os.Stat(filepath.Join(dir, manifestFile)); err == nil {
		b.logf("images: cache hit: %s image %s", kind, dir)
		return b.imageFor(kind, dir), nil
	}
	b.logf("images: cache miss: building %s image %s", kind, dir)
	if err := b.build(ctx, p, dir); err != nil {
		return nil, err
	}
	_ = touch(filepath.Join(dir, lastUsedFile)) // the winner's, if another build won
	return b.imageFor(kind, dir), nil
}

// plan resolves the exact package versions (cheaply, memoized) and the
// module lists of an image.
func (b *builder) plan(ctx context.Context, kind Kind, extra []string) (*plan, error) {
	const meta = "linux-image-amd64"
	query := []string{meta, "busybox-static", "bash-static"}
	p := &plan{kind: kind}
	var include []string
	if kind.rootfs() {
		m, suite, err := hostMirror("/etc")
		if err != nil {
			return nil, err
		}
		p.mirror, p.suite = m, suite
		include = rootfsPackages(kind, extra)
		for _, n := range include {
			if !slices.Contains(query, n) {
				query = append(query, n)
			}
		}
		p.extra = slices.Compact(slices.Sorted(slices.Values(extra)))
	}
	infos, err := b.aptShow(ctx, query)
	if err != nil {
		return nil, err
	}
	kpkg, kver := exactDep(infos[meta].Depends)
	if kpkg == "" {
		return nil, fmt.Errorf("%s %s depends on no kernel package", meta, infos[meta].Version)
	}
	if kver == "" {
		ki, err := b.aptShow(ctx, []string{kpkg})
		if err != nil {
			return nil, err
		}
		kver = ki[kpkg].Version
	}
	p.kernelPkg = pkgInfo{Package: kpkg, Version: kver}
	p.busybox, p.bash = infos["busybox-static"], infos["bash-static"]
	p.initrdMods = slices.Clone(baseModules)
	switch {
	case kind.rootfs():
		for _, n := range include {
			p.include = append(p.include, infos[n])
		}
		p.initrdMods = append(p.initrdMods, rootModules...)
		p.vsockMods = slices.Clone(vsockModules)
		p.rootfsMods = append(slices.Clone(p.initrdMods), systemdExtraModules...)
		if kind == Desktop {
			p.rootfsMods = append(p.rootfsMods, desktopModules...)
		}
	default:
		p.displayMods = slices.Clone(displayModules)
	}
	return p, nil
}

// build builds the image of p into a temporary directory and renames it
// to dir, so concurrent builders never see half an image; the loser of a
// race keeps the winner's image.
func (b *builder) build(ctx context.Context, p *plan, dir string) (err error) {
	start := time.Now()
	tools := []string{"dpkg-deb", "depmod", "xz", "zstd", "gzip"}
	if p.kind.rootfs() {
		if !isRoot() {
			return fmt.Errorf("building the %s guest (debootstrap) %w: run as root, or build the minimal kind", p.kind, ErrNeedRoot)
		}
		tools = append(tools, "debootstrap", "mkfs.ext4", "chroot")
	}
	if err := hosttools.Need(tools...); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	b.cleanStale(parent)
	tmp, err := os.MkdirTemp(parent, ".build-"+string(p.kind)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if rmErr := removeTree(tmp); rmErr != nil && err == nil {
			err = fmt.Errorf("remove build directory: %w", rmErr)
		}
	}()
	work := filepath.Join(tmp, "work")
	out := filepath.Join(tmp, "image")
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}

	debs, err := b.downloadDebs(ctx, []pkgInfo{p.kernelPkg, p.busybox, p.bash})
	if err != nil {
		return err
	}
	step := time.Now()
	k, err := prepareKernel(ctx, debs[p.kernelPkg.Package], filepath.Join(work, "kernel"))
	if err != nil {
		return err
	}
	bbRoot, bashRoot := filepath.Join(work, "busybox"), filepath.Join(work, "bash")
	if err := unpackDeb(ctx, debs[p.busybox.Package], bbRoot); err != nil {
		return err
	}
	if err := unpackDeb(ctx, debs[p.bash.Package], bashRoot); err != nil {
		return err
	}
	if err := extractVmlinux(ctx, k.vmlinuz, filepath.Join(out, vmlinuxFile)); err != nil {
		return fmt.Errorf("extract vmlinux from %s: %w", filepath.Base(k.vmlinuz), err)
	}
	initrdMods, err := resolveModules(k.deps, k.builtin, p.initrdMods)
	if err != nil {
		return err
	}
	displayMods, err := resolveModules(k.deps, k.builtin, p.displayMods)
	if err != nil {
		return err
	}
	vsockMods, err := resolveModules(k.deps, k.builtin, p.vsockMods)
	if err != nil {
		return err
	}
	// Only what the initramfs has not loaded already.
	vsockMods = slices.DeleteFunc(vsockMods, func(m string) bool { return slices.Contains(initrdMods, m) })
	in := initrdInputs{busyboxRoot: bbRoot, bashRoot: bashRoot, kernel: k, modules: initrdMods, displayModules: displayMods, vsockModules: vsockMods}
	if err := buildInitrd(ctx, in, filepath.Join(out, initrdFile)); err != nil {
		return err
	}
	b.logf("images: kernel %s, vmlinux and initramfs (%d modules) in %.1fs", k.version, len(initrdMods)+len(displayMods)+len(vsockMods), time.Since(step).Seconds())

	m := manifest{Kind: p.kind, Builder: builderVersion, Kernel: k.version, Modules: slices.Concat(initrdMods, displayMods, vsockMods),
		Packages: map[string]string{}, Extra: p.extra}
	for _, pk := range append([]pkgInfo{p.kernelPkg, p.busybox, p.bash}, p.include...) {
		m.Packages[pk.Package] = pk.Version
	}
	if p.kind.rootfs() {
		rootfsMods, err := resolveModules(k.deps, k.builtin, p.rootfsMods)
		if err != nil {
			return err
		}
		m.Modules, m.Mirror, m.Suite = rootfsMods, p.mirror.URI, p.suite
		if m.RootSize, err = b.buildRootImage(ctx, p, k, rootfsMods, filepath.Join(work, "rootfs"), filepath.Join(out, rootImgFile)); err != nil {
			return err
		}
		_ = touch(filepath.Join(b.cache, "debootstrap")) // its last use, for Prune
	}
	m.Built = time.Now().UTC()
	m.Seconds = time.Since(start).Seconds()
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, manifestFile), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if err := touch(filepath.Join(out, lastUsedFile)); err != nil {
		return err
	}
	won, err := publish(out, dir)
	if err != nil {
		return err
	}
	if !won {
		b.logf("images: another build finished %s first; using it", dir)
	}
	b.logf("images: built %s image in %.1fs", p.kind, time.Since(start).Seconds())
	return nil
}

// publish renames the finished image directory out to dir. If another
// builder got there first, its complete image stays and publish reports
// won=false: rename(2) of a directory never replaces a non-empty one.
func publish(out, dir string) (won bool, err error) {
	if err := os.Rename(out, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, manifestFile)); statErr == nil {
			return false, nil
		}
		return false, fmt.Errorf("move image into the cache: %w", err)
	}
	return true, nil
}

// prune trims the cache to CacheCap after a build, least recently used
// first and never keep (the image just used). It only logs: a cache it
// cannot trim does not fail the build.
func (b *builder) prune(ctx context.Context, keep string) {
	limit, err := CacheCap()
	if err != nil {
		b.logf("images: not pruning the cache: %v", err)
		return
	}
	if limit == 0 {
		return
	}
	removed, freed, err := Prune(ctx, b.cache, PruneOptions{MaxSize: limit, Keep: []string{keep}})
	for _, e := range removed {
		b.logf("images: cache over %s: removed %s (%s)", FormatSize(limit), filepath.Join(e.Section, e.Name), FormatSize(e.Size))
	}
	if len(removed) > 0 {
		b.logf("images: pruned the cache to %s: freed %s", FormatSize(limit), FormatSize(freed))
	}
	if err != nil {
		b.logf("images: pruning the cache: %v", err)
	}
}

// cleanStale removes build directories left by builders that died more
// than a day ago (a live build is never that old).
func (b *builder) cleanStale(imagesDir string) {
	entries, err := os.ReadDir(imagesDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".build-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 24*time.Hour {
			if err := removeTree(filepath.Join(imagesDir, e.Name())); err != nil {
				b.logf("images: cannot remove stale build directory %s: %v", e.Name(), err)
			}
		}
	}
}

// removeTree unmounts anything still mounted below dir (an interrupted
// debootstrap leaves proc and sys mounted in its target) and removes it.
func removeTree(dir string) error {
	if err := unmountBelow(dir); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// unmountBelow detaches every mount point at or below dir, deepest first.
func unmountBelow(dir string) error {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil // no procfs: nothing we could unmount anyway
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == abs || strings.HasPrefix(mp, abs+"/") {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range points {
		if err := unmount(mp); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMountinfo decodes the octal escapes (\040 for space) of
// /proc/self/mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for j := 1; j <= 3; j++ {
				c := s[i+j]
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				out = append(out, v)
				i += 3
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}
