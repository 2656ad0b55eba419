package modules

import (
	"fmt"
	"io"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// SystemExit is the error sys.exit (and the exit and quit built-ins)
// end a script with, as Python's SystemExit: Code 0 is a success.
type SystemExit struct {
	// Code is the exit status.
	Code int
	// Msg is the message of exit("message"), which Python prints and
	// treats as status 1.
	Msg string
}

func (e *SystemExit) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return fmt.Sprintf("the script called exit(%d)", e.Code)
}

// Exit implements exit(status=None): None and 0 succeed, an int is the
// status, anything else is printed and gives status 1.
func Exit(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var code starlark.Value = starlark.None
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "status?", &code); err != nil {
		return nil, err
	}
	switch c := code.(type) {
	case starlark.NoneType:
		return nil, &SystemExit{}
	case starlark.Int:
		n, ok := c.Int64()
		if !ok {
			n = 1
		}
		return nil, &SystemExit{Code: int(n)}
	case starlark.Bool:
		if c {
			return nil, &SystemExit{Code: 1}
		}
		return nil, &SystemExit{}
	case starlark.String:
		return nil, &SystemExit{Code: 1, Msg: string(c)}
	}
	return nil, &SystemExit{Code: 1, Msg: code.String()}
}

// Stream is sys.stdout or sys.stderr: what print(..., file=) writes to.
type Stream struct {
	name string
	mu   *sync.Mutex
	w    io.Writer
}

var _ starlark.HasAttrs = (*Stream)(nil)

func (s *Stream) String() string        { return "<_io.TextIOWrapper name='<" + s.name + ">'>" }
func (s *Stream) Type() string          { return "TextIOWrapper" }
func (s *Stream) Freeze()               {}
func (s *Stream) Truth() starlark.Bool  { return starlark.True }
func (s *Stream) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: TextIOWrapper") }

// Write writes text to the stream.
func (s *Stream) Write(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := io.WriteString(s.w, text)
	return err
}

// AttrNames lists write and flush.
func (s *Stream) AttrNames() []string { return []string{"flush", "write"} }

// Attr returns write(text) or flush().
func (s *Stream) Attr(name string) (starlark.Value, error) {
	switch name {
	case "write":
		return starlark.NewBuiltin("write", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var text string
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &text); err != nil {
				return nil, err
			}
			if err := s.Write(text); err != nil {
				return nil, err
			}
			return starlark.MakeInt(len([]rune(text))), nil
		}), nil
	case "flush":
		return starlark.NewBuiltin("flush", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
			return starlark.None, nil
		}), nil
	}
	return nil, nil
}

// sysModule is the part of sys test scripts use: exit, argv, stdout,
// stderr, platform and maxsize.
func (m *Modules) sysModule() *starlarkstruct.Module {
	var mu sync.Mutex // stdout and stderr may be the same writer
	return &starlarkstruct.Module{Name: "sys", Members: starlark.StringDict{
		"exit":     starlark.NewBuiltin("exit", Exit),
		"argv":     starlark.NewList([]starlark.Value{starlark.String("test-script")}),
		"stdout":   &Stream{name: "stdout", mu: &mu, w: m.stdout()},
		"stderr":   &Stream{name: "stderr", mu: &mu, w: m.stderr()},
		"platform": starlark.String("linux"),
		"maxsize":  starlark.MakeInt64(1<<63 - 1),
	}}
}
