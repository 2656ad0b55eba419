package pycompat

import (
	"strconv"
	"strings"
)

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
	eqs := topIndices(s, "=")
	if len(eqs) > 1 {
		return r.chainedAssign(s, eqs)
	}
	if len(eqs) == 1 {
		if out, ok := starredAssign(s, eqs[0]); ok {
			return out
		}
	}
	return s
}

// starredAssign rewrites "a, *b, c = v" into "a, b, c = unpack_(v, 1, 1)":
// the names before and after the starred one take one item each, the
// starred one a list of the rest. Targets other than plain names are left
// for starPass to report.
func starredAssign(s []*tok, eq int) ([]*tok, bool) {
	star, before, after := -1, 0, 0
	for i := 0; i < eq; i++ {
		t := s[i]
		switch {
		case t.kind == kFiller, t.isOp(","):
		case t.isOp("*") && star < 0 && i+1 < eq && s[i+1].kind == kName:
			star = i
		case t.kind == kName && !pyKeywords[t.text]:
			if star >= 0 && i > star+1 {
				after++
			} else if star < 0 {
				before++
			}
		default:
			return s, false
		}
	}
	last := len(s) - 1
	for last > eq && s[last].kind == kFiller {
		last--
	}
	if star < 0 || last == eq {
		return s, false
	}
	out := make([]*tok, 0, len(s)+8)
	out = append(out, s[:star]...)
	out = append(out, withGap(s[star+1], s[star].gap))
	out = append(out, s[star+2:eq+1]...)
	rhs := s[eq+1]
	out = append(out, &tok{kind: kName, text: "unpack_", off: rhs.off, synth: true, gap: rhs.gap, gapOff: rhs.gapOff, gapSynth: rhs.gapSynth},
		opTok("(", rhs.off, ""), withGap(rhs, ""))
	out = append(out, s[eq+2:last+1]...)
	end := s[last].off
	out = append(out, opTok(",", end, ""), codeTok(strconv.Itoa(before), end, " "), opTok(",", end, ""), codeTok(strconv.Itoa(after), end, " "), opTok(")", end, ""))
	return append(out, s[last+1:]...), true
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
func (r *rewriter) dotted(item []*tok, at int, allowDots bool) (path string, first, alias *tok) {
	if len(item) == 0 {
		r.src.syntaxf(at, "invalid import: expected a name")
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
		path, first, alias := r.dotted(item, kw.off, true)
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
	module, _, alias := r.dotted(s[1:imp], kw.off, true)
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
		member, first, alias := r.dotted(item, s[imp].off, false)
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
