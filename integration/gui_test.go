package integration

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// guiScript is a NixOS-style GUI test, as nixpkgs writes them: the same
// script runs on a desktop with a display device (Xorg on QEMU's VGA,
// keys through QEMU) and on one without (Xvfb, keys through xdotool,
// screenshots through xwd).
const guiScript = `
machine.wait_for_x()
machine.succeed("su - alice -c 'DISPLAY=:0 xterm -title probe >/dev/null 2>&1 &'")
machine.wait_for_window("probe|alice|xterm")
names = machine.get_window_names()
assert any(["probe" in n or "alice" in n or "xterm" in n for n in names]), names
machine.wait_for_text("alice@machine")   # the shell's prompt: keys now reach it
machine.send_chars("echo kumquat-31337\n")
machine.wait_for_text("kumquat-31337", timeout=300)
machine.screenshot("screen")
variants = machine.get_screen_text_variants()
assert any(["kumquat" in v.replace(" ", "") for v in variants]), variants
`

// TestGUI runs guiScript on both desktop variants, then checks the
// screenshot's pixels, and that a wait for text that never appears fails
// at its deadline with what the screen read.
func TestGUI(t *testing.T) {
	if testing.Short() {
		t.Skip("boots desktop VMs")
	}
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "tesseract")
	for _, v := range []struct {
		name  string
		noVGA bool
	}{{"vga", false}, {"no-display", true}} {
		t.Run(v.name, func(t *testing.T) {
			scripts, err := images.Build(t.Context(), images.Options{Kind: images.Desktop, NoVGA: v.noVGA, OutDir: t.TempDir(), Names: []string{"machine"}})
			if err != nil {
				if testenv.Required() {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			out := t.TempDir()
			var log bytes.Buffer
			rep := report.New(report.Options{Out: &log})
			d, err := driver.New(t.Context(), driver.Config{Machines: []driver.MachineConfig{{Name: "machine", StartScript: scripts[0]}}, OutputDir: out},
				driver.WithBackend(sharedBackend()), driver.WithLogger(rep),
				driver.WithMachineOptions(machine.WithBootTimeout(bootTimeout)))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			err = script.Run(t.Context(), script.Options{Driver: d, Filename: "gui.py", Source: []byte(guiScript), Logger: rep, Reporter: rep, Stdout: &log})
			rep.Close()
			if err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}

			// The screenshot shows a real picture, not one colour.
			f, err := os.Open(filepath.Join(out, "screen.png"))
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if v := variance(img); v < 100 {
				t.Errorf("screenshot pixel variance %.1f: blank", v)
			}

			// A wait for text that never shows ends at its deadline and
			// says what the screen read.
			m := d.Machines()[0]
			start := time.Now()
			err = m.WaitForText(t.Context(), "never-on-this-screen", machine.Timeout(5*time.Second))
			if err == nil || !strings.Contains(err.Error(), "the screen reads") || !strings.Contains(strings.ReplaceAll(err.Error(), " ", ""), "kumquat") {
				t.Errorf("WaitForText of absent text = %v; want a timeout quoting the screen's text", err)
			}
			t.Logf("absent text: gave up after %s", time.Since(start).Round(time.Millisecond))
		})
	}
}

// variance is the variance of the image's gray levels.
func variance(img image.Image) float64 {
	b := img.Bounds()
	var sum, sq float64
	n := float64(b.Dx() * b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := float64(r+g+bl) / 3 / 257
			sum += l
			sq += l * l
		}
	}
	mean := sum / n
	return sq/n - mean*mean
}
