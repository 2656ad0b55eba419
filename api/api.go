// Package api is the NixOS test-script API as one table: every Machine
// method and attribute and every global a test script sees, with its
// parameters (types and defaults), a doc line and the Go call that
// implements it.
//
// Script engines bind the table instead of writing adapters by hand: the
// Starlark runtime (package script) derives its builtins, its "not
// supported yet" errors and the names `check` resolves from it, and
// docs/api.md is generated from it (Markdown). An engine decodes a
// call's arguments into Args following each Param's Type, calls Call
// and converts the result back (see Result types below), so one Go call
// serves every engine.
//
// Results are nil (None), string, int, bool, float64, Tuple, Dict,
// map[string]string (a dict, keys sorted), []any (a list),
// *machine.Machine, []*machine.Machine, *machine.Snapshot or Block.
package api

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
)

// Type is what a parameter accepts and what it is decoded into.
type Type int

// The parameter types. Each names the Go value Args holds for it; None
// is always held as nil.
const (
	// Str is a string.
	Str Type = iota + 1
	// Int is an integer (not a bool), held as int.
	Int
	// Bool is any value, taken by Python truthiness, held as bool.
	Bool
	// Seconds is a number of seconds or a timedelta, held as
	// time.Duration; None where allowed means no limit.
	Seconds
	// Regex is a Python regular expression, held translated to Go's
	// syntax (string).
	Regex
	// TTY is a virtual terminal number, an int or a numeric string, held
	// as int.
	TTY
	// Function is a function of the script, held as Func.
	Function
	// Text is any value, held as the string Python's str() gives.
	Text
	// Snapshot is what Machine.snapshot() returned, held as
	// *machine.Snapshot.
	Snapshot
	// Any is any value, held as the engine's own value (for parameters
	// vmdriver accepts and ignores).
	Any
)

var typeNames = map[Type]string{
	Str: "str", Int: "int", Bool: "bool", Seconds: "seconds", Regex: "regex",
	TTY: "int | str", Function: "function", Text: "any", Snapshot: "Snapshot", Any: "any",
}

// String names the type as the docs show it.
func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Param is one parameter.
type Param struct {
	// Name is the parameter's name, as the NixOS driver spells it.
	Name string
	// Type is what it accepts.
	Type Type
	// Required parameters have no default.
	Required bool
	// Default is the value an absent optional parameter takes, as Args
	// holds it (nil: None).
	Default any
	// Variadic collects the remaining positional arguments (*name), each
	// of Type; it is held as []any.
	Variadic bool
	// KeywordOnly parameters can only be passed by name.
	KeywordOnly bool
	// Deprecated names the parameter to use instead; passing this one
	// logs a warning.
	Deprecated string
}

// NoneValue is what the parameter holds when a script passes None, and
// whether None is accepted: the Default for an optional Str, Int or TTY
// (the NixOS driver's `x or default`), false for Bool, "None" for Text
// (Python's str(None)), nil (no value, no limit) for the other types.
func (p Param) NoneValue() (any, bool) {
	switch p.Type {
	case Str, Int, TTY:
		return p.Default, !p.Required
	case Bool:
		return false, true
	case Text:
		return "None", true
	}
	return nil, true
}

// Func is a function of the script handed to a Go call: it calls the
// function with args (Go values of the result types) and reports whether
// its result is true by Python's rules.
type Func func(args ...any) (bool, error)

// Tuple is a result that scripts see as a tuple.
type Tuple []any

// Item is one key and value of a Dict.
type Item struct {
	Key   string
	Value any
}

// Dict is a result that scripts see as a dict, keys in this order.
type Dict []Item

// Block is a result that scripts use as a context manager: a log block
// titled Msg. Open starts it and returns the function that closes it
// with the block's outcome.
type Block struct {
	Msg  string
	Open func() func(error)
}

// Env is what an engine provides to a call: the calling thread's view of
// the run. In a forked subtest it is the subtest's own.
type Env interface {
	// Driver is the run's driver.
	Driver() *driver.Driver
	// Machines are the machines the calling thread acts on (a forked
	// subtest's clones, or all the driver's).
	Machines() []*machine.Machine
	// Logger is the calling thread's log.
	Logger() driver.Logger
	// SetSerialOutput turns the echo of machines' serial consoles on or
	// off for the calling thread's log.
	SetSerialOutput(on bool)
}

// Request is one call: the machine (for methods), the thread's Env and
// the decoded arguments.
type Request struct {
	// Machine is the machine a method acts on; nil for globals.
	Machine *machine.Machine
	// Env is the calling thread's view of the run.
	Env Env
	// Args are the decoded arguments.
	Args Args
}

// Call implements a method or global.
type Call func(ctx context.Context, r *Request) (any, error)

// Method is one Machine method or global function.
type Method struct {
	// Name is the name scripts call.
	Name string
	// Params are its parameters, in order.
	Params []Param
	// Returns describes the result for the docs ("str", "(int, str)").
	Returns string
	// Doc is one line saying what it does.
	Doc string
	// Call implements it; nil when Unsupported or Engine is set.
	Call Call
	// Unsupported, when set, says what vmdriver lacks to offer it
	// ("OCR"): calling it is an error saying so.
	Unsupported string
	// Engine marks a global that each engine implements itself, because
	// it is part of the language more than of the run (subtest blocks,
	// decorators, running the test script).
	Engine bool
	// Alias names the method this one is another name for.
	Alias string
}

// Attr is one data attribute of a Machine.
type Attr struct {
	// Name is the attribute's name.
	Name string
	// Type describes its value for the docs.
	Type string
	// Doc is one line saying what it holds.
	Doc string
	// Get reads it.
	Get func(m *machine.Machine) any
}

// Args are a call's decoded arguments, by parameter name.
type Args struct {
	fn    string
	vals  map[string]any
	given map[string]bool
}

// NewArgs makes the Args of a call of fn. Engines fill them with Set.
func NewArgs(fn string) Args {
	return Args{fn: fn, vals: map[string]any{}, given: map[string]bool{}}
}

// Set records a parameter's decoded value; given says whether the
// caller passed it (rather than it taking its default).
func (a Args) Set(name string, v any, given bool) {
	a.vals[name] = v
	a.given[name] = given
}

// Name is the name of the method or global called, for messages.
func (a Args) Name() string { return a.fn }

// Value is a parameter's value (nil: None).
func (a Args) Value(name string) any { return a.vals[name] }

// Given reports whether the caller passed the parameter, even as None.
func (a Args) Given(name string) bool { return a.given[name] }

// Str is a Str, Regex or Text parameter ("" for None).
func (a Args) Str(name string) string {
	s, _ := a.vals[name].(string)
	return s
}

// Int is an Int or TTY parameter (0 for None).
func (a Args) Int(name string) int {
	n, _ := a.vals[name].(int)
	return n
}

// Bool is a Bool parameter.
func (a Args) Bool(name string) bool {
	b, _ := a.vals[name].(bool)
	return b
}

// Duration is a Seconds parameter; ok is false for None.
func (a Args) Duration(name string) (d time.Duration, ok bool) {
	d, ok = a.vals[name].(time.Duration)
	return d, ok
}

// DurationOf is the Seconds parameter name, or other (another spelling of
// it) when that was passed; def when neither holds a duration. Passing
// both is an error.
func (a Args) DurationOf(name, other string, def time.Duration) (time.Duration, error) {
	d, ok := a.Duration(name)
	if o, given := a.Duration(other); given {
		if ok && a.Given(name) {
			return 0, a.Errorf("give %s or %s, not both", name, other)
		}
		d, ok = o, true
	}
	if !ok {
		d = def
	}
	return d, nil
}

// Func is a Function parameter (nil for None).
func (a Args) Func(name string) Func {
	f, _ := a.vals[name].(Func)
	return f
}

// List is a Variadic parameter's values.
func (a Args) List(name string) []any {
	l, _ := a.vals[name].([]any)
	return l
}

// Errorf makes an error about this call, prefixed with its name.
func (a Args) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{a.fn}, args...)...)
}

// timeout is a Seconds parameter as a machine.Timeout option, or nil for
// None (the machine's own default).
func (a Args) timeout(name string) *machine.TimeoutOption {
	d, ok := a.Duration(name)
	if !ok {
		return nil
	}
	t := machine.Timeout(d)
	return &t
}
