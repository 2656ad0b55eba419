// Package qmp is a small client for the QEMU Machine Protocol.
//
// Every call takes a context; commands carry ids so replies are matched to
// their callers; events are kept apart from replies and queued for
// subscribers without ever blocking a reply; file descriptors can travel
// with a command (SCM_RIGHTS) for commands such as getfd.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// ErrClosed is returned by calls on a client whose connection is closed.
var ErrClosed = errors.New("qmp: connection closed")

// Error is an error reply from QEMU.
type Error struct {
	// Command is the command that failed.
	Command string
	// Class is QEMU's error class, such as "GenericError".
	Class string
	// Desc is QEMU's human-readable description.
	Desc string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s (%s)", e.Command, e.Desc, e.Class)
}

// Event is one asynchronous QMP event.
type Event struct {
	// Name is the event name, such as "SHUTDOWN".
	Name string
	// Data is the event's "data" member, or nil.
	Data map[string]any
	// Time is the event's QEMU timestamp.
	Time time.Time
}

// Version is QEMU's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	// Package is the distribution's package string.
	Package string
}

// Client is a QMP connection. It is safe for concurrent use.
type Client struct {
	impl
}

// Dial connects to a QMP socket (network is usually "unix"), reads the
// greeting and negotiates capabilities.
func Dial(ctx context.Context, network, addr string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("qmp: dial %s: %w", addr, err)
	}
	c, err := NewClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// NewClient takes over conn, reads the greeting and negotiates
// capabilities. The client owns conn from then on.
func NewClient(ctx context.Context, conn net.Conn) (*Client, error) {
	return newClient(ctx, conn)
}

// Version reports the QEMU version from the greeting.
func (c *Client) Version() Version { return c.version() }

// Execute runs a command. args is marshalled as the command's "arguments"
// (nil for none); when result is non-nil the "return" member is decoded
// into it. An error reply is returned as *Error.
func (c *Client) Execute(ctx context.Context, command string, args, result any) error {
	return c.execute(ctx, command, args, result, nil)
}

// ExecuteWithFiles is Execute with files passed along as SCM_RIGHTS
// ancillary data (for getfd and add-fd). The connection must be a unix
// socket.
func (c *Client) ExecuteWithFiles(ctx context.Context, command string, args, result any, files ...*os.File) error {
	return c.execute(ctx, command, args, result, files)
}

// Raw runs a command and returns its "return" member undecoded.
func (c *Client) Raw(ctx context.Context, command string, args any) (json.RawMessage, error) {
	var raw json.RawMessage
	err := c.execute(ctx, command, args, &raw, nil)
	return raw, err
}

// Subscribe returns a subscription that receives every event arriving
// from now on, in order. Its queue is unbounded, so a slow subscriber
// never delays replies or other subscribers.
func (c *Client) Subscribe() *Subscription { return c.subscribe() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done() }

// Err reports why the connection ended; nil while it is open.
func (c *Client) Err() error { return c.err() }

// Close closes the connection; pending calls fail with ErrClosed.
func (c *Client) Close() error { return c.close() }

// Subscription is a queue of events from one Client.
type Subscription struct {
	sub
}

// Next returns the next event, waiting for one until ctx ends or the
// connection closes (then ErrClosed once the queue is drained).
func (s *Subscription) Next(ctx context.Context) (Event, error) { return s.next(ctx) }

// Wait returns the first queued or future event for which match returns
// true; the events before it are consumed.
func (s *Subscription) Wait(ctx context.Context, match func(Event) bool) (Event, error) {
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			return Event{}, err
		}
		if match == nil || match(ev) {
			return ev, nil
		}
	}
}

// Close stops the subscription and drops its queue.
func (s *Subscription) Close() { s.close() }
