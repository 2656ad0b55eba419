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

	"github.com/vmdriver/vmdriver/backend"
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

// network measures machines on a VLAN: three minimal guests booting in
// parallel against one alone (VDE), then the set-up, ping latency and TCP
// throughput between two guests on a VDE switch and on a TAP bridge.
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

	// The same two guests on each kind of VLAN, one after the other:
	// setting the network up, ping, TCP.
	kinds := []string{backend.VDE}
	if os.Geteuid() == 0 {
		kinds = append(kinds, backend.TAP)
	}
	res := map[string]*netResult{}
	for _, kind := range kinds {
		r, err := measureNet(ctx, dir, scripts[:2], kind)
		if err != nil {
			return fmt.Errorf("%s network: %w", kind, err)
		}
		res[kind] = r
	}
	fmt.Fprintf(w, "\nTwo guests on VLAN 1, on VDE switches (`--net vde`) and on a Linux bridge with TAP devices in a private network namespace (`--net tap`), measured one after the other in this run. Set-up is `driver.New` with VLAN 1 (the switch started and answering, or the namespace and bridge made), median of %d; ping is `ping -c 20 -i 0.2 n2`; TCP is %d MiB from `dd` over busybox `nc`, timed on the sender, byte count checked on the receiver (n=%d).\n\n", netSetups, netTransferMiB, netTransfers)
	fmt.Fprintln(w, "| measure | vde | tap | tap / vde |")
	fmt.Fprintln(w, "|---|---|---|---|")
	vde, tap := res[backend.VDE], res[backend.TAP]
	if tap == nil {
		tap = &netResult{}
	}
	row := func(name, unit string, v, t float64) {
		ratio := "n/a (not root)"
		if t > 0 {
			ratio = fmt.Sprintf("%.2f", t/v)
		}
		fmt.Fprintf(w, "| %s | %.2f %s | %.2f %s | %s |\n", name, v, unit, t, unit, ratio)
	}
	row("network set-up (median)", "ms", vde.setupMs, tap.setupMs)
	row("ping round trip (avg)", "ms", vde.pingAvgMs, tap.pingAvgMs)
	row("TCP throughput (median)", "MB/s", vde.mbps, tap.mbps)
	return nil
}

// netSetups is how often each network's set-up is timed.
const netSetups = 5

// netResult is what measureNet found for one kind of network.
type netResult struct {
	setupMs, pingAvgMs, mbps float64
}

// measureNet times the set-up of a VLAN of kind, then boots two guests
// on it and measures ping and TCP between them.
func measureNet(ctx context.Context, dir string, scripts []string, kind string) (*netResult, error) {
	var setups []time.Duration
	for i := 0; i < netSetups; i++ {
		t0 := time.Now()
		d, err := newNetDriver(ctx, dir, scripts, kind)
		if err != nil {
			return nil, err
		}
		setups = append(setups, time.Since(t0))
		d.Close()
	}
	r := &netResult{setupMs: float64(median(setups)) / float64(time.Millisecond)}
	d, err := newNetDriver(ctx, dir, scripts, kind)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	if err := bootAll(ctx, d); err != nil {
		return nil, err
	}
	n1, n2 := d.Machine("n1"), d.Machine("n2")
	out, err := n1.Succeed(ctx, "ping -c 20 -i 0.2 n2", machine.Timeout(netWait))
	if err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("ping printed no round-trip summary: %q", out)
	}
	r.pingAvgMs, _ = strconv.ParseFloat(m[2], 64)
	var rates []float64
	for i := 0; i < netTransfers; i++ {
		rate, err := transfer(ctx, n1, n2, 5001+i)
		if err != nil {
			return nil, fmt.Errorf("tcp transfer: %w", err)
		}
		rates = append(rates, rate)
	}
	sort.Float64s(rates)
	r.mbps = rates[len(rates)/2]
	return r, nil
}

// newNetDriver prepares a run of the given start scripts on VLAN 1 of
// the given kind ("" for the default, VDE), logging nowhere.
func newNetDriver(ctx context.Context, outDir string, scripts []string, kind string) (*driver.Driver, error) {
	var ms []driver.MachineConfig
	for _, s := range scripts {
		ms = append(ms, driver.MachineConfig{Name: driver.MachineName(s), StartScript: s})
	}
	return driver.New(ctx, driver.Config{Machines: ms, VLANs: []int{1}, Network: kind, OutputDir: outDir, GlobalTimeout: 10 * time.Minute},
		driver.WithBackend(qemu.New()), driver.WithLogger(report.New(report.Options{})))
}

// bootNetworked times one run from StartAll until every machine's shell
// has answered a command.
func bootNetworked(ctx context.Context, outDir string, scripts []string) (time.Duration, error) {
	d, err := newNetDriver(ctx, outDir, scripts, "")
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
