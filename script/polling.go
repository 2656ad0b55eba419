package script

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.starlark.net/starlark"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
)

// pollingCondition is polling_condition(fun=None, *, interval=2,
// seconds_interval=None, description=None): with a function it returns
// the condition; without one, a decorator that makes it.
func (s *Session) pollingCondition(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	const fn = "polling_condition"
	meth := engineGlobal(fn)
	// The condition keeps the script's function itself: bind it raw.
	params := slices.Clone(meth.Params)
	params[0].Type = api.Any
	a, err := s.bind(th, fn, params, args, kwargs)
	if err != nil {
		return nil, err
	}
	interval, err := a.DurationOf("interval", "seconds_interval", driver.DefaultPollingInterval)
	if err != nil {
		return nil, err
	}
	s.warnDeprecated(th, meth, a)
	desc := a.Str("description")
	funV, _ := a.Value("fun").(starlark.Value)
	mk := func(f starlark.Value) (starlark.Value, error) {
		c, ok := f.(starlark.Callable)
		if !ok {
			return nil, typeError(fn, "fun", f, "a function")
		}
		return s.newCondition(c, interval, desc), nil
	}
	if isNone(funV) {
		return s.builtin(fn, func(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var f starlark.Value
			if err := unpack(fn, args, kwargs, []string{"fun"}, &f); err != nil {
				return nil, err
			}
			return mk(f)
		}), nil
	}
	return mk(funV)
}

// condition is a polling condition: a context manager that keeps it
// active, with a wait() method.
type condition struct {
	s      *Session
	fn     starlark.Callable
	pc     *driver.PollingCondition
	deacts []func()
}

var (
	_ starlark.HasAttrs = (*condition)(nil)
	_ contextManager    = (*condition)(nil)
)

func (s *Session) newCondition(fn starlark.Callable, interval time.Duration, desc string) *condition {
	if desc == "" {
		if f, ok := fn.(*starlark.Function); ok && f.Doc() != "" {
			desc = f.Doc()
		} else {
			desc = fn.Name()
		}
	}
	c := &condition{s: s, fn: fn}
	c.pc = &driver.PollingCondition{Interval: interval, Description: desc, Check: c.check}
	return c
}

// check runs the condition function on the script's thread, which the
// context carries: True or None means it holds.
func (c *condition) check(ctx context.Context) error {
	th, ok := ctx.Value(threadKey{}).(*starlark.Thread)
	if !ok {
		return fmt.Errorf("polling condition %q checked outside a script run", c.pc.Description)
	}
	v, err := c.s.call(th, c.fn, nil, nil)
	if err != nil {
		return err
	}
	if v != starlark.None && !v.Truth() {
		return fmt.Errorf("%s returned %s", c.fn.Name(), v)
	}
	return nil
}

func (c *condition) String() string        { return fmt.Sprintf("<polling condition %q>", c.pc.Description) }
func (c *condition) Type() string          { return "PollingCondition" }
func (c *condition) Freeze()               {}
func (c *condition) Truth() starlark.Bool  { return starlark.True }
func (c *condition) Hash() (uint32, error) { return 0, errors.New("unhashable type: PollingCondition") }
func (c *condition) AttrNames() []string   { return []string{"description", "wait"} }

func (c *condition) Attr(name string) (starlark.Value, error) {
	switch name {
	case "description":
		return starlark.String(c.pc.Description), nil
	case "wait":
		return c.s.builtin("wait", c.wait), nil
	}
	return nil, noAttr("PollingCondition", name, c.AttrNames())
}

// wait(timeout=900) retries the condition until it holds.
func (c *condition) wait(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var timeoutV starlark.Value
	if err := unpack("wait", args, kwargs, []string{"timeout?"}, &timeoutV); err != nil {
		return nil, err
	}
	timeout, ok, err := toDuration("wait", "timeout", timeoutV, machine.DefaultWaitTimeout)
	if err != nil {
		return nil, err
	}
	if !ok {
		timeout = machine.DefaultWaitTimeout
	}
	ctx, err := contextOf(th)
	if err != nil {
		return nil, err
	}
	if err := c.s.d.WaitFor(ctx, c.pc, timeout); err != nil {
		return nil, err
	}
	return starlark.None, nil
}

func (c *condition) enter(*starlark.Thread) (starlark.Value, error) {
	c.deacts = append(c.deacts, c.s.d.Activate(c.pc))
	return c, nil
}

func (c *condition) exit(*starlark.Thread, error) error {
	n := len(c.deacts) - 1
	c.deacts[n]()
	c.deacts = c.deacts[:n]
	return nil
}
