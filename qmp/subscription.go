package qmp

import (
	"context"
	"fmt"
	"sync"
)

// errSubClosed is returned by Next after the subscription's own Close.
var errSubClosed = fmt.Errorf("qmp: subscription closed: %w", ErrClosed)

// sub is the state behind a Subscription: an unbounded FIFO that the
// client's reader appends to without ever waiting.
type sub struct {
	c      *impl
	wake   chan struct{} // holds a token when events may have arrived
	mu     sync.Mutex
	queue  []Event
	closed bool
}

// push queues ev; called by the reader with c.mu held.
func (s *sub) push(ev Event) {
	s.mu.Lock()
	if !s.closed {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	s.signal()
}

func (s *sub) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sub) next(ctx context.Context) (Event, error) {
	for {
		// Look at done before the queue: the reader queues every event
		// before it ends, so once done is seen the queue is complete.
		ended := false
		select {
		case <-s.c.doneCh:
			ended = true
		default:
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return Event{}, errSubClosed
		}
		if len(s.queue) > 0 {
			ev := s.queue[0]
			s.queue[0] = Event{}
			s.queue = s.queue[1:]
			more := len(s.queue) > 0
			if !more {
				s.queue = nil // let the backing array go
			}
			s.mu.Unlock()
			if more {
				s.signal() // another Next on this subscription may be waiting
			}
			return ev, nil
		}
		s.mu.Unlock()
		if ended {
			return Event{}, s.c.err()
		}
		select {
		case <-s.wake:
		case <-s.c.doneCh:
		case <-ctx.Done():
			return Event{}, fmt.Errorf("qmp: waiting for an event: %w", ctx.Err())
		}
	}
}

func (s *sub) close() {
	s.c.mu.Lock()
	delete(s.c.subs, s)
	s.c.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.queue = nil
	s.mu.Unlock()
	s.signal()
}
