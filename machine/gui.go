package machine

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
	"github.com/vmdriver/vmdriver/internal/xwd"
	"github.com/vmdriver/vmdriver/ocr"
)

// WaitForX waits until the guest's X server on display :0 is up. Default
// timeout: DefaultWaitTimeout.
func (m *Machine) WaitForX(ctx context.Context, opts ...WaitOption) error {
	c := waitOptions(opts)
	return m.Nested("waiting for the X11 server", func() error {
		return m.retry(ctx, "the X11 server", c, m.statusProbe(guestcmd.XReady(), false))
	})
}

// windowTitle matches a window line of `xwininfo -root -tree`:
// `0x400001 "title": ("instance" "Class")  ...`.
var windowTitle = regexp.MustCompile(`^\s*0x[0-9a-f]+ "((?:[^"\\]|\\.)*)"`)

// GetWindowNames lists the titles of the X11 windows on display :0.
func (m *Machine) GetWindowNames(ctx context.Context) ([]string, error) {
	out, err := m.Succeed(ctx, guestcmd.WindowTree())
	if err != nil {
		return nil, err
	}
	return windowNames(out), nil
}

func windowNames(tree string) []string {
	var names []string
	for _, line := range strings.Split(tree, "\n") {
		if sm := windowTitle.FindStringSubmatch(line); sm != nil {
			names = append(names, sm[1])
		}
	}
	return names
}

// WaitForWindow waits until an X11 window's title matches the regular
// expression pattern. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitForWindow(ctx context.Context, pattern string, opts ...WaitOption) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("machine %s: wait for window: %w", m.name, err)
	}
	c := waitOptions(opts)
	what := fmt.Sprintf("an X11 window matching %q", pattern)
	return m.Nested("waiting for "+what, func() error {
		return m.retry(ctx, what, c, func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
			r, err := m.exec(ctx, guestcmd.WindowTree(), execParams{guestTimeout: budget})
			if err != nil {
				return false, "", err
			}
			names := windowNames(r.Output)
			for _, n := range names {
				if re.MatchString(n) {
					return true, "", nil
				}
			}
			seen := "windows: " + strings.Join(quoteAll(names), ", ")
			if r.Status != 0 {
				seen = fmt.Sprintf("xwininfo exited with status %d: %s", r.Status, strings.TrimSpace(r.Output))
			}
			if last {
				m.Log("last chance to match " + strconv.Quote(pattern) + "; " + seen)
			}
			return false, seen, nil
		})
	})
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// Screen returns the machine's screen: the hypervisor's display, or, for
// a machine without a display device, the guest's X server (xwd on
// display :0, decoded here).
func (m *Machine) Screen(ctx context.Context) (image.Image, error) {
	if err := m.beforeCommand(ctx); err != nil {
		return nil, err
	}
	// A backend without screenshots has no display device at all.
	s, inst, err := capability[backend.Screenshotter](ctx, m, "screenshot")
	if err != nil && !errors.Is(err, backend.ErrUnsupported) {
		return nil, err
	}
	if known, has := m.display(inst); s != nil && (!known || has) {
		img, err := m.hypervisorScreen(ctx, s)
		if !errors.Is(err, backend.ErrNoDisplay) {
			m.setDisplay(inst, err == nil || known)
			return img, err
		}
		m.setDisplay(inst, false)
	}
	return m.guestScreen(ctx)
}

// hasDisplay reports whether the running machine has a display device
// (keys then go through the hypervisor; without one, through xdotool on
// the guest's X server). The first call per hypervisor finds out with a
// screenshot.
func (m *Machine) hasDisplay(ctx context.Context) (bool, error) {
	s, inst, err := capability[backend.Screenshotter](ctx, m, "screenshot")
	if errors.Is(err, backend.ErrUnsupported) {
		// No display device at all (Firecracker, cloud-hypervisor): keys
		// go to the guest's X server, unless the backend sends them.
		_, keys := m.Instance().(backend.KeySender)
		return keys, nil
	}
	if err != nil {
		return false, err
	}
	if known, has := m.display(inst); known {
		return has, nil
	}
	_, err = m.hypervisorScreen(ctx, s)
	switch {
	case errors.Is(err, backend.ErrNoDisplay):
		m.setDisplay(inst, false)
		return false, nil
	case err != nil:
		return false, err
	}
	m.setDisplay(inst, true)
	return true, nil
}

// hypervisorScreen takes a screenshot through the backend.
func (m *Machine) hypervisorScreen(ctx context.Context, s backend.Screenshotter) (image.Image, error) {
	f, err := os.CreateTemp(m.stateDir, "screen-*.png")
	if err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: %w", m.name, err)
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	if err := s.Screenshot(ctx, path); err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: %w", m.name, err)
	}
	f, err = os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: %w", m.name, err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: decoding the hypervisor's PNG: %w", m.name, err)
	}
	return img, nil
}

// guestScreen dumps display :0 in the guest (xwd, gzip'ed on the way).
func (m *Machine) guestScreen(ctx context.Context) (image.Image, error) {
	cmd := guestcmd.ScreenDump()
	r, err := m.exec(ctx, cmd, execParams{guestTimeout: time.Minute})
	if err != nil {
		return nil, err
	}
	if r.Status != 0 {
		return nil, fmt.Errorf("machine %s: screenshot: the machine has no display device, and %w", m.name,
			&CommandError{Machine: m.name, Command: cmd, Status: r.Status, Output: r.Output})
	}
	zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, strings.NewReader(strings.TrimSpace(r.Output))))
	if err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: reading the guest's xwd: %w", m.name, err)
	}
	img, err := xwd.Decode(zr)
	if err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: reading the guest's xwd: %w", m.name, err)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return nil, fmt.Errorf("machine %s: screenshot: reading the guest's xwd: %w", m.name, err)
	}
	return img, nil
}

// display reports what is known of inst's display device.
func (m *Machine) display(inst backend.Instance) (known, has bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.displayOf != inst {
		return false, false
	}
	return true, m.displayHas
}

func (m *Machine) setDisplay(inst backend.Instance, has bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.displayOf, m.displayHas = inst, has
}

// writePNG saves img at path.
func writePNG(path string, img image.Image) error {
	var b bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&b, img); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ocrReader is the machine's OCR, made on first use: one OCR job at a
// time per machine (the variants of one job run side by side).
func (m *Machine) ocrJob(ctx context.Context) (*ocr.Reader, func(), error) {
	m.mu.Lock()
	if m.ocr == nil {
		r, err := ocr.New(0)
		if err != nil {
			m.mu.Unlock()
			return nil, nil, fmt.Errorf("machine %s: %w", m.name, err)
		}
		m.ocr, m.ocrSlot = r, make(chan struct{}, 1)
	}
	r, slot := m.ocr, m.ocrSlot
	m.mu.Unlock()
	select {
	case slot <- struct{}{}:
		return r, func() { <-slot }, nil
	case <-ctx.Done():
		return nil, nil, fmt.Errorf("machine %s: waiting for the OCR of another call: %w", m.name, ctx.Err())
	}
}

// GetScreenText reads the text on the screen (OCR of a fresh screenshot,
// as it is).
func (m *Machine) GetScreenText(ctx context.Context) (string, error) {
	r, done, err := m.ocrJob(ctx)
	if err != nil {
		return "", err
	}
	defer done()
	img, err := m.Screen(ctx)
	if err != nil {
		return "", err
	}
	text, err := r.Text(ctx, img)
	if err != nil {
		return "", fmt.Errorf("machine %s: %w", m.name, err)
	}
	return text, nil
}

// GetScreenTextVariants reads the text on the screen through every OCR
// preprocessing variant (ocr.Variants order).
func (m *Machine) GetScreenTextVariants(ctx context.Context) ([]string, error) {
	r, done, err := m.ocrJob(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	img, err := m.Screen(ctx)
	if err != nil {
		return nil, err
	}
	res, err := r.All(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("machine %s: %w", m.name, err)
	}
	texts := make([]string, len(res))
	for i, x := range res {
		texts[i] = x.Text
	}
	return texts, nil
}

// WaitForText waits until the text on the screen matches the regular
// expression pattern: every attempt reads a fresh screenshot through the
// OCR variants side by side, and the first that matches ends the wait.
// A pattern without white space also matches text whose words OCR split
// ("kumquat -31337" for "kumquat-31337"). The error at the deadline
// carries the last text read. Default timeout: DefaultWaitTimeout.
func (m *Machine) WaitForText(ctx context.Context, pattern string, opts ...WaitOption) error {
	re, err := regexp.Compile(pattern)
	if err != nil {
		return fmt.Errorf("machine %s: wait for text: %w", m.name, err)
	}
	match := textMatcher(re)
	c := waitOptions(opts)
	what := fmt.Sprintf("text %q on the screen", pattern)
	return m.Nested("waiting for "+what, func() error {
		return m.retry(ctx, what, c, func(ctx context.Context, budget time.Duration, last bool) (bool, string, error) {
			ctx, cancel := context.WithTimeout(ctx, budget)
			defer cancel()
			r, done, err := m.ocrJob(ctx)
			if err != nil {
				return false, "", err
			}
			defer done()
			img, err := m.Screen(ctx)
			if err != nil {
				return false, "", err
			}
			res, all, err := r.Find(ctx, img, match)
			switch {
			case err == nil:
				m.Log(fmt.Sprintf("found %q on the screen (%s variant, OCR %.2f s)", pattern, res.Variant, res.Took.Seconds()))
				return true, "", nil
			case errors.Is(err, ocr.ErrNoMatch), ctx.Err() != nil && len(all) > 0:
				seen := lastText(all)
				if last {
					m.Log("last chance to find " + strconv.Quote(pattern) + "; the screen reads:\n" + seen)
				}
				return false, "the screen reads:\n" + indent(seen), nil
			case ctx.Err() != nil:
				return false, "no OCR finished within the attempt", nil
			}
			return false, "", fmt.Errorf("machine %s: %w", m.name, err)
		})
	})
}

// textMatcher matches re against OCR text, and, for a pattern without
// white space, against the text with its spaces removed too.
func textMatcher(re *regexp.Regexp) func(string) bool {
	spaceless := !strings.ContainsAny(re.String(), " \t\n") && !strings.Contains(re.String(), `\s`)
	return func(text string) bool {
		if re.MatchString(text) {
			return true
		}
		return spaceless && re.MatchString(strings.NewReplacer(" ", "", "\t", "").Replace(text))
	}
}

// lastText is the text of the best OCR result to show: the longest.
func lastText(all []ocr.Result) string {
	best := ""
	for _, r := range all {
		if t := strings.TrimSpace(r.Text); len(t) > len(best) {
			best = t
		}
	}
	return best
}

// xdotoolKeysyms are X keysym names of QEMU key names that differ.
var xdotoolKeysyms = map[string]string{
	"ret": "Return", "spc": "space", "esc": "Escape", "tab": "Tab",
	"backspace": "BackSpace", "delete": "Delete", "insert": "Insert",
	"home": "Home", "end": "End", "pgup": "Prior", "pgdn": "Next",
	"left": "Left", "right": "Right", "up": "Up", "down": "Down",
	"kp_enter": "KP_Enter", "meta_l": "super", "meta_r": "super",
	"minus": "minus", "equal": "equal", "comma": "comma", "dot": "period",
	"slash": "slash", "backslash": "backslash", "semicolon": "semicolon",
	"apostrophe": "apostrophe", "bracket_left": "bracketleft",
	"bracket_right": "bracketright", "grave_accent": "grave",
}

// xdotoolKeys translates a QEMU key name or chord ("ctrl-alt-delete",
// "f5", "ret") to xdotool's ("ctrl+alt+Delete", "F5", "Return").
func xdotoolKeys(key string) string {
	if key == "-" || strings.HasSuffix(key, "--") { // the minus key itself
		key = strings.TrimSuffix(key, "-") + "minus"
	}
	parts := strings.Split(key, "-")
	for i, p := range parts {
		switch {
		case xdotoolKeysyms[p] != "":
			parts[i] = xdotoolKeysyms[p]
		case len(p) >= 2 && p[0] == 'f' && p[1] >= '1' && p[1] <= '9':
			parts[i] = "F" + p[1:]
		}
	}
	return strings.Join(parts, "+")
}

// xdotoolCommand presses one key (a character is typed as it is, any
// other name pressed as the chord it names) on display :0.
func xdotoolCommand(key string) string {
	if len([]rune(key)) == 1 {
		return guestcmd.XType(key, 0)
	}
	return guestcmd.XKey(xdotoolKeys(key))
}
