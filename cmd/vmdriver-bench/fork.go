package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/machine"
)

// forkRounds is how often each side is measured, alternating, so that
// host load affects both alike.
const forkRounds = 3

// forkCount is how many machines each side makes ready.
const forkCount = 4

// forks compares making 4 machines ready by forking one booted machine
// (snapshot + 4 restores with their identity fix-up) with 4 cold boots in
// parallel, for both guest kinds, and reports the snapshot's size and the
// time the original was paused to save it.
func (b *bench) forks(ctx context.Context, w io.Writer) error {
	fmt.Fprintf(w, "%d machines ready (every shell answered `true`), %d rounds per side, alternating. Fork = snapshot of a booted machine + %d restores in parallel, each with its clock, host name, machine-id and RNG fixed up; cold = %d boots in parallel.\n\n",
		forkCount, forkRounds, forkCount, forkCount)
	fmt.Fprintln(w, "| guest | cold min | cold median | cold max | fork min | fork median | fork max | cold / fork (medians) | snapshot size | original paused | one restore |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, g := range []struct{ name, script string }{{"minimal", b.minimal}, {"systemd", b.systemd}} {
		var cold, fork, paused, one []time.Duration
		var size int64
		for range forkRounds {
			d, err := coldBoots(ctx, g.script)
			if err != nil {
				return fmt.Errorf("%s cold boots: %w", g.name, err)
			}
			cold = append(cold, d)
			r, err := forkRound(ctx, g.script)
			if err != nil {
				return fmt.Errorf("%s forks: %w", g.name, err)
			}
			fork = append(fork, r.fork)
			paused = append(paused, r.paused)
			one = append(one, r.one)
			size = r.size
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1fx | %.1f MiB | %s | %s |\n", g.name, stats(cold), stats(fork),
			float64(median(cold))/float64(median(fork)), float64(size)/(1<<20), fmtDur(median(paused)), fmtDur(median(one)))
	}
	return nil
}

// coldBoots starts forkCount machines in parallel and returns the time
// until all of them answered.
func coldBoots(ctx context.Context, script string) (time.Duration, error) {
	be := qemu.New()
	start := time.Now()
	ms := make([]*machine.Machine, forkCount)
	g, gctx := errgroup.WithContext(ctx)
	for k := range ms {
		g.Go(func() error {
			m, err := machine.New(be, fmt.Sprintf("cold%d", k), machine.WithStartScript(script))
			if err != nil {
				return err
			}
			ms[k] = m
			_, err = m.Succeed(gctx, "true")
			return err
		})
	}
	err := g.Wait()
	d := time.Since(start)
	for _, m := range ms {
		if m != nil {
			err = errors.Join(err, m.Close())
		}
	}
	return d, err
}

type forkResult struct {
	fork, paused, one time.Duration
	size              int64
}

// forkRound boots one machine (not timed), forks forkCount clones from it
// (timed until all answered), then restores one more clone alone from the
// same snapshot (timed).
func forkRound(ctx context.Context, script string) (r forkResult, err error) {
	be := qemu.New()
	base, err := machine.New(be, "base", machine.WithStartScript(script))
	if err != nil {
		return r, err
	}
	var all []*machine.Machine
	defer func() {
		for _, m := range all {
			err = errors.Join(err, m.Close())
		}
		err = errors.Join(err, base.Close())
	}()
	if _, err := base.Succeed(ctx, "true"); err != nil {
		return r, err
	}
	start := time.Now()
	snap, err := base.Snapshot(ctx, "")
	if err != nil {
		return r, err
	}
	clones := make([]*machine.Machine, forkCount)
	g, gctx := errgroup.WithContext(ctx)
	for k := range clones {
		g.Go(func() error {
			c, err := machine.Restore(gctx, snap, base.CloneName())
			if err != nil {
				return err
			}
			clones[k] = c
			_, err = c.Succeed(gctx, "true")
			return err
		})
	}
	err = g.Wait()
	r.fork = time.Since(start)
	for _, c := range clones {
		if c != nil {
			all = append(all, c)
		}
	}
	if err != nil {
		return r, err
	}
	r.paused, r.size = snap.Paused(), snap.Size()
	start = time.Now()
	c, err := machine.Restore(ctx, snap, base.CloneName())
	if err != nil {
		return r, err
	}
	all = append(all, c)
	if _, err := c.Succeed(ctx, "true"); err != nil {
		return r, err
	}
	r.one = time.Since(start)
	return r, nil
}
