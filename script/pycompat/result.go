package pycompat

import (
	"sort"
	"unicode/utf8"
)

// Result is a rewritten script.
type Result struct {
	// Source is the Starlark text, to be parsed with FileOptions().
	Source []byte

	src      *source
	outLines []int     // byte offset of the start of each line of Source
	segs     []segment // sorted by out
}

// segment maps the output from byte offset out (up to the next segment)
// to the original: verbatim segments are copies of the original starting
// at orig; the rest was synthesised and maps to orig as a whole.
type segment struct {
	out, orig int
	verbatim  bool
}

// Pos maps a position (line, col, 1-based; col in runes, as Starlark
// reports them) in Source back to the original script. Positions inside
// text copied from the original map exactly; positions inside rewritten
// text map to the start of the construct it came from.
func (r *Result) Pos(line, col int) (origLine, origCol int) {
	if len(r.outLines) == 0 {
		return line, col
	}
	line = max(1, min(line, len(r.outLines)))
	off := r.outLines[line-1]
	for n := 1; n < col && off < len(r.Source) && r.Source[off] != '\n'; n++ {
		_, size := utf8.DecodeRune(r.Source[off:])
		off += size
	}
	i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].out > off }) - 1
	if i < 0 {
		return r.src.position(0)
	}
	s := r.segs[i]
	orig := s.orig
	if s.verbatim {
		orig += off - s.out
	}
	return r.src.position(orig)
}

// emitter accumulates the output and its segment table.
type emitter struct {
	buf  []byte
	segs []segment
}

// verbatim appends text copied from the original at off.
func (e *emitter) verbatim(text string, off int) {
	if text == "" {
		return
	}
	if n := len(e.segs); n > 0 {
		if last := e.segs[n-1]; last.verbatim && last.orig+len(e.buf)-last.out == off {
			e.buf = append(e.buf, text...)
			return
		}
	}
	e.segs = append(e.segs, segment{out: len(e.buf), orig: off, verbatim: true})
	e.buf = append(e.buf, text...)
}

// synth appends rewritten text that stands for the original at off.
func (e *emitter) synth(text string, off int) {
	if text == "" {
		return
	}
	if n := len(e.segs); n > 0 {
		if last := e.segs[n-1]; !last.verbatim && last.orig == off {
			e.buf = append(e.buf, text...)
			return
		}
	}
	e.segs = append(e.segs, segment{out: len(e.buf), orig: off})
	e.buf = append(e.buf, text...)
}

// tok appends a token with its gap.
func (e *emitter) tok(t *tok) {
	if t.gapSynth {
		e.synth(t.gap, t.off)
	} else {
		e.verbatim(t.gap, t.gapOff)
	}
	if t.synth {
		e.synth(t.text, t.off)
	} else {
		e.verbatim(t.text, t.off)
	}
}

func (e *emitter) toks(ts []*tok) {
	for _, t := range ts {
		e.tok(t)
	}
}

// endsLine reports whether the output is empty or ends with a newline.
func (e *emitter) endsLine() bool {
	return len(e.buf) == 0 || e.buf[len(e.buf)-1] == '\n'
}

// result finishes the output.
func (e *emitter) result(src *source) *Result {
	r := &Result{Source: e.buf, src: src, segs: e.segs, outLines: make([]int, 1, len(src.lines)+8)}
	for i, c := range e.buf {
		if c == '\n' {
			r.outLines = append(r.outLines, i+1)
		}
	}
	return r
}
