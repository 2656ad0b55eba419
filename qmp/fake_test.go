package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testTimeout bounds every blocking step of a test; nothing should come near it.
const testTimeout = 20 * time.Second

const testGreeting = `{"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}`

// fakeServer plays QEMU's side of a QMP connection, one scripted step at a time.
type fakeServer struct {
	conn net.Conn
	dec  *json.Decoder
	wmu  sync.Mutex
}

// command is a command as the server receives it.
type command struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

func newFakeServer(conn net.Conn) *fakeServer {
	conn.SetDeadline(time.Now().Add(testTimeout))
	return &fakeServer{conn: conn, dec: json.NewDecoder(conn)}
}

func (s *fakeServer) sendRaw(line string) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := io.WriteString(s.conn, line+"\n")
	return err
}

func (s *fakeServer) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.sendRaw(string(b))
}

func (s *fakeServer) recv() (command, error) {
	var c command
	err := s.dec.Decode(&c)
	return c, err
}

// expect receives a command and checks its name.
func (s *fakeServer) expect(name string) (command, error) {
	c, err := s.recv()
	if err != nil {
		return c, fmt.Errorf("waiting for %s: %w", name, err)
	}
	if c.Execute != name {
		return c, fmt.Errorf("got command %q, want %q", c.Execute, name)
	}
	return c, nil
}

func (s *fakeServer) reply(c command, ret any) error {
	return s.send(map[string]any{"return": ret, "id": c.ID})
}

func (s *fakeServer) replyError(c command, class, desc string) error {
	return s.send(map[string]any{"error": map[string]any{"class": class, "desc": desc}, "id": c.ID})
}

func (s *fakeServer) event(name string, data map[string]any, sec int64) error {
	m := map[string]any{"event": name, "timestamp": map[string]any{"seconds": sec, "microseconds": 250}}
	if data != nil {
		m["data"] = data
	}
	return s.send(m)
}

func (s *fakeServer) handshake() error {
	if err := s.sendRaw(testGreeting); err != nil {
		return err
	}
	c, err := s.expect("qmp_capabilities")
	if err != nil {
		return err
	}
	return s.reply(c, map[string]any{})
}

// serveForever answers every command with an empty return until the client hangs up.
func (s *fakeServer) serveForever() error {
	for {
		c, err := s.recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if err := s.reply(c, map[string]any{}); err != nil {
			return err
		}
	}
}

// connect starts a fake server over net.Pipe that does the handshake and
// then runs serve, and returns a client connected to it. Cleanup closes
// both ends and reports serve's error.
func connect(t testing.TB, serve func(*fakeServer) error) *Client {
	t.Helper()
	cconn, sconn := net.Pipe()
	c, _ := connectConn(t, cconn, sconn, serve)
	return c
}

func connectConn(t testing.TB, cconn, sconn net.Conn, serve func(*fakeServer) error) (*Client, *fakeServer) {
	t.Helper()
	s := newFakeServer(sconn)
	errc := make(chan error, 1)
	go func() {
		err := s.handshake()
		if err == nil && serve != nil {
			err = serve(s)
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := NewClient(ctx, cconn)
	if err != nil {
		sconn.Close()
		<-errc
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			sconn.Close() // don't wait out a server stuck on a failed test
		}
		defer sconn.Close()
		select {
		case err := <-errc:
			if err != nil && !t.Failed() {
				t.Errorf("fake server: %v", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("fake server did not finish")
		}
	})
	return c, s
}

// unixPair returns two connected unix stream sockets, closed at cleanup.
func unixPair(t testing.TB) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), fmt.Sprintf("socketpair-%d", i))
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatalf("FileConn: %v", err)
		}
		conns[i] = c.(*net.UnixConn)
		t.Cleanup(func() { c.Close() })
	}
	return conns[0], conns[1]
}

// waitFor waits for ch to close or receive, bounded by testTimeout.
func waitFor(ch <-chan struct{}, what string) error {
	select {
	case <-ch:
		return nil
	case <-time.After(testTimeout):
		return fmt.Errorf("timed out waiting for %s", what)
	}
}

// testCtx returns a context bounded by testTimeout, cancelled at cleanup.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}
