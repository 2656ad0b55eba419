package script

import (
	"errors"
	"fmt"
	"slices"
	"sort"

	"go.starlark.net/starlark"
)

// The rewrite turns `with E as x:` into `for x in with_(E):`. with_
// enters the context managers and returns a one-element iterable; the
// loop's second Next means the block completed and exits them at once.
// Starlark calls Done on every active iterator however a loop is left, but
// cannot tell why: when Done comes without that second Next the block was
// left early — by an error, or by return/break. Which one is known only
// when control next reaches Go: at the next builtin call (the block was
// left by return or break: success), or where the error surfaces (a
// starlark.Call made by a builtin, or the end of the run). The exit runs
// there, with that outcome, before anything else can be observed.
//
// Entering happens in with_ itself, not at the first Next, because an
// iterator cannot return an error and entering may fail (an object's
// __enter__); the loop starts iterating right after with_ returns.

// contextManager is a value usable in a with statement, implemented in Go.
type contextManager interface {
	starlark.Value
	// enter begins the block; its result is bound by `as`.
	enter(th *starlark.Thread) (starlark.Value, error)
	// exit ends the block; err is the error that ended it, or nil.
	exit(th *starlark.Thread, err error) error
}

// withIter is with_'s result: an iterable with a single element.
type withIter struct {
	s      *Session
	th     *starlark.Thread
	cms    []contextManager
	values []starlark.Value
	seq    int
	state  int // 0 fresh, 1 element handed out, 2 exited, 3 left early
	iters  int
}

var (
	_ starlark.Iterable = (*withIter)(nil)
	_ starlark.Iterator = (*withIter)(nil)
)

func (w *withIter) String() string        { return "<with block>" }
func (w *withIter) Type() string          { return "with" }
func (w *withIter) Freeze()               {}
func (w *withIter) Truth() starlark.Bool  { return starlark.True }
func (w *withIter) Hash() (uint32, error) { return 0, errors.New("unhashable type: with") }

// Iterate returns the iterator; a with block is iterated once.
func (w *withIter) Iterate() starlark.Iterator {
	w.iters++
	if w.iters > 1 {
		return emptyIter{}
	}
	return w
}

// Next hands out the entered value(s), then exits.
func (w *withIter) Next(p *starlark.Value) bool {
	switch w.state {
	case 0:
		w.state = 1
		if len(w.values) == 1 {
			*p = w.values[0]
		} else {
			*p = starlark.Tuple(w.values)
		}
		return true
	case 1:
		w.state = 2
		if err := w.exitAll(nil); err != nil {
			st := stateOf(w.th)
			if st != nil {
				st.exitErr = errors.Join(st.exitErr, err)
			}
		}
	}
	return false
}

// Done records a block left early; its exit waits for the outcome.
func (w *withIter) Done() {
	if w.state != 1 {
		return
	}
	w.state = 3
	if st := stateOf(w.th); st != nil {
		st.pending = append(st.pending, w)
		return
	}
	w.exitAll(errors.New("with block left early"))
}

func (w *withIter) exitAll(err error) error {
	if st := stateOf(w.th); st != nil {
		if i := slices.Index(st.active, w); i >= 0 {
			st.active = slices.Delete(st.active, i, i+1)
		}
	}
	var errs []error
	for i := len(w.cms) - 1; i >= 0; i-- {
		if e := w.cms[i].exit(w.th, err); e != nil {
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

type emptyIter struct{}

func (emptyIter) Next(*starlark.Value) bool { return false }
func (emptyIter) Done()                     {}

// resolvePending exits the blocks left early, innermost first, with the
// outcome err, and returns the errors of exits (also earlier ones).
func (s *Session) resolvePending(th *starlark.Thread, err error) error {
	st := stateOf(th)
	if st == nil {
		return nil
	}
	var errs []error
	if st.exitErr != nil {
		errs = append(errs, st.exitErr)
		st.exitErr = nil
	}
	for len(st.pending) > 0 {
		pending := st.pending
		st.pending = nil
		sort.Slice(pending, func(i, j int) bool { return pending[i].seq > pending[j].seq })
		for _, w := range pending {
			if e := w.exitAll(err); e != nil {
				errs = append(errs, e)
			}
		}
	}
	return errors.Join(errs...)
}

// with_(cm, ...) enters the context managers and returns the iterable the
// rewritten `for` loop runs the block in. With several managers the loop
// variable is the tuple of their values.
func (s *Session) with(th *starlark.Thread, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if len(kwargs) > 0 {
		return nil, errors.New("with_: unexpected keyword arguments")
	}
	if len(args) == 0 {
		return nil, errors.New("with_: want at least one context manager")
	}
	cms := make([]contextManager, len(args))
	for i, a := range args {
		cm, err := asContextManager(s, a)
		if err != nil {
			return nil, err
		}
		cms[i] = cm
	}
	w := &withIter{s: s, th: th}
	for _, cm := range cms {
		v, err := cm.enter(th)
		if err != nil {
			return nil, errors.Join(err, w.exitAll(err))
		}
		w.cms = append(w.cms, cm)
		w.values = append(w.values, v)
	}
	if st := stateOf(th); st != nil {
		st.seq++
		w.seq = st.seq
		st.active = append(st.active, w)
	}
	return w, nil
}

// sweep exits the blocks entered whose loop never started iterating
// (the run was cancelled between with_ and the loop, or with_ was called
// outside a for loop), so no subtest or polling condition outlives the
// run.
func (s *Session) sweep(th *starlark.Thread, err error) error {
	st := stateOf(th)
	if st == nil {
		return nil
	}
	var errs []error
	for i := len(st.active) - 1; i >= 0; i-- {
		if w := st.active[i]; w.state == 0 || w.state == 1 {
			w.state = 2
			errs = append(errs, w.exitAll(err))
		}
	}
	st.active = nil
	return errors.Join(errs...)
}

// asContextManager accepts Go context managers and objects with
// __enter__ and __exit__ attributes.
func asContextManager(s *Session, v starlark.Value) (contextManager, error) {
	if cm, ok := v.(contextManager); ok {
		return cm, nil
	}
	if ha, ok := v.(starlark.HasAttrs); ok {
		en, err1 := ha.Attr("__enter__")
		ex, err2 := ha.Attr("__exit__")
		if err1 == nil && err2 == nil && en != nil && ex != nil {
			return &attrCM{s: s, Value: v, enterFn: en, exitFn: ex}, nil
		}
	}
	return nil, fmt.Errorf("with: %s value is not a context manager (it has no __enter__ and __exit__)", v.Type())
}

// attrCM drives an object with __enter__ and __exit__ attributes (files,
// temporary directories from the modules).
type attrCM struct {
	s *Session
	starlark.Value
	enterFn, exitFn starlark.Value
}

func (c *attrCM) enter(th *starlark.Thread) (starlark.Value, error) {
	return c.s.call(th, c.enterFn, nil, nil)
}

func (c *attrCM) exit(th *starlark.Thread, err error) error {
	args := starlark.Tuple{starlark.None, starlark.None, starlark.None}
	if err != nil {
		args = starlark.Tuple{starlark.String("Error"), starlark.String(errorMessage(err)), starlark.None}
	}
	_, e := starlark.Call(th, c.exitFn, args, nil)
	return e
}

// errorMessage is an error's message without Starlark's decoration.
func errorMessage(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Msg
	}
	return err.Error()
}

// errorLocation is where in the script err happened, if known.
func (s *Session) errorLocation(th *starlark.Thread, err error) *Location {
	st := stateOf(th)
	if st == nil || st.script == nil {
		return nil
	}
	se := st.script.evalError(err)
	if se.Location.Line == 0 {
		return nil
	}
	loc := se.Location
	return &loc
}

// subtestCM is subtest(name).
type subtestCM struct {
	s    *Session
	name string
	ends []func(error)
}

func (c *subtestCM) String() string        { return fmt.Sprintf("<subtest %q>", c.name) }
func (c *subtestCM) Type() string          { return "subtest" }
func (c *subtestCM) Freeze()               {}
func (c *subtestCM) Truth() starlark.Bool  { return starlark.True }
func (c *subtestCM) Hash() (uint32, error) { return 0, errors.New("unhashable type: subtest") }

func (c *subtestCM) enter(th *starlark.Thread) (starlark.Value, error) {
	if fs := forkOf(th); fs != nil {
		fs.opened++
	}
	c.ends = append(c.ends, c.s.logOf(th).Subtest(c.name))
	return starlark.None, nil
}

func (c *subtestCM) exit(th *starlark.Thread, err error) error {
	end := c.ends[len(c.ends)-1]
	c.ends = c.ends[:len(c.ends)-1]
	if err != nil {
		c.s.failure(th, SubtestFailure(c.name, errorMessage(err)+frozenHint(th, err)), c.s.errorLocation(th, err))
	}
	end(err)
	return nil
}

// nestedCM is a log block: log.nested(msg) and machine.nested(msg).
type nestedCM struct {
	msg  string
	open func() func(error) // opens the block, returns its end
	ends []func(error)
}

func (c *nestedCM) String() string        { return fmt.Sprintf("<nested %q>", c.msg) }
func (c *nestedCM) Type() string          { return "nested" }
func (c *nestedCM) Freeze()               {}
func (c *nestedCM) Truth() starlark.Bool  { return starlark.True }
func (c *nestedCM) Hash() (uint32, error) { return 0, errors.New("unhashable type: nested") }

func (c *nestedCM) enter(*starlark.Thread) (starlark.Value, error) {
	c.ends = append(c.ends, c.open())
	return starlark.None, nil
}

func (c *nestedCM) exit(_ *starlark.Thread, err error) error {
	end := c.ends[len(c.ends)-1]
	c.ends = c.ends[:len(c.ends)-1]
	end(err)
	return nil
}
