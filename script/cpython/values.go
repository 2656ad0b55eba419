package cpython

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/api"
	"github.com/vmdriver/vmdriver/machine"
)

// argError is a call's argument the table's type refuses: the
// interpreter raises it as a TypeError (kind "type") or ValueError.
type argError struct {
	kind string
	msg  string
}

func (e *argError) Error() string { return e.msg }

func typeErr(fn, param string, v any, want string) error {
	return &argError{"type", fmt.Sprintf("%s: for parameter %s: got %s, want %s", fn, param, typeName(v), want)}
}

func valueErr(format string, a ...any) error { return &argError{"value", fmt.Sprintf(format, a...)} }

// unmarshal decodes one wire value, numbers kept as json.Number.
func unmarshal(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: undecodable value: %w", ErrProtocol, err)
	}
	return v, nil
}

// tagOf returns a tagged wire value's tag ("td", "fn", "m", "snap",
// "obj") and payload.
func tagOf(v any) (tag string, payload any) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", nil
	}
	tag, _ = m["$"].(string)
	return tag, m["v"]
}

// typeName names a wire value's Python type, for messages.
func typeName(v any) string {
	switch x := v.(type) {
	case nil:
		return "NoneType"
	case string:
		return "str"
	case bool:
		return "bool"
	case json.Number:
		if isInt(x) {
			return "int"
		}
		return "float"
	case []any:
		return "list"
	case map[string]any:
		switch tag, _ := tagOf(v); tag {
		case "td":
			return "timedelta"
		case "fn":
			return "function"
		case "m":
			return "Machine"
		case "snap":
			return "Snapshot"
		}
		if t, ok := x["type"].(string); ok {
			return t
		}
	}
	return fmt.Sprintf("%T", v)
}

func isInt(n json.Number) bool { return !strings.ContainsAny(string(n), ".eE") }

// wantOf says what a parameter type wants, for messages.
func wantOf(t api.Type) string {
	switch t {
	case api.Seconds:
		return "a number of seconds or a timedelta"
	case api.Function:
		return "a function"
	case api.TTY:
		return "int or str"
	case api.Snapshot:
		return "what machine.snapshot() returned"
	}
	return t.String()
}

// bind decodes a call's arguments by the table's parameters. The
// interpreter already applied Python's rules for positions and keywords
// (the functions it made have the table's signatures) and sends only the
// arguments passed, by name; absent ones take their Default here, and
// None takes the Default for Str, Int and TTY as in the Starlark binder.
func (s *session) bind(fn string, params []api.Param, raw map[string]json.RawMessage) (api.Args, error) {
	a := api.NewArgs(fn)
	for _, p := range params {
		r, given := raw[p.Name]
		if !given {
			if p.Required {
				return a, &argError{"type", fmt.Sprintf("%s: missing argument for %s", fn, p.Name)}
			}
			if p.Variadic {
				a.Set(p.Name, []any(nil), false)
			} else {
				a.Set(p.Name, p.Default, false)
			}
			continue
		}
		v, err := unmarshal(r)
		if err != nil {
			return a, err
		}
		if p.Variadic {
			items, _ := v.([]any)
			out := make([]any, len(items))
			for i, item := range items {
				x, err := s.decode(fn, api.Param{Name: p.Name, Type: p.Type, Required: true}, item)
				if err != nil {
					return a, &argError{"type", fmt.Sprintf("%s: for %s %d: got %s, want %s", fn, strings.TrimSuffix(p.Name, "s"), i+1, typeName(item), wantOf(p.Type))}
				}
				out[i] = x
			}
			a.Set(p.Name, out, true)
			continue
		}
		x, err := s.decode(fn, p, v)
		if err != nil {
			return a, err
		}
		a.Set(p.Name, x, true)
	}
	for name := range raw {
		if !hasParam(params, name) {
			return a, &argError{"type", fmt.Sprintf("%s: unexpected keyword argument %q", fn, name)}
		}
	}
	return a, nil
}

func hasParam(params []api.Param, name string) bool {
	for _, p := range params {
		if p.Name == name {
			return true
		}
	}
	return false
}

// decode converts one wire value to the Go value its Type names.
func (s *session) decode(fn string, p api.Param, v any) (any, error) {
	if v == nil {
		if x, ok := p.NoneValue(); ok {
			return x, nil
		}
	}
	switch p.Type {
	case api.Str, api.Text:
		if str, ok := v.(string); ok {
			return str, nil
		}
	case api.Int:
		if n, ok := v.(json.Number); ok && isInt(n) {
			return toInt(fn, p.Name, n)
		}
	case api.Bool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case api.Seconds:
		return toDuration(fn, p.Name, v)
	case api.Regex:
		str, ok := v.(string)
		if !ok {
			break
		}
		re, err := api.Regexp(str)
		if err != nil {
			return nil, valueErr("%s: for parameter %s: %v", fn, p.Name, err)
		}
		return re, nil
	case api.TTY:
		return toTTY(fn, p.Name, v)
	case api.Function:
		if tag, id := tagOf(v); tag == "fn" {
			return s.function(id), nil
		}
	case api.Snapshot:
		if tag, id := tagOf(v); tag == "snap" {
			if snap, ok := s.e.handles.get(id).(*machine.Snapshot); ok {
				return snap, nil
			}
		}
		return nil, &argError{"type", fmt.Sprintf("%s: %s must be what machine.snapshot() returned, not %s", fn, p.Name, typeName(v))}
	case api.Any:
		return nil, nil
	}
	return nil, typeErr(fn, p.Name, v, wantOf(p.Type))
}

func toInt(fn, param string, n json.Number) (int, error) {
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || i > math.MaxInt32 || i < math.MinInt32 {
		return 0, valueErr("%s: for parameter %s: %s is out of range", fn, param, n)
	}
	return int(i), nil
}

// toTTY converts a virtual terminal number given as int or string.
func toTTY(fn, param string, v any) (int, error) {
	switch x := v.(type) {
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		if err != nil || n < 0 {
			return 0, valueErr("%s: for parameter %s: %q is not a terminal number", fn, param, x)
		}
		return n, nil
	case json.Number:
		if isInt(x) {
			n, err := toInt(fn, param, x)
			if err == nil && n < 0 {
				err = valueErr("%s: for parameter %s: %d is not a terminal number", fn, param, n)
			}
			return n, err
		}
	}
	return 0, typeErr(fn, param, v, wantOf(api.TTY))
}

// toDuration converts a number of seconds or a timedelta; bool is
// refused as the NixOS driver does.
func toDuration(fn, param string, v any) (any, error) {
	var secs float64
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return nil, valueErr("%s: for parameter %s: %s seconds is out of range", fn, param, x)
		}
		secs = f
	default:
		tag, payload := tagOf(v)
		n, ok := payload.(json.Number)
		if tag != "td" || !ok {
			return nil, typeErr(fn, param, v, wantOf(api.Seconds))
		}
		secs, _ = n.Float64()
	}
	d := secs * float64(time.Second)
	switch {
	case math.IsNaN(d) || d > math.MaxInt64 || d < math.MinInt64:
		return nil, valueErr("%s: for parameter %s: %v seconds is out of range", fn, param, secs)
	case d < 0:
		return nil, valueErr("%s: for parameter %s: negative duration %s", fn, param, time.Duration(d))
	}
	return time.Duration(d), nil
}

// wire converts a Go call's result (package api's result types) to what
// the interpreter decodes: JSON, with tagged objects for tuples, dicts,
// machines, snapshots and log blocks.
func (s *session) wire(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, int, int64, float64:
		return x, nil
	case time.Duration:
		return x.Seconds(), nil
	case api.Tuple:
		l, err := s.wireList([]any(x))
		return map[string]any{"$": "tuple", "v": l}, err
	case api.Dict:
		items := make([][2]any, len(x))
		for i, it := range x {
			w, err := s.wire(it.Value)
			if err != nil {
				return nil, err
			}
			items[i] = [2]any{it.Key, w}
		}
		return map[string]any{"$": "dict", "v": items}, nil
	case map[string]string:
		return s.wire(sortedDict(x))
	case map[string]any:
		return s.wire(sortedDict(x))
	case []any:
		return s.wireList(x)
	case *machine.Machine:
		return s.wireMachine(x), nil
	case []*machine.Machine:
		l := make([]any, len(x))
		for i, m := range x {
			l[i] = s.wireMachine(m)
		}
		return l, nil
	case *machine.Snapshot:
		return map[string]any{"$": "snap", "v": s.e.handles.put(x), "name": x.Name(), "machine": x.Machine(),
			"size": x.Size(), "paused": x.Paused().Seconds(), "dir": x.Dir()}, nil
	case api.Block:
		return map[string]any{"$": "block", "v": s.blocks.add(&block{open: x.Open}), "msg": x.Msg}, nil
	}
	return nil, errors.New("bridge: no Python value for a result of type " + fmt.Sprintf("%T", v))
}

func (s *session) wireList(l []any) ([]any, error) {
	out := make([]any, len(l))
	for i, e := range l {
		w, err := s.wire(e)
		if err != nil {
			return nil, err
		}
		out[i] = w
	}
	return out, nil
}

// wireMachine is a machine as the interpreter knows it: a handle and the
// name scripts see (a clone keeps its original's).
func (s *session) wireMachine(m *machine.Machine) map[string]any {
	return map[string]any{"$": "m", "v": s.e.handles.put(m), "name": m.Name()}
}

// sortedDict is a map as a Dict, keys sorted.
func sortedDict[V any](m map[string]V) api.Dict {
	d := make(api.Dict, 0, len(m))
	for k, e := range m {
		d = append(d, api.Item{Key: k, Value: e})
	}
	sort.Slice(d, func(i, j int) bool { return d[i].Key < d[j].Key })
	return d
}
