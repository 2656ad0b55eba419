package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/qemu"
)

// microvmBoots compares boot to shell of the minimal guest under
// -M microvm (from its machine description) and -M pc (its start
// script), n boots each, alternating so drifting host load hits both.
func (b *bench) microvmBoots(ctx context.Context, w io.Writer) error {
	backends := []struct {
		name string
		be   backend.Backend
	}{
		{"-M microvm (--backend microvm)", qemu.NewMicrovm()},
		{"-M pc (--backend qemu)", qemu.New()},
	}
	times := make([][]time.Duration, len(backends))
	for range b.n {
		for k, c := range backends {
			bctx, cancel := context.WithTimeout(ctx, c.be.BootTimeout())
			d, err := driverBoot(bctx, c.be, b.minimal)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			times[k] = append(times[k], d)
		}
	}
	fmt.Fprintf(w, "Minimal guest, Start to the backdoor shell, n=%d each, alternating.\n\n", b.n)
	fmt.Fprintln(w, "| machine | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for k, c := range backends {
		fmt.Fprintf(w, "| %s | %s |\n", c.name, stats(times[k]))
	}
	return nil
}
