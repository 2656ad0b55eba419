package cpython

import (
	"sync"
	"time"

	"github.com/vmdriver/vmdriver/api"
)

// typeCodes name the parameter types on the wire; the interpreter
// converts bool, text and function arguments itself (truthiness, str(),
// a callback id) and leaves the other checks to the engine.
var typeCodes = map[api.Type]string{
	api.Str: "str", api.Int: "int", api.Bool: "bool", api.Seconds: "seconds", api.Regex: "regex",
	api.TTY: "tty", api.Function: "function", api.Text: "text", api.Snapshot: "snapshot", api.Any: "any",
}

// tableJSON is the API table as the interpreter receives it in its first
// message: the only description of the API it has.
var tableJSON = sync.OnceValue(func() map[string]any {
	attrs := make([]map[string]any, len(api.Attrs))
	for i, a := range api.Attrs {
		attrs[i] = map[string]any{"name": a.Name, "type": a.Type, "doc": a.Doc}
	}
	return map[string]any{
		"methods": methodsJSON(api.Methods),
		"attrs":   attrs,
		"globals": methodsJSON(api.Globals),
		"log":     methodsJSON(api.LogFuncs),
	}
})

func methodsJSON(ms []api.Method) []map[string]any {
	out := make([]map[string]any, len(ms))
	for i, m := range ms {
		params := make([]map[string]any, len(m.Params))
		for j, p := range m.Params {
			params[j] = map[string]any{
				"name": p.Name, "type": typeCodes[p.Type], "required": p.Required, "default": defaultJSON(p.Default),
				"variadic": p.Variadic, "kwonly": p.KeywordOnly, "deprecated": p.Deprecated,
			}
		}
		out[i] = map[string]any{
			"name": m.Name, "params": params, "returns": m.Returns, "doc": m.Doc,
			"unsupported": m.Unsupported, "engine": m.Engine, "alias": m.Alias,
		}
	}
	return out
}

// defaultJSON is a default as Python shows it in a signature: durations
// in seconds (whole ones as int).
func defaultJSON(v any) any {
	d, ok := v.(time.Duration)
	if !ok {
		return v
	}
	if d%time.Second == 0 {
		return int64(d / time.Second)
	}
	return d.Seconds()
}

// lookups are the table's entries by the kinds the interpreter calls:
// "m" (Machine methods), "g" (globals other than the engine's own) and
// "log".
var lookups = sync.OnceValue(func() map[string]map[string]*api.Method {
	index := func(ms []api.Method) map[string]*api.Method {
		out := make(map[string]*api.Method, len(ms))
		for i := range ms {
			if !ms[i].Engine {
				out[ms[i].Name] = &ms[i]
			}
		}
		return out
	}
	return map[string]map[string]*api.Method{"m": index(api.Methods), "g": index(api.Globals), "log": index(api.LogFuncs)}
})

// engineParams are the parameters of a global the engine implements.
func engineParams(name string) []api.Param {
	for _, g := range api.Globals {
		if g.Name == name && g.Engine {
			return g.Params
		}
	}
	panic("api: no engine global " + name)
}
