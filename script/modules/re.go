package modules

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// reModule is Python's re on Go's regexp (RE2), see translatePattern for the
// syntax differences. Positions (start, end, span) are byte offsets. Iterating
// functions (findall, finditer, sub, split) follow Go's rule for empty matches:
// an empty match right after the previous match is skipped (Python before 3.7).
func (m *Modules) reModule() *starlarkstruct.Module {
	fn := func(method string) builtinFunc {
		return func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return m.reCall(thread, b, method, args, kwargs)
		}
	}
	funcs := map[string]builtinFunc{
		"compile": m.reCompile,
		"escape":  reEscape,
		"purge": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			m.re.purge()
			return starlark.None, nil
		},
	}
	for _, name := range []string{"search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"} {
		funcs[name] = fn(name)
	}
	flag := func(v int) starlark.Value { return starlark.MakeInt(v) }
	return module("re", funcs, starlark.StringDict{
		"I": flag(reIgnoreCase), "IGNORECASE": flag(reIgnoreCase),
		"M": flag(reMultiline), "MULTILINE": flag(reMultiline),
		"S": flag(reDotAll), "DOTALL": flag(reDotAll),
		"X": flag(reVerbose), "VERBOSE": flag(reVerbose),
		"A": flag(reASCII), "ASCII": flag(reASCII),
		"U": flag(reUnicode), "UNICODE": flag(reUnicode),
		"L": flag(reLocale), "LOCALE": flag(reLocale),
		"NOFLAG": flag(0),
	})
}

// reCache holds compiled patterns by (pattern, flags), like Python's re cache.
type reCache struct {
	mu sync.Mutex
	m  map[reKey]*Pattern
}

type reKey struct {
	pattern string
	flags   int
}

const reCacheSize = 512

func (c *reCache) purge() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

func (c *reCache) compile(pattern string, flags int) (*Pattern, error) {
	key := reKey{pattern, flags}
	c.mu.Lock()
	p, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return p, nil
	}
	p, err := compilePattern(pattern, flags)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= reCacheSize {
		c.m = make(map[reKey]*Pattern)
	}
	c.m[key] = p
	c.mu.Unlock()
	return p, nil
}

// Pattern is a compiled regular expression (Python's re.Pattern).
type Pattern struct {
	pattern string
	flags   int
	search  *regexp.Regexp // unanchored
	match   *regexp.Regexp // anchored at the start
	full    *regexp.Regexp // anchored at both ends
	// user[i] is the Go subexpression index of Python group i (user[0] == 0).
	user []int
	// eol lists the Go subexpression indexes of the groups standing for `$`.
	eol       []int
	groupName map[string]int // Python group index by name
	names     []string       // names in group order, for groupindex
}

func compilePattern(pattern string, flags int) (*Pattern, error) {
	if flags&reLocale != 0 {
		return nil, fmt.Errorf("cannot use LOCALE flag with a str pattern")
	}
	if flags&reASCII != 0 && flags&reUnicode != 0 {
		return nil, fmt.Errorf("ASCII and UNICODE flags are incompatible")
	}
	expr, err := translatePattern(pattern, flags)
	if err != nil {
		return nil, fmt.Errorf("invalid pattern %q: %w", pattern, err)
	}
	p := &Pattern{pattern: pattern, flags: flags, groupName: make(map[string]int)}
	for _, c := range []struct {
		re   **regexp.Regexp
		expr string
	}{
		{&p.search, expr},
		{&p.match, `\A(?:` + expr + `)`},
		{&p.full, `\A(?:` + expr + `)\z`},
	} {
		re, err := regexp.Compile(c.expr)
		if err != nil {
			return nil, fmt.Errorf("invalid pattern %q: %w", pattern, err)
		}
		*c.re = re
	}
	p.user = []int{0}
	for i, name := range p.search.SubexpNames() {
		if i == 0 {
			continue
		}
		if strings.HasPrefix(name, eolGroupPrefix) {
			p.eol = append(p.eol, i)
			continue
		}
		if name != "" {
			p.groupName[name] = len(p.user)
			p.names = append(p.names, name)
		}
		p.user = append(p.user, i)
	}
	return p, nil
}

// spans converts a Go submatch index slice into Python group spans, moving
// ends back over a final newline that a `$` group consumed.
func (p *Pattern) spans(loc []int) []int {
	for _, g := range p.eol {
		s, e := loc[2*g], loc[2*g+1]
		if s < 0 || e-s != 1 {
			continue
		}
		for i := 0; i < len(loc); i += 2 {
			if loc[i] >= 0 && loc[i] <= s && loc[i+1] == e {
				loc[i+1] = s
			}
		}
	}
	out := make([]int, 2*len(p.user))
	for i, g := range p.user {
		out[2*i], out[2*i+1] = loc[2*g], loc[2*g+1]
	}
	return out
}

func (p *Pattern) find(s, method string) *Match {
	re := p.search
	switch method {
	case "match":
		re = p.match
	case "fullmatch":
		re = p.full
	}
	loc := re.FindStringSubmatchIndex(s)
	if loc == nil {
		return nil
	}
	sp := p.spans(loc)
	if method == "fullmatch" && (sp[0] != 0 || sp[1] != len(s)) {
		return nil
	}
	return &Match{pat: p, s: s, spans: sp}
}

func (p *Pattern) findAll(s string, limit int) []*Match {
	if limit <= 0 {
		limit = -1
	}
	var out []*Match
	for _, loc := range p.search.FindAllStringSubmatchIndex(s, limit) {
		out = append(out, &Match{pat: p, s: s, spans: p.spans(loc)})
	}
	return out
}

// pattern resolves a pattern argument: a str (compiled through the cache) or a
// compiled Pattern (then flags must be 0).
func (m *Modules) pattern(fn string, v starlark.Value, flags int) (*Pattern, error) {
	switch x := v.(type) {
	case *Pattern:
		if flags != 0 {
			return nil, fmt.Errorf("%s: cannot process flags argument with a compiled pattern", fn)
		}
		return x, nil
	case starlark.String:
		p, err := m.re.compile(string(x), flags)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%s: pattern must be str or re.Pattern, not %s", fn, v.Type())
}

func (m *Modules) reCompile(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var pat starlark.Value
	var flags int
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "pattern", &pat, "flags?", &flags); err != nil {
		return nil, err
	}
	return m.pattern(b.Name(), pat, flags)
}

// reCall implements the module-level functions: re.f(pattern, ...) is
// re.compile(pattern, flags).f(...).
func (m *Modules) reCall(thread *starlark.Thread, b *starlark.Builtin, method string, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var (
		pat, repl  starlark.Value
		str        string
		count      int
		flags      int
		maxsplit   int
		unpackArgs []any
	)
	switch method {
	case "sub", "subn":
		unpackArgs = []any{"pattern", &pat, "repl", &repl, "string", &str, "count?", &count, "flags?", &flags}
	case "split":
		unpackArgs = []any{"pattern", &pat, "string", &str, "maxsplit?", &maxsplit, "flags?", &flags}
	default:
		unpackArgs = []any{"pattern", &pat, "string", &str, "flags?", &flags}
	}
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, unpackArgs...); err != nil {
		return nil, err
	}
	p, err := m.pattern(b.Name(), pat, flags)
	if err != nil {
		return nil, err
	}
	return p.call(thread, b.Name(), method, str, repl, count, maxsplit)
}

func (p *Pattern) call(thread *starlark.Thread, fn, method, s string, repl starlark.Value, count, maxsplit int) (starlark.Value, error) {
	switch method {
	case "search", "match", "fullmatch":
		if m := p.find(s, method); m != nil {
			return m, nil
		}
		return starlark.None, nil
	case "findall":
		matches := p.findAll(s, -1)
		out := make([]starlark.Value, len(matches))
		for i, m := range matches {
			switch n := len(p.user) - 1; n {
			case 0:
				out[i] = m.group(0, starlark.String(""))
			case 1:
				out[i] = m.group(1, starlark.String(""))
			default:
				t := make(starlark.Tuple, n)
				for g := range n {
					t[g] = m.group(g+1, starlark.String(""))
				}
				out[i] = t
			}
		}
		return starlark.NewList(out), nil
	case "finditer":
		matches := p.findAll(s, -1)
		out := make([]starlark.Value, len(matches))
		for i, m := range matches {
			out[i] = m
		}
		return starlark.NewList(out), nil
	case "sub", "subn":
		res, n, err := p.sub(thread, fn, repl, s, count)
		if err != nil {
			return nil, err
		}
		if method == "subn" {
			return starlark.Tuple{starlark.String(res), starlark.MakeInt(n)}, nil
		}
		return starlark.String(res), nil
	case "split":
		if maxsplit < 0 {
			return starlark.NewList([]starlark.Value{starlark.String(s)}), nil
		}
		var out []starlark.Value
		last := 0
		for _, m := range p.findAll(s, maxsplit) {
			out = append(out, starlark.String(s[last:m.spans[0]]))
			for g := 1; g < len(p.user); g++ {
				out = append(out, m.group(g, starlark.None))
			}
			last = m.spans[1]
		}
		out = append(out, starlark.String(s[last:]))
		return starlark.NewList(out), nil
	}
	return nil, fmt.Errorf("%s: unknown method %s", fn, method)
}

// sub replaces matches by a template (with \1, \g<name>, \n escapes) or by the
// result of calling repl with each match object.
func (p *Pattern) sub(thread *starlark.Thread, fn string, repl starlark.Value, s string, count int) (string, int, error) {
	var expand func(m *Match) (string, error)
	switch r := repl.(type) {
	case starlark.String:
		tmpl, err := p.parseTemplate(string(r))
		if err != nil {
			return "", 0, fmt.Errorf("%s: %w", fn, err)
		}
		expand = func(m *Match) (string, error) { return m.expandTemplate(tmpl), nil }
	case starlark.Callable:
		expand = func(m *Match) (string, error) {
			v, err := starlark.Call(thread, r, starlark.Tuple{m}, nil)
			if err != nil {
				return "", err
			}
			str, ok := v.(starlark.String)
			if !ok {
				return "", fmt.Errorf("%s: replacement function returned %s, want str", fn, v.Type())
			}
			return string(str), nil
		}
	default:
		return "", 0, fmt.Errorf("%s: repl must be str or callable, not %s", fn, repl.Type())
	}
	if count < 0 {
		return s, 0, nil
	}
	var b strings.Builder
	last, n := 0, 0
	for _, m := range p.findAll(s, count) {
		b.WriteString(s[last:m.spans[0]])
		r, err := expand(m)
		if err != nil {
			return "", 0, err
		}
		b.WriteString(r)
		last = m.spans[1]
		n++
	}
	b.WriteString(s[last:])
	return b.String(), n, nil
}

// templatePart is a literal (group < 0) or a group reference.
type templatePart struct {
	lit   string
	group int
}

// parseTemplate parses a Python replacement template.
func (p *Pattern) parseTemplate(t string) ([]templatePart, error) {
	var parts []templatePart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, templatePart{lit: lit.String(), group: -1})
			lit.Reset()
		}
	}
	ref := func(g int, spelled string) error {
		if g < 0 || g >= len(p.user) {
			return fmt.Errorf("invalid group reference %s in replacement", spelled)
		}
		flush()
		parts = append(parts, templatePart{group: g})
		return nil
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c != '\\' {
			lit.WriteByte(c)
			continue
		}
		i++
		if i == len(t) {
			return nil, fmt.Errorf("bad escape (end of pattern) in replacement")
		}
		c = t[i]
		switch {
		case c == 'g':
			rest := t[i+1:]
			end := strings.IndexByte(rest, '>')
			if !strings.HasPrefix(rest, "<") || end < 0 {
				return nil, fmt.Errorf("missing group name in \\g<...> in replacement")
			}
			name := rest[1:end]
			g, ok := p.groupName[name]
			if !ok {
				n, err := strconv.Atoi(name)
				if err != nil {
					return nil, fmt.Errorf("unknown group name %q in replacement", name)
				}
				g = n
			}
			if err := ref(g, `\g<`+name+`>`); err != nil {
				return nil, err
			}
			i += end + 1
		case c == '0' || (c >= '1' && c <= '7' && i+2 < len(t) && isOctal(t[i+1]) && isOctal(t[i+2])):
			j := i + 1
			for j < len(t) && j < i+3 && isOctal(t[j]) {
				j++
			}
			v, _ := strconv.ParseUint(t[i:j], 8, 32)
			if v > 0o377 {
				return nil, fmt.Errorf("octal escape value \\%s outside of range 0-0o377", t[i:j])
			}
			lit.WriteRune(rune(v))
			i = j - 1
		case c >= '1' && c <= '9':
			j := i + 1
			if j < len(t) && t[j] >= '0' && t[j] <= '9' {
				j++
			}
			g, _ := strconv.Atoi(t[i:j])
			if err := ref(g, `\`+t[i:j]); err != nil {
				return nil, err
			}
			i = j - 1
		default:
			if e, ok := map[byte]byte{'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '\\': '\\'}[c]; ok {
				lit.WriteByte(e)
			} else if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
				return nil, fmt.Errorf("bad escape \\%c in replacement", c)
			} else {
				lit.WriteByte('\\')
				lit.WriteByte(c)
			}
		}
	}
	flush()
	return parts, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// Starlark value methods of Pattern.

// String implements starlark.Value.
func (p *Pattern) String() string {
	if p.flags == 0 {
		return fmt.Sprintf("re.compile(%s)", starlark.String(p.pattern))
	}
	return fmt.Sprintf("re.compile(%s, %d)", starlark.String(p.pattern), p.flags)
}

// Type implements starlark.Value.
func (p *Pattern) Type() string { return "re.Pattern" }

// Freeze implements starlark.Value; patterns are immutable.
func (p *Pattern) Freeze() {}

// Truth implements starlark.Value.
func (p *Pattern) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (p *Pattern) Hash() (uint32, error) {
	h := fnv.New32a()
	fmt.Fprintf(h, "%d:%s", p.flags, p.pattern)
	return h.Sum32(), nil
}

// CompareSameType implements starlark.Comparable: patterns are equal when
// pattern and flags are.
func (p *Pattern) CompareSameType(op syntax.Token, y starlark.Value, depth int) (bool, error) {
	q := y.(*Pattern)
	eq := p.pattern == q.pattern && p.flags == q.flags
	return compareEq(op, eq, "re.Pattern")
}

// Attr implements starlark.HasAttrs.
func (p *Pattern) Attr(name string) (starlark.Value, error) {
	switch name {
	case "pattern":
		return starlark.String(p.pattern), nil
	case "flags":
		return starlark.MakeInt(p.flags | reUnicode*boolInt(p.flags&reASCII == 0)), nil
	case "groups":
		return starlark.MakeInt(len(p.user) - 1), nil
	case "groupindex":
		d := starlark.NewDict(len(p.names))
		for _, n := range p.names {
			_ = d.SetKey(starlark.String(n), starlark.MakeInt(p.groupName[n]))
		}
		d.Freeze()
		return d, nil
	}
	return methodAttr(p, "Pattern", name, patternMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (p *Pattern) AttrNames() []string {
	return methodNames(patternMethods, "pattern", "flags", "groups", "groupindex")
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

type patternMethod = func(*Pattern, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var patternMethods = map[string]patternMethod{}

func init() {
	for _, name := range []string{"search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split"} {
		patternMethods[name] = func(p *Pattern, thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var (
				str      string
				repl     starlark.Value
				count    int
				maxsplit int
			)
			var err error
			switch name {
			case "sub", "subn":
				err = starlark.UnpackArgs(b.Name(), args, kwargs, "repl", &repl, "string", &str, "count?", &count)
			case "split":
				err = starlark.UnpackArgs(b.Name(), args, kwargs, "string", &str, "maxsplit?", &maxsplit)
			default:
				err = starlark.UnpackArgs(b.Name(), args, kwargs, "string", &str)
			}
			if err != nil {
				return nil, err
			}
			return p.call(thread, b.Name(), name, str, repl, count, maxsplit)
		}
	}
}

// Match is a successful match (Python's re.Match); failed matches are None.
type Match struct {
	pat   *Pattern
	s     string
	spans []int // Python group spans, 2 per group, -1 when the group did not match
}

func (m *Match) group(g int, dflt starlark.Value) starlark.Value {
	s, e := m.spans[2*g], m.spans[2*g+1]
	if s < 0 {
		return dflt
	}
	return starlark.String(m.s[s:e])
}

// groupIndex resolves a group given by number or name.
func (m *Match) groupIndex(fn string, v starlark.Value) (int, error) {
	switch x := v.(type) {
	case starlark.Int:
		g, ok := x.Int64()
		if ok && g >= 0 && int(g) < len(m.pat.user) {
			return int(g), nil
		}
	case starlark.String:
		if g, ok := m.pat.groupName[string(x)]; ok {
			return g, nil
		}
	default:
		return 0, fmt.Errorf("%s: group must be int or str, not %s", fn, v.Type())
	}
	return 0, fmt.Errorf("%s: no such group %s", fn, v)
}

func (m *Match) expandTemplate(parts []templatePart) string {
	var b strings.Builder
	for _, p := range parts {
		if p.group < 0 {
			b.WriteString(p.lit)
		} else if s := m.spans[2*p.group]; s >= 0 {
			b.WriteString(m.s[s:m.spans[2*p.group+1]])
		}
	}
	return b.String()
}

// String implements starlark.Value, like Python's repr.
func (m *Match) String() string {
	return fmt.Sprintf("<re.Match object; span=(%d, %d), match=%s>", m.spans[0], m.spans[1], m.group(0, starlark.None))
}

// Type implements starlark.Value.
func (m *Match) Type() string { return "re.Match" }

// Freeze implements starlark.Value; matches are immutable.
func (m *Match) Freeze() {}

// Truth implements starlark.Value: a match is always true.
func (m *Match) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (m *Match) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable type: re.Match") }

// Get implements starlark.Mapping: m[g] is m.group(g).
func (m *Match) Get(k starlark.Value) (starlark.Value, bool, error) {
	g, err := m.groupIndex("re.Match", k)
	if err != nil {
		return nil, false, err
	}
	return m.group(g, starlark.None), true, nil
}

// Attr implements starlark.HasAttrs.
func (m *Match) Attr(name string) (starlark.Value, error) {
	switch name {
	case "string":
		return starlark.String(m.s), nil
	case "re":
		return m.pat, nil
	case "pos":
		return starlark.MakeInt(0), nil
	case "endpos":
		return starlark.MakeInt(len(m.s)), nil
	case "lastindex":
		last, end := -1, -1
		for g := 1; g < len(m.pat.user); g++ {
			// Python: the group that closed last, i.e. the outermost with the greatest end.
			if e := m.spans[2*g+1]; m.spans[2*g] >= 0 && e > end {
				last, end = g, e
			}
		}
		if last < 0 {
			return starlark.None, nil
		}
		return starlark.MakeInt(last), nil
	}
	return methodAttr(m, "Match", name, matchMethods), nil
}

// AttrNames implements starlark.HasAttrs.
func (m *Match) AttrNames() []string {
	return methodNames(matchMethods, "string", "re", "pos", "endpos", "lastindex")
}

type matchMethod = func(*Match, *starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

var matchMethods = map[string]matchMethod{
	"group": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if len(kwargs) > 0 {
			return nil, fmt.Errorf("%s: unexpected keyword arguments", b.Name())
		}
		if len(args) == 0 {
			return m.group(0, starlark.None), nil
		}
		out := make(starlark.Tuple, len(args))
		for i, a := range args {
			g, err := m.groupIndex(b.Name(), a)
			if err != nil {
				return nil, err
			}
			out[i] = m.group(g, starlark.None)
		}
		if len(out) == 1 {
			return out[0], nil
		}
		return out, nil
	},
	"groups": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "default?", &dflt); err != nil {
			return nil, err
		}
		out := make(starlark.Tuple, len(m.pat.user)-1)
		for g := range out {
			out[g] = m.group(g+1, dflt)
		}
		return out, nil
	},
	"groupdict": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var dflt starlark.Value = starlark.None
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "default?", &dflt); err != nil {
			return nil, err
		}
		d := starlark.NewDict(len(m.pat.names))
		for _, n := range m.pat.names {
			if err := d.SetKey(starlark.String(n), m.group(m.pat.groupName[n], dflt)); err != nil {
				return nil, err
			}
		}
		return d, nil
	},
	"start": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		g, err := m.unpackGroup(b, args, kwargs)
		if err != nil {
			return nil, err
		}
		return starlark.MakeInt(m.spans[2*g]), nil
	},
	"end": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		g, err := m.unpackGroup(b, args, kwargs)
		if err != nil {
			return nil, err
		}
		return starlark.MakeInt(m.spans[2*g+1]), nil
	},
	"span": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		g, err := m.unpackGroup(b, args, kwargs)
		if err != nil {
			return nil, err
		}
		return starlark.Tuple{starlark.MakeInt(m.spans[2*g]), starlark.MakeInt(m.spans[2*g+1])}, nil
	},
	"expand": func(m *Match, _ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var tmpl string
		if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &tmpl); err != nil {
			return nil, err
		}
		parts, err := m.pat.parseTemplate(tmpl)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.Name(), err)
		}
		return starlark.String(m.expandTemplate(parts)), nil
	},
}

func (m *Match) unpackGroup(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (int, error) {
	var g starlark.Value = starlark.MakeInt(0)
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0, &g); err != nil {
		return 0, err
	}
	return m.groupIndex(b.Name(), g)
}

// reEscape escapes the characters Python 3.7+ re.escape escapes.
func reEscape(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var s string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &s); err != nil {
		return nil, err
	}
	var out strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte("()[]{}?*+-|^$\\.&~# \t\n\r\v\f", s[i]) >= 0 {
			out.WriteByte('\\')
		}
		out.WriteByte(s[i])
	}
	return starlark.String(out.String()), nil
}
