package pycompat

import (
	"strings"

	"go.starlark.net/resolve"
	"go.starlark.net/syntax"
)

// FileOptions returns the Starlark options the rewritten source is meant
// for (and that Check parses it with).
func FileOptions() *syntax.FileOptions {
	return &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}
}

// Rewrite turns Python test-script source into Starlark source that
// go.starlark.net parses with FileOptions(). It fails with an *Error at the
// first construct it cannot express, so a Starlark parse error is never the
// first thing a user sees for those.
func Rewrite(filename string, src []byte) (res *Result, err error) {
	text := string(src)
	if strings.Contains(text, "\r\n") {
		text = strings.ReplaceAll(text, "\r\n", "\n")
	}
	s := newSource(filename, text)
	defer func() {
		if p := recover(); p != nil {
			re, ok := p.(rewriteError)
			if !ok {
				panic(p)
			}
			res, err = nil, re.err
		}
	}()
	r := &rewriter{src: s}
	r.e.buf = make([]byte, 0, len(text)+len(text)/4)
	r.e.segs = make([]segment, 0, len(text)/16)
	r.run(tokenize(s))
	return r.e.result(s), nil
}

// Check rewrites src and parses (and resolves, with every free name taken
// as predeclared) the result as Starlark. Starlark's errors are returned
// as *Error with Construct ConstructSyntax at the original position.
func Check(filename string, src []byte) error {
	res, err := Rewrite(filename, src)
	if err != nil {
		return err
	}
	f, err := FileOptions().Parse(filename, res.Source, 0)
	if err != nil {
		if se, ok := err.(syntax.Error); ok {
			return res.syntaxError(filename, se.Pos, se.Msg)
		}
		return err
	}
	all := func(string) bool { return true }
	if err := resolve.File(f, all, all); err != nil {
		if el, ok := err.(resolve.ErrorList); ok && len(el) > 0 {
			return res.syntaxError(filename, el[0].Pos, el[0].Msg)
		}
		return err
	}
	return nil
}

func (r *Result) syntaxError(filename string, pos syntax.Position, msg string) *Error {
	line, col := r.Pos(int(pos.Line), int(pos.Col))
	return &Error{Filename: filename, Line: line, Col: col, Construct: ConstructSyntax, Msg: msg}
}

// Messages for unsupported constructs: what to do instead.
const (
	msgClass     = "use functions and dicts instead"
	msgTry       = "there are no exceptions to catch: use machine.execute() and check the status, or machine.fail() for a command that must fail"
	msgGlobal    = "functions cannot rebind globals: return the value, or keep it in a dict or list defined at top level"
	msgNonlocal  = "functions cannot rebind outer variables: keep the value in a dict or list of the enclosing function"
	msgDel       = "use d.pop(key) for a dict entry, or rebind the name"
	msgAsync     = "call the functions directly"
	msgYield     = "generators are not supported: build and return a list"
	msgWalrus    = "assign the value on a line of its own first"
	msgBareRaise = "there is no try/except to re-raise from: raise a new exception or call fail(...)"
	msgLoopElse  = "use a flag variable set before break and test it after the loop"
	msgMatch     = "use if/elif"
	msgDecorator = "put it on a def, or call the decorator explicitly"
)

// block is an open compound statement.
type block struct {
	indent     int
	indentText string
	kind       string // "if", "elif", "else", "for", "while", "with", "def"
	name       *tok   // def: the function name
	decos      []deco // def: its decorators, outermost first
}

// deco is a decorator line waiting for its def.
type deco struct {
	at   int    // offset of '@'
	expr []*tok // the rewritten decorator expression, on one line
}

// app is a decorator application (f = deco(f)) to emit after a def body.
type app struct {
	toks       []*tok
	indent     int
	indentText string
	off        int
}

// lineKind tells emitLine whether decorator applications may be put on
// the line itself.
type lineKind int

const (
	lineCompound  lineKind = iota
	lineSimple             // simple statements: "f = deco(f); " may go first
	lineDecorator          // a decorator line, empty in the output
)

type rewriter struct {
	src    *source
	e      emitter
	blocks []*block
	decos  []deco
	tail   []*tok // what removed tokens leave behind, emitted at the end of the logical line
}

var compoundKeywords = map[string]bool{
	"if": true, "elif": true, "else": true, "while": true, "for": true, "with": true, "def": true,
	"try": true, "except": true, "finally": true, "class": true, "async": true,
}

func (r *rewriter) run(toks []*tok) {
	start := 0
	for i, t := range toks {
		switch t.kind {
		case kNewline:
			r.logicalLine(toks[start : i+1])
			start = i + 1
		case kEOF:
			r.finish(t)
		}
	}
}

// indentation returns the indentation text of a logical line whose first
// token is t, and its width with tabs to multiples of 8 (as both Python
// and Starlark count).
func indentation(t *tok) (string, int) {
	text := t.gap[strings.LastIndexByte(t.gap, '\n')+1:]
	w := 0
	for _, c := range text {
		if c == '\t' {
			w += 8 - w%8
		} else {
			w++
		}
	}
	return text, w
}

func (r *rewriter) logicalLine(line []*tok) {
	first := line[0]
	indentText, indent := indentation(first)
	var apps []app
	var sibling *block
	for len(r.blocks) > 0 && r.blocks[len(r.blocks)-1].indent >= indent {
		b := r.blocks[len(r.blocks)-1]
		r.blocks = r.blocks[:len(r.blocks)-1]
		if b.indent == indent {
			sibling = b
		}
		if len(b.decos) > 0 {
			apps = append(apps, r.application(b))
		}
	}

	r.tail = r.tail[:0]
	nl := line[len(line)-1]
	body := line[:len(line)-1]
	var out []*tok
	kind := lineCompound
	switch {
	case first.isOp("@"):
		out = r.decorator(body)
		kind = lineDecorator
	case first.kind == kName && compoundKeywords[first.text]:
		out = r.compound(body, indent, indentText, sibling)
	case (first.isName("match") || first.isName("case")) && len(body) > 2 && body[len(body)-1].isOp(":"):
		r.src.fail(first.off, first.text+" statement", msgMatch)
	default:
		out = r.expr(r.simpleStmts(body))
		kind = lineSimple
	}
	if len(r.decos) > 0 && kind != lineDecorator {
		r.src.fail(r.decos[0].at, "decorator on anything but def", msgDecorator)
	}
	out = append(out, r.tail...)
	out = append(out, nl)
	r.emitLine(out, apps, indent, kind)
}

func (r *rewriter) finish(eof *tok) {
	if len(r.decos) > 0 {
		r.src.fail(r.decos[0].at, "decorator on anything but def", msgDecorator)
	}
	var apps []app
	for i := len(r.blocks) - 1; i >= 0; i-- {
		if b := r.blocks[i]; len(b.decos) > 0 {
			apps = append(apps, r.application(b))
		}
	}
	r.blocks = nil
	if len(apps) == 0 {
		r.e.tok(eof)
		return
	}
	r.emitGap(eof, apps, -1, lineCompound, true)
}

// emitLine emits a logical line, placing the decorator applications of
// the def bodies it closes in the blank or comment lines before it when
// there are any (line numbers stay), else first on the line itself when it
// is a simple statement at the def's indentation, else on lines of their
// own (the only case that shifts lines; Pos still maps them).
func (r *rewriter) emitLine(out []*tok, apps []app, indent int, kind lineKind) {
	if len(apps) == 0 {
		r.e.toks(out)
		return
	}
	first := out[0]
	r.emitGap(first, apps, indent, kind, false)
	if first.synth {
		r.e.synth(first.text, first.off)
	} else {
		r.e.verbatim(first.text, first.off)
	}
	r.e.toks(out[1:])
}

// emitGap emits t's gap with apps placed in it (see emitLine).
func (r *rewriter) emitGap(t *tok, apps []app, indent int, kind lineKind, atEOF bool) {
	g := t.gap
	piece := func(from, to int) {
		if t.gapSynth {
			r.e.synth(g[from:to], t.off)
		} else {
			r.e.verbatim(g[from:to], t.gapOff+from)
		}
	}
	pos := 0
	k := 0
	for ; k < len(apps); k++ {
		nl := strings.IndexByte(g[pos:], '\n')
		if nl < 0 {
			break
		}
		lineEnd := pos + nl
		a := apps[k]
		r.e.synth(a.indentText, a.off)
		r.e.toks(a.toks)
		if c := strings.IndexByte(g[pos:lineEnd], '#'); c >= 0 {
			r.e.synth("  ", a.off)
			piece(pos+c, lineEnd)
		}
		piece(lineEnd, lineEnd+1)
		pos = lineEnd + 1
	}
	rest := apps[k:]
	n := len(rest)
	if kind != lineCompound {
		for n > 0 && rest[n-1].indent == indent {
			n--
		}
	}
	inserted, prefixed := rest[:n], rest[n:]
	lastNL := strings.LastIndexByte(g, '\n') + 1
	if atEOF {
		piece(pos, len(g))
		if len(inserted) > 0 && !r.e.endsLine() {
			r.e.synth("\n", t.off)
		}
	} else {
		piece(pos, max(pos, lastNL))
	}
	for _, a := range inserted {
		r.e.synth(a.indentText, a.off)
		r.e.toks(a.toks)
		r.e.synth("\n", a.off)
	}
	if atEOF {
		return
	}
	piece(max(pos, lastNL), len(g))
	for i, a := range prefixed {
		if i > 0 {
			r.e.synth("; ", a.off)
		}
		r.e.toks(a.toks)
	}
	if len(prefixed) > 0 && kind == lineSimple {
		r.e.synth("; ", prefixed[len(prefixed)-1].off)
	}
}

// application builds "f = d1(d2(f))" for a decorated def.
func (r *rewriter) application(b *block) app {
	name := b.name
	inner := []*tok{{kind: kName, text: name.text, off: name.off}}
	for i := len(b.decos) - 1; i >= 0; i-- {
		d := b.decos[i]
		call := make([]*tok, 0, len(d.expr)+len(inner)+2)
		call = append(call, d.expr...)
		call = append(call, opTok("(", d.at, ""))
		call = append(call, inner...)
		call = append(call, opTok(")", d.at, ""))
		inner = call
	}
	inner[0] = withGap(inner[0], " ")
	toks := append([]*tok{{kind: kName, text: name.text, off: name.off}, opTok("=", b.decos[0].at, " ")}, inner...)
	return app{toks: toks, indent: b.indent, indentText: b.indentText, off: b.decos[0].at}
}

// decorator records a decorator line; its output is an empty line.
func (r *rewriter) decorator(body []*tok) []*tok {
	at := body[0]
	if len(body) < 2 {
		r.src.syntaxf(at.off, "decorator without an expression")
	}
	// The application goes on one line: gaps with line breaks or comments
	// become a space, or nothing next to brackets and before commas.
	expr := make([]*tok, len(body)-1)
	for i, t := range body[1:] {
		c := *t
		if i == 0 || strings.ContainsAny(c.gap, "\n#") {
			c.gap, c.gapSynth = " ", true
			if i == 0 || c.kind == kOp && strings.Contains(")]},", c.text) || body[i].kind == kOp && strings.Contains("([{", body[i].text) {
				c.gap = ""
			}
		}
		expr[i] = &c
	}
	r.decos = append(r.decos, deco{at: at.off, expr: r.expr(expr)})
	r.dropToTail(body[1:])
	return []*tok{{kind: kFiller, off: at.off, gap: at.gap, gapOff: at.gapOff, gapSynth: at.gapSynth}}
}

// compound rewrites a line that starts a compound statement.
func (r *rewriter) compound(body []*tok, indent int, indentText string, sibling *block) []*tok {
	first := body[0]
	kw := first.text
	switch kw {
	case "class":
		r.src.fail(first.off, "class", msgClass)
	case "try", "except", "finally":
		r.src.fail(first.off, "try/except", msgTry)
	case "async":
		r.src.fail(first.off, "async/await", msgAsync)
	}
	colon := headerColon(body)
	if colon < 0 {
		r.src.syntaxf(first.off, "expected ':' after %s", kw)
	}
	header, rest := body[:colon+1], body[colon+1:]
	b := &block{indent: indent, indentText: indentText, kind: kw}
	switch kw {
	case "with":
		header = r.with(header)
	case "def":
		header = r.def(header)
		b.name = body[1]
		b.decos, r.decos = r.decos, nil
	case "else":
		if sibling != nil && (sibling.kind == "for" || sibling.kind == "while") {
			r.src.fail(first.off, sibling.kind+"/else", msgLoopElse)
		}
	}
	r.blocks = append(r.blocks, b)
	out := r.expr(header)
	if len(rest) > 0 {
		out = append(out, r.expr(r.simpleStmts(rest))...)
	}
	return out
}

// headerColon returns the index of the ':' that ends a compound
// statement's header, or -1.
func headerColon(body []*tok) int {
	colon := -1
	topLevel(body, func(i int, t *tok) bool {
		if t.isOp(":") {
			colon = i
			return false
		}
		return true
	})
	return colon
}

// topLevel calls fn for each token of s outside brackets and outside
// lambda parameter lists (bracket tokens themselves excluded), until fn
// returns false.
func topLevel(s []*tok, fn func(i int, t *tok) bool) {
	depth, lambdas := 0, 0
	for i, t := range s {
		switch t.kind {
		case kOp:
			switch t.text {
			case "(", "[", "{":
				depth++
				continue
			case ")", "]", "}":
				depth--
				continue
			case ":":
				if depth == 0 && lambdas > 0 {
					lambdas--
					continue
				}
			}
		case kName:
			if t.text == "lambda" && depth == 0 {
				lambdas++
				continue
			}
		case kFiller:
			continue
		}
		if depth == 0 && lambdas == 0 && !fn(i, t) {
			return
		}
	}
}

// topIndices returns the indices of the top-level operators op in s.
func topIndices(s []*tok, op string) []int {
	var idx []int
	topLevel(s, func(i int, t *tok) bool {
		if t.isOp(op) {
			idx = append(idx, i)
		}
		return true
	})
	return idx
}

// topName returns the index of the first top-level name in s, or -1.
func topName(s []*tok, name string) int {
	at := -1
	topLevel(s, func(i int, t *tok) bool {
		if t.isName(name) {
			at = i
			return false
		}
		return true
	})
	return at
}

// splitTop splits s at its top-level operators op.
func splitTop(s []*tok, op string) (parts [][]*tok, seps []*tok) {
	start := 0
	for _, i := range topIndices(s, op) {
		parts = append(parts, s[start:i])
		seps = append(seps, s[i])
		start = i + 1
	}
	return append(parts, s[start:]), seps
}

// matchBrackets returns, for each bracket token, the index of its partner
// (-1 for other tokens and unbalanced brackets).
func matchBrackets(s []*tok) []int {
	m := make([]int, len(s))
	var stack []int
	for i, t := range s {
		m[i] = -1
		if t.kind != kOp || len(t.text) != 1 {
			continue
		}
		switch t.text[0] {
		case '(', '[', '{':
			stack = append(stack, i)
		case ')', ']', '}':
			if n := len(stack); n > 0 {
				m[i], m[stack[n-1]] = stack[n-1], i
				stack = stack[:n-1]
			}
		}
	}
	return m
}

// Token constructors for rewritten text.

func opTok(text string, off int, gap string) *tok {
	return &tok{kind: kOp, text: text, off: off, synth: true, gap: gap, gapSynth: true}
}

func nameTok(text string, off int, gap string) *tok {
	return &tok{kind: kName, text: text, off: off, synth: true, gap: gap, gapSynth: true}
}

func codeTok(text string, off int, gap string) *tok {
	return &tok{kind: kCode, text: text, off: off, synth: true, gap: gap, gapSynth: true}
}

// withGap returns a copy of t with a synthetic gap.
func withGap(t *tok, gap string) *tok {
	c := *t
	c.gap, c.gapSynth = gap, true
	return &c
}

// keepGap gives t the gap of orig (the indentation and blank lines that
// start a statement).
func keepGap(t, orig *tok) *tok {
	t.gap, t.gapOff, t.gapSynth = orig.gap, orig.gapOff, orig.gapSynth
	return t
}

// residue is what must survive of removed text where the line cannot go
// on: its line breaks (so line numbers stay) and its comments.
func residue(gap, text string) string {
	if strings.IndexByte(gap, '\n') < 0 && strings.IndexByte(text, '\n') < 0 {
		return ""
	}
	var b strings.Builder
	for {
		nl := strings.IndexByte(gap, '\n')
		if nl < 0 {
			break
		}
		if c := strings.IndexByte(gap[:nl], '#'); c >= 0 {
			b.WriteString("  ")
			b.WriteString(gap[c:nl])
		}
		b.WriteByte('\n')
		gap = gap[nl+1:]
	}
	b.WriteString(strings.Repeat("\n", strings.Count(text, "\n")))
	return b.String()
}

// dropToTail removes ts from a place where the line cannot continue: their
// line breaks and comments move to the end of the logical line.
func (r *rewriter) dropToTail(ts []*tok) {
	for _, t := range ts {
		if s := residue(t.gap, t.text); s != "" {
			r.tail = append(r.tail, &tok{kind: kFiller, text: s, off: t.off, synth: true, gapSynth: true})
		}
	}
}

// keepLines returns a filler for a token removed from inside brackets,
// where line breaks may stay in place, or nil if it had none.
func keepLines(t *tok) *tok {
	i := strings.LastIndexByte(t.gap, '\n')
	n := strings.Count(t.text, "\n")
	if i < 0 && n == 0 {
		return nil
	}
	f := &tok{kind: kFiller, off: t.off, gap: t.gap[:i+1], gapOff: t.gapOff, gapSynth: t.gapSynth}
	if n > 0 {
		f.text, f.synth = strings.Repeat("\n", n), true
	}
	return f
}

// simpleStmts rewrites the ';'-separated simple statements in s.
func (r *rewriter) simpleStmts(s []*tok) []*tok {
	semi := false
	for _, t := range s {
		if t.isOp(";") {
			semi = true
			break
		}
	}
	if !semi {
		return r.simpleStmt(s)
	}
	parts, seps := splitTop(s, ";")
	if len(parts) == 1 {
		return r.simpleStmt(parts[0])
	}
	var out []*tok
	for i, p := range parts {
		if len(p) > 0 {
			out = append(out, r.simpleStmt(p)...)
		}
		if i < len(seps) {
			out = append(out, seps[i])
		}
	}
	return out
}

func (r *rewriter) simpleStmt(s []*tok) []*tok {
	first := s[0]
	if first.kind == kName {
		switch first.text {
		case "assert":
			return r.assert(s)
		case "import":
			return r.importStmt(s)
		case "from":
			return r.fromImport(s)
		case "raise":
			return r.raise(s)
		case "global":
			r.src.fail(first.off, "global", msgGlobal)
		case "nonlocal":
			r.src.fail(first.off, "nonlocal", msgNonlocal)
		case "del":
			r.src.fail(first.off, "del", msgDel)
		case "break", "continue":
			r.checkLoopExit(first)
		}
	}
	if len(s) == 1 && first.isOp("...") {
		return []*tok{keepGap(nameTok("pass", first.off, ""), first)}
	}
	colon, eq := -1, -1
	topLevel(s, func(i int, t *tok) bool {
		if t.isOp(":") && colon < 0 {
			colon = i
		}
		if t.isOp("=") {
			eq = i
			return false
		}
		return true
	})
	if colon > 0 && (eq < 0 || colon < eq) && !(first.kind == kName && pyKeywords[first.text]) {
		// Variable annotation: "x: T = v" → "x = v", "x: T" → "pass".
		if eq < 0 {
			r.dropToTail(s[1:])
			return []*tok{keepGap(nameTok("pass", first.off, ""), first)}
		}
		r.dropToTail(s[colon:eq])
		return append(s[:colon:colon], s[eq:]...)
	}
	if eqs := topIndices(s, "="); len(eqs) > 1 {
		return r.chainedAssign(s, eqs)
	}
	return s
}

// chainedAssign rewrites "a = b = v" into "a = v; b = a".
func (r *rewriter) chainedAssign(s []*tok, eqs []int) []*tok {
	first := s[0]
	if eqs[0] != 1 || first.kind != kName || pyKeywords[first.text] {
		r.src.fail(first.off, "chained assignment", "assign to one name, then copy it: a = value; b = a")
	}
	out := append([]*tok{}, s[:2]...)
	out = append(out, s[eqs[len(eqs)-1]+1:]...)
	for k := 1; k < len(eqs); k++ {
		target := s[eqs[k-1]+1 : eqs[k]]
		if len(target) == 0 {
			r.src.syntaxf(s[eqs[k]].off, "missing assignment target")
		}
		out = append(out, opTok(";", target[0].off, ""), withGap(target[0], " "))
		out = append(out, target[1:]...)
		out = append(out, opTok("=", s[eqs[k]].off, " "), &tok{kind: kName, text: first.text, off: first.off, gap: " ", gapSynth: true})
	}
	return out
}

func (r *rewriter) checkLoopExit(t *tok) {
	for i := len(r.blocks) - 1; i >= 0; i-- {
		switch r.blocks[i].kind {
		case "for", "while", "def":
			return
		case "with":
			r.src.fail(t.off, t.text+" inside with", "the with block runs as a one-pass loop, so "+t.text+
				" would leave the with block, not the enclosing loop: set a flag and test it after the with block")
		}
	}
}

// assert rewrites "assert c[, m]" into "assert_(c[, m])".
func (r *rewriter) assert(s []*tok) []*tok {
	kw := s[0]
	if len(s) < 2 {
		r.src.syntaxf(kw.off, "assert without a condition")
	}
	out := []*tok{keepGap(nameTok("assert_", kw.off, ""), kw), opTok("(", kw.off, "")}
	arg := s[1]
	if strings.IndexByte(arg.gap, '\n') < 0 {
		arg = withGap(arg, "")
	}
	out = append(out, arg)
	out = append(out, s[2:]...)
	return append(out, opTok(")", kw.off, ""))
}

// raise rewrites "raise E [from C]" into "fail(E)".
func (r *rewriter) raise(s []*tok) []*tok {
	kw := s[0]
	if len(s) < 2 {
		r.src.fail(kw.off, "bare raise", msgBareRaise)
	}
	end := len(s)
	if f := topName(s, "from"); f > 0 {
		end = f
		r.dropToTail(s[f:])
	}
	out := []*tok{keepGap(nameTok("fail", kw.off, ""), kw), opTok("(", kw.off, "")}
	arg := s[1]
	if strings.IndexByte(arg.gap, '\n') < 0 {
		arg = withGap(arg, "")
	}
	out = append(out, arg)
	out = append(out, s[2:end]...)
	return append(out, opTok(")", kw.off, ""))
}

// dotted parses "a.b.c [as x]" and returns the module path, its first
// token, and the alias token (nil without "as").
func (r *rewriter) dotted(item []*tok, allowDots bool) (path string, first, alias *tok) {
	if len(item) == 0 {
		r.src.syntaxf(0, "empty import")
	}
	first = item[0]
	i := 0
	var b strings.Builder
	for {
		if i >= len(item) || item[i].kind != kName || pyKeywords[item[i].text] {
			r.src.syntaxf(first.off, "invalid import: expected a module name")
		}
		b.WriteString(item[i].text)
		i++
		if i < len(item) && item[i].isOp(".") && allowDots {
			b.WriteByte('.')
			i++
			continue
		}
		break
	}
	if i < len(item) {
		if !item[i].isName("as") || i+2 != len(item) || item[i+1].kind != kName {
			r.src.syntaxf(item[i].off, "invalid import")
		}
		alias = item[i+1]
	}
	return b.String(), first, alias
}

// importStmt rewrites "import a, b.c as d, e.f" into
// `a = import_("a"); d = import_("b.c"); e = import_("e"); import_("e.f")`.
func (r *rewriter) importStmt(s []*tok) []*tok {
	kw := s[0]
	items, _ := splitTop(s[1:], ",")
	var out []*tok
	add := func(ts ...*tok) {
		if len(out) == 0 {
			keepGap(ts[0], kw)
		} else {
			out = append(out, opTok(";", ts[0].off, ""))
			ts[0].gap = " "
		}
		out = append(out, ts...)
	}
	for _, item := range items {
		path, first, alias := r.dotted(item, true)
		switch {
		case alias != nil:
			add(nameTok(alias.text, alias.off, ""), opTok("=", kw.off, " "), codeTok(importCall(path), first.off, " "))
		case strings.Contains(path, "."):
			root := path[:strings.IndexByte(path, '.')]
			add(nameTok(root, first.off, ""), opTok("=", kw.off, " "), codeTok(importCall(root), first.off, " "))
			add(codeTok(importCall(path), first.off, ""))
		default:
			add(nameTok(path, first.off, ""), opTok("=", kw.off, " "), codeTok(importCall(path), first.off, " "))
		}
	}
	r.dropToTail(s[1:])
	return out
}

// fromImport rewrites "from m import a, b as c" into
// `a = import_("m", "a"); c = import_("m", "b")`.
func (r *rewriter) fromImport(s []*tok) []*tok {
	kw := s[0]
	imp := topName(s, "import")
	if imp < 0 {
		r.src.syntaxf(kw.off, "from without import")
	}
	if len(s) > 1 && (s[1].isOp(".") || s[1].isOp("...")) {
		r.src.fail(s[1].off, "relative import", "import modules by their absolute name")
	}
	module, _, alias := r.dotted(s[1:imp], true)
	if alias != nil {
		r.src.syntaxf(alias.off, "invalid import")
	}
	names := s[imp+1:]
	if len(names) == 1 && names[0].isOp("*") {
		r.src.fail(names[0].off, "import *", "import the names you use: from "+module+" import a, b")
	}
	if len(names) >= 2 && names[0].isOp("(") && names[len(names)-1].isOp(")") {
		names = names[1 : len(names)-1]
	}
	r.dropToTail(s[1:])
	if module == "__future__" {
		return []*tok{keepGap(nameTok("pass", kw.off, ""), kw)}
	}
	items, _ := splitTop(names, ",")
	if len(items) > 1 && len(items[len(items)-1]) == 0 {
		items = items[:len(items)-1] // trailing comma
	}
	var out []*tok
	for _, item := range items {
		member, first, alias := r.dotted(item, false)
		bind := first
		if alias != nil {
			bind = alias
		}
		n := nameTok(bind.text, bind.off, " ")
		if len(out) == 0 {
			keepGap(n, kw)
		} else {
			out = append(out, opTok(";", bind.off, ""))
		}
		out = append(out, n, opTok("=", kw.off, " "), codeTok(importCall(module, member), first.off, " "))
	}
	return out
}

func importCall(args ...string) string {
	var b strings.Builder
	b.WriteString("import_(")
	for i, a := range args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`"` + a + `"`)
	}
	b.WriteString(")")
	return b.String()
}

// with rewrites "with A as a, B:" into "for a, _ in with_(A, B):".
func (r *rewriter) with(h []*tok) []*tok {
	kw, colon := h[0], h[len(h)-1]
	items := h[1 : len(h)-1]
	if len(items) == 0 {
		r.src.syntaxf(kw.off, "with without a context manager")
	}
	var inside, targets []*tok
	var closeFill *tok
	if items[0].isOp("(") {
		if m := matchBrackets(items); m[0] == len(items)-1 {
			inner := items[1 : len(items)-1]
			if topName(inner, "as") >= 0 || len(topIndices(inner, ",")) > 0 {
				// Parenthesised with items (Python 3.10).
				closeFill = keepLines(items[len(items)-1])
				if f := keepLines(items[0]); f != nil {
					inside = append(inside, f)
				}
				items = inner
			}
		}
	}
	parts, commas := splitTop(items, ",")
	for i, p := range parts {
		if len(p) == 0 {
			if i > 0 && i == len(parts)-1 {
				continue // trailing comma
			}
			r.src.syntaxf(kw.off, "empty with item")
		}
		cm, target := p, []*tok(nil)
		if a := topName(p, "as"); a >= 0 {
			cm, target = p[:a], p[a+1:]
			if len(cm) == 0 || len(target) == 0 {
				r.src.syntaxf(p[a].off, "invalid with item")
			}
			if f := keepLines(p[a]); f != nil {
				inside = append(inside, f)
			}
			if f := keepLines(target[0]); f != nil {
				inside = append(inside, f)
			}
		}
		if len(targets) > 0 {
			targets = append(targets, opTok(",", cm[0].off, ""))
		}
		if target != nil {
			targets = append(targets, withGap(target[0], " "))
			targets = append(targets, target[1:]...)
		} else {
			targets = append(targets, nameTok("_", cm[0].off, " "))
		}
		if len(inside) == 0 && strings.IndexByte(cm[0].gap, '\n') < 0 {
			cm[0] = withGap(cm[0], "")
		}
		inside = append(inside, cm...)
		if i < len(commas) {
			inside = append(inside, commas[i])
		}
	}
	at := items[0].off
	out := []*tok{keepGap(nameTok("for", kw.off, ""), kw)}
	out = append(out, targets...)
	out = append(out, nameTok("in", at, " "), nameTok("with_", at, " "), opTok("(", at, ""))
	out = append(out, inside...)
	if closeFill != nil {
		out = append(out, closeFill)
	}
	return append(out, opTok(")", colon.off, ""), colon)
}

// def strips parameter and return annotations and the positional-only
// marker from a def header.
func (r *rewriter) def(h []*tok) []*tok {
	if len(h) < 5 || h[1].kind != kName || !h[2].isOp("(") {
		r.src.syntaxf(h[0].off, "invalid def")
	}
	m := matchBrackets(h)
	closeAt := m[2]
	if closeAt < 0 {
		r.src.syntaxf(h[2].off, "'(' is never closed")
	}
	drop := make(map[int]bool)
	params := h[3:closeAt]
	idx := func(p []*tok, j int) int { return 3 + int(ptrIndex(params, p[j])) }
	parts, commas := splitTop(params, ",")
	for i, p := range parts {
		if len(p) == 0 {
			continue
		}
		if len(p) == 1 && p[0].isOp("/") {
			drop[idx(p, 0)] = true
			if i < len(commas) {
				drop[3+ptrIndex(params, commas[i])] = true
			} else if i > 0 {
				drop[3+ptrIndex(params, commas[i-1])] = true
			}
			continue
		}
		colon, eq := -1, -1
		topLevel(p, func(j int, t *tok) bool {
			if t.isOp(":") && colon < 0 {
				colon = j
			}
			if t.isOp("=") && eq < 0 {
				eq = j
			}
			return true
		})
		if colon > 0 && (eq < 0 || colon < eq) {
			end := len(p)
			if eq >= 0 {
				end = eq
			}
			for j := colon; j < end; j++ {
				drop[idx(p, j)] = true
			}
		}
	}
	out := make([]*tok, 0, len(h))
	for i, t := range h {
		switch {
		case i > closeAt && i < len(h)-1:
			// Return annotation "-> T".
			if !h[closeAt+1].isOp("->") {
				r.src.syntaxf(t.off, "invalid def")
			}
			r.dropToTail([]*tok{t})
		case drop[i]:
			if f := keepLines(t); f != nil {
				out = append(out, f)
			}
		default:
			out = append(out, t)
		}
	}
	return out
}

// ptrIndex returns the index of t in s.
func ptrIndex(s []*tok, t *tok) int {
	for i, x := range s {
		if x == t {
			return i
		}
	}
	panic("pycompat: token not found")
}
