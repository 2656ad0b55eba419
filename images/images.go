// Package images builds the project's test guests from Debian packages and
// wraps each machine in a start script that follows the nixpkgs
// `run-<name>-vm` contract, so the driver boots them exactly like NixOS
// test VMs.
//
// Three kinds exist. Minimal is a Debian kernel plus an initramfs holding
// static busybox and bash that runs the backdoor shell directly (about two
// seconds to the banner under TCG, no root needed to build). Systemd is a
// debootstrap'ed Debian root file system on a raw ext4 image with a
// backdoor.service, the realistic target for wait_for_unit and friends
// (needs root to build). Desktop is the systemd guest plus an X11 session
// as NixOS X11 tests expect it: user alice logged into display :0 with a
// window manager, xterm, xdotool and the X utilities, on QEMU's VGA
// (Xorg) or, built with NoVGA, on Xvfb. Systemd and Desktop guests take
// extra Debian packages (Options.Packages).
//
// Images are cached by content under CacheDir/images/<kind>-<hash>/: the
// hash covers the exact package versions and every builder input, so a
// second Build is a cache hit and only rewrites the small start scripts.
// Many machine names share one cached image. Every Build trims the cache
// to CacheCap (4 GiB by default), least recently used first; ListCache
// and Prune inspect and trim it on demand.
//
// Machines may be put on VLANs (NAME:1,2): each VLAN NIC connects to the
// driver's VDE switch of that VLAN, and the addresses, MACs and
// /etc/hosts follow the NixOS test framework (see ParseNodes). The
// topology lives only in the start scripts, which hand it to the guest
// through QEMU fw_cfg; the cached image holds the code that applies it.
package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// Kind selects which test guest to build.
type Kind string

// The guest kinds Build knows.
const (
	// Minimal is a kernel + busybox/bash initramfs guest that runs the
	// backdoor as soon as the kernel is up.
	Minimal Kind = "minimal"
	// Systemd is a debootstrap'ed Debian guest booting systemd from a
	// virtio disk, with the backdoor as a systemd service.
	Systemd Kind = "systemd"
	// Desktop is the systemd guest with an X11 session: Xorg on QEMU's
	// VGA (Xvfb without one), a window manager, xterm and xdotool, user
	// alice logged into display :0.
	Desktop Kind = "desktop"
)

// rootfs reports whether guests of kind boot a debootstrap'ed root file
// system (built as root) rather than staying in the initramfs.
func (k Kind) rootfs() bool { return k == Systemd || k == Desktop }

// Options says what Build builds and where.
type Options struct {
	// Kind is the guest kind (Minimal, Systemd or Desktop).
	Kind Kind
	// OutDir receives one start script run-NAME-vm per name. It is
	// created if missing.
	OutDir string
	// Names are the machines, each NAME or NAME:VLAN[,VLAN...] (see
	// ParseNodes). A name is also the guest's host name, so it must be
	// a valid one: letters, digits, '-' and '_', starting and ending
	// with a letter or digit, at most 63 characters. A bare NAME has no
	// VLAN NIC (the NixOS default would be VLAN 1), only eth0.
	Names []string
	// CacheDir holds downloaded packages and built images; the start
	// scripts refer to the images in it, so it must outlive them.
	// Default: DefaultCacheDir().
	CacheDir string
	// NetOutbound lets the guests reach the host's networks (and through
	// them the internet) via QEMU's user-mode NAT, with a default route
	// and a DNS server. Off by default: the user-mode NIC is restricted,
	// so nothing a test does inside a guest can touch the host's
	// networks; forwarded host ports work either way. Turn it on only
	// for a test that must download something, knowing that a guest
	// then sees whatever the host can reach.
	NetOutbound bool
	// NoVGA gives the machines no display device (QEMU -vga none), as
	// on hosts or in tests that have no screen: a Desktop guest then
	// runs its X session on Xvfb instead of Xorg. The image is the same
	// either way; only the start scripts differ.
	NoVGA bool
	// Packages are extra Debian packages to install, with their
	// dependencies (not their recommendations), into a Systemd or
	// Desktop guest, so tests can exercise their own software. The
	// image is cached by the whole package set. The Minimal guest, a
	// busybox initramfs without a C library or package database, takes
	// none.
	Packages []string
	// Logf, if set, receives progress messages (including "cache hit").
	Logf func(format string, args ...any)
}

var (
	// ErrNotSupported is returned for requests the builder does not
	// handle (for example a host that is not amd64).
	ErrNotSupported = errors.New("not supported yet")
	// ErrNeedRoot is returned when a build step needs root (debootstrap)
	// and the process is not root.
	ErrNeedRoot = errors.New("needs root")
	// ErrBadOptions is returned for invalid Options.
	ErrBadOptions = errors.New("invalid image build options")
)

// builderVersion is part of every image hash: bump it whenever the build
// steps change in a way the hashed inputs do not capture.
const builderVersion = "vmdriver-images-4" // 3: virtio_mmio for -M microvm; 4: TAP NICs (QEMU_TAP_FD_<n>)

// Build builds (or finds in the cache) the image of opts.Kind and writes
// OutDir/run-NAME-vm for every machine, returning the scripts' paths in
// the order of opts.Names. Then it prunes the cache to CacheCap, least
// recently used first, sparing the image just used; pruning problems are
// only logged.
func Build(ctx context.Context, opts Options) ([]string, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	nodes, err := validate(opts)
	if err != nil {
		return nil, err
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		if cacheDir, err = DefaultCacheDir(); err != nil {
			return nil, fmt.Errorf("%w (set Options.CacheDir)", err)
		}
	}
	cacheDir, err = filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("resolve cache directory: %w", err)
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("resolve output directory: %w", err)
	}

	b := &builder{cache: cacheDir, logf: logf}
	start := time.Now()
	img, err := b.image(ctx, opts.Kind, opts.Packages)
	if err != nil {
		return nil, fmt.Errorf("build %s image: %w", opts.Kind, err)
	}
	logf("images: %s image %s ready in %.2fs", opts.Kind, img.dir, time.Since(start).Seconds())

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var paths []string
	for _, n := range nodes {
		p := filepath.Join(outDir, "run-"+n.Name+"-vm")
		so := scriptOptions{outbound: opts.NetOutbound, noVGA: opts.NoVGA}
		if err := writeFileAtomic(p, []byte(renderScript(img, nodes, n, so)), 0o755); err != nil {
			return nil, fmt.Errorf("write start script for %q: %w", n.Name, err)
		}
		desc, err := json.MarshalIndent(machineDescription(img, nodes, n, so), "", "  ")
		if err != nil {
			return nil, err
		}
		if err := writeFileAtomic(backend.DescriptionPath(p), append(desc, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("write machine description for %q: %w", n.Name, err)
		}
		paths = append(paths, p)
	}
	b.prune(ctx, img.dir)
	return paths, nil
}

// validate checks opts and returns the numbered nodes of opts.Names.
func validate(opts Options) ([]Node, error) {
	switch opts.Kind {
	case Minimal, Systemd, Desktop:
	case "":
		return nil, fmt.Errorf("%w: no kind given (use %q, %q or %q)", ErrBadOptions, Minimal, Systemd, Desktop)
	default:
		return nil, fmt.Errorf("%w: unknown kind %q (use %q, %q or %q)", ErrBadOptions, opts.Kind, Minimal, Systemd, Desktop)
	}
	if opts.OutDir == "" {
		return nil, fmt.Errorf("%w: no output directory given", ErrBadOptions)
	}
	if err := checkPackages(opts.Kind, opts.Packages); err != nil {
		return nil, err
	}
	return ParseNodes(opts.Names)
}

// writeFileAtomic writes data to a temporary file next to path and renames
// it into place, so readers never see a half-written file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
