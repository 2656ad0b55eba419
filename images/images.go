// Package images builds the project's test guests from Debian packages and
// wraps each machine in a start script that follows the nixpkgs
// `run-<name>-vm` contract, so the driver boots them exactly like NixOS
// test VMs.
//
// Two kinds exist. Minimal is a Debian kernel plus an initramfs holding
// static busybox and bash that runs the backdoor shell directly (about two
// seconds to the banner under TCG, no root needed to build). Systemd is a
// debootstrap'ed Debian root file system on a raw ext4 image with a
// backdoor.service, the realistic target for wait_for_unit and friends
// (needs root to build).
//
// Images are cached by content under CacheDir/images/<kind>-<hash>/: the
// hash covers the exact package versions and every builder input, so a
// second Build is a cache hit and only rewrites the small start scripts.
// Many machine names share one cached image.
package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
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
)

// Options says what Build builds and where.
type Options struct {
	// Kind is the guest kind (Minimal or Systemd).
	Kind Kind
	// OutDir receives one start script run-NAME-vm per name. It is
	// created if missing.
	OutDir string
	// Names are the machine names. A name is also the guest's host name,
	// so it is limited to letters, digits, '-', '_' and '.'.
	Names []string
	// CacheDir holds downloaded packages and built images; the start
	// scripts refer to the images in it, so it must outlive them.
	// Default: os.UserCacheDir()/vmdriver.
	CacheDir string
	// Logf, if set, receives progress messages (including "cache hit").
	Logf func(format string, args ...any)
}

var (
	// ErrNotSupported is returned for requests the builder does not
	// handle yet (for example NAME:VLAN lists).
	ErrNotSupported = errors.New("not supported yet")
	// ErrNeedRoot is returned when a build step needs root (debootstrap)
	// and the process is not root.
	ErrNeedRoot = errors.New("needs root")
	// ErrBadOptions is returned for invalid Options.
	ErrBadOptions = errors.New("invalid image build options")
)

// builderVersion is part of every image hash: bump it whenever the build
// steps change in a way the hashed inputs do not capture.
const builderVersion = "vmdriver-images-1"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// Build builds (or finds in the cache) the image of opts.Kind and writes
// OutDir/run-NAME-vm for every name, returning the scripts' paths in the
// order of opts.Names.
func Build(ctx context.Context, opts Options) ([]string, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := validate(opts); err != nil {
		return nil, err
	}
	cacheDir := opts.CacheDir
	if cacheDir == "" {
		ucd, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("find the user cache directory (set Options.CacheDir): %w", err)
		}
		cacheDir = filepath.Join(ucd, "vmdriver")
	}
	cacheDir, err := filepath.Abs(cacheDir)
	if err != nil {
		return nil, fmt.Errorf("resolve cache directory: %w", err)
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("resolve output directory: %w", err)
	}

	b := &builder{cache: cacheDir, logf: logf}
	start := time.Now()
	img, err := b.image(ctx, opts.Kind)
	if err != nil {
		return nil, fmt.Errorf("build %s image: %w", opts.Kind, err)
	}
	logf("images: %s image %s ready in %.2fs", opts.Kind, img.dir, time.Since(start).Seconds())

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	var paths []string
	for _, name := range opts.Names {
		p := filepath.Join(outDir, "run-"+name+"-vm")
		if err := writeFileAtomic(p, []byte(renderScript(img, name)), 0o755); err != nil {
			return nil, fmt.Errorf("write start script for %q: %w", name, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func validate(opts Options) error {
	switch opts.Kind {
	case Minimal, Systemd:
	case "":
		return fmt.Errorf("%w: no kind given (use %q or %q)", ErrBadOptions, Minimal, Systemd)
	default:
		return fmt.Errorf("%w: unknown kind %q (use %q or %q)", ErrBadOptions, opts.Kind, Minimal, Systemd)
	}
	if opts.OutDir == "" {
		return fmt.Errorf("%w: no output directory given", ErrBadOptions)
	}
	if len(opts.Names) == 0 {
		return fmt.Errorf("%w: no machine names given", ErrBadOptions)
	}
	seen := map[string]bool{}
	for _, n := range opts.Names {
		if i := strings.IndexByte(n, ':'); i >= 0 {
			return fmt.Errorf("machine %q: VLAN lists (NAME:VLAN,VLAN) are %w; give the bare name %q", n, ErrNotSupported, n[:i])
		}
		if !nameRE.MatchString(n) || len(n) > 63 {
			return fmt.Errorf("%w: machine name %q must be 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit", ErrBadOptions, n)
		}
		if seen[n] {
			return fmt.Errorf("%w: machine name %q given twice", ErrBadOptions, n)
		}
		seen[n] = true
	}
	return nil
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
