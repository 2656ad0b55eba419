package pycompat

import "strings"

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
		parts = append(parts, s[start:i:i])
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
