package pycompat

// pyMethods are the methods whose receiver is wrapped in py_(...): Python
// strings and bytes have them (or have them with other rules) where
// Starlark's lack them.
var pyMethods = map[string]bool{"format": true, "decode": true, "encode": true, "expandtabs": true}

// methodPass gives string formatting and conversions Python's meaning:
//
//	"..." % x       fstr_("...") % x     (printf flags, width, precision)
//	r.format(a)     py_(r).format(a)     (format specs; also f-strings)
//	r.decode()      py_(r).decode()      (likewise encode, expandtabs)
//
// Only insertions: the receiver becomes a call, so precedence is kept.
func methodPass(ts []*tok) []*tok {
	need := false
	for i, t := range ts {
		if t.isOp("%") || t.isOp(".") && i+1 < len(ts) && pyMethods[ts[i+1].text] {
			need = true
			break
		}
	}
	if !need {
		return ts
	}
	m := matchBrackets(ts)
	var ed edits
	wrap := func(start, end int, fn string) {
		first := ts[start]
		ed.insertBefore(start, &tok{kind: kName, text: fn, off: first.off, synth: true, gap: first.gap, gapOff: first.gapOff, gapSynth: first.gapSynth},
			opTok("(", first.off, ""))
		ts[start] = withGap(first, "")
		ed.insertAfter(end, opTok(")", ts[end].off, ""))
	}
	for i, t := range ts {
		switch {
		case t.kind == kString && !isBytesLiteral(t) && next(ts, i).isOp("%") && !endsOperand(prev(ts, i)) && !prevIsDot(ts, i) && !wrappedIn(ts, i, "fstr_"):
			wrap(i, i, "fstr_")
		case t.isOp(".") && i+2 < len(ts) && ts[i+1].kind == kName && pyMethods[ts[i+1].text] && ts[i+2].isOp("("):
			end := i - 1
			for end >= 0 && ts[end].kind == kFiller {
				end--
			}
			if start := primaryStart(ts, m, end); start >= 0 && !isCallOf(ts, m, start, end, "py_") {
				wrap(start, end, "py_")
			}
		}
	}
	return ed.apply(ts)
}

// isCallOf reports whether ts[start..end] is the call fn(...), so that
// rewriting rewritten text changes nothing.
func isCallOf(ts []*tok, m []int, start, end int, fn string) bool {
	return ts[start].isName(fn) && start+1 < len(ts) && ts[start+1].isOp("(") && m[start+1] == end
}

// wrappedIn reports whether ts[i] is the only argument of fn(...).
func wrappedIn(ts []*tok, i int, fn string) bool {
	return i >= 2 && ts[i-1].isOp("(") && ts[i-2].isName(fn) && i+1 < len(ts) && ts[i+1].isOp(")")
}

func isBytesLiteral(t *tok) bool {
	return len(t.text) > 0 && (t.text[0] == 'b' || t.text[0] == 'B' || len(t.text) > 1 && (t.text[1] == 'b' || t.text[1] == 'B') && (t.text[0] == 'r' || t.text[0] == 'R'))
}

func prevIsDot(ts []*tok, i int) bool {
	p := prev(ts, i)
	return p != nil && p.isOp(".")
}

// primaryStart returns the index where the primary expression (atom and
// trailers: a.b, f(x), x[i]) that ends at index end begins, or -1 when
// ts[end] ends no primary.
func primaryStart(ts []*tok, m []int, end int) int {
	k := end
	for k >= 0 {
		t := ts[k]
		switch {
		case t.isOp(")") || t.isOp("]") || t.isOp("}"):
			if m[k] < 0 {
				return -1
			}
			k = m[k]
		case t.kind == kName && endsOperand(t), t.kind == kNumber, t.kind == kString, t.kind == kCode:
		default:
			return -1
		}
		p := k - 1
		for p >= 0 && ts[p].kind == kFiller {
			p--
		}
		if p < 0 {
			return k
		}
		switch {
		case (ts[k].isOp("(") || ts[k].isOp("[")) && endsOperand(ts[p]):
			k = p // a call or a subscript: its callee goes with it
		case ts[k].kind == kName && ts[p].isOp("."):
			k = p - 1 // an attribute: its object goes with it
			for k >= 0 && ts[k].kind == kFiller {
				k--
			}
		default:
			return k
		}
	}
	return -1
}
