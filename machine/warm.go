package machine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/cachedir"
	"github.com/vmdriver/vmdriver/internal/guestcmd"
)

// Warm starts.
//
// A machine started with WithWarm(dir) looks in dir for a post-boot
// snapshot saved by an earlier run of the same machine: same name, start
// script bytes, files the script names, environment and backend (its
// WarmKey: hypervisor binary, arguments). It restores that instead of
// booting, gives the guest the host's time, a fresh machine-id and RNG
// seed, and mounts its shares again; its name and addresses are the
// start script's, as after a cold boot. Without an entry it boots cold
// and, once the guest has settled (shell up; on a systemd guest,
// `systemctl is-system-running --wait` returned), saves one for the next
// run. An entry that does not load is removed and the machine boots cold,
// with one line saying why.

// warmFormat versions the entry layout and what the key covers. 2: the
// backend's snapshot preparation (backend.GuestPrep) replaced the 9p
// mount list.
const warmFormat = "vmdriver-warm-2"

// warmMetaFile holds the machine's part of an entry (the backend's
// snapshot files sit beside it).
const warmMetaFile = "machine.json"

// warmStamp is the entry's last-use stamp, as everywhere in the cache.
const warmStamp = cachedir.Stamp

// WithWarm makes the machine's first start warm: restored from the
// post-boot snapshot of an earlier run kept in dir (created 0700 if
// missing), or booted cold and saved there once settled. An empty dir
// turns warm starts off. Machines whose state is kept (WithKeepState)
// always boot cold: their disk holds the state to keep.
func WithWarm(dir string) Option {
	return nonEmpty("WithWarm", dir, func(c *config) { c.warmDir = dir })
}

// WithWarmReadOnly uses the warm entries in WithWarm's directory but
// never writes one (an entry shared by a CI cache or a build system):
// a machine without an entry boots cold.
func WithWarmReadOnly() Option { return func(c *config) error { c.warmReadOnly = true; return nil } }

// warmMeta is machine.json: what the machine needs besides the
// backend's snapshot to continue from it.
type warmMeta struct {
	Format  string                 `json:"format"`
	Key     string                 `json:"key"`
	Machine string                 `json:"machine"`
	Links   []backend.Link         `json:"links,omitempty"`
	Prep    backend.GuestPrep      `json:"prep"`
	Ifs     map[string]*guestIface `json:"interfaces,omitempty"`
	Console []string               `json:"console,omitempty"`
	// BootSeconds is how long the cold boot took to the settled guest.
	BootSeconds float64   `json:"boot_seconds"`
	Saved       time.Time `json:"saved"`
}

// scriptPath matches the absolute paths a start script names.
var scriptPath = regexp.MustCompile(`/[A-Za-z0-9._+@%=:,/-]+`)

// perRunEnv are environment variables whose values differ on every run
// without changing the machine: only their presence counts.
func perRunEnv(name string) bool {
	switch name {
	case "TMPDIR", "USE_TMPDIR", "SHARED_DIR", "NIX_DISK_IMAGE":
		return true
	}
	return strings.HasPrefix(name, "QEMU_VDE_SOCKET_")
}

// warmKey returns the hex key of the machine's warm entry: a hash of
// everything that decides what it boots into.
func (m *Machine) warmKey() (string, error) {
	wk, ok := m.backend.(backend.WarmKeyer)
	if !ok {
		return "", fmt.Errorf("the %s backend cannot start machines warm: %w", m.backend.Name(), backend.ErrUnsupported)
	}
	spec := m.spec(nil)
	bk, err := wk.WarmKey(spec)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\nmachine %s\nreboot %v\n%s", warmFormat, m.name, m.cfg.allowReboot, bk)
	if m.cfg.startScript != "" {
		script, err := os.ReadFile(m.cfg.startScript)
		if err != nil {
			return "", fmt.Errorf("reading the start script: %w", err)
		}
		sum := sha256.Sum256(script)
		fmt.Fprintf(&sb, "script %x\n", sum)
		// Files the script names (kernel, initrd, disk images): their
		// identity, so an image rebuilt in place shows.
		seen := map[string]bool{}
		for _, p := range scriptPath.FindAllString(string(script), 256) {
			p = strings.TrimRight(p, ".,:")
			// The image cache's use stamp, which every boot touches, is
			// not part of the machine.
			if seen[p] || filepath.Base(p) == warmStamp {
				continue
			}
			seen[p] = true
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				id, err := cachedir.FileIdentity(p)
				if err != nil {
					return "", err
				}
				fmt.Fprintf(&sb, "file %s\n", id)
			}
		}
	}
	env := slices.Clone(spec.Env)
	for _, name := range []string{"QEMU_OPTS", "QEMU_NET_OPTS", "QEMU_KERNEL_PARAMS"} {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	slices.Sort(env)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if perRunEnv(name) {
			kv = name
		}
		fmt.Fprintf(&sb, "env %s\n", kv)
	}
	sum := sha256.Sum256([]byte(sb.String()))
	return hex.EncodeToString(sum[:16]), nil
}

// startWarm tries the machine's warm entry on its first start; m.lifeMu
// is held. It returns the running instance, or nil after arranging a
// cold boot (and, unless read-only, a save once settled).
func (m *Machine) startWarm(ctx context.Context) backend.Instance {
	if m.cfg.keepState {
		m.log.Info(m.name, "cold start: the machine's state is kept, so it is not started warm")
		return nil
	}
	key, err := m.warmKey()
	if err != nil {
		m.log.Info(m.name, "cold start: "+oneLine(err))
		return nil
	}
	entry := filepath.Join(m.cfg.warmDir, key)
	meta, err := readWarmMeta(entry, key)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if !m.cfg.warmReadOnly {
			m.warmSave = key
		}
		m.log.Info(m.name, "cold start: no warm entry yet")
		return nil
	case err != nil:
		m.dropWarm(entry, err)
		return nil
	}
	start := time.Now()
	snap := &Snapshot{name: "warm " + key[:12], origin: m, warm: true,
		snap:  &backend.Snapshot{Backend: m.backend.Name(), Dir: entry, Machine: meta.Machine},
		links: meta.Links, prep: meta.Prep, ifs: meta.Ifs}
	if err := m.restoreLocked(ctx, snap, nil); err != nil {
		if inst := m.Instance(); inst != nil {
			m.reap(inst)
		}
		m.clearState()
		if ctx.Err() != nil {
			return nil
		}
		m.dropWarm(entry, err)
		return nil
	}
	m.console.replay(meta.Console)
	if !m.cfg.warmReadOnly {
		cachedir.Touch(filepath.Join(entry, warmStamp))
	}
	m.log.Info(m.name, fmt.Sprintf("started warm in %.2f seconds (its cold boot took %.2f s)", time.Since(start).Seconds(), meta.BootSeconds))
	inst, _ := m.current()
	return inst
}

// dropWarm reports an unusable entry in one line and removes it, so this
// run's cold boot saves a new one.
func (m *Machine) dropWarm(entry string, why error) {
	m.log.Info(m.name, fmt.Sprintf("cold start: the warm entry %s is unusable and is replaced: %s", entry, oneLine(why)))
	if m.cfg.warmReadOnly {
		return
	}
	if err := removeEntry(entry); err != nil {
		m.log.Info(m.name, "cannot remove the warm entry: "+oneLine(err))
		return
	}
	m.warmSave = filepath.Base(entry)
}

// saveWarm settles the freshly booted guest and saves its warm entry. A
// failure is logged in one line: the machine goes on, cold.
func (m *Machine) saveWarm(ctx context.Context, sh *backdoor.Shell, booted time.Time) {
	key := m.warmSave
	m.warmSave = ""
	if err := m.saveWarmEntry(ctx, sh, key, booted); err != nil {
		m.log.Info(m.name, "no warm entry saved: "+oneLine(err))
	}
}

func (m *Machine) saveWarmEntry(ctx context.Context, sh *backdoor.Shell, key string, booted time.Time) (err error) {
	sctx, cancel := context.WithTimeout(ctx, m.cfg.bootTimeout)
	defer cancel()
	if _, err := sh.Run(sctx, guestcmd.Settle(), backdoor.RunOptions{}); err != nil {
		return fmt.Errorf("waiting for the guest to settle: %w", err)
	}
	bootSeconds := time.Since(booted).Seconds()
	if err := os.MkdirAll(m.cfg.warmDir, 0o700); err != nil {
		return err
	}
	entry := filepath.Join(m.cfg.warmDir, key)
	// One saver per key: another run saving the same machine wins.
	lock, err := os.OpenFile(filepath.Join(m.cfg.warmDir, ".lock-"+key), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.New("another run is saving the same machine")
	}
	if _, err := os.Stat(filepath.Join(entry, warmMetaFile)); err == nil {
		return nil // saved meanwhile by another run
	}
	tmp, err := os.MkdirTemp(m.cfg.warmDir, ".tmp-"+key+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	snap, err := m.snapshotTo(sctx, "warm", tmp)
	if err != nil {
		return err
	}
	meta := warmMeta{Format: warmFormat, Key: key, Machine: m.name, Links: snap.links, Prep: snap.prep, Ifs: snap.ifs,
		Console: strings.Split(m.console.log(), "\n"), BootSeconds: bootSeconds, Saved: time.Now().UTC()}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, warmMetaFile), data); err != nil {
		return err
	}
	if err := cachedir.Touch(filepath.Join(tmp, warmStamp)); err != nil {
		return err
	}
	if err := os.Rename(tmp, entry); err != nil {
		return err
	}
	m.log.Info(m.name, fmt.Sprintf("saved a warm entry (%.1f MiB): the next run starts warm", float64(cachedir.DiskUsage(entry))/(1<<20)))
	return nil
}

// readWarmMeta reads an entry's machine.json and checks it belongs to
// key; a missing entry is os.ErrNotExist.
func readWarmMeta(entry, key string) (*warmMeta, error) {
	data, err := os.ReadFile(filepath.Join(entry, warmMetaFile))
	if err != nil {
		return nil, err
	}
	var meta warmMeta
	if err := json.Unmarshal(data, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", warmMetaFile, err)
	}
	if meta.Format != warmFormat || meta.Key != key {
		return nil, fmt.Errorf("%s: format %q key %q, want %q %q", warmMetaFile, meta.Format, meta.Key, warmFormat, key)
	}
	return &meta, nil
}

// removeEntry removes a cache entry, first renaming it aside so no
// reader sees half of it.
func removeEntry(entry string) error {
	trash := filepath.Join(filepath.Dir(entry), fmt.Sprintf(cachedir.TrashPrefix+"%s-%d", filepath.Base(entry), time.Now().UnixNano()))
	if err := os.Rename(entry, trash); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(trash)
}

// clearState empties the state directory but for the shared directory,
// after a warm restore that failed: the cold boot must not find its disk
// overlay.
func (m *Machine) clearState() {
	entries, err := os.ReadDir(m.stateDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(m.stateDir, e.Name())
		if p != m.cfg.sharedDir {
			os.RemoveAll(p)
		}
	}
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// oneLine is err's message on one line.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
