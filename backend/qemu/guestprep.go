package qemu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// QEMU cannot save a guest that has a 9p share mounted, so a snapshot
// unmounts the guest's 9p shares first (found in /proc/mounts, with shell
// builtins only) and mounts them again afterwards: in the original and,
// as the first fix-up, in every clone.

// remountTimeout bounds mounting the shares back after a failed unmount;
// it has a deadline of its own because the caller's may be what ended.
const remountTimeout = time.Minute

// guestMount is a 9p share mounted in the guest.
type guestMount struct {
	Source, Dir, Options string
}

// parseMounts reads guestcmd.ListMounts9p's output.
func parseMounts(out string) []guestMount {
	var ms []guestMount
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 {
			ms = append(ms, guestMount{Source: f[0], Dir: f[1], Options: f[2]})
		}
	}
	return ms
}

// mountScript mounts ms (in order).
func mountScript(ms []guestMount) string {
	var sb strings.Builder
	for _, m := range ms {
		sb.WriteString(guestcmd.Mount9p(m.Source, m.Dir, m.Options))
	}
	return sb.String()
}

// unmountScript syncs and unmounts ms, innermost (last mounted) first.
func unmountScript(ms []guestMount) string {
	dirs := make([]string, len(ms))
	for k, m := range ms {
		dirs[k] = m.Dir
	}
	return guestcmd.Unmount(dirs...)
}

// remountMissingScript mounts those of ms that are not mounted: a failed
// unmount may have left some.
func remountMissingScript(ms []guestMount) string {
	var sb strings.Builder
	for _, m := range ms {
		sb.WriteString(guestcmd.Remount9p(m.Source, m.Dir, m.Options))
	}
	return sb.String()
}

var _ backend.SnapshotPreparer = (*Instance)(nil)

// PrepareSnapshot unmounts the guest's 9p shares, which QEMU cannot save,
// and returns the script that mounts them again. A guest whose shell
// cannot list them (no /proc/mounts) has none to unmount. When an unmount
// fails (a process is using the share), the shares are mounted back
// before the error is returned.
func (i *Instance) PrepareSnapshot(ctx context.Context, sh *backdoor.Shell) (backend.GuestPrep, error) {
	res, err := sh.Run(ctx, guestcmd.ListMounts9p(), backdoor.RunOptions{})
	if err != nil {
		return backend.GuestPrep{}, fmt.Errorf("listing 9p mounts: %w", err)
	}
	if res.Status != 0 {
		return backend.GuestPrep{}, nil
	}
	mounts := parseMounts(string(res.Output))
	if len(mounts) == 0 {
		return backend.GuestPrep{}, nil
	}
	if err := runScript(ctx, sh, unmountScript(mounts)); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), remountTimeout)
		defer cancel()
		if rerr := runScript(rctx, sh, remountMissingScript(mounts)); rerr != nil {
			err = errors.Join(err, fmt.Errorf("mounting the guest's 9p shares again: %w", rerr))
		}
		return backend.GuestPrep{}, fmt.Errorf("unmounting the guest's 9p shares for the snapshot (QEMU cannot save a guest with one mounted; is a process using it?): %w", err)
	}
	return backend.GuestPrep{Undo: mountScript(mounts), What: "mounting the guest's 9p shares again"}, nil
}

// runScript runs script on sh and makes a non-zero status an error
// quoting its output.
func runScript(ctx context.Context, sh *backdoor.Shell, script string) error {
	res, err := sh.Run(ctx, script, backdoor.RunOptions{})
	if err != nil {
		return err
	}
	if res.Status != 0 {
		return fmt.Errorf("status %d: %s", res.Status, strings.TrimSpace(string(res.Output)))
	}
	return nil
}
