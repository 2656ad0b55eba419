package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/images"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/report"
)

const (
	// netRounds is how often the lone and the parallel boot are each
	// measured (alternating, so host load affects both alike).
	netRounds = 3
	// netTransferMiB is the size of one TCP transfer between guests.
	netTransferMiB = 32
	// netTransfers is how many TCP transfers are timed.
	netTransfers = 3
	// netWait bounds each wait inside the guests.
	netWait = 60 * time.Second
)

// pingSummary matches the last line of busybox ping's statistics.
var pingSummary = regexp.MustCompile(`min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+) ms`)

// network measures machines on a VLAN (one VDE switch): three minimal guests
// booting in parallel against one alone, ping latency and TCP throughput
// between two guests through the switch.
func (b *bench) network(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "vmdn")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	scripts, err := images.Build(ctx, images.Options{Kind: images.Minimal, OutDir: dir, Names: []string{"n1:1", "n2:1", "n3:1"}})
	if err != nil {
		return fmt.Errorf("building the guests: %w", err)
	}

	var alone, three []time.Duration
	for i := 0; i < netRounds; i++ {
		d, err := bootNetworked(ctx, dir, scripts[:1])
		if err != nil {
			return fmt.Errorf("one guest: %w", err)
		}
		alone = append(alone, d)
		if d, err = bootNetworked(ctx, dir, scripts); err != nil {
			return fmt.Errorf("three guests: %w", err)
		}
		three = append(three, d)
	}
	fmt.Fprintf(w, "Start to every shell answering, minimal guests on VLAN 1 (n=%d each, alternating):\n\n", netRounds)
	fmt.Fprintln(w, "| guests | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| 1 alone | %s |\n", stats(alone))
	fmt.Fprintf(w, "| 3 in parallel (`start_all`) | %s |\n", stats(three))
	fmt.Fprintf(w, "\nRatio of the medians, 3 in parallel / 1 alone: %.2f (%d host cores).\n", float64(median(three))/float64(median(alone)), runtime.NumCPU())

	d, err := newNetDriver(ctx, dir, scripts[:2])
	if err != nil {
		return err
	}
	defer d.Close()
	if err := bootAll(ctx, d); err != nil {
		return err
	}
	n1, n2 := d.Machine("n1"), d.Machine("n2")

	out, err := n1.Succeed(ctx, "ping -c 20 -i 0.2 n2", machine.Timeout(netWait))
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("ping printed no round-trip summary: %q", out)
	}
	fmt.Fprintln(w, "\nPing between two guests through the VDE switch (`ping -c 20 -i 0.2 n2`):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measure | min | avg | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| round trip | %s ms | %s ms | %s ms |\n", m[1], m[2], m[3])

	var rates []float64
	for i := 0; i < netTransfers; i++ {
		r, err := transfer(ctx, n1, n2, 5001+i)
		if err != nil {
			return fmt.Errorf("tcp transfer: %w", err)
		}
		rates = append(rates, r)
	}
	sort.Float64s(rates)
	fmt.Fprintf(w, "\nTCP between two guests through the switch: %d MiB from `dd` over busybox `nc`, timed on the sender, byte count checked on the receiver (n=%d):\n\n", netTransferMiB, netTransfers)
	fmt.Fprintln(w, "| measure | min | median | max |")
	fmt.Fprintln(w, "|---|---|---|---|")
	fmt.Fprintf(w, "| throughput | %.1f MB/s | %.1f MB/s | %.1f MB/s |\n", rates[0], rates[len(rates)/2], rates[len(rates)-1])
	return nil
}

// newNetDriver prepares a run of the given start scripts on VLAN 1, logging
// nowhere.
func newNetDriver(ctx context.Context, outDir string, scripts []string) (*driver.Driver, error) {
	var ms []driver.MachineConfig
	for _, s := range scripts {
		ms = append(ms, driver.MachineConfig{Name: driver.MachineName(s), StartScript: s})
	}
	return driver.New(ctx, driver.Config{Machines: ms, VLANs: []int{1}, OutputDir: outDir, GlobalTimeout: 10 * time.Minute},
		driver.WithBackend(qemu.New()), driver.WithLogger(report.New(report.Options{})))
}

// bootNetworked times one run from StartAll until every machine's shell
// has answered a command.
func bootNetworked(ctx context.Context, outDir string, scripts []string) (time.Duration, error) {
	d, err := newNetDriver(ctx, outDir, scripts)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	t0 := time.Now()
	if err := bootAll(ctx, d); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// bootAll starts every machine of d and waits until each shell answers.
func bootAll(ctx context.Context, d *driver.Driver) error {
	if err := d.StartAll(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	for _, m := range d.Machines() {
		g.Go(func() error {
			_, err := m.Succeed(ctx, "true")
			return err
		})
	}
	return g.Wait()
}

// transfer sends netTransferMiB MiB from src to dst's port over TCP and
// returns MB/s as timed on the sender. The sender runs dd under `nc -e`,
// so the connection closes as soon as dd is done (a pipe into nc would
// linger for the -w timeout after the data); the receiver's stdin never
// ends, so it reads until the sender closes.
func transfer(ctx context.Context, src, dst *machine.Machine, port int) (float64, error) {
	p := strconv.Itoa(port)
	rx := "/tmp/rx" + p
	if _, err := dst.Succeed(ctx, "(sleep 600 | nc -l -p "+p+" | wc -c >"+rx+") </dev/null >/dev/null 2>&1 &"); err != nil {
		return 0, err
	}
	// Not wait_for_open_port: its probe would be the listener's one connection.
	if _, err := dst.WaitUntilSucceeds(ctx, "netstat -ltn | grep -q ':"+p+" '", machine.Timeout(netWait)); err != nil {
		return 0, err
	}
	cmd := fmt.Sprintf("t0=$EPOCHREALTIME; nc -w 5 %s %s -e dd if=/dev/zero bs=1M count=%d 2>/dev/null; t1=$EPOCHREALTIME; echo $t0 $t1", dst.Name(), p, netTransferMiB)
	out, err := src.Succeed(ctx, cmd, machine.Timeout(netWait))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, fmt.Errorf("sender printed %q, want two timestamps", out)
	}
	t0, err0 := strconv.ParseFloat(f[0], 64)
	t1, err1 := strconv.ParseFloat(f[1], 64)
	if err0 != nil || err1 != nil || t1 <= t0 {
		return 0, fmt.Errorf("sender printed %q, want two increasing timestamps", out)
	}
	want := strconv.Itoa(netTransferMiB << 20)
	if _, err := dst.WaitUntilSucceeds(ctx, `test "$(cat `+rx+` 2>/dev/null)" = `+want, machine.Timeout(netWait)); err != nil {
		return 0, fmt.Errorf("receiver did not get %s bytes: %w", want, err)
	}
	return float64(netTransferMiB<<20) / 1e6 / (t1 - t0), nil
}
