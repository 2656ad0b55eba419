package pycompat

import (
	"strings"
)

// expr applies the expression-level rewrites to the tokens of a line (or
// of an f-string replacement field).
func (r *rewriter) expr(ts []*tok) []*tok {
	r.tokenPass(ts)
	ts = r.stringPass(ts)
	ts = isPass(ts)
	ts = bracketPass(ts)
	r.starPass(ts)
	ts = r.chainPass(ts)
	return methodPass(ts)
}

// tokenPass rewrites single tokens in place: string literals, numbers,
// "load", and rejects operators Starlark lacks.
func (r *rewriter) tokenPass(ts []*tok) {
	for _, t := range ts {
		switch t.kind {
		case kName:
			switch t.text {
			case "load":
				t.text, t.synth = "load_", true
			case "yield":
				r.src.fail(t.off, "yield", msgYield)
			case "async", "await":
				r.src.fail(t.off, "async/await", msgAsync)
			}
		case kString:
			r.fixString(t)
		case kNumber:
			last := t.text[len(t.text)-1]
			if last == 'j' || last == 'J' {
				r.src.fail(t.off, "complex number", "use floats")
			}
			if strings.IndexByte(t.text, '_') >= 0 {
				t.text, t.synth = strings.ReplaceAll(t.text, "_", ""), true
			}
		case kOp:
			switch t.text {
			case ":=":
				r.src.fail(t.off, "assignment expression (:=)", msgWalrus)
			case "...":
				r.src.fail(t.off, "Ellipsis (...)", "use pass or None")
			case "@", "@=":
				r.src.fail(t.off, "the @ operator", "call a function instead")
			case "!":
				r.src.syntaxf(t.off, "unexpected '!'")
			}
		}
	}
}

func isStr(t *tok) bool { return t.kind == kString || t.kind == kFString }

// stringPass converts f-strings and turns implicitly concatenated string
// literals into a parenthesised sum.
func (r *rewriter) stringPass(ts []*tok) []*tok {
	n := 0
	for _, t := range ts {
		if t.kind == kFString {
			n++
		}
	}
	if n == 0 {
		for i := 1; i < len(ts); i++ {
			if isStr(ts[i]) && isStr(ts[i-1]) {
				n++
			}
		}
		if n == 0 {
			return ts
		}
	}
	out := make([]*tok, 0, len(ts)+8*n)
	for i := 0; i < len(ts); {
		if !isStr(ts[i]) {
			out = append(out, ts[i])
			i++
			continue
		}
		j := i + 1
		for j < len(ts) && isStr(ts[j]) {
			j++
		}
		if j-i == 1 {
			out = append(out, r.str(ts[i])...)
			i = j
			continue
		}
		first := ts[i]
		out = append(out, &tok{kind: kOp, text: "(", off: first.off, synth: true, gap: first.gap, gapOff: first.gapOff, gapSynth: first.gapSynth})
		for k := i; k < j; k++ {
			part := r.str(ts[k])
			if k == i {
				part[0] = withGap(part[0], "")
			}
			out = append(out, part...)
			if k < j-1 {
				out = append(out, opTok("+", ts[k+1].off, " "))
			}
		}
		out = append(out, opTok(")", ts[j-1].off, ""))
		i = j
	}
	return out
}

// str returns the tokens for one string literal.
func (r *rewriter) str(t *tok) []*tok {
	if t.kind != kFString {
		return []*tok{t}
	}
	out := r.format(t.fs.parts, t.fs.quote, t.fs.raw, t.off)
	keepGap(out[0], t)
	if want, have := strings.Count(t.text, "\n"), countNewlines(out); have < want && len(out) > 1 {
		// Line breaks between the fields' tokens went missing (they were
		// in the gap before a '}'); keep the line count inside the call.
		fill := &tok{kind: kFiller, text: strings.Repeat("\n", want-have), off: t.off, synth: true, gapSynth: true}
		out = append(out[:len(out)-1], fill, out[len(out)-1])
	}
	return out
}

func countNewlines(ts []*tok) int {
	n := 0
	for _, t := range ts {
		n += strings.Count(t.gap, "\n") + strings.Count(t.text, "\n")
	}
	return n
}

var braceUnescaper = strings.NewReplacer("{{", "{", "}}", "}")

// format turns f-string parts into `"...".format(...)` tokens (or a plain
// string literal when there are no fields).
func (r *rewriter) format(parts []fpart, quote string, raw bool, off int) []*tok {
	var lit strings.Builder
	var args [][]*tok
	for _, p := range parts {
		if p.field == nil {
			text := p.lit
			if !raw {
				text, _ = r.fixEscapes(text, false, p.off)
			}
			lit.WriteString(text)
			continue
		}
		f := p.field
		if f.debug != "" {
			lit.WriteString(escapeLiteral(f.debug, quote, raw))
		}
		arg := r.expr(f.expr)
		if len(topIndices(arg, ",")) > 0 || arg[0].isOp("*") {
			arg = wrap(arg, "", f.off)
		}
		conv := f.conv
		if conv == 0 && f.debug != "" && !f.hasSpec {
			conv = 'r'
		}
		if f.hasSpec {
			switch conv {
			case 'r', 'a':
				arg = wrap(arg, "repr", f.off)
			case 's':
				arg = wrap(arg, "str", f.off)
			}
			spec := r.format(f.spec, quote, raw, f.off)
			call := []*tok{nameTok("fmt_", f.off, ""), opTok("(", f.off, "")}
			call = append(call, spec...)
			call = append(call, opTok(",", f.off, ""))
			call = append(call, withGap(arg[0], " "))
			call = append(call, arg[1:]...)
			arg = append(call, opTok(")", f.off, ""))
			lit.WriteString("{}")
		} else {
			switch conv {
			case 'r', 'a':
				lit.WriteString("{!r}")
			case 's':
				lit.WriteString("{!s}")
			default:
				lit.WriteString("{}")
			}
		}
		args = append(args, arg)
	}
	s := lit.String()
	if len(args) == 0 {
		s = braceUnescaper.Replace(s)
	}
	prefix := ""
	if raw {
		prefix = "r"
	}
	strTok := &tok{kind: kString, text: prefix + quote + s + quote, off: off, synth: true, gapSynth: true}
	if len(args) == 0 {
		return []*tok{strTok}
	}
	out := []*tok{strTok, opTok(".", off, ""), nameTok("format", off, ""), opTok("(", off, "")}
	for i, a := range args {
		if i > 0 {
			out = append(out, opTok(",", off, ""))
			if a[0].gap == "" {
				a[0] = withGap(a[0], " ")
			}
		}
		out = append(out, a...)
	}
	return append(out, opTok(")", off, ""))
}

// wrap returns fn(ts...) (or (ts...) when fn is "").
func wrap(ts []*tok, fn string, off int) []*tok {
	out := make([]*tok, 0, len(ts)+3)
	if fn != "" {
		out = append(out, nameTok(fn, off, ""))
	}
	out = append(out, opTok("(", off, ""))
	out = append(out, ts...)
	return append(out, opTok(")", off, ""))
}

// escapeLiteral quotes source text for use inside a format string literal.
func escapeLiteral(text, quote string, raw bool) string {
	var b strings.Builder
	for _, c := range text {
		switch {
		case c == '{':
			b.WriteString("{{")
		case c == '}':
			b.WriteString("}}")
		case raw:
			b.WriteRune(c)
		case c == '\\':
			b.WriteString(`\\`)
		case c == rune(quote[0]):
			b.WriteByte('\\')
			b.WriteRune(c)
		case c == '\n' && len(quote) == 1:
			b.WriteString(`\n`)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// isPass rewrites "is" to "==" and "is not" to "!=".
func isPass(ts []*tok) []*tok {
	for i := 0; i < len(ts); i++ {
		t := ts[i]
		if !t.isName("is") {
			continue
		}
		t.kind, t.synth = kOp, true
		if i+1 < len(ts) && ts[i+1].isName("not") {
			t.text = "!="
			not := ts[i+1]
			if f := keepLines(not); f != nil {
				ts[i+1] = f
			} else {
				ts = append(ts[:i+1], ts[i+2:]...)
			}
		} else {
			t.text = "=="
		}
	}
	return ts
}

// prev returns the token before index i, skipping fillers.
func prev(ts []*tok, i int) *tok {
	for i--; i >= 0; i-- {
		if ts[i].kind != kFiller {
			return ts[i]
		}
	}
	return nil
}

// next returns the token after index i, skipping fillers.
func next(ts []*tok, i int) *tok {
	for i++; i < len(ts); i++ {
		if ts[i].kind != kFiller {
			return ts[i]
		}
	}
	return nil
}

// endsOperand reports whether t can end an operand, so that a following
// '(' is a call, '[' a subscript and '*' a multiplication.
func endsOperand(t *tok) bool {
	if t == nil {
		return false
	}
	switch t.kind {
	case kName:
		return !pyKeywords[t.text] || t.text == "True" || t.text == "False" || t.text == "None"
	case kNumber, kString, kFString, kCode:
		return true
	case kOp:
		return t.text == ")" || t.text == "]" || t.text == "}"
	}
	return false
}

// edits collects insertions into a token list, by index.
type edits struct {
	before, after map[int][]*tok
}

func (e *edits) insertBefore(i int, ts ...*tok) {
	if e.before == nil {
		e.before = make(map[int][]*tok)
	}
	e.before[i] = append(e.before[i], ts...)
}

func (e *edits) insertAfter(i int, ts ...*tok) {
	if e.after == nil {
		e.after = make(map[int][]*tok)
	}
	e.after[i] = append(ts, e.after[i]...)
}

func (e *edits) apply(ts []*tok) []*tok {
	if e.before == nil && e.after == nil {
		return ts
	}
	out := make([]*tok, 0, len(ts)+len(e.before)*4+len(e.after)*2)
	for i, t := range ts {
		out = append(out, e.before[i]...)
		out = append(out, t)
		out = append(out, e.after[i]...)
	}
	return out
}

// bracketPass turns a generator expression into a list comprehension
// (f(x for x in y) → f([x for x in y])) and set displays into set([...]).
func bracketPass(ts []*tok) []*tok {
	need := false
	for _, t := range ts {
		if t.isName("for") || t.isOp("{") {
			need = true
			break
		}
	}
	if !need {
		return ts
	}
	m := matchBrackets(ts)
	var ed edits
	for i, t := range ts {
		if t.kind != kOp || m[i] < 0 {
			continue
		}
		j := m[i]
		switch t.text {
		case "(":
			if !hasTop(ts, m, i, j, func(k int) bool { return ts[k].isName("for") }) {
				continue
			}
			if endsOperand(prev(ts, i)) {
				ed.insertAfter(i, opTok("[", t.off, ""))
				ed.insertBefore(j, opTok("]", ts[j].off, ""))
			} else {
				t.text, t.synth = "[", true
				ts[j].text, ts[j].synth = "]", true
			}
		case "{":
			if next(ts, i) == ts[j] {
				continue // {} is a dict
			}
			isDict := hasTop(ts, m, i, j, func(k int) bool {
				if ts[k].isOp(":") {
					return true
				}
				p := prev(ts, k)
				return ts[k].isOp("**") && (p == t || p.isOp(","))
			})
			if isDict {
				continue
			}
			t.kind, t.text, t.synth = kName, "set", true
			ed.insertAfter(i, opTok("(", t.off, ""), opTok("[", t.off, ""))
			ts[j].text, ts[j].synth = "]", true
			ed.insertAfter(j, opTok(")", ts[j].off, ""))
		}
	}
	return ed.apply(ts)
}

// hasTop reports whether pred holds for a token directly inside the
// brackets at i and j (not nested deeper).
func hasTop(ts []*tok, m []int, i, j int, pred func(k int) bool) bool {
	for k := i + 1; k < j; k++ {
		if m[k] > k {
			k = m[k]
			continue
		}
		if ts[k].kind != kFiller && pred(k) {
			return true
		}
	}
	return false
}

// starPass rejects unpacking outside calls and parameter lists, and the
// power operator.
func (r *rewriter) starPass(ts []*tok) {
	need := false
	for _, t := range ts {
		if t.isOp("*") || t.isOp("**") {
			need = true
			break
		}
	}
	if !need {
		return
	}
	type ctx struct{ open, lambdas int }
	stack := []ctx{{open: -1}}
	for i, t := range ts {
		top := &stack[len(stack)-1]
		if t.isName("lambda") {
			top.lambdas++
		}
		if t.kind != kOp {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, ctx{open: i})
		case ")", "]", "}":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case ":":
			if top.lambdas > 0 {
				top.lambdas--
			}
		case "*", "**":
			if endsOperand(prev(ts, i)) {
				if t.text == "**" {
					r.src.fail(t.off, "the ** operator", "use math.pow(x, y) or multiply")
				}
				continue
			}
			if top.lambdas > 0 {
				continue
			}
			if o := top.open; o >= 0 && ts[o].text == "(" && endsOperand(prev(ts, o)) {
				continue // a call, or a def's parameters
			}
			if t.text == "*" {
				r.src.fail(t.off, "star unpacking (*x)", "use list concatenation (a + b) or list(x)")
			}
			r.src.fail(t.off, "dict unpacking (**d)", "use dict(d, key=value) or d.update(other)")
		}
	}
}

var chainBoundaryNames = map[string]bool{
	"and": true, "or": true, "if": true, "else": true, "for": true, "lambda": true, "return": true,
	"yield": true, "assert": true, "while": true, "elif": true, "del": true, "with": true,
	"import": true, "from": true, "raise": true, "await": true, "async": true, "pass": true,
	"def": true, "global": true, "nonlocal": true, "class": true, "as": true,
}

// compOp returns the number of tokens of the comparison operator at i (0
// if there is none).
func compOp(ts []*tok, i int) int {
	t := ts[i]
	switch t.kind {
	case kOp:
		switch t.text {
		case "<", ">", "<=", ">=", "==", "!=":
			return 1
		}
	case kName:
		switch t.text {
		case "in":
			return 1
		case "not", "is":
			if n := next(ts, i); n != nil && (t.text == "not" && n.isName("in") || t.text == "is" && n.isName("not")) {
				return ptrIndex(ts[i:], n) + 1
			}
			if t.text == "is" {
				return 1
			}
		}
	}
	return 0
}

// chainPass rewrites chained comparisons a < b < c into (a < b and b < c)
// when the middle operands are plain names or literals.
func (r *rewriter) chainPass(ts []*tok) []*tok {
	n := 0
	for i := range ts {
		if compOp(ts, i) > 0 {
			n++
		}
	}
	if n < 2 {
		return ts
	}
	m := matchBrackets(ts)
	var ed edits
	r.chainRegion(ts, m, -1, len(ts), &ed)
	return ed.apply(ts)
}

type span struct{ s, e int } // token indices, inclusive

func (r *rewriter) chainRegion(ts []*tok, m []int, lo, hi int, ed *edits) {
	var seg []span
	var ops []int // indices into seg
	forPending := false
	flush := func() {
		if len(ops) >= 2 {
			r.chain(ts, seg, ops, ed)
		}
		seg, ops = seg[:0], ops[:0]
	}
	for k := lo + 1; k < hi; k++ {
		t := ts[k]
		if t.kind == kFiller {
			continue
		}
		if m[k] > k {
			r.chainRegion(ts, m, k, m[k], ed)
			seg = append(seg, span{k, m[k]})
			k = m[k]
			continue
		}
		boundary := false
		switch t.kind {
		case kNewline, kEOF:
			boundary = true
		case kOp:
			switch t.text {
			case ",", ";", ":", "=", "->", ":=", ")", "]", "}":
				boundary = true
			default:
				boundary = len(t.text) >= 2 && strings.HasSuffix(t.text, "=") && compOp(ts, k) == 0
			}
		case kName:
			switch {
			case t.text == "for":
				forPending, boundary = true, true
			case t.text == "in" && forPending:
				forPending, boundary = false, true
			case t.text == "not":
				boundary = compOp(ts, k) == 0
			default:
				boundary = chainBoundaryNames[t.text]
			}
		}
		if boundary {
			flush()
			continue
		}
		if n := compOp(ts, k); n > 0 {
			ops = append(ops, len(seg))
			seg = append(seg, span{k, k + n - 1})
			k += n - 1
			continue
		}
		seg = append(seg, span{k, k})
	}
	flush()
}

// chain rewrites one chained comparison.
func (r *rewriter) chain(ts []*tok, seg []span, ops []int, ed *edits) {
	start, end := seg[0].s, seg[len(seg)-1].e
	if ops[0] == 0 || ops[len(ops)-1] == len(seg)-1 {
		return // malformed; Starlark will report it
	}
	for k := 1; k < len(ops); k++ {
		from, to := seg[ops[k-1]+1].s, seg[ops[k]-1].e
		mid := make([]*tok, 0, to-from+1)
		for _, t := range ts[from : to+1] {
			if t.kind != kFiller {
				mid = append(mid, t)
			}
		}
		if !simpleOperand(mid) {
			r.src.fail(ts[start].off, "chained comparison", "write (a < b and b < c), with the middle value in a variable")
		}
		ins := []*tok{nameTok("and", mid[0].off, " ")}
		for i, t := range mid {
			c := *t
			if i == 0 {
				c.gap, c.gapSynth = " ", true
			}
			ins = append(ins, &c)
		}
		ed.insertBefore(seg[ops[k]].s, ins...)
	}
	first := ts[start]
	ed.insertBefore(start, &tok{kind: kOp, text: "(", off: first.off, synth: true, gap: first.gap, gapOff: first.gapOff, gapSynth: first.gapSynth})
	ts[start] = withGap(first, "")
	ed.insertAfter(end, opTok(")", ts[end].off, ""))
}

// simpleOperand reports whether evaluating ts twice is harmless: names,
// literals, attributes, subscripts and len/int/float/str/abs/ord/lower
// calls of such operands, and their negation.
func simpleOperand(ts []*tok) bool {
	end, ok := simplePrimary(ts, 0)
	return ok && end == len(ts)
}

var pureFuncs = map[string]bool{"len": true, "int": true, "float": true, "str": true, "abs": true, "ord": true}

// simplePrimary parses a simple operand at ts[i:] and returns where it ends.
func simplePrimary(ts []*tok, i int) (int, bool) {
	if i >= len(ts) {
		return i, false
	}
	t := ts[i]
	switch {
	case t.isOp("-") || t.isOp("+"):
		return simplePrimary(ts, i+1)
	case t.kind == kNumber, t.kind == kString && !strings.Contains(t.text, "\n"):
		return i + 1, true
	case t.kind == kName && pureFuncs[t.text] && i+1 < len(ts) && ts[i+1].isOp("("):
		end, ok := simplePrimary(ts, i+2)
		if !ok || end >= len(ts) || !ts[end].isOp(")") {
			return end, false
		}
		i = end + 1
	case endsOperand(t) && t.kind == kName:
		i++
	default:
		return i, false
	}
	for i < len(ts) {
		switch {
		case ts[i].isOp(".") && i+1 < len(ts) && ts[i+1].kind == kName && !pyKeywords[ts[i+1].text]:
			i += 2
		case ts[i].isOp("["):
			end, ok := simplePrimary(ts, i+1)
			if !ok || end >= len(ts) || !ts[end].isOp("]") {
				return end, false
			}
			i = end + 1
		default:
			return i, true
		}
	}
	return i, true
}
