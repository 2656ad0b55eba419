package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestHandshake(t *testing.T) {
	// waitHangup lets the server end only once the client has closed its end.
	waitHangup := func(s *fakeServer) error {
		if _, err := s.recv(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("want the client to hang up, got %v", err)
		}
		return nil
	}
	tests := []struct {
		name    string
		timeout time.Duration // how long NewClient may take; 0 for testTimeout
		server  func(s *fakeServer, cancel context.CancelFunc) error
		check   func(t *testing.T, c *Client, err error)
	}{{
		name:   "ok",
		server: func(s *fakeServer, _ context.CancelFunc) error { return s.handshake() },
		check: func(t *testing.T, c *Client, err error) {
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			want := Version{Major: 7, Minor: 2, Micro: 1, Package: "Debian 1:7.2+dfsg-7"}
			if got := c.Version(); got != want {
				t.Errorf("Version() = %+v, want %+v", got, want)
			}
			if err := c.Err(); err != nil {
				t.Errorf("Err() = %v on an open client", err)
			}
			select {
			case <-c.Done():
				t.Errorf("Done() closed on an open client")
			default:
			}
		},
	}, {
		name: "capabilities refused",
		server: func(s *fakeServer, _ context.CancelFunc) error {
			if err := s.sendRaw(testGreeting); err != nil {
				return err
			}
			c, err := s.expect("qmp_capabilities")
			if err != nil {
				return err
			}
			if err := s.replyError(c, "CommandNotFound", "nope"); err != nil {
				return err
			}
			return waitHangup(s)
		},
		check: func(t *testing.T, _ *Client, err error) {
			var qe *Error
			if !errors.As(err, &qe) || qe.Command != "qmp_capabilities" || qe.Class != "CommandNotFound" {
				t.Errorf("err = %v, want a *Error for qmp_capabilities", err)
			}
		},
	}, {
		name: "not a greeting",
		server: func(s *fakeServer, _ context.CancelFunc) error {
			if err := s.sendRaw(`{"return": {}}`); err != nil {
				return err
			}
			return waitHangup(s)
		},
		check: func(t *testing.T, _ *Client, err error) {
			if err == nil || !strings.Contains(err.Error(), "greeting") {
				t.Errorf("err = %v, want one about the greeting", err)
			}
		},
	}, {
		name: "malformed greeting",
		server: func(s *fakeServer, _ context.CancelFunc) error {
			s.sendRaw(`{"QMP": {]`) // the client may hang up before reading it all
			return waitHangup(s)
		},
		check: func(t *testing.T, _ *Client, err error) {
			var syn *json.SyntaxError
			if !errors.As(err, &syn) {
				t.Errorf("err = %v, want a JSON syntax error", err)
			}
		},
	}, {
		name:   "server hangs up",
		server: func(s *fakeServer, _ context.CancelFunc) error { return s.conn.Close() },
		check: func(t *testing.T, _ *Client, err error) {
			if !errors.Is(err, io.EOF) {
				t.Errorf("err = %v, want io.EOF", err)
			}
		},
	}, {
		name:    "silent server until the deadline",
		timeout: 50 * time.Millisecond,
		server:  func(s *fakeServer, _ context.CancelFunc) error { return waitHangup(s) },
		check: func(t *testing.T, _ *Client, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("err = %v, want context.DeadlineExceeded", err)
			}
		},
	}, {
		name: "cancelled while waiting for the greeting",
		server: func(s *fakeServer, cancel context.CancelFunc) error {
			cancel()
			return waitHangup(s)
		},
		check: func(t *testing.T, _ *Client, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		},
	}, {
		name: "cancelled while negotiating",
		server: func(s *fakeServer, cancel context.CancelFunc) error {
			if err := s.sendRaw(testGreeting); err != nil {
				return err
			}
			if _, err := s.expect("qmp_capabilities"); err != nil {
				return err
			}
			cancel()
			return waitHangup(s)
		},
		check: func(t *testing.T, _ *Client, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = testTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			cconn, sconn := net.Pipe()
			defer sconn.Close()
			s := newFakeServer(sconn)
			errc := make(chan error, 1)
			go func() { errc <- tt.server(s, cancel) }()

			c, err := NewClient(ctx, cconn)
			if (err == nil) != (c != nil) {
				t.Errorf("NewClient returned client %v and error %v", c, err)
			}
			tt.check(t, c, err)
			if c != nil {
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("fake server: %v", err)
				}
			case <-time.After(testTimeout):
				t.Errorf("fake server did not finish")
			}
		})
	}
}

func TestExecuteDecodesResults(t *testing.T) {
	type status struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	tests := []struct {
		name     string
		command  string
		args     any
		wantArgs string // compact JSON the server must see; "" for no "arguments" member
		ret      string // the raw "return" member
		result   any    // pointer to decode into, or nil
		want     any    // what result must point to afterwards
	}{{
		name:    "struct result",
		command: "query-status",
		ret:     `{"status": "running", "singlestep": false, "running": true}`,
		result:  &status{},
		want:    &status{Status: "running", Running: true},
	}, {
		name:     "map arguments, string result",
		command:  "human-monitor-command",
		args:     map[string]any{"command-line": "info version"},
		wantArgs: `{"command-line":"info version"}`,
		ret:      `"7.2.1\r\n"`,
		result:   new(string),
		want:     func() *string { s := "7.2.1\r\n"; return &s }(),
	}, {
		name:    "struct arguments, array result",
		command: "query-block",
		args: struct {
			Flat bool `json:"flat"`
		}{Flat: true},
		wantArgs: `{"flat":true}`,
		ret:      `[{"device": "d1"}, {"device": "d2"}]`,
		result:   &[]map[string]string{},
		want:     &[]map[string]string{{"device": "d1"}, {"device": "d2"}},
	}, {
		name:    "typed nil arguments are left out",
		command: "stop",
		args:    (*struct{})(nil),
		ret:     `{}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connect(t, func(s *fakeServer) error {
				cmd, err := s.expect(tt.command)
				if err != nil {
					return err
				}
				var got bytes.Buffer
				if len(cmd.Arguments) > 0 {
					if err := json.Compact(&got, cmd.Arguments); err != nil {
						return err
					}
				}
				if got.String() != tt.wantArgs {
					return fmt.Errorf("server got arguments %q, want %q", got.String(), tt.wantArgs)
				}
				return s.sendRaw(fmt.Sprintf(`{"return": %s, "id": %s}`, tt.ret, cmd.ID))
			})
			if err := c.Execute(testCtx(t), tt.command, tt.args, tt.result); err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if tt.result != nil && !reflect.DeepEqual(tt.result, tt.want) {
				t.Errorf("result = %#v, want %#v", tt.result, tt.want)
			}
		})
	}
}

func TestRawAndDecodeFailure(t *testing.T) {
	c := connect(t, func(s *fakeServer) error {
		for _, ret := range []string{`{"a": [1, 2]}`, `"not a number"`, `{}`} {
			cmd, err := s.recv()
			if err != nil {
				return err
			}
			if err := s.sendRaw(fmt.Sprintf(`{"return": %s, "id": %s}`, ret, cmd.ID)); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := testCtx(t)
	raw, err := c.Raw(ctx, "query-raw", nil)
	if err != nil {
		t.Fatalf("Raw: %v", err)
	}
	if string(raw) != `{"a": [1, 2]}` {
		t.Errorf("Raw = %s, want the return member verbatim", raw)
	}
	var n int
	err = c.Execute(ctx, "query-number", nil, &n)
	var qe *Error
	if err == nil || errors.As(err, &qe) || !strings.Contains(err.Error(), "decoding") {
		t.Errorf("Execute into *int = %v, want a decoding error", err)
	}
	// A reply that does not decode is the caller's problem, not the connection's.
	if err := c.Execute(ctx, "after", nil, nil); err != nil {
		t.Errorf("Execute after a decoding error: %v", err)
	}
}

func TestErrorReply(t *testing.T) {
	c := connect(t, func(s *fakeServer) error {
		cmd, err := s.expect("device_del")
		if err != nil {
			return err
		}
		if err := s.replyError(cmd, "DeviceNotFound", "Device 'nope' not found"); err != nil {
			return err
		}
		cmd, err = s.expect("query-status")
		if err != nil {
			return err
		}
		return s.reply(cmd, map[string]any{"status": "running"})
	})
	ctx := testCtx(t)
	err := c.Execute(ctx, "device_del", map[string]string{"id": "nope"}, nil)
	var qe *Error
	if !errors.As(err, &qe) {
		t.Fatalf("Execute = %v, want a *Error", err)
	}
	want := Error{Command: "device_del", Class: "DeviceNotFound", Desc: "Device 'nope' not found"}
	if *qe != want {
		t.Errorf("error = %+v, want %+v", *qe, want)
	}
	if got, want := qe.Error(), "qmp device_del: Device 'nope' not found (DeviceNotFound)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
		t.Errorf("Execute after an error reply: %v", err)
	}
	if err := c.Err(); err != nil {
		t.Errorf("Err() = %v after an error reply", err)
	}
}

func TestConcurrentRepliesOutOfOrder(t *testing.T) {
	const n = 64
	c := connect(t, func(s *fakeServer) error {
		cmds := make([]command, 0, n)
		ids := make(map[string]bool)
		for range n {
			cmd, err := s.expect("echo")
			if err != nil {
				return err
			}
			if ids[string(cmd.ID)] {
				return fmt.Errorf("id %s used twice", cmd.ID)
			}
			ids[string(cmd.ID)] = true
			cmds = append(cmds, cmd)
		}
		// Answer only once every command is in, last first.
		for i := len(cmds) - 1; i >= 0; i-- {
			if err := s.send(map[string]any{"return": cmds[i].Arguments, "id": cmds[i].ID}); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			var res struct{ N int }
			if err := c.Execute(ctx, "echo", map[string]int{"n": i}, &res); err != nil {
				errs <- err
				return
			}
			if res.N != i {
				errs <- fmt.Errorf("caller %d got the reply for %d", i, res.N)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestEventsInterleavedWithReplies(t *testing.T) {
	c := connect(t, func(s *fakeServer) error {
		cmd, err := s.expect("stop")
		if err != nil {
			return err
		}
		// Events between the command and its reply.
		if err := s.event("STOP", nil, 100); err != nil {
			return err
		}
		if err := s.event("X", map[string]any{"k": "v"}, 101); err != nil {
			return err
		}
		if err := s.reply(cmd, map[string]any{}); err != nil {
			return err
		}
		cmd, err = s.expect("cont")
		if err != nil {
			return err
		}
		if err := s.reply(cmd, map[string]any{}); err != nil {
			return err
		}
		return s.event("RESUME", nil, 102)
	})
	ctx := testCtx(t)
	subs := []*Subscription{c.Subscribe(), c.Subscribe()}
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatalf("Execute(stop): %v", err)
	}
	late := c.Subscribe() // sees only what arrives after the stop reply
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatalf("Execute(cont): %v", err)
	}
	want := []Event{
		{Name: "STOP", Time: time.Unix(100, 250000)},
		{Name: "X", Data: map[string]any{"k": "v"}, Time: time.Unix(101, 250000)},
		{Name: "RESUME", Time: time.Unix(102, 250000)},
	}
	for i, s := range subs {
		for _, w := range want {
			ev, err := s.Next(ctx)
			if err != nil {
				t.Fatalf("subscriber %d: Next: %v", i, err)
			}
			if !reflect.DeepEqual(ev, w) {
				t.Errorf("subscriber %d: got %+v, want %+v", i, ev, w)
			}
		}
	}
	if ev, err := late.Next(ctx); err != nil || ev.Name != "RESUME" {
		t.Errorf("late subscriber: got %+v, %v; want RESUME", ev, err)
	}
}

func TestIdleSubscriberDoesNotBlockReplies(t *testing.T) {
	const n = 10000
	subscribed := make(chan struct{})
	c := connect(t, func(s *fakeServer) error {
		if err := waitFor(subscribed, "the test to subscribe"); err != nil {
			return err
		}
		for i := range n {
			if err := s.event("E", map[string]any{"i": i}, int64(i)); err != nil {
				return err
			}
		}
		cmd, err := s.expect("query-status")
		if err != nil {
			return err
		}
		return s.reply(cmd, map[string]any{"status": "running"})
	})
	sub := c.Subscribe() // nobody reads it until the command is done
	close(subscribed)
	ctx := testCtx(t)
	if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
		t.Fatalf("Execute with %d unread events queued: %v", n, err)
	}
	for i := range n {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next #%d: %v", i, err)
		}
		if got := ev.Data["i"]; got != float64(i) {
			t.Fatalf("event #%d has i=%v; events out of order or lost", i, got)
		}
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	got := make(chan struct{})
	release := make(chan struct{})
	c := connect(t, func(s *fakeServer) error {
		slow, err := s.expect("slow")
		if err != nil {
			return err
		}
		close(got)
		if err := waitFor(release, "the test to release the late reply"); err != nil {
			return err
		}
		// A reply for a caller that gave up must be dropped harmlessly.
		if err := s.reply(slow, map[string]any{"late": true}); err != nil {
			return err
		}
		fast, err := s.expect("fast")
		if err != nil {
			return err
		}
		return s.reply(fast, map[string]any{"ok": true})
	})
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	go func() {
		if waitFor(got, "the server to get the command") == nil {
			cancel()
		}
	}()
	err := c.Execute(ctx, "slow", nil, nil)
	close(release)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Execute = %v, want context.Canceled", err)
	}
	var res struct {
		OK   bool `json:"ok"`
		Late bool `json:"late"`
	}
	if err := c.Execute(testCtx(t), "fast", nil, &res); err != nil {
		t.Fatalf("Execute after a cancelled call: %v", err)
	}
	if !res.OK || res.Late {
		t.Errorf("got %+v: the late reply went to the wrong caller", res)
	}
}

func TestCancelWhileWriting(t *testing.T) {
	tests := []struct {
		name     string
		readHead int  // bytes of the abandoned command the server reads before it stalls
		survives bool // whether the connection must stay usable
	}{
		{name: "nothing written", readHead: 0, survives: true},
		// Half a command on the wire cannot be framed any more.
		{name: "half written", readHead: 5, survives: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			c := connect(t, func(s *fakeServer) error {
				if tt.readHead > 0 {
					// Bypass the decoder, which would read everything available.
					if _, err := io.ReadFull(s.conn, make([]byte, tt.readHead)); err != nil {
						return err
					}
				}
				// Read nothing more until released, so the client's write blocks.
				if err := waitFor(release, "the test to release the server"); err != nil {
					return err
				}
				cmd, err := s.recv()
				if !tt.survives {
					if errors.Is(err, io.EOF) {
						return nil // the client gave up on the connection, as it must
					}
					return fmt.Errorf("want the client to hang up, got %+v, %v", cmd, err)
				}
				if err != nil {
					return err
				}
				if cmd.Execute != "after" {
					return fmt.Errorf("got %q; the abandoned command left bytes on the wire", cmd.Execute)
				}
				return s.reply(cmd, map[string]any{})
			})
			ctx, cancel := context.WithTimeout(testCtx(t), 20*time.Millisecond)
			defer cancel()
			err := c.Execute(ctx, "abandoned", nil, nil)
			close(release)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Execute against a server that does not read = %v, want context.DeadlineExceeded", err)
			}
			err = c.Execute(testCtx(t), "after", nil, nil)
			switch {
			case tt.survives && err != nil:
				t.Errorf("Execute after an abandoned write: %v", err)
			case !tt.survives && !errors.Is(err, ErrClosed):
				t.Errorf("Execute after a half-written command = %v, want ErrClosed", err)
			case !tt.survives && !errors.Is(c.Err(), context.DeadlineExceeded):
				t.Errorf("Err() = %v, want it to name the context as the cause", c.Err())
			}
		})
	}
}

func TestConnectionEnds(t *testing.T) {
	hangup := func(s *fakeServer) error {
		if _, err := s.recv(); !errors.Is(err, io.EOF) {
			return fmt.Errorf("want the client to hang up, got %v", err)
		}
		return nil
	}
	tests := []struct {
		name        string
		server      func(s *fakeServer) error // runs after receiving the command
		clientClose bool                      // the client calls Close while waiting
		wantCause   error                     // errors.Is target besides ErrClosed
		wantText    string
	}{{
		name:      "server hangs up",
		server:    func(s *fakeServer) error { return s.conn.Close() },
		wantCause: io.EOF,
	}, {
		name:        "client closes",
		server:      hangup,
		clientClose: true,
	}, {
		name: "malformed JSON",
		server: func(s *fakeServer) error {
			s.sendRaw(`{"return": nope}`) // the client may hang up before reading it all
			return hangup(s)
		},
		wantText: "malformed",
	}, {
		name: "not an object",
		server: func(s *fakeServer) error {
			s.sendRaw(`[1, 2]`)
			return hangup(s)
		},
		wantText: "malformed",
	}, {
		name: "truncated message",
		server: func(s *fakeServer) error {
			if err := s.sendRaw(`{"return": {"status": `); err != nil {
				return err
			}
			return s.conn.Close()
		},
		wantCause: io.ErrUnexpectedEOF,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan struct{})
			c := connect(t, func(s *fakeServer) error {
				if _, err := s.expect("wait"); err != nil {
					return err
				}
				close(got)
				return tt.server(s)
			})
			sub := c.Subscribe()
			if tt.clientClose {
				go func() {
					if waitFor(got, "the server to get the command") == nil {
						c.Close()
					}
				}()
			}
			err := c.Execute(testCtx(t), "wait", nil, nil)
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrClosed) {
					t.Errorf("%s = %v, want ErrClosed", what, err)
				}
				if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
					t.Errorf("%s = %v, want it to wrap %v", what, err, tt.wantCause)
				}
				if err != nil && !strings.Contains(err.Error(), tt.wantText) {
					t.Errorf("%s = %v, want it to mention %q", what, err, tt.wantText)
				}
			}
			check("pending Execute", err)
			if err := waitFor(c.Done(), "Done"); err != nil {
				t.Fatal(err)
			}
			check("Err()", c.Err())
			check("later Execute", c.Execute(testCtx(t), "later", nil, nil))
			_, err = sub.Next(testCtx(t))
			check("Next", err)
			_, err = c.Subscribe().Next(testCtx(t))
			check("Next on a later subscription", err)
			if err := c.Close(); err != nil {
				t.Errorf("Close after the end: %v", err)
			}
		})
	}
}

func TestSubscriptionWait(t *testing.T) {
	c := connect(t, func(s *fakeServer) error {
		cmd, err := s.expect("go")
		if err != nil {
			return err
		}
		for _, d := range []string{"d1", "d2", "d3"} {
			if err := s.event("BLOCK_JOB_COMPLETED", map[string]any{"device": d}, 7); err != nil {
				return err
			}
		}
		if err := s.reply(cmd, map[string]any{}); err != nil {
			return err
		}
		cmd, err = s.expect("finish")
		if err != nil {
			return err
		}
		if err := s.event("LAST", nil, 8); err != nil {
			return err
		}
		if err := s.reply(cmd, map[string]any{}); err != nil {
			return err
		}
		return s.conn.Close()
	})
	ctx := testCtx(t)
	sub := c.Subscribe()
	closed := c.Subscribe()
	closed.Close()

	if err := c.Execute(ctx, "go", nil, nil); err != nil {
		t.Fatalf("Execute(go): %v", err)
	}
	ev, err := sub.Wait(ctx, func(ev Event) bool { return ev.Data["device"] == "d2" })
	if err != nil || ev.Name != "BLOCK_JOB_COMPLETED" || ev.Data["device"] != "d2" || !ev.Time.Equal(time.Unix(7, 250000)) {
		t.Fatalf("Wait(d2) = %+v, %v", ev, err)
	}
	if ev, err := sub.Next(ctx); err != nil || ev.Data["device"] != "d3" {
		t.Fatalf("Next after Wait = %+v, %v; want d3 (d1 consumed by Wait)", ev, err)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := sub.Wait(short, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait on an empty queue = %v, want context.DeadlineExceeded", err)
	}

	if err := c.Execute(ctx, "finish", nil, nil); err != nil {
		t.Fatalf("Execute(finish): %v", err)
	}
	if err := waitFor(c.Done(), "the server to hang up"); err != nil {
		t.Fatal(err)
	}
	// The queue drains before the end is reported.
	if ev, err := sub.Next(ctx); err != nil || ev.Name != "LAST" {
		t.Errorf("Next after hang-up = %+v, %v; want the queued LAST", ev, err)
	}
	if _, err := sub.Wait(ctx, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Wait on a drained, closed subscription = %v, want ErrClosed", err)
	}
	if _, err := closed.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Next on a closed subscription = %v, want ErrClosed", err)
	}
}

func TestExecuteWithFiles(t *testing.T) {
	cconn, sconn := unixPair(t)
	type received struct {
		Contents []string `json:"contents"`
	}
	c, _ := connectConn(t, cconn, sconn, func(s *fakeServer) error {
		if rest := bytes.TrimSpace(mustReadAll(s.dec.Buffered())); len(rest) > 0 {
			return fmt.Errorf("decoder holds unread bytes %q; the test cannot see their fds", rest)
		}
		u := s.conn.(*net.UnixConn)
		buf := make([]byte, 4096)
		oob := make([]byte, syscall.CmsgSpace(4*4))
		n, oobn, flags, _, err := u.ReadMsgUnix(buf, oob)
		if err != nil {
			return err
		}
		if flags&syscall.MSG_CTRUNC != 0 {
			return errors.New("ancillary data truncated")
		}
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return err
		}
		var files []*os.File
		for _, m := range msgs {
			fds, err := syscall.ParseUnixRights(&m)
			if err != nil {
				return err
			}
			for _, fd := range fds {
				f := os.NewFile(uintptr(fd), "received")
				defer f.Close()
				files = append(files, f)
			}
		}
		data := buf[:n]
		for !bytes.Contains(data, []byte("\n")) {
			m, err := u.Read(buf)
			if err != nil {
				return err
			}
			data = append(data, buf[:m]...)
		}
		var cmd command
		if err := json.Unmarshal(data, &cmd); err != nil {
			return err
		}
		var res received
		for _, f := range files {
			b, err := io.ReadAll(f)
			if err != nil {
				return err
			}
			res.Contents = append(res.Contents, string(b))
		}
		if err := s.send(map[string]any{"return": res, "id": cmd.ID}); err != nil {
			return err
		}
		return s.serveForever()
	})

	var pipes []*os.File
	for _, text := range []string{"first", "second"} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := w.WriteString(text); err != nil {
			t.Fatal(err)
		}
		w.Close()
		pipes = append(pipes, r)
	}
	ctx := testCtx(t)
	var res received
	if err := c.ExecuteWithFiles(ctx, "getfd", map[string]string{"fdname": "f"}, &res, pipes...); err != nil {
		t.Fatalf("ExecuteWithFiles: %v", err)
	}
	if want := []string{"first", "second"}; !reflect.DeepEqual(res.Contents, want) {
		t.Errorf("server read %q through the passed fds, want %q", res.Contents, want)
	}
	if err := c.ExecuteWithFiles(ctx, "getfd", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "nil file") {
		t.Errorf("ExecuteWithFiles(nil file) = %v, want an error about the nil file", err)
	}
	if err := c.Execute(ctx, "after", nil, nil); err != nil {
		t.Errorf("Execute after passing files: %v", err)
	}
}

func TestExecuteWithFilesNeedsUnixSocket(t *testing.T) {
	c := connect(t, (*fakeServer).serveForever)
	ctx := testCtx(t)
	err := c.ExecuteWithFiles(ctx, "getfd", map[string]string{"fdname": "f"}, nil, os.Stdin)
	if err == nil || !strings.Contains(err.Error(), "unix socket") {
		t.Errorf("ExecuteWithFiles over a pipe = %v, want an error about unix sockets", err)
	}
	if err := c.Execute(ctx, "after", nil, nil); err != nil {
		t.Errorf("Execute after the refused call: %v", err)
	}
}

func TestCloseTwice(t *testing.T) {
	c := connect(t, func(s *fakeServer) error {
		_, err := s.recv()
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("want the client to hang up, got %v", err)
		}
		return nil
	})
	for i := range 2 {
		if err := c.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	if err := c.Err(); err != ErrClosed {
		t.Errorf("Err() after Close = %v, want ErrClosed itself", err)
	}
}

func mustReadAll(r io.Reader) []byte {
	b, _ := io.ReadAll(r)
	return b
}

func BenchmarkExecute(b *testing.B) {
	c := connect(b, (*fakeServer).serveForever)
	ctx := testCtx(b)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
