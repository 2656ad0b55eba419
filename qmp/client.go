package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// impl is the state behind a Client: one connection, one reader goroutine
// that routes replies by id and fans events out to subscriptions.
type impl struct {
	conn  net.Conn
	uconn *net.UnixConn // conn as a unix socket, or nil; needed for fd passing
	dec   *json.Decoder // owned by the reader goroutine once it runs
	ver   Version

	// wsem holds a token while a command is being written, so commands
	// never interleave on the wire; a channel rather than a mutex so that
	// waiting for it honours the caller's context.
	wsem chan struct{}

	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan reply // callers waiting for a reply, by id
	subs    map[*sub]struct{}     // live subscriptions
	cause   error                 // why the connection ended (wraps ErrClosed); nil while open

	doneCh   chan struct{} // closed once cause is set and conn is closed
	readDone chan struct{} // closed when the reader goroutine has returned
}

// reply is one command's answer as the reader hands it to the caller.
type reply struct {
	ret json.RawMessage
	err *Error
}

// message is any server message; which members are present says its kind.
type message struct {
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

// greeting is the banner QEMU sends first on every QMP connection.
type greeting struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
}

// longAgo is a deadline in the past, used to interrupt blocked I/O.
var longAgo = time.Unix(1, 0)

func newClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{}
	i := &c.impl
	i.conn = conn
	i.uconn, _ = conn.(*net.UnixConn)
	i.dec = json.NewDecoder(conn)
	i.wsem = make(chan struct{}, 1)
	i.pending = make(map[uint64]chan reply)
	i.subs = make(map[*sub]struct{})
	i.doneCh = make(chan struct{})
	i.readDone = make(chan struct{})

	// The reader goroutine is not running yet, so the read deadline is ours.
	stop := interruptOn(ctx, conn.SetReadDeadline)
	ver, err := readGreeting(i.dec)
	stop()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: reading greeting: %w", ctxError(ctx, err))
	}
	i.ver = ver

	go i.readLoop()
	if err := i.execute(ctx, "qmp_capabilities", nil, nil, nil); err != nil {
		i.close()
		return nil, fmt.Errorf("qmp: negotiating capabilities: %w", err)
	}
	return c, nil
}

func readGreeting(dec *json.Decoder) (Version, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return Version{}, fmt.Errorf("server closed the connection before greeting: %w", err)
		}
		return Version{}, err
	}
	var g greeting
	if err := json.Unmarshal(raw, &g); err != nil || g.QMP == nil {
		return Version{}, fmt.Errorf("expected a QMP greeting (is this a QMP socket?), got %.200s", raw)
	}
	v := g.QMP.Version
	return Version{Major: v.QEMU.Major, Minor: v.QEMU.Minor, Micro: v.QEMU.Micro, Package: v.Package}, nil
}

// interruptOn makes blocking I/O governed by setDeadline end when ctx
// does: it applies ctx's deadline and forces an immediate timeout when ctx
// is cancelled. The returned stop undoes both and must be called before
// anyone else may touch that deadline.
func interruptOn(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	if dl, ok := ctx.Deadline(); ok {
		setDeadline(dl)
	}
	fired := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		setDeadline(longAgo)
		close(fired)
	})
	return func() {
		if !stopAfter() {
			<-fired // it ran or is running; let it finish before clearing
		}
		setDeadline(time.Time{})
	}
}

// ctxError turns an I/O timeout caused by interruptOn into ctx's error.
func ctxError(ctx context.Context, err error) error {
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	// The conn's copy of ctx's deadline fired a moment before ctx's own timer.
	return context.DeadlineExceeded
}

func (c *impl) version() Version { return c.ver }

func (c *impl) execute(ctx context.Context, command string, args, result any, files []*os.File) error {
	var oob []byte
	if len(files) > 0 {
		if c.uconn == nil {
			return fmt.Errorf("qmp %s: passing files needs a unix socket connection, but this one is %T", command, c.conn)
		}
		fds := make([]int, 0, len(files))
		for _, f := range files {
			fd, err := rawFD(f)
			if err != nil {
				return fmt.Errorf("qmp %s: %w", command, err)
			}
			fds = append(fds, fd)
		}
		oob = syscall.UnixRights(fds...)
		defer runtime.KeepAlive(files) // keep the fds open until they are sent
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}

	id := c.nextID.Add(1)
	msg, err := encodeCommand(command, args, id)
	if err != nil {
		return fmt.Errorf("qmp %s: encoding arguments: %w", command, err)
	}

	ch := make(chan reply, 1) // the reader's one send never blocks
	c.mu.Lock()
	if c.cause != nil {
		cause := c.cause
		c.mu.Unlock()
		return fmt.Errorf("qmp %s: %w", command, cause)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	// Once we stop waiting, a late reply finds no entry and is dropped.
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	if err := c.write(ctx, msg, oob); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}

	var r reply
	select {
	case r = <-ch:
	case <-c.doneCh:
		select {
		case r = <-ch: // the reply made it in before the end
		default:
			return fmt.Errorf("qmp %s: %w", command, c.err())
		}
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
	if r.err != nil {
		e := *r.err
		e.Command = command
		return &e
	}
	if result != nil {
		if err := json.Unmarshal(r.ret, result); err != nil {
			return fmt.Errorf("qmp %s: decoding reply into %T: %w", command, result, err)
		}
	}
	return nil
}

// rawFD returns f's descriptor without Fd's side effect of switching the
// file to blocking mode.
func rawFD(f *os.File) (int, error) {
	if f == nil {
		return 0, errors.New("cannot pass a nil file")
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("passing file %s: %w", f.Name(), err)
	}
	fd := -1
	if err := rc.Control(func(u uintptr) { fd = int(u) }); err != nil {
		return 0, fmt.Errorf("passing file %s: %w", f.Name(), err)
	}
	return fd, nil
}

func encodeCommand(command string, args any, id uint64) ([]byte, error) {
	cmd := struct {
		Execute   string          `json:"execute"`
		Arguments json.RawMessage `json:"arguments,omitempty"`
		ID        uint64          `json:"id"`
	}{Execute: command, ID: id}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		if string(raw) != "null" { // a typed nil means no arguments, as QEMU rejects null
			cmd.Arguments = raw
		}
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// write sends one whole command, with oob as ancillary data, honouring ctx
// both while waiting for its turn and while writing.
func (c *impl) write(ctx context.Context, msg, oob []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.doneCh:
		return c.err()
	}
	defer func() { <-c.wsem }()

	stop := interruptOn(ctx, c.conn.SetWriteDeadline)
	n, err := c.send(msg, oob)
	stop()
	if err == nil {
		return nil
	}
	select {
	case <-c.doneCh: // closed under us; report why it closed
		return c.err()
	default:
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = ctxError(ctx, err)
		if n > 0 {
			// Half a command is on the wire; nothing later can be framed.
			c.fail(fmt.Errorf("a command write was cut short by its context, leaving the stream unusable: %w", err))
		}
		return err
	}
	c.fail(fmt.Errorf("writing a command: %w", err))
	return c.err()
}

func (c *impl) send(msg, oob []byte) (int, error) {
	if oob == nil {
		return c.conn.Write(msg)
	}
	n, _, err := c.uconn.WriteMsgUnix(msg, oob, nil)
	if err == nil && n < len(msg) {
		// The fds went with the first part; the rest is plain data.
		var m int
		m, err = c.conn.Write(msg[n:])
		n += m
	}
	return n, err
}

// readLoop is the connection's only reader. It never blocks on anyone:
// replies go to buffered channels and events to unbounded queues.
func (c *impl) readLoop() {
	defer close(c.readDone)
	for {
		var m message
		if err := c.dec.Decode(&m); err != nil {
			c.fail(readFailure(err))
			return
		}
		c.dispatch(&m)
	}
}

func readFailure(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return fmt.Errorf("server closed the connection: %w", err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("server closed the connection in the middle of a message: %w", err)
	case errors.As(err, &syn), errors.As(err, &typ):
		return fmt.Errorf("malformed message from server, giving up on the connection: %w", err)
	default:
		return fmt.Errorf("reading from server: %w", err)
	}
}

func (c *impl) dispatch(m *message) {
	switch {
	case m.Event != "":
		ev := Event{Name: m.Event}
		if len(m.Data) > 0 {
			// Data that is not an object is left out rather than failing the connection.
			_ = json.Unmarshal(m.Data, &ev.Data)
		}
		if ts := m.Timestamp; ts != nil {
			ev.Time = time.Unix(ts.Seconds, ts.Microseconds*int64(time.Microsecond))
		}
		c.mu.Lock()
		for s := range c.subs {
			s.push(ev)
		}
		c.mu.Unlock()
	case m.Return != nil || m.Error != nil:
		var id uint64
		if json.Unmarshal(m.ID, &id) != nil {
			return // no id, or not one of ours: nobody to give it to
		}
		r := reply{ret: m.Return}
		if m.Error != nil {
			r.err = &Error{Class: m.Error.Class, Desc: m.Error.Desc}
		}
		c.mu.Lock()
		ch, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			ch <- r
		}
	}
}

// fail ends the connection for cause; only the first cause counts. It
// returns conn.Close's error when this call was the one that closed it.
func (c *impl) fail(cause error) error {
	c.mu.Lock()
	if c.cause != nil {
		c.mu.Unlock()
		return nil
	}
	if errors.Is(cause, ErrClosed) {
		c.cause = cause
	} else {
		c.cause = fmt.Errorf("%w: %w", ErrClosed, cause)
	}
	c.mu.Unlock()
	err := c.conn.Close()
	close(c.doneCh)
	return err
}

func (c *impl) subscribe() *Subscription {
	s := &Subscription{}
	s.c = c
	s.wake = make(chan struct{}, 1)
	c.mu.Lock()
	if c.cause == nil {
		c.subs[&s.sub] = struct{}{}
	}
	c.mu.Unlock()
	return s
}

func (c *impl) done() <-chan struct{} { return c.doneCh }

func (c *impl) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

func (c *impl) close() error {
	err := c.fail(ErrClosed)
	<-c.readDone
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
