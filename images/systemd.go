package images

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/internal/cachedir"
)

// systemdMasked are units masked in the systemd guest: gettys that would
// fight the backdoor over hvc0/ttyS0 (they cause EIO on the backdoor),
// and periodic or slow jobs that only cost boot time or would fire in the
// middle of a test.
var systemdMasked = []string{
	"serial-getty@hvc0.service", "serial-getty@ttyS0.service",
	"e2scrub_reap.service", "e2scrub_all.timer",
	"apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "fstrim.timer",
	// Their modules are not installed; each service is a process spawn.
	"modprobe@configfs.service", "modprobe@dm_mod.service", "modprobe@drm.service",
	"modprobe@efi_pstore.service", "modprobe@fuse.service", "modprobe@loop.service",
}

// systemdMaskedGenerators are generators with nothing to find in a test
// guest (no encrypted, GPT-auto, hibernation or SysV pieces); each costs
// a process spawn under TCG on every boot and daemon-reload.
var systemdMaskedGenerators = []string{
	"systemd-bless-boot-generator", "systemd-cryptsetup-generator", "systemd-gpt-auto-generator",
	"systemd-hibernate-resume-generator", "systemd-integritysetup-generator",
	"systemd-veritysetup-generator", "systemd-sysv-generator", "systemd-rc-local-generator",
	"systemd-system-update-generator",
}

// systemdEnabled are units enabled in the systemd guest.
var systemdEnabled = []string{"backdoor.service", "systemd-networkd.service", "vmdriver-net.service"}

// rootFile is a file written into a guest's root file system: its path
// there, its source under guest/, and its mode.
type rootFile struct {
	path, src string
	mode      os.FileMode
}

// rootFiles are the files written into the systemd guest's root file
// system (and the desktop guest's).
var rootFiles = []rootFile{
	{"usr/local/bin/vmdriver-backdoor", "backdoor", 0o755},
	{"usr/local/bin/vmdriver-backdoor-vsock", "backdoor-vsock", 0o755},
	// The backdoors are vendor units (below /etc and /run in systemd's
	// search path), so the initramfs can mask one for a boot with a
	// runtime unit in /run/systemd/system.
	{"usr/local/lib/systemd/system/backdoor-vsock.service", "systemd/backdoor-vsock.service", 0o644},
	{"usr/local/sbin/vmdriver-net", "vmdriver-net", 0o755},
	{"etc/systemd/system/vmdriver-net.service", "systemd/vmdriver-net.service", 0o644},
	{"usr/local/lib/systemd/system/backdoor.service", "systemd/backdoor.service", 0o644},
	{"etc/systemd/journald.conf.d/vmdriver.conf", "systemd/journald.conf", 0o644},
	{"etc/systemd/system.conf.d/vmdriver.conf", "systemd/system.conf", 0o644},
	{"etc/systemd/network/70-vmdriver-eth0-outbound.network", "systemd/eth0-outbound.network", 0o644},
	{"etc/systemd/network/80-vmdriver-eth0.network", "systemd/eth0.network", 0o644},
	// Empty: the initramfs writes a fresh one into each machine's overlay.
	{"etc/machine-id", "systemd/machine-id", 0o444},
	{"etc/fstab", "systemd/fstab", 0o644},
	{"etc/hosts", "systemd/hosts", 0o644},
	{"etc/hostname", "systemd/hostname", 0o644},
	{"etc/resolv.conf", "systemd/resolv.conf", 0o644},
}

// buildRootImage debootstraps the systemd or desktop guest into rootfs,
// configures it and packs it into the raw ext4 image out (mkfs.ext4 -d:
// no loop device needed). It returns the image's size.
func (b *builder) buildRootImage(ctx context.Context, p *plan, k *kernelTree, mods []string, rootfs, out string) (string, error) {
	step := time.Now()
	include := make([]string, 0, len(p.include))
	for _, pk := range p.include {
		include = append(include, pk.Package)
	}
	args := []string{
		"--variant=minbase",
		"--include=" + strings.Join(include, ","),
		"--cache-dir=" + filepath.Join(b.cache, "debootstrap"),
	}
	if len(p.mirror.Components) > 0 {
		args = append(args, "--components="+strings.Join(p.mirror.Components, ","))
	}
	if p.mirror.SignedBy != "" {
		if _, err := os.Stat(p.mirror.SignedBy); err == nil {
			args = append(args, "--keyring="+p.mirror.SignedBy)
		}
	}
	args = append(args, p.suite, rootfs, p.mirror.URI)
	if err := os.MkdirAll(filepath.Join(b.cache, "debootstrap"), 0o755); err != nil {
		return "", err
	}
	took := "about 40 s"
	if len(include) > len(systemdInclude) {
		took = "minutes for a desktop or many extra packages"
	}
	b.logf("images: debootstrap %s from %s (%s)", p.suite, p.mirror.URI, took)
	if _, err := run(ctx, command{name: "debootstrap", args: args}); err != nil {
		return "", fmt.Errorf("debootstrap: %w", err)
	}
	b.logf("images: debootstrap done in %.1fs", time.Since(step).Seconds())

	step = time.Now()
	if err := configureRootfs(ctx, rootfs, p.kind); err != nil {
		return "", fmt.Errorf("configure root file system: %w", err)
	}
	if err := installModules(ctx, k, mods, rootfs); err != nil {
		return "", fmt.Errorf("install kernel modules: %w", err)
	}
	if err := os.Chmod(rootfs, 0o755); err != nil {
		return "", err
	}
	// debootstrap keeps the packages it installed; the cache has them.
	debs, _ := filepath.Glob(filepath.Join(rootfs, "var/cache/apt/archives/*.deb"))
	for _, d := range debs {
		if err := os.Remove(d); err != nil {
			return "", err
		}
	}
	size := rootImageSize(cachedir.DiskUsage(rootfs))
	if _, err := run(ctx, command{name: "mkfs.ext4", args: []string{"-q", "-F", "-L", "vmdriver-root", "-d", rootfs, out, size}}); err != nil {
		return "", fmt.Errorf("make root image: %w", err)
	}
	b.logf("images: configured rootfs and made %s root.img in %.1fs", size, time.Since(step).Seconds())
	return size, nil
}

// rootImageSize returns the size of the root image for a root file
// system of used bytes, as mkfs.ext4 takes it: room for at least 512 MiB
// more, rounded up to whole GiB, and never below minRootImgSize. The
// image is sparse: the room costs no disk space until a guest writes to
// its overlay.
func rootImageSize(used int64) string {
	const gib = 1 << 30
	n := max((used+512<<20+gib-1)/gib, minRootImgGiB)
	return fmt.Sprintf("%dG", n)
}

// configureRootfs turns a minbase debootstrap into a test guest of kind
// (Systemd or Desktop). Files go through os.Root so no symlink in the
// guest tree can redirect a write onto the host.
func configureRootfs(ctx context.Context, rootfs string, kind Kind) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	files, enabled := rootFiles, systemdEnabled
	if kind == Desktop {
		files = append(slices.Clone(files), desktopFiles...)
		enabled = append(slices.Clone(enabled), desktopEnabled...)
	}
	if err := writeRootFiles(r, files); err != nil {
		return err
	}
	if err := r.MkdirAll("tmp/shared", 0o755); err != nil {
		return err
	}
	// D-Bus keeps its own copy of the machine-id unless it is a link.
	if err := r.MkdirAll("var/lib/dbus", 0o755); err != nil {
		return err
	}
	if err := r.Remove("var/lib/dbus/machine-id"); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := r.Symlink("/etc/machine-id", "var/lib/dbus/machine-id"); err != nil {
		return fmt.Errorf("link the D-Bus machine-id: %w", err)
	}
	for _, u := range systemdMasked {
		p := "etc/systemd/system/" + u
		if err := r.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := r.Symlink("/dev/null", p); err != nil {
			return fmt.Errorf("mask %s: %w", u, err)
		}
	}
	for _, g := range systemdMaskedGenerators {
		p := "etc/systemd/system-generators/" + g
		if err := r.MkdirAll(path.Dir(p), 0o755); err != nil {
			return err
		}
		if err := r.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := r.Symlink("/dev/null", p); err != nil {
			return fmt.Errorf("mask generator %s: %w", g, err)
		}
	}
	if _, err := run(ctx, command{name: "chroot", args: append([]string{rootfs, "systemctl", "enable"}, enabled...)}); err != nil {
		return err
	}
	// passwd -d root: an empty root password, as in NixOS test guests.
	shadow, err := r.ReadFile("etc/shadow")
	if err != nil {
		return err
	}
	newShadow, err := clearRootPassword(string(shadow))
	if err != nil {
		return err
	}
	if err := r.WriteFile("etc/shadow", []byte(newShadow), 0o640); err != nil {
		return err
	}
	if kind == Desktop {
		return configureDesktop(ctx, r, rootfs)
	}
	return nil
}

// writeRootFiles writes files into the guest tree r.
func writeRootFiles(r *os.Root, files []rootFile) error {
	for _, f := range files {
		if err := r.MkdirAll(path.Dir(f.path), 0o755); err != nil {
			return err
		}
		// Replace rather than write through: debootstrap copies some of
		// these from the host, possibly as symlinks.
		if err := r.Remove(f.path); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := r.WriteFile(f.path, guestFile(f.src), f.mode); err != nil {
			return err
		}
		if err := r.Chmod(f.path, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// clearRootPassword empties root's password field in a shadow file.
func clearRootPassword(shadow string) (string, error) {
	lines := strings.Split(shadow, "\n")
	for i, l := range lines {
		f := strings.Split(l, ":")
		if len(f) >= 2 && f[0] == "root" {
			f[1] = ""
			lines[i] = strings.Join(f, ":")
			return strings.Join(lines, "\n"), nil
		}
	}
	return "", fmt.Errorf("/etc/shadow has no root entry")
}

// installModules copies the given modules (and the tables modprobe needs
// to know the built-in ones) into the guest and runs depmod there.
func installModules(ctx context.Context, k *kernelTree, mods []string, rootfs string) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	base := "lib/modules/" + k.version
	files := append([]string{"modules.order", "modules.builtin", "modules.builtin.modinfo"}, mods...)
	for _, m := range files {
		data, err := os.ReadFile(filepath.Join(k.modDir, m))
		if os.IsNotExist(err) && !strings.Contains(m, "/") {
			continue // optional table
		}
		if err != nil {
			return err
		}
		dst := base + "/" + m
		if err := r.MkdirAll(path.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := r.WriteFile(dst, data, 0o644); err != nil {
			return err
		}
	}
	_, err = run(ctx, command{name: "depmod", args: []string{"-b", rootfs, k.version}})
	return err
}

func unmount(mp string) error { return syscall.Unmount(mp, syscall.MNT_DETACH) }
