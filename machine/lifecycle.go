package machine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// Shutdown powers the guest off cleanly: it waits for the guest's shell
// (starting nothing), writes "poweroff" to it, and waits for the
// hypervisor to exit (WaitForShutdown, with opts). It does nothing if
// the machine is not running.
func (m *Machine) Shutdown(ctx context.Context, opts ...WaitOption) error {
	inst := m.Instance()
	if inst == nil {
		return nil
	}
	if !isDone(inst.Done()) {
		sh, inst2, err := m.connect(ctx)
		if err != nil {
			if isDone(inst.Done()) {
				return m.WaitForShutdown(ctx, opts...)
			}
			return err
		}
		wctx, stop := watchExit(ctx, inst2)
		err = sh.SendRaw(wctx, guestcmd.PowerOff()+"\n")
		stop()
		if err != nil && !m.hypervisorGone(inst2, sh, err) {
			return fmt.Errorf("machine %s: sending poweroff: %w", m.name, err)
		}
	}
	return m.WaitForShutdown(ctx, opts...)
}

// WaitForShutdown waits until the hypervisor has exited, without asking
// it to, and then forgets it: the next command starts the machine again.
// Default timeout: the machine's command timeout.
func (m *Machine) WaitForShutdown(ctx context.Context, opts ...WaitOption) error {
	inst := m.Instance()
	if inst == nil {
		return nil
	}
	timeout := waitOptions(opts).waitTimeout(m.cfg.commandTimeout)
	return m.Nested("waiting for the VM to power off", func() error {
		start := time.Now()
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-inst.Done():
		case <-t.C:
			return m.waitError("the VM to power off", time.Since(start), "", nil)
		case <-ctx.Done():
			return m.ctxError(ctx, "the VM to power off", start)
		}
		return m.reap(inst)
	})
}

// Crash ends the hypervisor at once, like pulling the power cord, and
// forgets it: the next command starts the machine again.
func (m *Machine) Crash(ctx context.Context) error {
	inst := m.Instance()
	if inst == nil {
		return nil
	}
	m.Log("forced crash")
	if err := inst.Kill(ctx); err != nil {
		return m.backendError("crash", err)
	}
	return m.reap(inst)
}

// Halt powers the machine off immediately: `poweroff -f` through the
// shell if it is connected, then a wait for the hypervisor to exit; if
// it has not exited after a grace period (Timeout, default 10 seconds)
// it is killed.
func (m *Machine) Halt(ctx context.Context, opts ...WaitOption) error {
	grace := waitOptions(opts).waitTimeout(haltGrace)
	inst := m.Instance()
	if inst == nil {
		return nil
	}
	if sh, live := m.liveShell(); sh != nil && live == inst {
		sctx, cancel := context.WithTimeout(ctx, grace)
		err := sh.Send(sctx, guestcmd.ForcePowerOff())
		cancel()
		if err != nil && !m.hypervisorGone(inst, sh, err) {
			m.log.Warn(m.name, fmt.Sprintf("halt: sending poweroff -f failed (%v); killing the hypervisor", err))
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-inst.Done():
	case <-t.C:
		m.log.Warn(m.name, fmt.Sprintf("halt: the hypervisor did not exit %v after poweroff -f; killing it", grace))
		if err := inst.Kill(ctx); err != nil {
			return m.backendError("halt", err)
		}
	case <-ctx.Done():
		return fmt.Errorf("machine %s: halt: %w", m.name, ctx.Err())
	}
	return m.reap(inst)
}

// Reboot presses ctrl-alt-delete. With WithAllowReboot the hypervisor
// keeps running, the shell counts as disconnected, and the next command
// waits for the rebooted guest's shell (this needs a backend whose
// Instance.Shell hands out the new boot's shell). Without it the
// hypervisor exits, as QEMU does under -no-reboot: Reboot waits for that
// (within the boot timeout), and the next command starts the machine
// afresh.
func (m *Machine) Reboot(ctx context.Context) error {
	if m.cfg.allowReboot {
		// The shell that answers now belongs to the boot that is ending:
		// commands must wait for the new boot's banner, not race the reset.
		m.mu.Lock()
		sh := m.shell
		m.mu.Unlock()
		if sh != nil {
			sh.ExpectRestart()
		}
	}
	if err := m.ctrlAltDelete(ctx); err != nil {
		return err
	}
	inst := m.Instance()
	if inst == nil {
		return nil
	}
	if !m.cfg.allowReboot {
		return m.WaitForShutdown(ctx, Timeout(m.cfg.bootTimeout))
	}
	m.mu.Lock()
	if m.inst == inst {
		m.shell, m.connected = nil, false
	}
	m.mu.Unlock()
	return nil
}

// ctrlAltDelete presses ctrl-alt-delete on the machine's own keyboard:
// the hypervisor's (backend.KeySender), or Firecracker's single key
// action (backend.CtrlAltDeleter); never through the guest's X server,
// which would not reboot anything.
func (m *Machine) ctrlAltDelete(ctx context.Context) error {
	if err := m.beforeCommand(ctx); err != nil {
		return err
	}
	m.Log(`sending key "ctrl-alt-delete"`)
	const key = "ctrl-alt-delete"
	ks, _, err := capability[backend.KeySender](ctx, m, "reboot")
	switch {
	case err == nil:
		if err := ks.SendKey(ctx, KeyName(key)); err != nil {
			return m.backendError("send key "+key, err)
		}
		return nil
	case !errors.Is(err, backend.ErrUnsupported):
		return err
	}
	cad, _, err := capability[backend.CtrlAltDeleter](ctx, m, "reboot (ctrl-alt-delete)")
	if err != nil {
		return err
	}
	if err := cad.CtrlAltDelete(ctx); err != nil {
		return m.backendError("send key "+key, err)
	}
	return nil
}

// capability returns the running instance as T, starting the machine if
// needed, or an error wrapping backend.ErrUnsupported.
func capability[T any](ctx context.Context, m *Machine, what string) (T, backend.Instance, error) {
	var zero T
	// An instance that exited but was not waited for still counts: its
	// queued events can be read, and other calls report how it ended.
	inst := m.Instance()
	if inst == nil {
		m.lifeMu.Lock()
		var err error
		inst, err = m.startLocked(ctx, false)
		m.lifeMu.Unlock()
		if err != nil {
			return zero, nil, err
		}
	}
	c, ok := inst.(T)
	if !ok {
		return zero, nil, fmt.Errorf("machine %s: %s: the %s backend cannot do this: %w", m.name, what, m.backend.Name(), backend.ErrUnsupported)
	}
	return c, inst, nil
}

// SwitchRoot continues a guest whose root shell runs in its initrd
// (NixOS's testing.initrdBackdoor) into stage 2, as the NixOS driver does:
// it waits for initrd.target, starts the switch without waiting for it,
// then waits for stage 2's shell (its banner) under the boot timeout.
func (m *Machine) SwitchRoot(ctx context.Context) error {
	return m.Nested("run switch-root", func() error {
		if err := m.WaitForUnit(ctx, "initrd.target"); err != nil {
			return err
		}
		sh, inst, err := m.connect(ctx)
		if err != nil {
			return err
		}
		// The initrd's shell ends with the switch; the next banner is
		// stage 2's. Declared with the command, so it cannot come first.
		m.Log("switching root: " + guestcmd.SwitchRoot())
		if err := sh.SendRestart(ctx, guestcmd.SwitchRoot()); err != nil {
			return m.backendError("switch root", err)
		}
		m.mu.Lock()
		if m.inst == inst {
			m.shell, m.connected = nil, false
		}
		m.mu.Unlock()
		_, _, err = m.connect(ctx)
		return err
	})
}
