package cpython

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmdriver/vmdriver/internal/hosttools"
	"github.com/vmdriver/vmdriver/internal/proc"
)

//go:embed vmdriver_bridge.py
var bridgeSource []byte

// ErrDied is wrapped by the error of a run whose interpreter ended
// before the script did.
var ErrDied = errors.New("the Python interpreter died")

// bootstrap is the interpreter's command: it needs Python 3.9, imports
// the bridge from the directory in argv[1] and serves on descriptor
// argv[2]. Nothing of the script reaches a shell.
const bootstrap = `import sys
if sys.version_info < (3, 9):
    sys.exit("vmdriver needs Python 3.9 or newer, this is " + sys.version.split()[0])
sys.path.insert(0, sys.argv[1]); import vmdriver_bridge; del sys.path[0]
vmdriver_bridge.run(sys.argv)`

// stopGrace is how long an interpreter that sent its last message gets
// to exit before it is killed; killTimeout bounds the wait after the kill.
const (
	stopGrace   = 5 * time.Second
	killTimeout = 5 * time.Second
)

// Find returns the interpreter to run: bin when given (a path; a bare
// name only as "python3"), else python3 found through hosttools, whose
// error names the Debian package.
func Find(bin string) (string, error) {
	if bin == "" || bin == "python3" {
		return hosttools.Path("python3")
	}
	if !strings.Contains(bin, "/") {
		return "", fmt.Errorf("python interpreter %q: give its path (only python3 is looked up in PATH)", bin)
	}
	st, err := os.Stat(bin)
	switch {
	case err != nil:
		return "", fmt.Errorf("python interpreter: %w", err)
	case st.IsDir() || st.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("python interpreter %s is not an executable file", bin)
	}
	return filepath.Abs(bin)
}

// interp is one running interpreter and the engine's end of its socket.
type interp struct {
	conn    *conn
	proc    *proc.Process
	dir     string
	stderr  *tail
	unwatch func() bool // stops the kill at the context's end
	once    sync.Once
}

// start writes the bridge into a new private directory under parent and
// starts python on it. stdout receives the script's prints; each line
// of the interpreter's stderr goes to errLine and its end is kept for
// errors. The interpreter is killed when ctx ends.
func start(ctx context.Context, python, parent string, stdout io.Writer, errLine func(string)) (*interp, error) {
	dir, err := os.MkdirTemp(parent, "python-")
	if err != nil {
		return nil, fmt.Errorf("creating the bridge directory: %w", err)
	}
	it := &interp{dir: dir, stderr: &tail{line: errLine}}
	fail := func(err error) (*interp, error) {
		it.stop()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "vmdriver_bridge.py"), bridgeSource, 0o600); err != nil {
		return fail(fmt.Errorf("writing the bridge module: %w", err))
	}
	c, theirs, err := socketPair()
	if err != nil {
		return fail(err)
	}
	it.conn = c
	defer theirs.Close()
	// Descriptor 3 is the first of ExtraFiles.
	cmd := exec.Command(python, "-u", "-c", bootstrap, dir, "3")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout = stdout
	cmd.Stderr = it.stderr
	// A process the script leaves holding stdout or stderr must not keep
	// the run waiting once the interpreter is gone.
	cmd.WaitDelay = time.Second
	p, err := proc.Start(cmd)
	if err != nil {
		return fail(fmt.Errorf("starting %s: %w", python, err))
	}
	it.proc = p
	it.unwatch = context.AfterFunc(ctx, func() { p.SignalGroup(syscall.SIGKILL) })
	return it, nil
}

// exited describes how the interpreter ended, with its last stderr
// lines, once it has (waiting at most killTimeout).
func (it *interp) exited() error {
	select {
	case <-it.proc.Exited():
	case <-time.After(killTimeout):
		it.proc.SignalGroup(syscall.SIGKILL)
		<-it.proc.Exited()
	}
	var last string
	if t := it.stderr.String(); t != "" {
		last = "; its last lines of stderr:\n" + t
	}
	return fmt.Errorf("%w (%s)%s", ErrDied, it.proc.Status(), last)
}

// stop ends the interpreter (after stopGrace to exit by itself), closes
// the connection and removes the bridge directory. It is idempotent.
func (it *interp) stop() {
	it.once.Do(func() {
		if it.unwatch != nil {
			it.unwatch()
		}
		if it.proc != nil {
			select {
			case <-it.proc.Exited():
			case <-time.After(stopGrace):
			}
			it.proc.SignalGroup(syscall.SIGKILL)
			select {
			case <-it.proc.Exited():
			case <-time.After(killTimeout):
			}
		}
		if it.conn != nil {
			it.conn.close()
		}
		os.RemoveAll(it.dir)
	})
}

// kill ends the interpreter at once.
func (it *interp) kill() {
	if it.proc != nil {
		it.proc.SignalGroup(syscall.SIGKILL)
	}
}

// tail keeps the last lines written to it, and hands each complete line
// to line.
type tail struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	line    func(string)
}

const tailLines = 20

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		l := strings.TrimRight(string(t.partial[:i]), "\r")
		t.partial = t.partial[i+1:]
		t.lines = append(t.lines, l)
		if len(t.lines) > tailLines {
			t.lines = t.lines[len(t.lines)-tailLines:]
		}
		if t.line != nil {
			t.line(l)
		}
	}
	return len(p), nil
}

// String is the last lines, and an unfinished one.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if len(t.partial) > 0 {
		lines = append(append([]string(nil), lines...), string(t.partial))
	}
	return strings.Join(lines, "\n")
}
