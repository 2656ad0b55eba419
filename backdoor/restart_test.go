package backdoor

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// noCounterWarning starts the warning about the missing console counter.
const noCounterWarning = "exact output-length checks are unavailable because debugfs is not mounted in the guest"

// TestOutputShape looks at the wire: with the console counter the output
// is one base64 line and the end marker carries the count; without it the
// output is wrapped at 76 columns, and the missing counter is reported
// once per Shell, saying how to fix it.
func TestOutputShape(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		logs := newLogRecorder()
		tap := &tapConn{Conn: g.start(t)}
		s := readyShell(t, tap, WithLogf(logs.logf))
		for range 3 {
			if r := run(t, s, "head -c 1000 /dev/zero", RunOptions{}); !bytes.Equal(r.Output, make([]byte, 1000)) {
				t.Fatalf("got %d bytes", len(r.Output))
			}
		}
		stream := tap.String()
		start := regexp.MustCompile("\036s([0-9]+) ([cw])\n")
		m := start.FindAllStringSubmatch(stream, -1)
		if len(m) != 3 {
			t.Fatalf("%d start markers in %q", len(m), stream)
		}
		id, mode := m[2][1], m[2][2]
		wantMode := map[bool]string{true: "c", false: "w"}[g.counted]
		if mode != wantMode {
			t.Fatalf("mode %s, want %s", mode, wantMode)
		}
		body := stream[strings.LastIndex(stream, "\036s"+id+" "):]
		body = body[len("\036s"+id+" c\n"):strings.Index(body, "\036e"+id)]
		body = regexp.MustCompile("\036x[0-9]+ [0-9]+\n").ReplaceAllString(body, "")
		end := regexp.MustCompile("\036e" + id + "( [0-9]+)?\n").FindStringSubmatch(stream)
		if g.counted {
			if strings.Contains(body, "\n") || len(body) != 1336 || end == nil || end[1] == "" {
				t.Fatalf("mode c: body %q, end marker %q: want one 1336-character line and a count", body, end)
			}
		} else {
			lines := strings.Split(body, "\n")
			if len(lines) != 19 || len(lines[0]) != 76 || len(lines[17]) != 44 || lines[18] != "" || end == nil || end[1] != "" {
				t.Fatalf("mode w: body %q, end marker %q: want 17 lines of 76, one of 44, no count", body, end)
			}
		}
		// Flush the notes: they are delivered in order.
		if err := s.SendRaw(testCtx(t, testTimeout), "echo flush-notes\n"); err != nil {
			t.Fatal(err)
		}
		if !g.realShell {
			run(t, s, "true", RunOptions{}) // the fake does not run raw text
		} else {
			logs.waitFor(t, "flush-notes", testTimeout)
		}
		logs.mu.Lock()
		defer logs.mu.Unlock()
		var warnings []string
		for _, msg := range logs.msgs {
			if strings.Contains(msg, "exact output-length checks") {
				warnings = append(warnings, msg)
			}
		}
		switch {
		case g.counted && len(warnings) != 0:
			t.Fatalf("counter available, yet warned: %q", warnings)
		case !g.counted && (len(warnings) != 1 || !strings.Contains(warnings[0], noCounterWarning) || !strings.Contains(warnings[0], "mount -t debugfs none /sys/kernel/debug")):
			t.Fatalf("no counter: warnings %q, want one saying how to mount debugfs", warnings)
		}
	})
}

// TestConsoleWritersCounted: bytes other guest processes write to the
// console are counted on both sides, so they are not mistaken for losses.
func TestConsoleWritersCounted(t *testing.T) {
	for _, g := range guests(t) {
		if !g.realShell || !g.counted {
			continue
		}
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder()
			s := readyShell(t, g.start(t), WithLogf(logs.logf))
			done, doneF := fifo(t, "done")
			// A background process of the outer shell, writing to the
			// console between commands.
			raw := fmt.Sprintf("(for i in 1 2 3 4 5; do echo console-noise-$i; done; echo > %s) &\n", shellQuote(done))
			if err := s.SendRaw(testCtx(t, testTimeout), raw); err != nil {
				t.Fatal(err)
			}
			readLine(t, doneF, testTimeout)
			for range 3 {
				if r := run(t, s, "head -c 100000 /dev/zero | tr '\\0' x", RunOptions{}); len(r.Output) != 100000 {
					t.Fatalf("got %d bytes", len(r.Output))
				}
			}
			logs.waitFor(t, "console-noise-5", testTimeout)
		})
	}
}

// TestWithoutBannerRebaseline: a second Shell takes over a guest shell
// with its counter running (a snapshot restore). WaitReady re-baselines
// with a small request; without WaitReady the first command does; either
// way losses are then found exactly.
func TestWithoutBannerRebaseline(t *testing.T) {
	data := make([]byte, 200000)
	rand.Read(data)
	file := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cat := "cat " + shellQuote(file)
	for _, waitReady := range []bool{true, false} {
		t.Run(fmt.Sprintf("bash, WaitReady %v", waitReady), func(t *testing.T) {
			t.Parallel()
			conn := startBash(t, bashOptions{ports: true})
			first := &detachConn{Conn: conn}
			s1 := readyShell(t, first)
			run(t, s1, cat, RunOptions{})
			s1.Close()
			if err := conn.SetReadDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}

			tap := &tapConn{Conn: conn}
			drop := &dropConn{Conn: tap}
			s2 := New(drop, WithoutBanner(), WithLogf(t.Logf))
			t.Cleanup(func() { s2.Close() })
			if waitReady {
				if err := s2.WaitReady(testCtx(t, testTimeout)); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(tap.String(), "\036a") || strings.Contains(tap.String(), "\036s") {
					t.Fatalf("WaitReady: got %q, want just an ack", tap.String())
				}
			} else {
				run(t, s2, "echo baseline", RunOptions{})
			}
			for _, n := range []int64{1, 4096} {
				drop.dropAt(50000, n)
				_, err := s2.Run(testCtx(t, testTimeout), cat, RunOptions{})
				if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), bytesLost(n)) {
					t.Fatalf("%d bytes dropped: got %v", n, err)
				}
			}
			if r := run(t, s2, cat, RunOptions{}); !bytes.Equal(r.Output, data) {
				t.Fatalf("got %d bytes", len(r.Output))
			}
		})
	}
	t.Run("fake", func(t *testing.T) {
		t.Parallel()
		drop := &dropConn{Conn: startFake(t, echoHandler, FakeGuestOptions{NoBanner: true})}
		s := readyShell(t, drop, WithoutBanner())
		drop.dropAt(1000, 3)
		big := strings.Repeat("y", 100000)
		if _, err := s.Run(testCtx(t, testTimeout), big, RunOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "3 bytes were lost") {
			t.Fatalf("got %v", err)
		}
		if r := run(t, s, "ok", RunOptions{}); string(r.Output) != "ok" {
			t.Fatalf("got %q", r.Output)
		}
	})
	t.Run("bash without the prelude", func(t *testing.T) {
		// Not the shell we thought: it answers the small request with
		// "!", and WaitReady sends the whole prelude.
		t.Parallel()
		drop := &dropConn{Conn: startBash(t, bashOptions{ports: true, noBanner: true})}
		s := readyShell(t, drop, WithoutBanner())
		drop.dropAt(1000, 5)
		if _, err := s.Run(testCtx(t, testTimeout), cat, RunOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "5 bytes were lost") {
			t.Fatalf("got %v", err)
		}
	})
}

// restartHandler answers "reboot" by rebooting the fake guest, "block"
// by waiting until its ctx ends, and anything else by echoing it.
func restartHandler(restart chan<- struct{}) GuestHandler {
	return func(ctx context.Context, req GuestRequest) GuestReply {
		switch req.Command {
		case "reboot":
			restart <- struct{}{}
		case "block":
			<-ctx.Done()
		}
		return GuestReply{Output: []byte(req.Command)}
	}
}

// TestRestart: the banner again means the guest rebooted. The command in
// flight fails with ErrRestarted at once, the Shell sets up the new shell
// by itself, and later commands work (exactly checked again).
func TestRestart(t *testing.T) {
	type setup struct {
		name   string
		start  func(t *testing.T) (*dropConn, func(t *testing.T, s *Shell) error)
		bigCmd string
	}
	big := strings.Repeat("z", 300000)
	setups := []setup{
		{
			name: "fake",
			start: func(t *testing.T) (*dropConn, func(t *testing.T, s *Shell) error) {
				restart := make(chan struct{}, 1)
				conn := startFake(t, restartHandler(restart), FakeGuestOptions{PreBanner: "rebooting...\n", Restart: restart})
				return &dropConn{Conn: conn}, func(t *testing.T, s *Shell) error {
					_, err := s.Run(testCtx(t, testTimeout), "reboot", RunOptions{})
					return err
				}
			},
			bigCmd: big,
		},
		{
			name: "fake, restart while a command runs",
			start: func(t *testing.T) (*dropConn, func(t *testing.T, s *Shell) error) {
				restart := make(chan struct{}, 1)
				conn := startFake(t, restartHandler(restart), FakeGuestOptions{Restart: restart})
				return &dropConn{Conn: conn}, func(t *testing.T, s *Shell) error {
					errc := make(chan error, 1)
					go func() {
						_, err := s.Run(testCtx(t, testTimeout), "block", RunOptions{})
						errc <- err
					}()
					waitStarted(t, s)
					restart <- struct{}{}
					return <-errc
				}
			},
			bigCmd: big,
		},
		{
			name: "bash",
			start: func(t *testing.T) (*dropConn, func(t *testing.T, s *Shell) error) {
				conn := startBash(t, bashOptions{ports: true, restartable: true})
				return &dropConn{Conn: conn}, func(t *testing.T, s *Shell) error {
					// $$ is the outer shell: the loop around it prints the
					// banner again and starts a new one.
					_, err := s.Run(testCtx(t, testTimeout), "echo dying; kill -9 $$; sleep 10", RunOptions{})
					return err
				}
			},
			bigCmd: "head -c 300000 /dev/zero | tr '\\0' z",
		},
	}
	for _, st := range setups {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder()
			conn, reboot := st.start(t)
			s := readyShell(t, conn, WithLogf(logs.logf))
			run(t, s, "before", RunOptions{})
			err := reboot(t, s)
			if !errors.Is(err, ErrRestarted) || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("command during the reboot: got %v, want ErrRestarted", err)
			}
			logs.waitFor(t, "banner again", testTimeout)
			for range 2 {
				if r := run(t, s, "echo after", RunOptions{}); r.Status != 0 || !strings.Contains(string(r.Output), "after") {
					t.Fatalf("after the restart: got (%d, %q)", r.Status, r.Output)
				}
			}
			conn.dropAt(5000, 7)
			if _, err := s.Run(testCtx(t, testTimeout), st.bigCmd, RunOptions{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "7 bytes were lost") {
				t.Fatalf("after the restart, 7 bytes dropped: got %v", err)
			}
			if err := s.WaitReady(testCtx(t, testTimeout)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRestartNoStatus: a NoStatus command (reboot, poweroff) may end the
// guest shell without an error.
func TestRestartNoStatus(t *testing.T) {
	restart := make(chan struct{}, 1)
	s := readyShell(t, startFake(t, restartHandler(restart), FakeGuestOptions{Restart: restart}))
	r, err := s.Run(testCtx(t, testTimeout), "reboot", RunOptions{NoStatus: true})
	if err != nil || r.Status != -1 {
		t.Fatalf("got (%+v, %v), want status -1 and no error", r, err)
	}
	if r := run(t, s, "next", RunOptions{}); string(r.Output) != "next" {
		t.Fatalf("got %q", r.Output)
	}
}

// TestExpectRestart: after ExpectRestart, WaitReady and Run wait for the
// next banner; the old shell no longer counts.
func TestExpectRestart(t *testing.T) {
	restart := make(chan struct{}, 1)
	var mu sync.Mutex
	var seen []string
	s := readyShell(t, startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		mu.Lock()
		seen = append(seen, req.Command)
		mu.Unlock()
		return GuestReply{Output: []byte(req.Command)}
	}, FakeGuestOptions{Restart: restart}))
	run(t, s, "before", RunOptions{})
	s.ExpectRestart()
	short := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if err := s.WaitReady(short()); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("WaitReady before the banner: got %v, want a deadline error about the restart", err)
	}
	if _, err := s.Run(short(), "too early", RunOptions{}); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("Run before the banner: got %v", err)
	}
	restart <- struct{}{}
	if err := s.WaitReady(testCtx(t, testTimeout)); err != nil {
		t.Fatal(err)
	}
	if r := run(t, s, "after", RunOptions{}); string(r.Output) != "after" {
		t.Fatalf("got %q", r.Output)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "before,after" {
		t.Fatalf("the guest saw %q", seen)
	}
}

// TestSendRestart: the command that restarts the shell is sent, and what
// follows waits for the new banner, even one that comes at once.
func TestSendRestart(t *testing.T) {
	restart := make(chan struct{}, 1)
	var mu sync.Mutex
	var seen []string
	s := readyShell(t, startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		mu.Lock()
		seen = append(seen, req.Command)
		mu.Unlock()
		if req.Command == "switch" {
			restart <- struct{}{} // the new banner follows the command at once
		}
		return GuestReply{Output: []byte(req.Command)}
	}, FakeGuestOptions{Restart: restart}))
	if err := s.SendRestart(testCtx(t, testTimeout), "switch"); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReady(testCtx(t, testTimeout)); err != nil {
		t.Fatalf("WaitReady after the restart: %v", err)
	}
	if r := run(t, s, "after", RunOptions{}); string(r.Output) != "after" {
		t.Fatalf("got %q", r.Output)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != "switch,after" {
		t.Fatalf("the guest saw %q", seen)
	}
}
