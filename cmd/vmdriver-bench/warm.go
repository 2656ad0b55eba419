package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/cachedir"
	"github.com/vmdriver/vmdriver/machine"
)

// warmRounds is how often each side is measured, alternating.
const warmRounds = 5

// warmStarts compares, per guest kind, a machine's cold boot to its
// settled shell with a warm start from the entry a first run saved: from
// creating the machine to its first command answered, which is what a
// test waits for. The warm side's own log line says where its time went.
func (b *bench) warmStarts(ctx context.Context, w io.Writer) error {
	fmt.Fprintf(w, "Time from a new machine to its first command answered, %d rounds per side, alternating. Cold = boot (for the systemd guest, to `systemctl is-system-running --wait`); warm = restore of the entry an earlier cold run saved (`--warm`), with the clock, machine-id, RNG and share fixed up.\n\n", warmRounds)
	fmt.Fprintln(w, "| guest | cold min | cold median | cold max | warm min | warm median | warm max | cold / warm (medians) | entry size | warm start phases (middle round) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, g := range []struct{ name, script string }{{"minimal", b.minimal}, {"systemd", b.systemd}} {
		dir, err := os.MkdirTemp("", "vmdb-warm")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// The first warm run saves the entry (not timed).
		if _, _, err := startTimed(ctx, g.script, dir); err != nil {
			return fmt.Errorf("%s: saving the warm entry: %w", g.name, err)
		}
		var cold, warm []time.Duration
		var phases []string
		for range warmRounds {
			d, _, err := startTimed(ctx, g.script, "")
			if err != nil {
				return fmt.Errorf("%s cold: %w", g.name, err)
			}
			cold = append(cold, d)
			d, line, err := startTimed(ctx, g.script, dir)
			if err != nil {
				return fmt.Errorf("%s warm: %w", g.name, err)
			}
			if line == "" {
				return fmt.Errorf("%s: the warm run did not restore its entry", g.name)
			}
			warm = append(warm, d)
			phases = append(phases, line)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1fx | %.1f MiB | %s |\n", g.name, stats(cold), stats(warm),
			float64(median(cold))/float64(median(warm)), float64(cachedir.DiskUsage(dir))/(1<<20), phases[len(phases)/2])
	}
	return nil
}

// startTimed creates a machine (warm from dir unless dir is ""), and
// times it to its first answered command; for a warm start it returns the
// restore's own account of its phases.
func startTimed(ctx context.Context, script, dir string) (time.Duration, string, error) {
	log := &phaseLog{}
	opts := []machine.Option{machine.WithStartScript(script), machine.WithLogger(log)}
	if dir != "" {
		opts = append(opts, machine.WithWarm(dir))
	}
	start := time.Now()
	m, err := machine.New(qemu.New(), "bench", opts...)
	if err != nil {
		return 0, "", err
	}
	if dir == "" {
		// A cold machine is ready for a test once systemd settled, which
		// the warm side's entry already is.
		_, err = m.Succeed(ctx, "if [ -d /run/systemd/system ]; then systemctl is-system-running --wait >/dev/null || true; fi")
	} else {
		_, err = m.Succeed(ctx, "true")
	}
	d := time.Since(start)
	return d, log.restored(), errors.Join(err, m.Close())
}

// phaseLog keeps the restore's log line.
type phaseLog struct {
	mu   sync.Mutex
	line string
}

func (l *phaseLog) Info(_, msg string) {
	if strings.HasPrefix(msg, "restored from ") {
		l.mu.Lock()
		l.line = msg[strings.Index(msg, " in ")+4:]
		l.mu.Unlock()
	}
}
func (l *phaseLog) Warn(string, string)               {}
func (l *phaseLog) Serial(string, string)             {}
func (l *phaseLog) Nested(string, string) func(error) { return func(error) {} }
func (l *phaseLog) restored() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.line
}
