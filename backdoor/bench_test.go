package backdoor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// anchorShell is the Python driver's exchange, for comparison: the
// command runs as `[timeout N] bash -c '…' | (base64 -w 0; echo)`, the
// host reads one line, then asks for ${PIPESTATUS[0]} in a second round
// trip.
type anchorShell struct {
	conn net.Conn
	r    *bufio.Reader
}

func newAnchor(tb testing.TB, conn net.Conn) *anchorShell {
	tb.Helper()
	a := &anchorShell{conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	for {
		line, err := a.r.ReadString('\n')
		if err != nil {
			tb.Fatalf("waiting for the banner: %v", err)
		}
		if strings.Contains(line, Banner) {
			return a
		}
	}
}

func (a *anchorShell) run(ctx context.Context, cmd string, timeout int) (int, []byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		a.conn.SetDeadline(dl)
	}
	line := "bash -c " + shellQuote("set -euo pipefail; "+cmd) + " | (base64 -w 0; echo)\n"
	if timeout > 0 {
		line = "timeout " + strconv.Itoa(timeout) + " " + line
	}
	if _, err := a.conn.Write([]byte(line)); err != nil {
		return 0, nil, err
	}
	enc, err := a.r.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	out, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(enc, "\n"))
	if err != nil {
		return 0, nil, err
	}
	if _, err := a.conn.Write([]byte("echo ${PIPESTATUS[0]}\n")); err != nil {
		return 0, nil, err
	}
	st, err := a.r.ReadString('\n')
	if err != nil {
		return 0, nil, err
	}
	status, err := strconv.Atoi(strings.TrimSpace(st))
	return status, out, err
}

// benchRun is one way of running a command against a fresh local bash.
type benchRun struct {
	name string
	run  func(b *testing.B) func(ctx context.Context, cmd string) (int, []byte, error)
}

func benchRuns() []benchRun {
	vmd := func(counted bool, opts RunOptions) func(b *testing.B) func(context.Context, string) (int, []byte, error) {
		return func(b *testing.B) func(context.Context, string) (int, []byte, error) {
			s := readyShell(b, startBash(b, bashOptions{ports: counted}))
			return func(ctx context.Context, cmd string) (int, []byte, error) {
				r, err := s.Run(ctx, cmd, opts)
				return r.Status, r.Output, err
			}
		}
	}
	anchor := func(timeout int) func(b *testing.B) func(context.Context, string) (int, []byte, error) {
		return func(b *testing.B) func(context.Context, string) (int, []byte, error) {
			a := newAnchor(b, startBash(b, bashOptions{}))
			return func(ctx context.Context, cmd string) (int, []byte, error) { return a.run(ctx, cmd, timeout) }
		}
	}
	// vmd runs through the test relay that fakes the console counter (one
	// more copy of every byte); vmd-wrapped is the fallback without it.
	return []benchRun{
		{"vmd", vmd(true, RunOptions{})},
		{"vmd-wrapped", vmd(false, RunOptions{})},
		{"vmd-timeout", vmd(true, RunOptions{Timeout: 900 * time.Second})},
		{"anchor", anchor(900)},
		{"anchor-notimeout", anchor(0)},
	}
}

// BenchmarkRunTrue measures one round trip of `true` against a local
// bash (not TCG: real guests pay much more per exec).
func BenchmarkRunTrue(b *testing.B) {
	for _, br := range benchRuns() {
		b.Run(br.name, func(b *testing.B) {
			run := br.run(b)
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				status, out, err := run(ctx, "true")
				cancel()
				if err != nil || status != 0 || len(out) != 0 {
					b.Fatalf("got (%d, %q, %v)", status, out, err)
				}
			}
		})
	}
}

// BenchmarkOutput64MiB measures output throughput, checking every byte.
func BenchmarkOutput64MiB(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	file := filepath.Join(b.TempDir(), "random")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		b.Fatal(err)
	}
	for _, br := range benchRuns() {
		if strings.HasSuffix(br.name, "timeout") {
			continue
		}
		b.Run(br.name, func(b *testing.B) {
			run := br.run(b)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				status, out, err := run(ctx, "cat "+shellQuote(file))
				cancel()
				if err != nil || status != 0 || !bytes.Equal(out, data) {
					b.Fatalf("got status %d, %d bytes, %v", status, len(out), err)
				}
			}
		})
	}
}

// BenchmarkParser measures the host side alone: parsing and decoding
// 64 MiB of output fed in 64 KiB reads, in both output shapes.
func BenchmarkParser(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	for _, mode := range []string{modeCounted, modeWrapped} {
		var stream string
		if mode == modeCounted {
			stream = (&wire{}).add(Banner+"\n").ack("5").reply("6", "0", data, 1<<30).String()
		} else {
			stream = Banner + "\n\036a5 nodebugfs\n" + wrappedReply("6", "0", data, 1<<30)
		}
		var reads [][]byte
		for s := stream; len(s) > 0; {
			n := min(len(s), 64<<10)
			reads = append(reads, []byte(s[:n]))
			s = s[n:]
		}
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				p, _, cmd := newTestParser()
				for _, r := range reads {
					p.feed(r)
				}
				if cmd.err != nil || len(cmd.out) != len(data) {
					b.Fatalf("err %v, %d bytes", cmd.err, len(cmd.out))
				}
			}
		})
	}
}
