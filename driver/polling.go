package driver

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrPollingCondition is wrapped by the error a failed polling condition
// causes.
var ErrPollingCondition = errors.New("polling condition failed")

// DefaultPollingInterval is how often an active polling condition is
// checked at most (the NixOS driver's default).
const DefaultPollingInterval = 2 * time.Second

// PollingCondition is a check that must keep holding while it is active:
// before every machine command (and monitor command) the driver runs each
// active condition whose interval has passed. It is the NixOS driver's
// polling_condition.
type PollingCondition struct {
	// Check returns nil while the condition holds.
	Check func(ctx context.Context) error
	// Interval is the least time between two checks; zero means
	// DefaultPollingInterval.
	Interval time.Duration
	// Description names the condition in logs and errors.
	Description string

	last    time.Time
	running bool
}

// Activate makes c active until the returned function is called.
func (d *Driver) Activate(c *PollingCondition) (deactivate func()) {
	d.mu.Lock()
	d.conditions = append(d.conditions, c)
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, x := range d.conditions {
			if x == c {
				d.conditions = append(d.conditions[:i], d.conditions[i+1:]...)
				break
			}
		}
	}
}

// checkConditions runs the overdue active conditions. Conditions run
// machine commands themselves, which call back here: the running flag
// keeps that from recursing.
func (d *Driver) checkConditions(ctx context.Context) error {
	d.mu.Lock()
	if d.checking {
		d.mu.Unlock()
		return nil
	}
	var due []*PollingCondition
	now := time.Now()
	for _, c := range d.conditions {
		if !c.running && now.Sub(c.last) >= c.interval() {
			due = append(due, c)
		}
	}
	if len(due) == 0 {
		d.mu.Unlock()
		return nil
	}
	d.checking = true
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.checking = false
		d.mu.Unlock()
	}()
	for _, c := range due {
		if err := d.runCondition(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

func (c *PollingCondition) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return DefaultPollingInterval
}

func (c *PollingCondition) name() string {
	if c.Description != "" {
		return c.Description
	}
	return "polling condition"
}

func (d *Driver) runCondition(ctx context.Context, c *PollingCondition) error {
	end := d.log.Nested("", fmt.Sprintf("checking polling condition %q", c.name()))
	c.running = true
	err := c.Check(ctx)
	c.running = false
	c.last = time.Now()
	if err != nil {
		err = fmt.Errorf("%w: %s: %w", ErrPollingCondition, c.name(), err)
		d.log.Warn("", "polling condition failed: "+c.name())
	}
	end(err)
	return err
}

// WaitFor retries c (ignoring its interval) until it holds or timeout
// passes, like the NixOS driver's condition.wait().
func (d *Driver) WaitFor(ctx context.Context, c *PollingCondition, timeout time.Duration) error {
	end := d.log.Nested("", fmt.Sprintf("waiting for polling condition %q", c.name()))
	err := Retry(ctx, timeout, func(ctx context.Context, last bool) (bool, error) {
		err := c.Check(ctx)
		if err != nil && !last {
			d.log.Info("", fmt.Sprintf("polling condition %q not met yet (failure not fatal yet): %v", c.name(), err))
		}
		return err == nil, nil
	})
	end(err)
	return err
}

// ErrRetryTimeout is wrapped by Retry's error when fn never succeeded.
var ErrRetryTimeout = errors.New("action timed out")

// Retry calls fn about once a second until it reports done, an error, or
// timeout passes; then it makes one last call with last=true (for
// diagnostics) like the NixOS driver's retry. It never busy-waits.
func Retry(ctx context.Context, timeout time.Duration, fn func(ctx context.Context, last bool) (bool, error)) error {
	if timeout <= 0 {
		timeout = 15 * time.Minute
	}
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ok, err := fn(ctx, false)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %.2f seconds: %w", ErrRetryTimeout, time.Since(start).Seconds(), context.Cause(ctx))
		case <-deadline.C:
			ok, err := fn(ctx, true)
			if err != nil || ok {
				return err
			}
			return fmt.Errorf("%w after %.2f seconds (timeout=%s)", ErrRetryTimeout, time.Since(start).Seconds(), timeout)
		case <-time.After(time.Second):
		}
	}
}
