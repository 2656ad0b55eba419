package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/ocr"
)

// guiRounds is how often each side is measured, alternating.
const guiRounds = 5

// gui measures the desktop guest: boot to X cold and warm, and the time
// from a marker on the screen to wait_for_text returning, vmdriver's
// (OCR variants side by side, the first match wins) against the NixOS
// driver's loop reproduced here (every variant in turn, then the match,
// then a 1 s pause before the next screenshot), with the same screenshots
// and the same tesseract.
func (b *bench) gui(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "vmdb-gui")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	scripts, err := images.Build(ctx, images.Options{Kind: images.Desktop, OutDir: dir, Names: []string{"desktop"}})
	if err != nil {
		return fmt.Errorf("building the desktop guest: %w", err)
	}
	script := scripts[0]

	// Boot to X, cold and warm.
	warmDir, err := os.MkdirTemp("", "vmdb-gui-warm")
	if err != nil {
		return err
	}
	defer os.RemoveAll(warmDir)
	if _, err := bootToX(ctx, script, warmDir); err != nil { // saves the entry
		return fmt.Errorf("saving the warm entry: %w", err)
	}
	var cold, warm []time.Duration
	for range 3 {
		d, err := bootToX(ctx, script, "")
		if err != nil {
			return fmt.Errorf("cold boot to X: %w", err)
		}
		cold = append(cold, d)
		if d, err = bootToX(ctx, script, warmDir); err != nil {
			return fmt.Errorf("warm start to X: %w", err)
		}
		warm = append(warm, d)
	}
	fmt.Fprintln(w, "Desktop guest (Xorg on QEMU's VGA), from a new machine to `wait_for_x()` returning, 3 rounds per side:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| start | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| cold boot | %s |\n| warm start | %s |\n", stats(cold), stats(warm))
	fmt.Fprintf(w, "\nCold / warm (medians): %.1fx.\n\n", float64(median(cold))/float64(median(warm)))

	// OCR latency.
	m, err := machine.New(qemu.New(), "desktop", machine.WithStartScript(script))
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.WaitForX(ctx); err != nil {
		return err
	}
	if _, err := m.Succeed(ctx, "su - alice -c 'DISPLAY=:0 xterm -title bench >/dev/null 2>&1 &'"); err != nil {
		return err
	}
	if err := m.WaitForWindow(ctx, "bench|alice|xterm"); err != nil {
		return err
	}
	// The window exists before the window manager focuses it: keys typed
	// in between are lost. The shell's prompt on the screen says the
	// xterm has the keyboard (as integration's TestGUI waits).
	if err := m.WaitForText(ctx, "alice@desktop", machine.Timeout(5*time.Minute)); err != nil {
		return err
	}
	seq, err := ocr.New(1) // one tesseract at a time, as the loop ran them
	if err != nil {
		return err
	}
	var ours, anchor []time.Duration
	for k := range guiRounds {
		for side := range 2 {
			marker := fmt.Sprintf("marker%dx%d", k, side) // no hyphen: OCR splits words at one
			if err := m.SendChars(ctx, "echo "+marker+"\n", machine.Delay(0)); err != nil {
				return err
			}
			start := time.Now()
			if side == 0 {
				if err := m.WaitForText(ctx, regexp.QuoteMeta(marker), machine.Timeout(5*time.Minute)); err != nil {
					return fmt.Errorf("vmdriver's wait_for_text: %w", err)
				}
				ours = append(ours, time.Since(start))
				continue
			}
			if err := sequentialWait(ctx, m, seq, regexp.MustCompile(regexp.QuoteMeta(marker))); err != nil {
				return fmt.Errorf("the anchor's loop: %w", err)
			}
			anchor = append(anchor, time.Since(start))
		}
	}
	fmt.Fprintf(w, "Marker typed into an xterm (`send_chars`) to the wait for it returning, %d markers per side, alternating:\n\n", guiRounds)
	fmt.Fprintln(w, "| wait | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| vmdriver `wait_for_text` (variants side by side, first match wins) | %s |\n", stats(ours))
	fmt.Fprintf(w, "| the NixOS driver's loop (all variants in turn, then match, 1 s between tries) | %s |\n", stats(anchor))
	fmt.Fprintf(w, "\nAnchor loop / vmdriver (medians): %.1fx (%d variants: %s).\n", float64(median(anchor))/float64(median(ours)), len(ocr.Variants), variantNames())
	return nil
}

// bootToX times a new machine (warm from dir when set) to wait_for_x.
func bootToX(ctx context.Context, script, dir string) (time.Duration, error) {
	opts := []machine.Option{machine.WithStartScript(script)}
	if dir != "" {
		opts = append(opts, machine.WithWarm(dir))
	}
	start := time.Now()
	m, err := machine.New(qemu.New(), "desktop", opts...)
	if err != nil {
		return 0, err
	}
	err = m.WaitForX(ctx, machine.Timeout(10*time.Minute))
	d := time.Since(start)
	return d, errors.Join(err, m.Close())
}

// sequentialWait is the NixOS driver's wait_for_text: a screenshot, every
// variant read in turn, the match tested once all are done, a 1 s pause.
func sequentialWait(ctx context.Context, m *machine.Machine, r *ocr.Reader, re *regexp.Regexp) error {
	for {
		img, err := m.Screen(ctx)
		if err != nil {
			return err
		}
		all, err := r.All(ctx, img)
		if err != nil {
			return err
		}
		for _, res := range all {
			if re.MatchString(res.Text) {
				return nil
			}
		}
		t := time.NewTimer(time.Second)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

func variantNames() string {
	s := ""
	for i, v := range ocr.Variants {
		if i > 0 {
			s += ", "
		}
		s += v.Name
	}
	return s
}
