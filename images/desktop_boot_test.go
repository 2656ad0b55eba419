package images

import (
	"fmt"
	goimage "image"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/internal/xwd"
)

// asAlice is the NixOS X11 tests' way for root to reach alice's display.
const asAlice = "DISPLAY=:0 XAUTHORITY=/home/alice/.Xauthority "

// TestDesktopBoot builds the desktop guest and boots it on QEMU's VGA
// (Xorg) and without a display device (--no-vga: Xvfb), and checks what
// NixOS X11 tests rely on: the NixOS driver's wait_for_x() probe passes,
// root reaches the display with alice's Xauthority (and with its own
// DISPLAY=:0.0), `su - alice -c 'DISPLAY=:0 xterm &'` opens an xterm
// that gets the focus, keys typed with xdotool reach it, xterm uses the
// large font, and the screen (QMP screendump, or xwd in the guest without
// a display device) shows it.
func TestDesktopBoot(t *testing.T) {
	cache := testCacheDir(t)
	for _, tt := range []struct {
		name   string
		noVGA  bool
		server string // the X server process
	}{
		{"vga", false, "Xorg"},
		{"novga", true, "Xvfb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			needBuildHost(t, Desktop)
			ctx, cancel := testContext(t, 25*time.Minute)
			defer cancel()
			start := time.Now()
			paths, err := Build(ctx, Options{Kind: Desktop, NoVGA: tt.noVGA, OutDir: t.TempDir(), Names: []string{"desk"}, CacheDir: cache, Logf: t.Logf})
			if err != nil {
				t.Fatalf("build: %v", err)
			}
			t.Logf("build: %.2fs", time.Since(start).Seconds())

			vm := launchVM(t, paths[0], "desk", nil)
			checkRestricted(t, vm)
			vm.waitBoot(t, 180*time.Second)
			waitBooted(t, vm)
			t.Logf("boot to graphical.target (X and alice's session up): %.2fs", time.Since(vm.start).Seconds())

			// The NixOS driver's wait_for_x() probe, verbatim.
			vm.succeed(t, `journalctl -b SYSLOG_IDENTIFIER=systemd | grep "Reached target Current graphical" && [ -e /tmp/.X11-unix/X0 ]`)
			vm.succeed(t, asAlice+"xdpyinfo >/dev/null")
			// Her session is a logind one, with her own user manager.
			if got := vm.succeed(t, "loginctl show-user alice -p State --value; su -l alice --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-system-running --wait'"); got != "active\nrunning\n" {
				t.Errorf("alice's login and user manager: %q, want active and running", got)
			}
			vm.succeed(t, "xdpyinfo >/dev/null") // the backdoor's DISPLAY=:0.0, root's own ~/.Xauthority
			if out, st := vm.run(t, "XAUTHORITY=/dev/null DISPLAY=:0 xdpyinfo 2>&1", 30*time.Second); st == 0 {
				t.Errorf("a client without the cookie reached the display:\n%s", out)
			}
			vm.succeed(t, "pgrep -x "+tt.server+" >/dev/null")
			if got := vm.succeed(t, "test -e /dev/dri/card0 && echo card0 || echo none"); got != map[bool]string{false: "card0\n", true: "none\n"}[tt.noVGA] {
				t.Errorf("/dev/dri: %q", got)
			}
			if got := vm.succeed(t, "su - alice -c 'DISPLAY=:0 appres XTerm xterm' | grep -i -E 'facename|facesize'"); !strings.Contains(got, "DejaVu Sans Mono") || !strings.Contains(got, "14") {
				t.Errorf("xterm's resources: %q, want faceName DejaVu Sans Mono and faceSize 14", got)
			}

			opened := time.Now()
			// The redirection keeps xterm off the backdoor's output pipe,
			// which the shell would otherwise wait for.
			vm.succeed(t, "su - alice -c 'DISPLAY=:0 xterm &' >/dev/null 2>&1")
			poll(t, vm, "an xterm managed by the window manager", asAlice+"xdotool search --classname xterm >/dev/null && "+asAlice+"wmctrl -l | grep -q .")
			poll(t, vm, "the xterm with the focus", `f=$(`+asAlice+`xdotool getwindowfocus) && `+asAlice+`xdotool search --classname xterm | grep -qx "$f"`)
			t.Logf("xterm up and focused %.2fs after su", time.Since(opened).Seconds())
			vm.succeed(t, asAlice+"xdotool type --delay 20 'echo typed-by-xdotool >/tmp/typed' && "+asAlice+"xdotool key Return")
			poll(t, vm, "the typed command's file", "grep -q typed-by-xdotool /tmp/typed")

			var shot goimage.Image
			if tt.noVGA {
				shot = pollScreen(t, func() goimage.Image { return vm.xwdRoot(t) })
			} else {
				shot = pollScreen(t, func() goimage.Image { return vm.screendump(t) })
			}
			t.Logf("screen %v: %s", shot.Bounds().Size(), describe(shot))
			vm.shutdown(t, "poweroff", 90*time.Second)
		})
	}
}

// TestPackagesBoot builds a systemd guest with an extra package (and its
// dependencies), checks that the same package set in another order and
// spelling is a cache hit, and runs the package in the guest.
func TestPackagesBoot(t *testing.T) {
	needBuildHost(t, Systemd)
	cache := testCacheDir(t)
	ctx, cancel := testContext(t, 25*time.Minute)
	defer cancel()
	out := t.TempDir()
	paths, err := Build(ctx, Options{Kind: Systemd, Packages: []string{"jq"}, OutDir: out, Names: []string{"pkgs"}, CacheDir: cache, Logf: t.Logf})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	var logs logBuffer
	if _, err := Build(ctx, Options{Kind: Systemd, Packages: []string{"jq", "jq"}, OutDir: out, Names: []string{"pkgs"}, CacheDir: cache, Logf: logs.Logf}); err != nil {
		t.Fatalf("second build: %v", err)
	}
	if !strings.Contains(logs.String(), "cache hit") {
		t.Fatalf("the same package set was not a cache hit:\n%s", logs.String())
	}
	vm := launchVM(t, paths[0], "pkgs", nil)
	checkRestricted(t, vm)
	vm.waitBoot(t, 120*time.Second)
	if got := vm.succeed(t, `echo '{"a":[1,2]}' | jq -c .a`); got != "[1,2]\n" {
		t.Errorf("jq: %q", got)
	}
	if got := vm.succeed(t, "dpkg-query -W -f '${Status}' jq"); got != "install ok installed" {
		t.Errorf("dpkg status of jq: %q", got)
	}
	vm.shutdown(t, "poweroff", 60*time.Second)
}

// checkRestricted asks QEMU whether its user-mode network lets packets
// out (it must not); called before the guest boots, it holds before
// anything could send one.
func checkRestricted(t *testing.T, vm *testVM) {
	t.Helper()
	if out := vm.monitor(t, "info network"); !strings.Contains(out, "type=user,net=10.0.2.0,restrict=on") {
		t.Fatalf("%s: QEMU does not report a restricted user-mode network:\n%s", vm.name, out)
	}
}

// waitBooted waits until systemd finished booting (every start job done)
// and fails on failed units.
func waitBooted(t *testing.T, vm *testVM) {
	t.Helper()
	out, st := vm.run(t, "timeout 280 systemctl is-system-running --wait", 300*time.Second)
	if st != 0 || out != "running\n" {
		failed, _ := vm.run(t, "systemctl --failed --no-pager; systemctl list-jobs --no-pager; journalctl -b -u display-manager -u vmdriver-x-session --no-pager | tail -30", 30*time.Second)
		t.Fatalf("%s: systemctl is-system-running = %q (status %d)\n%s", vm.name, out, st, failed)
	}
}

// poll runs the shell condition cond in the guest until it holds, for at
// most a minute (under TCG, on a shared host).
func poll(t *testing.T, vm *testVM, what, cond string) {
	t.Helper()
	loop := fmt.Sprintf("for i in $(seq 300); do (%s) && exit 0; sleep 0.2; done; exit 1", cond)
	if out, st := vm.run(t, loop, 90*time.Second); st != 0 {
		t.Fatalf("%s: no %s within a minute: %q\nserial:\n%s", vm.name, what, out, vm.serial.tail(30))
	}
}

// screendump takes a screenshot the way the driver does (QMP screendump
// as PNG) and decodes it.
func (vm *testVM) screendump(t *testing.T) goimage.Image {
	t.Helper()
	file := filepath.Join(filepath.Dir(vm.shared), "screen.png")
	vm.qmpExecute(t, "screendump", map[string]any{"filename": file, "format": "png"}, nil)
	return decodeFile(t, file, png.Decode)
}

// xwdRoot dumps the root window inside the guest (through the shared
// directory, not the console) and decodes it.
func (vm *testVM) xwdRoot(t *testing.T) goimage.Image {
	t.Helper()
	vm.succeed(t, "xwd -root -silent -out /tmp/shared/root.xwd")
	return decodeFile(t, filepath.Join(vm.shared, "root.xwd"), func(r io.Reader) (goimage.Image, error) { return xwd.Decode(r) })
}

// decodeFile decodes the image file with decode.
func decodeFile(t *testing.T, file string, decode func(io.Reader) (goimage.Image, error)) goimage.Image {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := decode(f)
	if err != nil {
		t.Fatalf("decode %s: %v", file, err)
	}
	return img
}

// screenStats returns the mean and standard deviation of an image's
// luminance (0-255) and the fraction of its pixels that are nearly
// white.
func screenStats(img goimage.Image) (mean, stddev, white float64) {
	b := img.Bounds()
	var sum, sq float64
	var n, bright int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sq += l * l
			n++
			if l > 230 {
				bright++
			}
		}
	}
	mean = sum / float64(n)
	return mean, math.Sqrt(max(sq/float64(n)-mean*mean, 0)), float64(bright) / float64(n)
}

func describe(img goimage.Image) string {
	mean, sd, white := screenStats(img)
	return fmt.Sprintf("luminance mean %.1f, standard deviation %.1f, %.1f%% white", mean, sd, 100*white)
}

// pollScreen takes screenshots until one is not blank and shows a large
// white area (the xterm, black on white), for at most a minute: a window
// can exist before it is painted.
func pollScreen(t *testing.T, shoot func() goimage.Image) goimage.Image {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		img := shoot()
		if _, sd, white := screenStats(img); sd > 20 && white > 0.05 {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("the screen shows no xterm after a minute: %s", describe(img))
		}
		<-tick.C
	}
}
