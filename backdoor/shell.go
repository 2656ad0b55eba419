package backdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"
)

// defaultHeldWarning is RunOptions.HeldWarning when unset.
const defaultHeldWarning = 3 * time.Second

// impl is the unexported machinery behind Shell.
//
// Three goroutines serve a shell. The reader reads conn and parses what it
// read at once, then reads again: QEMU's virtconsole drops guest output
// when the host reads slowly, so the reader never waits for anything but
// the connection (the parser does no I/O and is much faster than any
// console, and callers hold mu only briefly). The notifier runs the
// WithLogf/WithPreBanner callbacks from an unbounded queue, so slow
// callbacks cannot slow the reads down either. The writer performs
// writes, so that a write cut short by a caller's deadline still
// completes and never leaves half a command in the guest's script.
//
// Every banner starts a new epoch: a new guest shell that needs the
// prelude, which the reader queues at once. Commands belong to the epoch
// they were registered in; the writer drops those of an earlier epoch, and
// the parser fails them when the banner arrives.
type impl struct {
	conn net.Conn
	cfg  config

	// reader → notifier
	nmu   sync.Mutex
	notes []note
	nsig  chan struct{} // cap 1

	// parser state and everything below, guarded by mu
	mu         sync.Mutex
	p          *parser
	changed    chan struct{} // closed and replaced whenever p advances
	closedCh   chan struct{} // closed when the connection has ended
	closeErr   error
	nextID     uint64
	epoch      int      // guest shells seen: banners (WithoutBanner counts one)
	banners    int      // p.banners already counted in epoch
	need       int      // the epoch readiness waits for (ExpectRestart raises it)
	setupEpoch int      // the epoch whose shell acknowledged the set-up
	setup      *command // the set-up request in flight, if any

	runLock chan struct{} // cap 1: held by the one Run talking to the guest

	// writer
	wmu     sync.Mutex
	wq      []*writeJob
	wclosed bool          // the writer has exited
	wsig    chan struct{} // cap 1

	closing   chan struct{} // closed by close
	closeOnce sync.Once
	wg        sync.WaitGroup
}

type writeJob struct {
	data    []byte
	epoch   int  // written only while this is the current epoch; 0: always
	async   bool // nobody waits: a failure closes the connection
	started bool // guarded by wmu
	dropped bool // not written: its epoch had passed
	err     error
	done    chan struct{}
}

func newShell(conn net.Conn, c config) *Shell {
	s := &Shell{}
	m := &s.impl
	m.conn = conn
	m.cfg = c
	m.nsig = make(chan struct{}, 1)
	m.p = newParser(c.ready)
	m.changed = make(chan struct{})
	m.need = 1
	if c.ready {
		m.epoch = 1
	}
	m.closedCh = make(chan struct{})
	// Start the ids at a random point so that replies to an earlier
	// Shell's commands (say, in flight when a snapshot was taken) cannot be
	// mistaken for ours.
	m.nextID = uint64(rand.Uint32()) + 1
	m.runLock = make(chan struct{}, 1)
	m.wsig = make(chan struct{}, 1)
	m.closing = make(chan struct{})
	m.wg.Add(3)
	go m.readLoop()
	go m.notifyLoop()
	go m.writeLoop()
	return s
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// readLoop reads and parses until the connection fails.
func (m *impl) readLoop() {
	defer m.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := m.conn.Read(buf)
		if n > 0 {
			m.mu.Lock()
			m.p.feed(buf[:n])
			m.afterFeed()
			notes := m.p.notes
			m.p.notes = nil
			if m.p.changed {
				m.p.changed = false
				close(m.changed)
				m.changed = make(chan struct{})
			}
			m.mu.Unlock()
			if len(notes) > 0 {
				m.nmu.Lock()
				m.notes = append(m.notes, notes...)
				m.nmu.Unlock()
				signal(m.nsig)
			}
		}
		if err != nil {
			m.finish(err)
			return
		}
	}
}

// afterFeed moves the set-up along after the parser saw banners or acks;
// m.mu must be held.
func (m *impl) afterFeed() {
	if m.p.banners > m.banners {
		// A new guest shell (the parser has failed what the old one had).
		m.epoch += m.p.banners - m.banners
		m.banners = m.p.banners
		m.setup = nil
		m.startSetup(true)
	}
	if s := m.setup; s != nil && s.ended {
		m.setup = nil
		switch {
		case s.epoch != m.epoch:
		case s.ack == "!":
			// The restored shell lacks this version's prelude.
			m.startSetup(true)
		default:
			m.setupEpoch = m.epoch
		}
	}
}

// startSetup queues the prelude (full) or the rebaseline request for the
// current epoch; m.mu must be held.
func (m *impl) startSetup(full bool) {
	c := m.register("", kindSetup)
	m.setup = c
	text := rebaselineRequest(c.id)
	if full {
		text = prelude(c.id)
	}
	job := &writeJob{data: []byte(text), epoch: c.epoch, async: true, done: make(chan struct{})}
	m.wmu.Lock()
	if !m.wclosed {
		m.wq = append(m.wq, job)
	}
	m.wmu.Unlock()
	signal(m.wsig)
}

// notifyLoop runs the callbacks, in order, until the connection has ended
// and every note was delivered.
func (m *impl) notifyLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.nsig:
		case <-m.closedCh:
		}
		m.nmu.Lock()
		notes := m.notes
		m.notes = nil
		m.nmu.Unlock()
		m.deliver(notes)
		if len(notes) == 0 && m.closedNow() {
			return
		}
	}
}

func (m *impl) deliver(notes []note) {
	for _, n := range notes {
		if n.pre && m.cfg.preBanner != nil {
			m.cfg.preBanner(n.text)
		} else if n.pre {
			m.cfg.logf("backdoor: guest said before the banner: %q", n.text)
		} else {
			m.cfg.logf("%s", n.text)
		}
	}
}

// finish records why the connection ended and wakes everybody.
func (m *impl) finish(rerr error) {
	cause := rerr
	select {
	case <-m.closing:
		cause = errors.New("closed by the host")
	default:
		if errors.Is(rerr, io.EOF) {
			cause = errors.New("the guest closed the connection")
		}
	}
	m.conn.Close()
	m.mu.Lock()
	m.closeErr = fmt.Errorf("%w: %w", ErrClosed, cause)
	close(m.closedCh)
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

func (m *impl) writeLoop() {
	defer m.wg.Done()
	for {
		m.wmu.Lock()
		var job *writeJob
		if len(m.wq) > 0 {
			job = m.wq[0]
			m.wq = m.wq[1:]
			job.started = true
		}
		m.wmu.Unlock()
		if job == nil {
			select {
			case <-m.wsig:
				continue
			case <-m.closedCh:
			case <-m.closing:
			}
			m.wmu.Lock()
			q := m.wq
			m.wq, m.wclosed = nil, true
			m.wmu.Unlock()
			for _, j := range q {
				j.err = m.closedError()
				close(j.done)
			}
			return
		}
		if job.epoch != 0 {
			m.mu.Lock()
			stale := job.epoch != m.epoch
			m.mu.Unlock()
			if stale {
				// Meant for a guest shell that is gone: the new one must
				// get the prelude first, and the command already failed.
				job.dropped = true
				job.err = ErrRestarted
				close(job.done)
				continue
			}
		}
		_, err := m.conn.Write(job.data)
		if err != nil {
			job.err = fmt.Errorf("%w: writing to the guest shell: %w", ErrClosed, err)
			if job.async {
				m.conn.Close() // nobody else would notice
			}
		}
		close(job.done)
	}
}

// closedError is the error for calls on a shell whose connection ended.
func (m *impl) closedError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closeErr != nil {
		return m.closeErr
	}
	return fmt.Errorf("%w: closed by the host", ErrClosed)
}

// write sends data through the writer; epoch (0: any) is the guest shell
// it is meant for. sent reports whether any of it may have reached the
// guest: once a write has begun it is always completed, even if ctx ends
// first, so the guest never sees half a command.
func (m *impl) write(ctx context.Context, data []byte, epoch int) (sent bool, err error) {
	job := &writeJob{data: data, epoch: epoch, done: make(chan struct{})}
	m.wmu.Lock()
	if m.wclosed {
		m.wmu.Unlock()
		return false, m.closedError()
	}
	m.wq = append(m.wq, job)
	m.wmu.Unlock()
	signal(m.wsig)
	select {
	case <-job.done:
		return !job.dropped, job.err
	case <-ctx.Done():
		m.wmu.Lock()
		started := job.started
		if !started {
			if i := slices.Index(m.wq, job); i >= 0 {
				m.wq = slices.Delete(m.wq, i, i+1)
			}
		}
		m.wmu.Unlock()
		if !started {
			return false, ctx.Err()
		}
		return true, ctx.Err()
	}
}

// lock takes the run lock, honouring ctx.
func (m *impl) lock(ctx context.Context) error {
	select {
	case m.runLock <- struct{}{}:
		return nil
	case <-m.closedCh:
		return m.closedError()
	case <-ctx.Done():
		return fmt.Errorf("backdoor: waiting for other commands on the same shell: %w", ctx.Err())
	}
}

func (m *impl) unlock() { <-m.runLock }

// ready waits until framed commands can be sent: a guest shell is up
// (the epoch ExpectRestart asked for) and has acknowledged the set-up. With
// WithoutBanner the restored shell counts as set up for Run and Send (its
// first end marker sets the byte-count baseline); WaitReady (full) asks it
// for a fresh ack instead.
func (m *impl) ready(ctx context.Context, full bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		if m.closeErr != nil {
			if m.epoch == 0 {
				return fmt.Errorf("backdoor: waiting for the guest shell banner: %w", m.closeErr)
			}
			return fmt.Errorf("backdoor: setting up the guest shell: %w", m.closeErr)
		}
		if m.epoch >= m.need {
			if m.setupEpoch == m.epoch || (!full && m.cfg.ready && m.epoch == 1) {
				return nil
			}
			if m.setup == nil {
				m.startSetup(!(m.cfg.ready && m.epoch == 1))
			}
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
			m.mu.Lock()
		case <-ctx.Done():
			m.mu.Lock()
			switch {
			case m.epoch == 0:
				return fmt.Errorf("backdoor: the guest shell printed no %q banner yet (is the backdoor service running in the guest?): %w", Banner, ctx.Err())
			case m.epoch < m.need:
				return fmt.Errorf("backdoor: waiting for the guest shell to restart (ExpectRestart): no new %q banner yet: %w", Banner, ctx.Err())
			}
			return fmt.Errorf("backdoor: the guest shell did not acknowledge the driver's set-up: %w", ctx.Err())
		}
	}
}

func (m *impl) expectRestart() {
	m.mu.Lock()
	m.need = m.epoch + 1
	m.mu.Unlock()
}

func (m *impl) closedNow() bool {
	select {
	case <-m.closedCh:
		return true
	default:
		return false
	}
}

// register allocates an id and tracks the command; m.mu must be held.
func (m *impl) register(text string, kind cmdKind) *command {
	c := &command{id: m.nextID, text: text, kind: kind, want: kind == kindRun, sentAt: time.Now(), epoch: m.epoch}
	m.nextID++
	m.p.cmds[c.id] = c
	return c
}

// unregister forgets c if it is still tracked (a restart may have failed
// it already).
func (m *impl) unregister(c *command) {
	m.mu.Lock()
	if m.p.cmds[c.id] == c {
		delete(m.p.cmds, c.id)
	}
	m.mu.Unlock()
}

// waitIdle waits until no earlier framed command is outstanding, so that
// a new command starts at once and ctx measures only its own run.
func (m *impl) waitIdle(ctx context.Context) error {
	m.mu.Lock()
	for {
		if m.closeErr != nil {
			m.mu.Unlock()
			return m.closedError()
		}
		var first *command
		for _, c := range m.p.cmds {
			if first == nil || c.id < first.id {
				first = c
			}
		}
		if first == nil {
			m.mu.Unlock()
			return nil
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			m.mu.Lock()
			defer m.mu.Unlock()
			return fmt.Errorf("%w: the earlier %s %s %s; it must end before another command can run: %w",
				ErrBusy, first.kind, shortCmd(first.text), first.state(), ctx.Err())
		}
		m.mu.Lock()
	}
}

func (m *impl) run(ctx context.Context, cmd string, opts RunOptions) (Result, error) {
	if err := checkCmd(cmd); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("backdoor: command %s not sent: %w", shortCmd(cmd), err)
	}
	if err := m.lock(ctx); err != nil {
		return Result{}, err
	}
	defer m.unlock()
	if err := m.ready(ctx, false); err != nil {
		return Result{}, err
	}
	if err := m.waitIdle(ctx); err != nil {
		return Result{}, err
	}
	m.mu.Lock()
	c := m.register(cmd, kindRun)
	m.mu.Unlock()
	sent, err := m.write(ctx, []byte(frame(c.id, cmd, opts.Timeout)), c.epoch)
	if !sent {
		m.unregister(c)
		return Result{}, fmt.Errorf("backdoor: command %s not sent: %w", shortCmd(cmd), err)
	}
	if err != nil && ctx.Err() == nil {
		return Result{}, err
	}
	return m.wait(ctx, c, opts)
}

// wait waits for the reply to c.
func (m *impl) wait(ctx context.Context, c *command, opts RunOptions) (Result, error) {
	held := opts.HeldWarning
	if held <= 0 {
		held = defaultHeldWarning
	}
	warned := false
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		m.mu.Lock()
		if c.ended {
			defer m.mu.Unlock()
			switch {
			case c.restarted && opts.NoStatus:
				return c.result(c.partial()), nil
			case c.restarted:
				return Result{}, fmt.Errorf("backdoor: command %s did not finish: %w (the shell is set up again; later commands run in the new guest shell)", shortCmd(c.text), ErrRestarted)
			case c.err != nil:
				return Result{}, fmt.Errorf("backdoor: command %s: %w", shortCmd(c.text), c.err)
			case !c.hasStatus && !opts.NoStatus:
				return Result{}, fmt.Errorf("backdoor: command %s: %w: its exit status marker was lost; bytes were lost between guest and host", shortCmd(c.text), ErrCorrupt)
			}
			return c.result(c.out), nil
		}
		if m.closeErr != nil {
			defer m.mu.Unlock()
			if opts.NoStatus {
				return c.result(c.partial()), nil
			}
			return Result{}, fmt.Errorf("backdoor: command %s: %w", shortCmd(c.text), m.closeErr)
		}
		ch := m.changed
		var timerC <-chan time.Time
		if c.hasStatus && !warned {
			if d := time.Until(c.statusAt.Add(held)); d <= 0 {
				warned = true
				status := c.status
				m.mu.Unlock()
				m.cfg.logf("backdoor: command %s exited with status %d, but a background process it started still holds its stdout open, so its output never ends; redirect that process's output (`cmd >/dev/null 2>&1 &`)",
					shortCmd(c.text), status)
				continue
			} else {
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				timerC = timer.C
			}
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-timerC:
		case <-ctx.Done():
			m.mu.Lock()
			if c.ended || m.closeErr != nil { // raced with the reply: take it
				m.mu.Unlock()
				continue
			}
			c.want, c.abandoned = false, true
			c.out, c.line, c.last = nil, nil, nil
			err := fmt.Errorf("backdoor: command %s %s: %w", shortCmd(c.text), c.state(), ctx.Err())
			m.mu.Unlock()
			return Result{}, err
		}
	}
}

func (c *command) result(out []byte) Result {
	r := Result{Status: -1, Output: out}
	if c.hasStatus {
		r.Status = c.status
	}
	return r
}

func checkCmd(cmd string) error {
	for i := 0; i < len(cmd); i++ {
		if cmd[i] == 0 {
			return errNUL
		}
	}
	return nil
}

func (m *impl) send(ctx context.Context, cmd string, restarts bool) error {
	if err := checkCmd(cmd); err != nil {
		return err
	}
	if err := m.ready(ctx, false); err != nil {
		return err
	}
	m.mu.Lock()
	c := m.register(cmd, kindSend)
	if restarts {
		// Declared before the command can run, so its restart's banner
		// cannot come first.
		m.need = c.epoch + 1
	}
	m.mu.Unlock()
	sent, err := m.write(ctx, []byte(frame(c.id, cmd, 0)), c.epoch)
	if !sent {
		m.unregister(c)
	}
	switch {
	case err == nil:
		return nil
	case sent && ctx.Err() != nil:
		return fmt.Errorf("backdoor: sending %s: ctx ended while writing; the command will still be delivered and run: %w", shortCmd(cmd), err)
	}
	return fmt.Errorf("backdoor: sending %s: %w", shortCmd(cmd), err)
}

func (m *impl) sendRaw(ctx context.Context, text string) error {
	if _, err := m.write(ctx, []byte(text), 0); err != nil {
		return fmt.Errorf("backdoor: writing raw text to the guest shell: %w", err)
	}
	return nil
}

func (m *impl) done() <-chan struct{} { return m.closedCh }

func (m *impl) err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closeErr
}

// close closes the connection and waits for the shell's goroutines. It
// must not be called from a WithLogf or WithPreBanner callback.
func (m *impl) close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.closing)
		err = m.conn.Close()
		if errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
			err = nil
		}
	})
	m.wg.Wait()
	return err
}

func (m *impl) hold(ctx context.Context) (func(), error) {
	if err := m.lock(ctx); err != nil {
		return nil, err
	}
	if err := m.ready(ctx, false); err != nil {
		m.unlock()
		return nil, err
	}
	if err := m.waitIdle(ctx); err != nil {
		m.unlock()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(m.unlock) }, nil
}
