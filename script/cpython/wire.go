package cpython

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// ErrProtocol is wrapped by errors about messages the interpreter should
// not have sent.
var ErrProtocol = errors.New("bridge protocol error")

// errClosed is the connection's error once the interpreter closed its end.
var errClosed = errors.New("the Python interpreter closed the connection")

// inMsg is one message from the interpreter. Which fields are set depends
// on Op (see the wire description in vmdriver_bridge.py):
//
//	call  K ("m", "g", "log"), Fn, M (a method's machine), A
//	attr  M, Name
//	subtest A; enter H; end H, Err; alias
//	cond A; cond_on H; cond_off H; cond_wait H, A
//	ret   V or Err (a callback's answer)
//	fork N, I, Name; unfork Err (--fork-subtests)
//	done  Err, Errs (check), Version, Failed, Subtests
type inMsg struct {
	Op      string                     `json:"op"`
	K       string                     `json:"k"`
	Fn      string                     `json:"fn"`
	M       int                        `json:"m"`
	H       int                        `json:"h"`
	Name    string                     `json:"name"`
	A       map[string]json.RawMessage `json:"a"`
	V       json.RawMessage            `json:"v"`
	Err     *pyErr                     `json:"err"`
	Errs    []*pyErr                   `json:"errs"`
	Version string                     `json:"version"`
	// Forked subtests: fork N, I (the subtest's index of N), Name; done
	// Failed (their names) of Subtests.
	N        int      `json:"n"`
	I        int      `json:"i"`
	Failed   []string `json:"failed"`
	Subtests int      `json:"subtests"`
}

// pyErr is an exception as the interpreter describes it.
type pyErr struct {
	Type      string    `json:"type"`
	Msg       string    `json:"msg"`
	Frames    []pyFrame `json:"frames"`
	Assertion bool      `json:"assertion"`
	// Go is the id of the engine error the exception was raised for.
	Go *int `json:"go"`
	// Py is the id under which the interpreter keeps the exception, to
	// raise it again when it comes back (a callback's).
	Py *int `json:"py"`
	// Syntax errors (and check's findings) have a position of their own.
	Syntax bool   `json:"syntax"`
	File   string `json:"file"`
	Line   int    `json:"line"`
	Col    int    `json:"col"`
	Src    string `json:"src"`
	// Stopped: the interpreter was told the run is over.
	Stopped bool `json:"stopped"`
	// Between: a statement between two subtests (--fork-subtests).
	Between bool `json:"between"`
}

// pyFrame is one frame of a traceback.
type pyFrame struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
	Func string `json:"func"`
	Src  string `json:"src"`
}

// conn is the engine's end of the socket: a reader goroutine decodes
// messages into in; writes are whole lines under a lock.
type conn struct {
	c       net.Conn
	in      chan inMsg
	closing chan struct{}
	wg      sync.WaitGroup
	wmu     sync.Mutex
	buf     []byte
	once    sync.Once
	err     error // why the reader stopped; set before in is closed
}

// socketPair returns the engine's conn and the file to hand the
// interpreter as an inherited descriptor.
func socketPair() (*conn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the bridge socket: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "vmdriver-bridge")
	theirs := os.NewFile(uintptr(fds[1]), "vmdriver-bridge-python")
	c, err := net.FileConn(ours)
	ours.Close() // FileConn made its own descriptor
	if err != nil {
		theirs.Close()
		return nil, nil, fmt.Errorf("creating the bridge socket: %w", err)
	}
	return newConn(c), theirs, nil
}

func newConn(c net.Conn) *conn {
	cn := &conn{c: c, in: make(chan inMsg), closing: make(chan struct{})}
	cn.wg.Go(cn.read)
	return cn
}

// read decodes one message a line until the connection ends.
func (c *conn) read() {
	defer close(c.in)
	br := bufio.NewReaderSize(c.c, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				err = errClosed
			}
			c.err = err
			return
		}
		var m inMsg
		if err := json.Unmarshal(line, &m); err != nil {
			c.err = fmt.Errorf("%w: undecodable message: %w", ErrProtocol, err)
			return
		}
		select {
		case c.in <- m:
		case <-c.closing:
			c.err = errClosed
			return
		}
	}
}

// recv returns the next message, or the reason there is none.
func (c *conn) recv(ctx context.Context) (inMsg, error) {
	select {
	case m, ok := <-c.in:
		if !ok {
			return inMsg{}, c.err
		}
		return m, nil
	case <-ctx.Done():
		return inMsg{}, context.Cause(ctx)
	}
}

// send writes one message as a line. It does not block for long: the
// interpreter reads whenever it waits for the engine, and a dead one
// makes the write fail.
func (c *conn) send(msg any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encoding a bridge message: %w", err)
	}
	c.buf = append(append(c.buf[:0], b...), '\n')
	if _, err := c.c.Write(c.buf); err != nil {
		return fmt.Errorf("writing to the Python interpreter: %w", err)
	}
	return nil
}

// close ends the connection and waits for the reader.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.closing)
		c.c.Close()
	})
	c.wg.Wait()
}
