package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
)

// desktopInclude are the packages the desktop guest adds to the systemd
// guest's: Xorg (modesetting is built in) with libinput for QEMU's VGA,
// Xvfb for machines without a display device, the window manager, xterm
// with a scalable font OCR can read, and the tools NixOS X11 tests call
// (xdotool, wmctrl, xwininfo/xprop/xdpyinfo, xwd, xauth).
//
// The window manager is blackbox rather than NixOS's icewm: like icewm
// it places windows freely, decorates them with their titles, gives new
// windows the focus (so typed keys reach a fresh xterm) and keeps the
// EWMH client list wmctrl reads, but it takes 0.9 MB where icewm's
// imlib2 closure takes 73 packages and 127 MiB.
var desktopInclude = []string{
	"xserver-xorg-core", "xserver-xorg-input-libinput", "xvfb", "xauth",
	"blackbox", "xterm", "fonts-dejavu-core",
	"xdotool", "wmctrl", "x11-utils", "x11-apps",
	// pam_systemd: alice's X session is a logind session with her own
	// user manager.
	"libpam-systemd",
}

// desktopModules are the kernel modules the desktop guest adds to the
// systemd guest's (with their dependencies: drm, drm_kms_helper, ttm,
// drm_vram_helper, ...): bochs drives QEMU's standard VGA, virtio_gpu
// a virtio GPU given through QEMU_OPTS, and psmouse the PS/2 mouse. udev
// loads them by modalias.
var desktopModules = []string{"bochs", "virtio_gpu", "psmouse"}

// displayModules are loaded by the minimal guest's init in the background
// once the backdoor runs: the bochs DRM driver's framebuffer emulation
// brings up fbcon, so the VGA screen (and a screenshot) shows tty1. A PVH
// boot has no firmware text console for the kernel to use.
var displayModules = []string{"bochs"}

// desktopFiles are written into the desktop guest after rootFiles;
// guest/desktop is hashed only into desktop images.
var desktopFiles = []rootFile{
	{"usr/local/sbin/vmdriver-xserver", "desktop/vmdriver-xserver", 0o755},
	{"usr/local/bin/vmdriver-wait-x", "desktop/vmdriver-wait-x", 0o755},
	{"etc/systemd/system/display-manager.service", "desktop/display-manager.service", 0o644},
	{"etc/systemd/system/vmdriver-x-session.service", "desktop/vmdriver-x-session.service", 0o644},
	{"etc/systemd/system/graphical-session.target", "desktop/graphical-session.target", 0o644},
	{"etc/systemd/system.conf.d/vmdriver-desktop.conf", "desktop/system.conf", 0o644},
	{"etc/udev/rules.d/71-vmdriver-drm.rules", "desktop/drm.rules", 0o644},
	// The root window's menu; Debian's would come from the menu package.
	{"etc/X11/blackbox/blackbox-menu", "desktop/blackbox-menu", 0o644},
}

// desktopEnabled are units enabled in the desktop guest (graphical.target,
// the default, already wants display-manager.service).
var desktopEnabled = []string{"graphical-session.target"}

// desktopUsers are the desktop guest's users, as in the NixOS test
// framework's user-account.nix: alice is logged into display :0.
var desktopUsers = []struct {
	name, comment string
	uid           int
}{
	{"alice", "Alice Foobar", 1000},
	{"bob", "Bob Foobar", 1001},
}

// desktopPassword is every desktop user's password, as in NixOS tests.
const desktopPassword = "foobar"

// xtermResources are appended to xterm's application defaults: xterm's
// bitmap font defeats OCR, DejaVu Sans Mono at 14 points does not. Every
// xterm on the display gets them, whoever starts it, without xrdb.
const xtermResources = `
! vmdriver desktop guest: a large scalable font, so screen text is
! readable by OCR (as xterm -fa 'DejaVu Sans Mono' -fs 14).
*faceName: DejaVu Sans Mono
*faceSize: 14
`

// debianPackageName is the syntax of Debian package names (Debian Policy
// 5.6.7): lower-case letters, digits, '+', '-' and '.', at least two
// characters, starting with a letter or digit.
var debianPackageName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)

// checkPackages validates Options.Packages for kind.
func checkPackages(kind Kind, pkgs []string) error {
	if len(pkgs) == 0 {
		return nil
	}
	if !kind.rootfs() {
		return fmt.Errorf("%w: extra packages (%s) need a Debian root file system: build --kind %s or %s "+
			"(the %s guest is a busybox initramfs without a C library or package database)",
			ErrBadOptions, strings.Join(pkgs, ","), Systemd, Desktop, kind)
	}
	for _, p := range pkgs {
		if !debianPackageName.MatchString(p) {
			return fmt.Errorf("%w: %q is not a Debian package name (lower-case letters, digits, '+', '-' and '.', "+
				"at least two characters, starting with a letter or digit; no versions or architectures)", ErrBadOptions, p)
		}
	}
	return nil
}

// rootfsPackages returns the packages debootstrap includes in a guest of
// kind: the systemd guest's, the desktop's, then the extra ones, sorted,
// each package once.
func rootfsPackages(kind Kind, extra []string) []string {
	pkgs := slices.Clone(systemdInclude)
	if kind == Desktop {
		pkgs = append(pkgs, desktopInclude...)
	}
	extra = slices.Clone(extra)
	slices.Sort(extra)
	for _, p := range slices.Compact(extra) {
		if !slices.Contains(pkgs, p) {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

// configureDesktop adds alice and bob and xterm's font to the desktop
// guest's tree r at rootfs (configureRootfs wrote its files).
func configureDesktop(ctx context.Context, r *os.Root, rootfs string) error {
	var passwords bytes.Buffer
	for _, u := range desktopUsers {
		args := []string{rootfs, "useradd", "--create-home", "--shell", "/bin/bash",
			"--uid", fmt.Sprint(u.uid), "--comment", u.comment, u.name}
		if _, err := run(ctx, command{name: "chroot", args: args}); err != nil {
			return fmt.Errorf("add user %s: %w", u.name, err)
		}
		fmt.Fprintf(&passwords, "%s:%s\n", u.name, desktopPassword)
	}
	if _, err := run(ctx, command{name: "chroot", args: []string{rootfs, "chpasswd"}, stdin: &passwords}); err != nil {
		return fmt.Errorf("set passwords: %w", err)
	}
	const appDefaults = "etc/X11/app-defaults/XTerm"
	xterm, err := r.ReadFile(appDefaults)
	if err != nil {
		return fmt.Errorf("xterm's application defaults: %w", err)
	}
	return r.WriteFile(appDefaults, append(xterm, xtermResources...), 0o644)
}
