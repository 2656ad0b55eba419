package images

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// guestFiles are the scripts and unit files put into the guests. They are
// hashed into every image key, so editing one rebuilds the images.
//
//go:embed guest
var guestFiles embed.FS

func guestFile(name string) []byte {
	data, err := guestFiles.ReadFile("guest/" + name)
	if err != nil {
		panic("images: missing embedded guest file " + name) // a build mistake, not a runtime condition
	}
	return data
}

// initrdInputs is what goes into an initramfs.
type initrdInputs struct {
	busyboxRoot string // unpacked busybox-static
	bashRoot    string // unpacked bash-static
	kernel      *kernelTree
	modules     []string // module paths (relative to the modules dir) in load order
	// displayModules are loaded after the backdoor started, in order.
	displayModules []string
	// vsockModules are loaded before switch_root for a vsock backdoor.
	vsockModules []string
}

// buildInitrd writes the uncompressed newc initramfs to out. Uncompressed
// because the kernel would otherwise spend TCG time inflating it.
func buildInitrd(ctx context.Context, in initrdInputs, out string) error {
	t := newCPIOTree()
	for _, d := range []string{"bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "newroot"} {
		t.Dir(d, 0o755)
	}
	t.Dir("tmp", 0o1777)
	t.Dir("var/tmp", 0o1777)
	t.Dir("var/log", 0o755)
	t.Symlink("var/run", "/run")
	t.Dir("root", 0o700)
	// The kernel opens /dev/console for init before devtmpfs is mounted.
	t.CharDev("dev/console", 0o600, 5, 1)
	t.CharDev("dev/null", 0o666, 1, 3)

	busybox, err := os.ReadFile(filepath.Join(in.busyboxRoot, "bin/busybox"))
	if err != nil {
		return fmt.Errorf("busybox-static package: %w", err)
	}
	t.File("bin/busybox", 0o755, busybox)
	// Ask the (static) busybox itself which applets it has and where
	// they belong.
	list, err := run(ctx, command{name: filepath.Join(in.busyboxRoot, "bin/busybox"), args: []string{"--list-full"}})
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, p := range strings.Fields(string(list)) {
		if p == "bin/busybox" || p == "linuxrc" || !strings.Contains(p, "/") {
			continue
		}
		t.Symlink(p, "/bin/busybox")
	}
	bash, err := os.ReadFile(filepath.Join(in.bashRoot, "bin/bash-static"))
	if err != nil {
		return fmt.Errorf("bash-static package: %w", err)
	}
	t.File("bin/bash", 0o755, bash)

	t.File("init", 0o755, guestFile("init"))
	t.File("bin/vmdriver-backdoor", 0o755, guestFile("backdoor"))
	t.File("bin/vmdriver-net", 0o755, guestFile("vmdriver-net"))
	t.File("etc/profile", 0o644, guestFile("profile"))
	t.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/bash\n"))
	t.File("etc/group", 0o644, []byte("root:x:0:\ntty:x:5:\n"))
	t.File("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))

	for list, mods := range map[string][]string{"modules": in.modules, "display-modules": in.displayModules, "vsock-modules": in.vsockModules} {
		var paths bytes.Buffer
		for _, m := range mods {
			data, err := readModule(ctx, filepath.Join(in.kernel.modDir, m))
			if err != nil {
				return err
			}
			rel := in.kernel.version + "/" + stripModuleCompression(m)
			t.File("lib/modules/"+rel, 0o644, data)
			paths.WriteString(rel + "\n")
		}
		t.File("etc/vmdriver/"+list, 0o644, paths.Bytes())
	}

	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := t.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write initramfs: %w", err)
	}
	return f.Close()
}

// stripModuleCompression maps foo.ko.xz to foo.ko: the initramfs holds
// modules uncompressed because busybox insmod loads them as they are.
func stripModuleCompression(p string) string {
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if strings.HasSuffix(p, ".ko"+ext) {
			return strings.TrimSuffix(p, ext)
		}
	}
	return p
}

// readModule returns a module file's contents, decompressed.
func readModule(ctx context.Context, p string) ([]byte, error) {
	tool := map[string]string{".xz": "xz", ".zst": "zstd", ".gz": "gzip"}[filepath.Ext(p)]
	if tool == "" {
		return os.ReadFile(p)
	}
	out, err := run(ctx, command{name: tool, args: []string{"-dc", p}})
	if err != nil {
		return nil, fmt.Errorf("decompress module %s: %w", filepath.Base(p), err)
	}
	return out, nil
}
