package backdoor

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const testTimeout = 20 * time.Second

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// newShell makes a ready shell on conn that is closed when the test ends.
func readyShell(t testing.TB, conn net.Conn, opts ...Option) *Shell {
	t.Helper()
	s := New(conn, append([]Option{WithLogf(t.Logf)}, opts...)...)
	t.Cleanup(func() { s.Close() })
	if err := s.WaitReady(testCtx(t, testTimeout)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
	return s
}

func run(t testing.TB, s *Shell, cmd string, opts RunOptions) Result {
	t.Helper()
	r, err := s.Run(testCtx(t, testTimeout), cmd, opts)
	if err != nil {
		t.Fatalf("Run(%s): %v", shortCmd(cmd), err)
	}
	return r
}

func forEachGuest(t *testing.T, f func(t *testing.T, g guest)) {
	for _, g := range guests(t) {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			f(t, g)
		})
	}
}

func TestRun(t *testing.T) {
	// Large commands: beyond the 128 KiB a single argv string may hold,
	// and far beyond what the guest's tty buffers.
	payload := strings.Repeat("it's a 'test' \"q\" $x `y` \\ %s\n", 10000) // 320 KB with quotes
	big := strings.Repeat("x", 300<<10)
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		tests := []struct {
			name   string
			cmd    string
			opts   RunOptions
			status int
			out    string
		}{
			{"true", "true", RunOptions{}, 0, ""},
			{"false", "false", RunOptions{}, 1, ""},
			{"exit", "exit 3", RunOptions{}, 3, ""},
			{"echo", "echo hello", RunOptions{}, 0, "hello\n"},
			{"no trailing newline", "printf abc", RunOptions{}, 0, "abc"},
			{"empty output", "printf ''", RunOptions{}, 0, ""},
			{"one full line", "printf '%057d' 0", RunOptions{}, 0, strings.Repeat("0", 57)},
			{"two full lines", "printf '%0114d' 0", RunOptions{}, 0, strings.Repeat("0", 114)},
			{"NUL bytes", `printf 'a\0b\0'`, RunOptions{}, 0, "a\x00b\x00"},
			{"invalid UTF-8", `printf '\377\376\200'`, RunOptions{}, 0, "\xff\xfe\x80"},
			{"multi-line", "echo one\necho two\n", RunOptions{}, 0, "one\ntwo\n"},
			{"quotes", `echo "it's" 'a "quoted"' \'x\'`, RunOptions{}, 0, "it's a \"quoted\" 'x'\n"},
			{"heredoc", "cat <<'EOF'\nline 'one'\n$HOME\nEOF", RunOptions{}, 0, "line 'one'\n$HOME\n"},
			{"set -e", "false; echo not reached", RunOptions{}, 1, ""},
			{"pipefail", "false | true", RunOptions{}, 1, ""},
			{"nounset, no positional parameters", "echo $1", RunOptions{}, 1, ""},
			{"syntax error", "if then", RunOptions{}, 2, ""},
			{"still usable after a syntax error", "echo alive", RunOptions{}, 0, "alive\n"},
			{"unbalanced quote", "echo 'oops", RunOptions{}, 2, ""},
			{"reads stdin and gets EOF", "cat; echo done", RunOptions{}, 0, "done\n"},
			{"read builtin gets EOF", "read x || echo eof", RunOptions{}, 0, "eof\n"},
			{"stderr is not output", "echo err >&2; echo out", RunOptions{}, 0, "out\n"},
			{"exit in the command keeps the shell", "echo bye; exit 0", RunOptions{}, 0, "bye\n"},
			{"outer shell state untouched", "cd /; X=1; set +e", RunOptions{}, 0, ""},
			{"subshell isolation", `echo "${X:-unset}"`, RunOptions{}, 0, "unset\n"},
			{"guest-side timeout", "sleep 5", RunOptions{Timeout: 300 * time.Millisecond}, 124, ""},
			{"timeout not reached", "echo in time; exit 4", RunOptions{Timeout: 10 * time.Second}, 4, "in time\n"},
			{"timeout, nounset", "echo $1", RunOptions{Timeout: 10 * time.Second}, 1, ""},
			{"timeout, quotes", `echo "it's" 'a "quoted"'`, RunOptions{Timeout: 10 * time.Second}, 0, "it's a \"quoted\"\n"},
			{"large command", "s='" + big + "'; echo ${#s}", RunOptions{}, 0, "307200\n"},
			{"large command with quotes", "cat <<'EOF'\n" + payload + "EOF", RunOptions{}, 0, payload},
			{"large command with quotes and timeout", "cat <<'EOF'\n" + payload + "EOF", RunOptions{Timeout: time.Minute}, 0, payload},
			{"after all that", "echo ok", RunOptions{}, 0, "ok\n"},
		}
		for _, tc := range tests {
			r := run(t, s, tc.cmd, tc.opts)
			if r.Status != tc.status || string(r.Output) != tc.out {
				t.Errorf("%s: got (%d, %q), want (%d, %q)", tc.name, r.Status, trunc(r.Output), tc.status, trunc([]byte(tc.out)))
			}
		}
	})
}

func trunc(b []byte) string {
	if len(b) > 100 {
		return string(b[:100]) + "…"
	}
	return string(b)
}

func TestRunLargeOutput(t *testing.T) {
	data := make([]byte, 10<<20)
	rand.Read(data)
	file := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		r := run(t, s, "cat "+shellQuote(file), RunOptions{})
		if r.Status != 0 || !bytes.Equal(r.Output, data) {
			t.Fatalf("got status %d and %d bytes (equal: %v), want 0 and the %d random bytes", r.Status, len(r.Output), bytes.Equal(r.Output, data), len(data))
		}
	})
}

func TestConcurrentRuns(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range 10 {
					want := fmt.Sprintf("caller %d run %d\n", i, j)
					r, err := s.Run(testCtx(t, testTimeout), "echo "+shellQuote(strings.TrimSpace(want)), RunOptions{})
					if err != nil || string(r.Output) != want {
						t.Errorf("got (%q, %v), want %q", r.Output, err, want)
					}
				}
			}()
		}
		wg.Wait()
	})
}

// TestAbandonThenBusy: a command abandoned at its deadline keeps the shell
// busy; the next Run reports ErrBusy naming it, and works once it ended.
func TestAbandonThenBusy(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		release, releaseF := fifo(t, "release")
		cmd := fmt.Sprintf("read x < %s; echo released", shellQuote(release))

		ctx, cancel := context.WithCancel(testCtx(t, testTimeout))
		errc := make(chan error, 1)
		go func() {
			_, err := s.Run(ctx, cmd, RunOptions{})
			errc <- err
		}()
		waitStarted(t, s)
		cancel()
		err := <-errc
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("abandoned Run: got %v, want context.Canceled saying the command is still running", err)
		}

		ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel2()
		_, err = s.Run(ctx2, "echo next", RunOptions{})
		if !errors.Is(err, ErrBusy) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "is still running after") {
			t.Fatalf("Run after abandonment: got %v, want ErrBusy naming the earlier command", err)
		}

		if _, err := releaseF.WriteString("go\n"); err != nil {
			t.Fatal(err)
		}
		if r := run(t, s, "echo next", RunOptions{}); string(r.Output) != "next\n" {
			t.Fatalf("after recovery: got %q, want %q", r.Output, "next\n")
		}
	})
}

// TestBackgroundChild: a command whose background child keeps stdout open.
func TestBackgroundChild(t *testing.T) {
	for _, g := range guests(t) {
		if !g.realShell {
			continue // the fake's equivalent is GuestReply.Hold: TestFakeHold
		}
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder()
			s := readyShell(t, g.start(t), WithLogf(logs.logf))
			release, releaseF := fifo(t, "release")
			cmd := fmt.Sprintf("(read x < %s; echo late) & echo early; exit 5", shellQuote(release))

			ctx, cancel := context.WithCancel(testCtx(t, testTimeout))
			errc := make(chan error, 1)
			go func() {
				_, err := s.Run(ctx, cmd, RunOptions{HeldWarning: time.Millisecond})
				errc <- err
			}()
			logs.waitFor(t, "exited with status 5, but a background process", testTimeout)
			cancel()
			err := <-errc
			if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "exited with status 5 but a background process still holds its stdout open") {
				t.Fatalf("got %v, want context.Canceled saying a background process holds stdout", err)
			}

			ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel2()
			if _, err := s.Run(ctx2, "true", RunOptions{}); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "background process") {
				t.Fatalf("got %v, want ErrBusy about the background process", err)
			}
			if _, err := releaseF.WriteString("go\n"); err != nil {
				t.Fatal(err)
			}
			if r := run(t, s, "echo again", RunOptions{}); string(r.Output) != "again\n" {
				t.Fatalf("after the child exited: got %q", r.Output)
			}
		})
	}
}

// TestBackgroundChildFinishes: the output of a background child that ends
// on its own is part of the command's output.
func TestBackgroundChildFinishes(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		r := run(t, s, "(sleep 0.2; echo child) & echo parent", RunOptions{})
		if r.Status != 0 || string(r.Output) != "parent\nchild\n" {
			t.Fatalf("got (%d, %q)", r.Status, r.Output)
		}
	})
}

// TestCorruptionDetected drops bytes between guest and host, as QEMU's
// virtconsole does: with the console counter any loss is found and its
// size named; without it the line check finds a dropped page.
func TestCorruptionDetected(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	file := filepath.Join(t.TempDir(), "random")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	forEachGuest(t, func(t *testing.T, g guest) {
		conn := &dropConn{Conn: g.start(t)}
		s := readyShell(t, conn)
		sizes := []int64{4096}
		if g.counted {
			sizes = []int64{77, 1, 4096, 3 * 77 * 4096}
		}
		for _, n := range sizes {
			conn.dropAt(100000, n)
			_, err := s.Run(testCtx(t, testTimeout), "cat "+shellQuote(file), RunOptions{})
			want := "line"
			if g.counted {
				want = fmt.Sprintf(" %s between guest and host", bytesLost(n))
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "lost") {
				t.Fatalf("%d bytes dropped: got %v, want ErrCorrupt containing %q", n, err, want)
			}
			if r := run(t, s, "echo fine", RunOptions{}); string(r.Output) != "fine\n" {
				t.Fatalf("after corruption: got %q", r.Output)
			}
		}
		r := run(t, s, "cat "+shellQuote(file), RunOptions{})
		if !bytes.Equal(r.Output, data) {
			t.Fatalf("after the losses: got %d bytes, want the %d of the file", len(r.Output), len(data))
		}
	})
}

func TestByteByByte(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, oneByteConn{g.start(t)})
		r := run(t, s, "printf 'a\\nb\\0'; exit 7", RunOptions{})
		if r.Status != 7 || string(r.Output) != "a\nb\x00" {
			t.Fatalf("got (%d, %q)", r.Status, r.Output)
		}
	})
}

func TestDeadlineWhileRunning(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		release, releaseF := fifo(t, "release")
		ctx, cancel := context.WithCancel(testCtx(t, testTimeout))
		errc := make(chan error, 1)
		go func() {
			_, err := s.Run(ctx, fmt.Sprintf("read x < %s", shellQuote(release)), RunOptions{})
			errc <- err
		}()
		waitStarted(t, s)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "still running after") {
			t.Fatalf("got %v", err)
		}
		releaseF.WriteString("\n")
		run(t, s, "true", RunOptions{})
	})
}

func TestConnectionClosedMidCommand(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		if !g.realShell {
			t.Skip("see TestFakeClosedMidCommand")
		}
		s := readyShell(t, g.start(t))
		// $$ is the outer shell: killing it ends the connection before
		// the end marker.
		_, err := s.Run(testCtx(t, testTimeout), "kill -9 $$", RunOptions{})
		if !errors.Is(err, ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want ErrClosed before the deadline", err)
		}
		<-s.Done()
		if !errors.Is(s.Err(), ErrClosed) {
			t.Fatalf("Err() = %v", s.Err())
		}
		if _, err := s.Run(testCtx(t, testTimeout), "true", RunOptions{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Run after close: %v", err)
		}
	})
}

func TestNoStatusConnectionCloses(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		if !g.realShell {
			t.Skip("see TestFakePoweroff")
		}
		s := readyShell(t, g.start(t))
		if _, err := s.Run(testCtx(t, testTimeout), "kill -9 $$", RunOptions{NoStatus: true}); err != nil {
			t.Fatalf("got %v, want no error", err)
		}
	})
}

func TestNoStatusCompletes(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		r := run(t, s, "echo hi; exit 2", RunOptions{NoStatus: true})
		if r.Status != 2 || string(r.Output) != "hi\n" {
			t.Fatalf("got (%d, %q)", r.Status, r.Output)
		}
	})
}

func TestSend(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		file := filepath.Join(t.TempDir(), "sent")
		if err := s.Send(testCtx(t, testTimeout), fmt.Sprintf("echo sent > %s; echo discarded; exit 9", shellQuote(file))); err != nil {
			t.Fatal(err)
		}
		r := run(t, s, "cat "+shellQuote(file), RunOptions{})
		if r.Status != 0 || string(r.Output) != "sent\n" {
			t.Fatalf("got (%d, %q), want (0, \"sent\\n\")", r.Status, r.Output)
		}
	})
}

func TestSendRaw(t *testing.T) {
	for _, g := range guests(t) {
		if !g.realShell {
			continue // TestFakeRaw
		}
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder()
			s := readyShell(t, g.start(t), WithLogf(logs.logf))
			file := filepath.Join(t.TempDir(), "raw")
			if err := s.SendRaw(testCtx(t, testTimeout), fmt.Sprintf("touch %s; echo stray-output\n", shellQuote(file))); err != nil {
				t.Fatal(err)
			}
			if r := run(t, s, "test -e "+shellQuote(file), RunOptions{}); r.Status != 0 || len(r.Output) != 0 {
				t.Fatalf("got (%d, %q)", r.Status, r.Output)
			}
			logs.waitFor(t, "stray-output", testTimeout)
		})
	}
}

func TestWithoutBanner(t *testing.T) {
	t.Run("bash", func(t *testing.T) {
		// The banner still arrives here, as unexpected output; the prelude
		// is sent by WaitReady all the same.
		logs := newLogRecorder()
		s := readyShell(t, startBash(t, bashOptions{ports: true}), WithoutBanner(), WithLogf(logs.logf))
		if r := run(t, s, "echo restored", RunOptions{}); string(r.Output) != "restored\n" {
			t.Fatalf("got %q", r.Output)
		}
		logs.waitFor(t, "banner again", testTimeout)
	})
	t.Run("fake without WaitReady", func(t *testing.T) {
		conn := startFake(t, echoHandler, FakeGuestOptions{NoBanner: true})
		s := New(conn, WithoutBanner())
		defer s.Close()
		if r := run(t, s, "x", RunOptions{}); string(r.Output) != "x" {
			t.Fatalf("got %q", r.Output)
		}
	})
}

func TestClose(t *testing.T) {
	forEachGuest(t, func(t *testing.T, g guest) {
		s := readyShell(t, g.start(t))
		started, startedF := fifo(t, "started")
		errc := make(chan error, 1)
		go func() {
			_, err := s.Run(testCtx(t, testTimeout), fmt.Sprintf("echo > %s; sleep 10", shellQuote(started)), RunOptions{})
			errc <- err
		}()
		readLine(t, startedF, testTimeout)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatalf("pending Run: %v", err)
		}
		select {
		case <-s.Done():
		default:
			t.Fatal("Done not closed after Close")
		}
		if !errors.Is(s.Err(), ErrClosed) {
			t.Fatalf("Err() = %v", s.Err())
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if err := s.Send(testCtx(t, testTimeout), "true"); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close: %v", err)
		}
	})
}

func TestNULInCommand(t *testing.T) {
	s := readyShell(t, startFake(t, echoHandler, FakeGuestOptions{}))
	if _, err := s.Run(testCtx(t, testTimeout), "echo a\x00b", RunOptions{}); !errors.Is(err, errNUL) {
		t.Fatalf("got %v", err)
	}
}

func TestWaitReadyErrors(t *testing.T) {
	t.Run("no banner", func(t *testing.T) {
		host, g := net.Pipe()
		defer g.Close()
		s := New(host)
		defer s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := s.WaitReady(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "banner") {
			t.Fatalf("got %v", err)
		}
		if s.Err() != nil {
			t.Fatalf("Err() = %v while open", s.Err())
		}
	})
	t.Run("guest closes", func(t *testing.T) {
		host, g := net.Pipe()
		s := New(host)
		defer s.Close()
		g.Write([]byte("booting\n"))
		g.Close()
		if err := s.WaitReady(testCtx(t, testTimeout)); !errors.Is(err, ErrClosed) {
			t.Fatalf("got %v", err)
		}
	})
}

// echoHandler answers every command with its own text.
func echoHandler(ctx context.Context, req GuestRequest) GuestReply {
	return GuestReply{Output: []byte(req.Command)}
}

// waitStarted waits until the guest reported that the command of a Run
// started (its start marker was parsed).
func waitStarted(t testing.TB, s *Shell) {
	t.Helper()
	timer := time.NewTimer(testTimeout)
	defer timer.Stop()
	for {
		s.mu.Lock()
		started := false
		for _, c := range s.p.cmds {
			started = started || (c.kind == kindRun && c.started)
		}
		ch := s.changed
		s.mu.Unlock()
		if started {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			t.Fatal("the command did not start")
		}
	}
}
