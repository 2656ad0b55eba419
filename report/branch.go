package report

import (
	"io"
	"sync"
)

// branch is the state of a Logger made by Branch.
type branch struct {
	parent *Logger
	recs   []heldRecord // held until merge, in order
	merged bool
}

// heldRecord is a record a branch holds until merge.
type heldRecord struct {
	r       record
	show    bool // shown on Out (serial lines may be hidden)
	outside bool // logged outside any subtest of the branch
}

// Branch returns a child Logger for work that runs in parallel with the
// rest of the run, such as a forked subtest, so that parallel work does
// not interleave in the log. The child has l's options and clock and
// starts with l's serial setting; it records everything as l would, but
// holds what it would write to Out. merge writes the held records to l's
// Out at once, as one block indented at l's current depth, and hands the
// child's subtests to l's JUnit report (nested under l's open subtest,
// if any). Call merge once the child's blocks have ended: a block still
// open at merge is reported unfinished (a subtest fails in JUnit).
// Records logged to the child after merge go straight to l. merge may be
// called from any goroutine; calls after the first do nothing.
func (l *Logger) Branch() (child *Logger, merge func()) {
	l.mu.Lock()
	serial := l.serial
	l.mu.Unlock()
	c := &Logger{
		out:    io.Discard,
		format: l.format,
		color:  l.color,
		level:  l.level,
		junit:  l.junit,
		name:   l.name,
		now:    l.now,
		serial: serial,
		branch: &branch{parent: l},
	}
	c.start = c.now()
	var once sync.Once
	return c, func() { once.Do(c.merge) }
}

// mergedInto returns the Logger a merged branch forwards to, or nil.
func (l *Logger) mergedInto() *Logger {
	if l.branch == nil { // set only by Branch, before l is shared
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.branch != nil && l.branch.merged {
		return l.branch.parent
	}
	return nil
}

// merge hands the branch's records and subtests to its parent. Locks are
// taken child first, then parent, the only order ever used.
func (l *Logger) merge() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.branch.merged = true
	recs := l.branch.recs
	l.branch.recs = nil
	subs := l.subs
	l.subs = nil
	l.branch.parent.absorb(recs, subs, l.mainFailure)
}

// absorb takes a merged branch's records, subtests and failure outside
// subtests, as if they had been logged to l now, at l's current depth.
func (l *Logger) absorb(recs []heldRecord, subs []*subtest, mainFailure *string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.branch != nil && l.branch.merged {
		// l is a branch merged meanwhile: pass everything on.
		l.branch.parent.absorb(recs, subs, mainFailure)
		return
	}
	depth := len(l.stack)
	cur := l.currentSubtest()
	for _, h := range recs {
		r := h.r
		r.depth += depth
		switch {
		case l.branch != nil:
			l.branch.recs = append(l.branch.recs, heldRecord{r: r, show: h.show, outside: h.outside && cur == nil})
		case h.show:
			l.writeOut(r)
		}
		// Lines inside the branch's subtests are in their JUnit output
		// already; the others belong where l is now.
		if l.junit && h.outside {
			sb, base := &l.mainOut, 0
			if cur != nil {
				sb, base = &cur.out, cur.depth
			}
			l.jbuf = appendText(l.jbuf[:0], r, max(r.depth-base, 0), false)
			sb.Write(l.jbuf)
		}
	}
	for _, s := range subs {
		if cur != nil {
			s.name = cur.name + "/" + s.name
			if s.parent == nil {
				s.parent = cur
				cur.children = append(cur.children, s)
			}
		}
		l.subs = append(l.subs, s)
	}
	if mainFailure != nil && cur == nil && l.mainFailure == nil {
		l.mainFailure = mainFailure
	}
}
