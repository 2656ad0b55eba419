package script

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"

	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
	"golang.org/x/sync/errgroup"

	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/machine"
	"github.com/vmdriver/vmdriver/report"
)

// DefaultJobs is how many forked subtests run at once when Options.Jobs
// is 0.
const DefaultJobs = 2

var (
	// ErrSubtestsFailed is wrapped by the error of a run with
	// ForkSubtests in which a subtest failed. Each failure has been
	// reported with its subtest already.
	ErrSubtestsFailed = errors.New("forked subtests failed")
	// ErrBetweenSubtests is wrapped by the *ScriptError for a top-level
	// statement between two subtests, which ForkSubtests cannot run: every
	// subtest starts from the state after set-up.
	ErrBetweenSubtests = errors.New("statement between forked subtests")
)

// Brancher is a Logger that gives each forked subtest a log of its own,
// merged into it whole when the subtest ends, so that subtests running
// side by side do not interleave (*report.Logger is one). A forked
// subtest's failures then go to its branch, not to Options.Reporter.
// Without a Brancher, forked subtests log straight into the Logger and
// report to the Reporter.
type Brancher interface {
	Branch() (child *report.Logger, merge func())
}

// localFork is the thread-local key of a forked subtest's *forkState.
const localFork = "vmdriver.fork"

// forkState is what a forked subtest's thread resolves through: its
// clones and its log.
type forkState struct {
	// clones maps each original machine's name to the subtest's clone.
	clones map[string]*machine.Machine
	log    driver.Logger
	rep    Reporter // nil: failures are "!!!" warnings on log
	opened int      // subtest blocks entered on the thread
}

// forkOf returns the fork a thread runs in, or nil (set-up, tail, and
// runs without ForkSubtests).
func forkOf(th *starlark.Thread) *forkState {
	if th == nil {
		return nil
	}
	fs, _ := th.Local(localFork).(*forkState)
	return fs
}

// frozenHint explains, in a forked subtest, an error about a frozen
// value: set-up's values are frozen when the subtests start.
func frozenHint(th *starlark.Thread, err error) string {
	if forkOf(th) == nil || !strings.Contains(errorMessage(err), "frozen") {
		return ""
	}
	return " (with --fork-subtests, the values set-up made are frozen, since every subtest shares them: change a copy, such as list(x) or dict(x))"
}

// machinesOf returns the configured machines as thread th sees them: a
// forked subtest's clones, or the originals.
func (s *Session) machinesOf(th *starlark.Thread) []*machine.Machine {
	ms := s.d.Machines()
	if fs := forkOf(th); fs != nil {
		for i, m := range ms {
			if c := fs.clones[m.Name()]; c != nil {
				ms[i] = c
			}
		}
	}
	return ms
}

// startMachines starts ms in parallel, like Driver.StartAll does for the
// configured machines.
func startMachines(ctx context.Context, log driver.Logger, ms []*machine.Machine) error {
	end := log.Nested("", "start all VMs")
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.Start(ctx) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("failed to start the following machines: %w", err)
	}
	end(err)
	return err
}

// forkPlan is a test script cut for ForkSubtests: set-up, the top-level
// subtests, and the tail after the last one.
type forkPlan struct {
	file     *syntax.File // the whole script, parsed
	setup    []syntax.Stmt
	subtests []forkedSubtest
	tail     []syntax.Stmt
}

// forkedSubtest is one top-level subtest statement.
type forkedSubtest struct {
	stmt syntax.Stmt
	// name is the subtest's name when written as a string literal, else
	// "line N"; it labels the subtest when it fails before it opens.
	name string
	loc  Location // where it starts, in the script as written
}

// part makes a file of some of the script's statements; it keeps their
// positions.
func (p *forkPlan) part(stmts []syntax.Stmt) *syntax.File {
	return &syntax.File{Path: p.file.Path, Stmts: stmts, Options: p.file.Options}
}

// BetweenSubtests is the error message for a statement between two
// subtests of a script run with ForkSubtests.
const BetweenSubtests = "--fork-subtests runs every subtest from the state after set-up; move this statement before the first subtest or into a subtest"

// splitScript cuts the rewritten script f. A top-level subtest is a
// `with` statement (rewritten as `for ... in with_(...)`) one of whose
// context managers is a call to subtest; set-up is everything before the
// first, the tail everything after the last. Any other statement between
// two subtests is an error (all of them are reported).
func splitScript(r *rewritten, f *syntax.File) (*forkPlan, error) {
	p := &forkPlan{file: f}
	first, last := -1, -1
	for i, st := range f.Stmts {
		if _, ok := subtestStmt(st); ok {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		p.setup = f.Stmts
		return p, nil
	}
	var errs []error
	for _, st := range f.Stmts[first : last+1] {
		loc := r.mapPos(syntax.Start(st))
		name, ok := subtestStmt(st)
		if !ok {
			errs = append(errs, &ScriptError{Msg: BetweenSubtests, Location: loc, Err: ErrBetweenSubtests})
			continue
		}
		if name == "" {
			name = "line " + strconv.Itoa(loc.Line)
		}
		p.subtests = append(p.subtests, forkedSubtest{stmt: st, name: name, loc: loc})
	}
	switch len(errs) {
	case 0:
	case 1:
		return nil, errs[0]
	default:
		return nil, errors.Join(errs...)
	}
	p.setup, p.tail = f.Stmts[:first], f.Stmts[last+1:]
	return p, nil
}

// subtestStmt reports whether st is a top-level subtest statement, and
// the subtest's name if it is a string literal.
func subtestStmt(st syntax.Stmt) (name string, ok bool) {
	loop, isFor := st.(*syntax.ForStmt)
	if !isFor {
		return "", false
	}
	call, isCall := loop.X.(*syntax.CallExpr)
	if !isCall || !isIdent(call.Fn, "with_") {
		return "", false
	}
	for _, a := range call.Args {
		if c, ok := a.(*syntax.CallExpr); ok && isIdent(c.Fn, "subtest") {
			return literalName(c), true
		}
	}
	return "", false
}

func isIdent(e syntax.Expr, name string) bool {
	id, ok := e.(*syntax.Ident)
	return ok && id.Name == name
}

// literalName is the name argument of a subtest call when it is a string
// literal (positional or name=), else "".
func literalName(c *syntax.CallExpr) string {
	if len(c.Args) == 0 {
		return ""
	}
	arg := c.Args[0]
	if kw, ok := arg.(*syntax.BinaryExpr); ok && kw.Op == syntax.EQ {
		if !isIdent(kw.X, "name") {
			return ""
		}
		arg = kw.Y
	}
	if lit, ok := arg.(*syntax.Literal); ok && lit.Token == syntax.STRING {
		s, _ := lit.Value.(string)
		return s
	}
	return ""
}

// checkFork checks, before anything runs, that the rewritten script can
// run with ForkSubtests: it cuts it and resolves each part as it will
// run: set-up against the run's globals (isGlobal), each subtest and the
// tail against those plus set-up's. hints lists names for "did you
// mean". It parses its own copy, since resolving annotates the syntax
// tree.
func checkFork(r *rewritten, isGlobal func(string) bool, hints func() []string) error {
	f, err := fileOptions.Parse(r.filename, r.source, 0)
	if err != nil {
		return r.compileError(err, hints)
	}
	p, err := splitScript(r, f)
	if err != nil {
		return err
	}
	notPredeclared := func(string) bool { return false }
	setup := p.part(p.setup)
	if err := resolve.REPLChunk(setup, isGlobal, notPredeclared, starlark.Universe.Has); err != nil {
		return r.compileError(err, hints)
	}
	fromSetup := map[string]bool{}
	for _, b := range setup.Module.(*resolve.Module).Globals {
		fromSetup[b.First.Name] = true
	}
	afterSetup := func(n string) bool { return fromSetup[n] || isGlobal(n) }

	type part struct {
		file *syntax.File
		err  error
	}
	var parts []part
	own := map[string]int{} // a name a subtest binds → the subtest's line
	for _, sub := range p.subtests {
		file := p.part([]syntax.Stmt{sub.stmt})
		err := resolve.REPLChunk(file, afterSetup, notPredeclared, starlark.Universe.Has)
		if m, ok := file.Module.(*resolve.Module); ok {
			for _, b := range m.Globals {
				if _, seen := own[b.First.Name]; !seen && !afterSetup(b.First.Name) {
					own[b.First.Name] = sub.loc.Line
				}
			}
		}
		parts = append(parts, part{file, err})
	}
	tail := p.part(p.tail)
	parts = append(parts, part{tail, resolve.REPLChunk(tail, afterSetup, notPredeclared, starlark.Universe.Has)})

	var errs []error
	for _, pt := range parts {
		var list resolve.ErrorList
		if !errors.As(pt.err, &list) {
			if pt.err != nil {
				errs = append(errs, r.compileError(pt.err, hints))
			}
			continue
		}
		for i, e := range list {
			name, undefined := strings.CutPrefix(e.Msg, "undefined: ")
			if line, ok := own[name]; undefined && ok {
				list[i].Msg = fmt.Sprintf("%s (it is bound only in the subtest at line %d: with --fork-subtests, names a subtest binds are its own)", e.Msg, line)
			}
		}
		errs = append(errs, r.compileError(list, hints))
	}
	return errors.Join(errs...)
}

// runForked runs the configured script with ForkSubtests: set-up on the
// machines, each top-level subtest on clones (at most Jobs at a time),
// then the tail on the machines again.
func (s *Session) runForked(ctx context.Context) error {
	r, err := rewrite(s.opts.Filename, s.opts.Source)
	if err != nil {
		return err
	}
	hints := s.nameList(nil)
	if err := checkFork(r, s.globals.Has, hints); err != nil {
		return err
	}
	f, err := fileOptions.Parse(r.filename, r.source, 0)
	if err != nil {
		return r.compileError(err, hints)
	}
	p, err := splitScript(r, f)
	if err != nil {
		return err
	}
	if len(p.subtests) == 0 {
		s.log.Warn("", "--fork-subtests: the script has no top-level subtest (a `with subtest(...):` statement outside any block), so there is nothing to fork; running it as a whole")
		return s.runWhole(ctx)
	}
	jobs := s.opts.Jobs
	if jobs <= 0 {
		jobs = DefaultJobs
	}
	var (
		mu        sync.Mutex
		scriptErr *ScriptError
	)
	keep := func(se *ScriptError) *ScriptError {
		mu.Lock()
		defer mu.Unlock()
		if scriptErr == nil {
			scriptErr = se
		}
		return se
	}
	err = s.d.Run(ctx, func(ctx context.Context) error {
		globals := maps.Clone(s.globals)
		if err := s.execPart(ctx, "test script set-up", r, p.part(p.setup), globals, nil); err != nil {
			return keep(s.partError(ctx, r, err))
		}
		// Subtests share set-up's values; frozen, they cannot race.
		globals.Freeze()
		failed := s.runSubtests(ctx, r, p, globals, jobs)
		var tailErr error
		if len(p.tail) > 0 && ctx.Err() == nil {
			if err := s.execPart(ctx, "test script tail", r, p.part(p.tail), globals, nil); err != nil {
				tailErr = keep(s.partError(ctx, r, err))
			}
		}
		s.syncMachines(ctx)
		switch {
		case tailErr != nil:
			return tailErr
		case len(failed) > 0:
			return fmt.Errorf("%w: %d of %d (%s)", ErrSubtestsFailed, len(failed), len(p.subtests), strings.Join(failed, ", "))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if se := (*ScriptError)(nil); err != nil && scriptErr != nil && !errors.As(err, &se) {
		return scriptErr
	}
	return err
}

// execPart runs one part of a forked script on a new thread against
// globals, which it updates (REPL style: the part sees the names bound
// before it and may rebind them). fs, if set, makes the thread a forked
// subtest's.
func (s *Session) execPart(ctx context.Context, name string, r *rewritten, file *syntax.File, globals starlark.StringDict, fs *forkState) error {
	return s.exec(ctx, name, r, func(th *starlark.Thread) error {
		if fs != nil {
			th.SetLocal(localFork, fs)
		}
		stateOf(th).testScript = true
		return starlark.ExecREPLChunk(file, th, globals)
	})
}

// partError converts the error of execPart.
func (s *Session) partError(ctx context.Context, r *rewritten, err error) *ScriptError {
	var list resolve.ErrorList
	if errors.As(err, &list) {
		var se *ScriptError
		if errors.As(r.compileError(list, s.nameList(nil)), &se) {
			return se
		}
	}
	return s.scriptError(ctx, r, err)
}

// runSubtests runs the plan's subtests, at most jobs at a time, and
// returns the names of those that failed, in script order. Each subtest's
// log block is merged into the run's in script order (a block waits for
// the blocks before it), so logs and JUnit read the same whatever order
// the subtests finish in.
func (s *Session) runSubtests(ctx context.Context, r *rewritten, p *forkPlan, globals starlark.StringDict, jobs int) []string {
	s.log.Info("", fmt.Sprintf("running %d subtests on clones of the machines, %d at a time", len(p.subtests), jobs))
	errs := make([]error, len(p.subtests))
	merges := make([]chan func(), len(p.subtests))
	for i := range merges {
		merges[i] = make(chan func(), 1)
	}
	var g errgroup.Group
	g.SetLimit(jobs)
	var merger sync.WaitGroup
	merger.Go(func() {
		for _, m := range merges {
			(<-m)()
		}
	})
	for i, sub := range p.subtests {
		g.Go(func() error {
			var merge func()
			merge, errs[i] = s.runSubtest(ctx, r, p, sub, globals)
			merges[i] <- merge
			return nil
		})
	}
	g.Wait()
	merger.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, strconv.Quote(p.subtests[i].name))
		}
	}
	return failed
}

// runSubtest runs one subtest on fresh clones of the machines, logging
// to a branch of the log; it returns what merges that branch.
func (s *Session) runSubtest(ctx context.Context, r *rewritten, p *forkPlan, sub forkedSubtest, globals starlark.StringDict) (merge func(), err error) {
	fs := &forkState{}
	fs.log, fs.rep, merge = s.branch()
	if ctx.Err() != nil {
		err := fmt.Errorf("not run: %w", context.Cause(ctx))
		s.failedUnopened(fs, sub, err, &sub.loc)
		return merge, err
	}
	clones, release, err := s.d.ForkAll(ctx, fs.log)
	if err != nil {
		err = fmt.Errorf("cloning the machines: %w", err)
		s.failedUnopened(fs, sub, err, &sub.loc)
		return merge, err
	}
	// Runs before merge, so the clones' last lines are in the block.
	defer func() {
		if err := release(); err != nil {
			fs.log.Warn("", fmt.Sprintf("releasing the clones of subtest %q: %v", sub.name, err))
		}
	}()
	fs.clones = clones
	err = s.execPart(ctx, "subtest "+sub.name, r, p.part([]syntax.Stmt{sub.stmt}), s.subtestGlobals(globals, fs), fs)
	if err != nil && fs.opened == 0 {
		// It failed before its subtest block opened (in the subtest's
		// arguments, or entering another context manager).
		se := s.partError(ctx, r, err)
		loc := se.Location
		s.failedUnopened(fs, sub, errors.New(se.Msg), &loc)
	}
	return merge, err
}

// branch returns the log and reporter of one forked subtest, and what
// merges them into the run's.
func (s *Session) branch() (driver.Logger, Reporter, func()) {
	if b, ok := s.log.(Brancher); ok {
		child, merge := b.Branch()
		return child, child, merge
	}
	return s.log, s.opts.Reporter, func() {}
}

// failedUnopened reports a subtest that failed before its own block
// opened as a failed subtest, so that it shows in the log and in JUnit.
func (s *Session) failedUnopened(fs *forkState, sub forkedSubtest, err error, loc *Location) {
	end := fs.log.Subtest(sub.name)
	ReportFailure(fs.log, fs.rep, SubtestFailure(sub.name, err.Error()), loc)
	end(err)
}

// subtestGlobals returns a forked subtest's own copy of the globals after
// set-up, where the machine globals set-up left alone name clone-bound
// values (whose data attributes read the clone).
func (s *Session) subtestGlobals(globals starlark.StringDict, fs *forkState) starlark.StringDict {
	g := maps.Clone(globals)
	bound := func(mv *machineValue) *machineValue {
		if c := fs.clones[mv.m.Name()]; c != nil {
			return &machineValue{s: s, m: mv.m, clone: c}
		}
		return mv
	}
	var list []starlark.Value
	for _, m := range s.d.Machines() {
		orig := s.machineValue(m)
		cv := bound(orig)
		list = append(list, cv)
		if name := driver.PythonName(m.Name()); g[name] == starlark.Value(orig) {
			g[name] = cv
		}
	}
	// Values of other types compare unequal without panicking: the
	// originals are pointers.
	if a, ok := g["machine"].(*machineAlias); ok && g["machine"] == s.globals["machine"] {
		g["machine"] = &machineAlias{mv: bound(a.mv), once: a.once}
	}
	if g["machines"] == s.globals["machines"] {
		g["machines"] = starlark.NewList(list)
	}
	if g["driver"] == s.globals["driver"] {
		g["driver"] = s.driverObject(list)
	}
	return g
}
