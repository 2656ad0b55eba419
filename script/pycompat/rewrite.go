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
			r.logicalLine(toks[start : i+1 : i+1]) // capped: appends must not run into the next line
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
	body := line[: len(line)-1 : len(line)-1]
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
	header, rest := body[:colon+1:colon+1], body[colon+1:]
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
