package backdoor

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFakeRequests(t *testing.T) {
	var mu sync.Mutex
	var got []GuestRequest
	conn := startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		return GuestReply{Output: []byte("out:" + req.Command), Status: len(req.Command) % 256}
	}, FakeGuestOptions{})
	s := readyShell(t, conn)
	big := strings.Repeat("it's \\ '\" x\n", 30000) // several argv chunks
	want := []GuestRequest{
		{Command: "sent first"},
		{Command: "echo 'a b'\n  c", Timeout: 1500 * time.Millisecond},
		{Command: big, Timeout: time.Millisecond},
		{Command: ""},
		{Command: "last"},
	}
	if err := s.Send(testCtx(t, testTimeout), want[0].Command); err != nil {
		t.Fatal(err)
	}
	for _, req := range want[1:] {
		r := run(t, s, req.Command, RunOptions{Timeout: req.Timeout})
		if string(r.Output) != "out:"+req.Command || r.Status != len(req.Command)%256 {
			t.Errorf("reply to %s: got (%d, %s)", shortCmd(req.Command), r.Status, shortCmd(string(r.Output)))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Errorf("handler saw %d requests, want %d; equal: false", len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("request %d: got (%s, %v), want (%s, %v)", i, shortCmd(got[i].Command), got[i].Timeout, shortCmd(want[i].Command), want[i].Timeout)
			}
		}
	}
}

func TestFakeHold(t *testing.T) {
	logs := newLogRecorder()
	conn := startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		if req.Command == "daemon" {
			return GuestReply{Output: []byte("started\n"), Status: 0, Hold: 2 * time.Second}
		}
		return GuestReply{Output: []byte(req.Command)}
	}, FakeGuestOptions{})
	s := readyShell(t, conn, WithLogf(logs.logf))

	ctx, cancel := context.WithCancel(testCtx(t, testTimeout))
	errc := make(chan error, 1)
	go func() {
		_, err := s.Run(ctx, "daemon", RunOptions{HeldWarning: time.Millisecond})
		errc <- err
	}()
	logs.waitFor(t, "exited with status 0, but a background process it started still holds its stdout open", testTimeout)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "background process") {
		t.Fatalf("got %v", err)
	}
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	if _, err := s.Run(short, "next", RunOptions{}); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), `"daemon"`) {
		t.Fatalf("got %v, want ErrBusy naming \"daemon\"", err)
	}
	// Waits for the hold to end.
	if r := run(t, s, "next", RunOptions{}); string(r.Output) != "next" {
		t.Fatalf("got %q", r.Output)
	}
}

func TestFakeHoldWithoutDeadline(t *testing.T) {
	// Hold shorter than the caller's patience: the output arrives whole,
	// after one warning.
	logs := newLogRecorder()
	conn := startFake(t, func(ctx context.Context, req GuestRequest) GuestReply {
		return GuestReply{Output: []byte("x"), Status: 3, Hold: 100 * time.Millisecond}
	}, FakeGuestOptions{})
	s := readyShell(t, conn, WithLogf(logs.logf))
	r := run(t, s, "daemon", RunOptions{HeldWarning: time.Millisecond})
	if r.Status != 3 || string(r.Output) != "x" {
		t.Fatalf("got (%d, %q)", r.Status, r.Output)
	}
	logs.waitFor(t, "exited with status 3", testTimeout)
}

func TestFakeRaw(t *testing.T) {
	raw := make(chan string, 10)
	conn := startFake(t, echoHandler, FakeGuestOptions{Raw: func(text string) { raw <- text }})
	s := readyShell(t, conn)
	if err := s.SendRaw(testCtx(t, testTimeout), "poweroff\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-raw:
		if got != "poweroff" {
			t.Fatalf("Raw got %q", got)
		}
	case <-time.After(testTimeout):
		t.Fatal("Raw not called")
	}
}

// fakePair runs the fake guest on a net.Pipe, handing the guest's end to
// the handler through gconn.
func fakePair(t *testing.T, h func(g net.Conn) GuestHandler, opts FakeGuestOptions) net.Conn {
	host, g := net.Pipe()
	return serveFake(t, host, g, h(g), opts)
}

func TestFakeClosedMidCommand(t *testing.T) {
	conn := fakePair(t, func(g net.Conn) GuestHandler {
		return func(ctx context.Context, req GuestRequest) GuestReply {
			g.Close()
			<-ctx.Done()
			return GuestReply{}
		}
	}, FakeGuestOptions{})
	s := readyShell(t, conn)
	_, err := s.Run(testCtx(t, testTimeout), "anything", RunOptions{})
	if !errors.Is(err, ErrClosed) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrClosed", err)
	}
}

func TestFakePoweroff(t *testing.T) {
	conn := fakePair(t, func(g net.Conn) GuestHandler {
		return func(ctx context.Context, req GuestRequest) GuestReply {
			if req.Command == "poweroff" {
				g.Close()
				<-ctx.Done()
			}
			return GuestReply{}
		}
	}, FakeGuestOptions{})
	s := readyShell(t, conn)
	r, err := s.Run(testCtx(t, testTimeout), "poweroff", RunOptions{NoStatus: true})
	if err != nil || r.Status != -1 {
		t.Fatalf("got (%v, %v), want status -1 and no error", r, err)
	}
	<-s.Done()
}

func TestFakePreBanner(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	conn := startFake(t, echoHandler, FakeGuestOptions{PreBanner: "connecting to host...\r\n\nsecond line\npartial "})
	s := readyShell(t, conn, WithPreBanner(func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}))
	run(t, s, "x", RunOptions{}) // the callbacks have run once the parser moved on
	mu.Lock()
	defer mu.Unlock()
	want := []string{"connecting to host...", "second line", "partial "}
	if !slices.Equal(lines, want) {
		t.Fatalf("pre-banner lines %q, want %q", lines, want)
	}
}

func TestServeGuestCtx(t *testing.T) {
	host, g := net.Pipe()
	defer host.Close()
	go func() { // drain the banner
		b := make([]byte, 100)
		for {
			if _, err := host.Read(b); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- ServeGuest(ctx, g, echoHandler, FakeGuestOptions{}) }()
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("ServeGuest did not return")
	}
}

func TestWrapBase64(t *testing.T) {
	for _, n := range []int{0, 1, 56, 57, 58, 114, 1000} {
		b := make([]byte, n)
		w := wrapBase64(b)
		lines := strings.Split(string(w), "\n")
		if n == 0 {
			if len(w) != 0 {
				t.Errorf("empty input gave %q", w)
			}
			continue
		}
		if lines[len(lines)-1] != "" {
			t.Errorf("%d bytes: no final newline", n)
		}
		for i, l := range lines[:len(lines)-1] {
			if len(l) != 76 && i != len(lines)-2 {
				t.Errorf("%d bytes: line %d has %d chars", n, i, len(l))
			}
		}
	}
}
