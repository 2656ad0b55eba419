package machine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// SendConsole types s into the guest's serial console (for example to
// drive systemd's emergency shell).
func (m *Machine) SendConsole(ctx context.Context, s string) error {
	cw, _, err := capability[backend.ConsoleWriter](ctx, m, "send console input")
	if err != nil {
		return err
	}
	if err := cw.WriteConsole(ctx, []byte(s)); err != nil {
		return m.backendError("send console input", err)
	}
	return nil
}

// SendMonitorCommand runs a hypervisor monitor command (QEMU's HMP) and
// returns its answer.
func (m *Machine) SendMonitorCommand(ctx context.Context, cmd string) (string, error) {
	if err := m.beforeCommand(ctx); err != nil {
		return "", err
	}
	mon, _, err := capability[backend.Monitor](ctx, m, "monitor command "+cmd)
	if err != nil {
		return "", err
	}
	out, err := mon.MonitorCommand(ctx, cmd)
	if err != nil {
		return "", m.backendError("monitor command "+strconv.Quote(cmd), err)
	}
	return out, nil
}

// ControlCommand runs a raw control-plane command (a QMP command for
// QEMU) and returns its result.
func (m *Machine) ControlCommand(ctx context.Context, cmd string, args map[string]any) (any, error) {
	if err := m.beforeCommand(ctx); err != nil {
		return nil, err
	}
	rc, _, err := capability[backend.RawCommander](ctx, m, "control command "+cmd)
	if err != nil {
		return nil, err
	}
	out, err := rc.ControlCommand(ctx, cmd, args)
	if err != nil {
		return nil, m.backendError("control command "+strconv.Quote(cmd), err)
	}
	return out, nil
}

// WaitForQMPEvent returns the first control-plane event (QMP event for
// QEMU) for which filter returns true; events it skips are consumed. A
// nil filter takes any event. Default timeout: DefaultEventTimeout.
func (m *Machine) WaitForQMPEvent(ctx context.Context, filter func(backend.Event) bool, opts ...WaitOption) (backend.Event, error) {
	es, _, err := capability[backend.EventSource](ctx, m, "wait for a QMP event")
	if err != nil {
		return backend.Event{}, err
	}
	timeout := waitOptions(opts).waitTimeout(DefaultEventTimeout)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if filter == nil {
		filter = func(backend.Event) bool { return true }
	}
	ev, err := es.WaitEvent(wctx, filter)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return backend.Event{}, m.ctxError(ctx, "a QMP event", start)
		case errors.Is(err, context.DeadlineExceeded):
			return backend.Event{}, m.waitError("a matching QMP event", time.Since(start), "", nil)
		}
		return backend.Event{}, m.backendError("waiting for a QMP event", err)
	}
	return ev, nil
}

// ScreenshotPath applies the NixOS driver's naming rules: ".png" is
// added to a name without a dot, and a name without a slash goes into
// the output directory.
func (m *Machine) ScreenshotPath(name string) string {
	if !strings.Contains(name, ".") {
		name += ".png"
	}
	if !strings.Contains(name, "/") {
		name = filepath.Join(m.cfg.outputDir, name)
	}
	return name
}

// Screenshot saves the screen as a PNG file (see ScreenshotPath for the
// naming) and returns its path.
func (m *Machine) Screenshot(ctx context.Context, name string) (string, error) {
	path := m.ScreenshotPath(name)
	err := m.Nested("making screenshot "+path, func() error {
		if err := m.beforeCommand(ctx); err != nil {
			return err
		}
		// A backend without screenshots has no display device at all
		// (Firecracker, cloud-hypervisor): the guest's X server it is.
		s, inst, err := capability[backend.Screenshotter](ctx, m, "screenshot")
		if err != nil && !errors.Is(err, backend.ErrUnsupported) {
			return err
		}
		if known, has := m.display(inst); s != nil && (!known || has) {
			err := s.Screenshot(ctx, path)
			if !errors.Is(err, backend.ErrNoDisplay) {
				if err != nil {
					return m.backendError("screenshot "+path, err)
				}
				m.setDisplay(inst, true)
				return nil
			}
			m.setDisplay(inst, false)
		}
		// No display device: the guest's X server's screen.
		img, err := m.guestScreen(ctx)
		if err != nil {
			return err
		}
		if err := writePNG(path, img); err != nil {
			return fmt.Errorf("machine %s: screenshot %s: %w", m.name, path, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return path, nil
}

// charKeys maps characters to QEMU key names on a US keyboard (digits
// and symbols by scancode), as the NixOS driver does.
var charKeys = map[rune]string{
	'!': "shift-0x02", '@': "shift-0x03", '#': "shift-0x04", '$': "shift-0x05",
	'%': "shift-0x06", '^': "shift-0x07", '&': "shift-0x08", '*': "shift-0x09",
	'(': "shift-0x0A", ')': "shift-0x0B",
	'-': "0x0C", '_': "shift-0x0C", '=': "0x0D", '+': "shift-0x0D",
	'[': "0x1A", '{': "shift-0x1A", ']': "0x1B", '}': "shift-0x1B",
	';': "0x27", ':': "shift-0x27", '\'': "0x28", '"': "shift-0x28",
	'`': "0x29", '~': "shift-0x29", '\\': "0x2B", '|': "shift-0x2B",
	',': "0x33", '<': "shift-0x33", '.': "0x34", '>': "shift-0x34",
	'/': "0x35", '?': "shift-0x35",
	' ': "spc", '\n': "ret", '\t': "tab",
}

// KeyName translates a single character to its QEMU key name ("A" →
// "shift-a", "\n" → "ret"); anything else (a key name or chord such as
// "ctrl-alt-delete") is returned unchanged.
func KeyName(key string) string {
	r := []rune(key)
	if len(r) != 1 {
		return key
	}
	if k, ok := charKeys[r[0]]; ok {
		return k
	}
	if r[0] >= 'A' && r[0] <= 'Z' {
		return "shift-" + strings.ToLower(key)
	}
	return key
}

// SendKey presses and releases one key or chord (see KeyName), then
// pauses (Delay, default DefaultKeyDelay).
func (m *Machine) SendKey(ctx context.Context, key string, opts ...KeyOption) error {
	c := keyOptions(opts)
	return m.sendKey(ctx, key, c)
}

func (m *Machine) sendKey(ctx context.Context, key string, c callConfig) error {
	if err := m.beforeCommand(ctx); err != nil {
		return err
	}
	has, err := m.hasDisplay(ctx)
	if err != nil {
		return err
	}
	name := KeyName(key)
	if !has {
		// No display device, so no keyboard the X server reads: the
		// guest's xdotool types instead.
		name = xdotoolKeys(key)
	}
	if !c.quiet {
		m.Log("sending key " + strconv.Quote(name))
	}
	if !has {
		if _, err := m.Succeed(ctx, xdotoolCommand(key)); err != nil {
			return fmt.Errorf("machine %s: send key %q: %w", m.name, name, err)
		}
	} else {
		ks, _, err := capability[backend.KeySender](ctx, m, "send key "+strconv.Quote(key))
		if err != nil {
			return err
		}
		if err := ks.SendKey(ctx, name); err != nil {
			return m.backendError("send key "+strconv.Quote(name), err)
		}
	}
	if c.delay > 0 {
		t := time.NewTimer(c.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("machine %s: send key %q: %w", m.name, name, ctx.Err())
		}
	}
	return nil
}

// SendChars types chars one key at a time (see SendKey; keys are not
// logged one by one).
func (m *Machine) SendChars(ctx context.Context, chars string, opts ...KeyOption) error {
	c := keyOptions(opts)
	c.quiet = true
	return m.Nested("sending keys "+strconv.Quote(chars), func() error {
		if err := m.beforeCommand(ctx); err != nil {
			return err
		}
		has, err := m.hasDisplay(ctx)
		if err != nil {
			return err
		}
		if !has {
			_, err := m.Succeed(ctx, guestcmd.XType(chars, c.delay))
			return err
		}
		for _, r := range chars {
			if err := m.sendKey(ctx, string(r), c); err != nil {
				return err
			}
		}
		return nil
	})
}
