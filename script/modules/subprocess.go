package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Sentinel errors wrapped by the Starlark errors of host commands, for callers
// that inspect a script's failure with errors.Is.
var (
	// ErrCalledProcess: a command run with check=True (check_output, check_call)
	// exited with a non-zero status.
	ErrCalledProcess = errors.New("host command failed")
	// ErrTimeoutExpired: a command's timeout= elapsed and it was killed.
	ErrTimeoutExpired = errors.New("host command timed out")
)

// Python's subprocess special file values.
const (
	subprocessPIPE    = -1
	subprocessSTDOUT  = -2
	subprocessDEVNULL = -3
)

// waitDelay bounds how long Wait waits for a child's output pipes once the
// child has exited or been killed: a background grandchild that keeps them open
// must not hang the script.
const waitDelay = 2 * time.Second

// subprocessModule is Python's subprocess: run, call, check_call,
// check_output, PIPE/STDOUT/DEVNULL, CompletedProcess and message builders
// CalledProcessError and TimeoutExpired (for `raise` → fail()).
//
// Every command is logged through Host, bounded by Host.Context and its
// timeout=, and runs in its own process group, which is killed (SIGKILL) on
// cancellation or timeout. No shell is involved unless shell=True.
func (m *Modules) subprocessModule() *starlarkstruct.Module {
	return module("subprocess", map[string]builtinFunc{
		"run": func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return m.subprocessRun(th, b, args, kwargs, "run")
		},
		"call": func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return m.subprocessRun(th, b, args, kwargs, "call")
		},
		"check_call": func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return m.subprocessRun(th, b, args, kwargs, "check_call")
		},
		"check_output": func(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			return m.subprocessRun(th, b, args, kwargs, "check_output")
		},
		"Popen": func(_ *starlark.Thread, b *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
			return nil, fmt.Errorf("%s: not supported: use subprocess.run (with timeout= for long-running commands)", b.Name())
		},
		"CalledProcessError": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var code int
			var cmd, output, stderr starlark.Value = starlark.None, starlark.None, starlark.None
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "returncode", &code, "cmd", &cmd, "output?", &output, "stderr?", &stderr); err != nil {
				return nil, err
			}
			return &pyError{typ: "CalledProcessError", msg: calledProcessMessage(cmd, code), attrs: starlark.StringDict{
				"returncode": starlark.MakeInt(code), "cmd": cmd, "output": output, "stdout": output, "stderr": stderr,
			}}, nil
		},
		"TimeoutExpired": func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var cmd, timeout starlark.Value
			var output, stderr starlark.Value = starlark.None, starlark.None
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "cmd", &cmd, "timeout", &timeout, "output?", &output, "stderr?", &stderr); err != nil {
				return nil, err
			}
			return &pyError{typ: "TimeoutExpired", msg: fmt.Sprintf("Command %s timed out after %s seconds", pyRepr(cmd), timeout), attrs: starlark.StringDict{
				"cmd": cmd, "timeout": timeout, "output": output, "stdout": output, "stderr": stderr,
			}}, nil
		},
	}, starlark.StringDict{
		"PIPE":    starlark.MakeInt(subprocessPIPE),
		"STDOUT":  starlark.MakeInt(subprocessSTDOUT),
		"DEVNULL": starlark.MakeInt(subprocessDEVNULL),
	})
}

func calledProcessMessage(cmd starlark.Value, code int) string {
	if code < 0 {
		return fmt.Sprintf("Command %s died with signal %d", pyRepr(cmd), -code)
	}
	return fmt.Sprintf("Command %s returned non-zero exit status %d", pyRepr(cmd), code)
}

// runRequest is a host command to run, built from Python's keyword arguments.
type runRequest struct {
	args    starlark.Value // as given, for messages and CompletedProcess.args
	argv    []string
	env     []string
	dir     string
	stdin   io.Reader
	stdout  any // nil (inherit), subprocessPIPE, subprocessDEVNULL or *os.File
	stderr  any // same, or subprocessSTDOUT
	text    bool
	timeout time.Duration // 0: none
	check   bool
}

// subprocessRun implements run, call, check_call and check_output.
func (m *Modules) subprocessRun(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, kind string) (starlark.Value, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s: want 1 positional argument (args), got %d", b.Name(), len(args))
	}
	var (
		stdin, input, stdout, stderr, cwd, timeout, encoding, errs, text, env, universal, executable starlark.Value
		captureOutput, shell, check                                                                  bool
	)
	pairs := []any{"stdin??", &stdin, "input??", &input, "stdout??", &stdout, "stderr??", &stderr,
		"capture_output?", &captureOutput, "shell?", &shell, "cwd??", &cwd, "timeout??", &timeout,
		"check?", &check, "encoding??", &encoding, "errors??", &errs, "text??", &text, "env??", &env,
		"universal_newlines??", &universal, "executable??", &executable}
	if err := starlark.UnpackArgs(b.Name(), nil, kwargs, pairs...); err != nil {
		return nil, err
	}
	switch kind {
	case "check_output":
		if stdout != nil {
			return nil, fmt.Errorf("%s: stdout argument not allowed, it will be overridden", b.Name())
		}
		if check {
			return nil, fmt.Errorf("%s: check argument not allowed, it is always True", b.Name())
		}
		stdout, check = starlark.MakeInt(subprocessPIPE), true
	case "check_call":
		check = true
	}
	if executable != nil {
		return nil, fmt.Errorf("%s: executable= is not supported", b.Name())
	}
	req := &runRequest{args: args[0], check: check}
	var err error
	if req.argv, err = commandLine(args[0], shell); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	if captureOutput {
		if stdout != nil || stderr != nil {
			return nil, fmt.Errorf("%s: stdout and stderr arguments may not be used with capture_output", b.Name())
		}
		stdout, stderr = starlark.MakeInt(subprocessPIPE), starlark.MakeInt(subprocessPIPE)
	}
	if req.stdout, err = redirect(stdout, false); err != nil {
		return nil, fmt.Errorf("%s: stdout: %w", b.Name(), err)
	}
	if req.stderr, err = redirect(stderr, true); err != nil {
		return nil, fmt.Errorf("%s: stderr: %w", b.Name(), err)
	}
	if input != nil {
		if stdin != nil {
			return nil, fmt.Errorf("%s: stdin and input arguments may not both be used", b.Name())
		}
		s, ok := strOrBytes(input)
		if !ok {
			return nil, fmt.Errorf("%s: input must be str or bytes, not %s", b.Name(), input.Type())
		}
		req.stdin = strings.NewReader(s)
	} else if stdin != nil {
		r, err := redirect(stdin, false)
		if err != nil {
			return nil, fmt.Errorf("%s: stdin: %w", b.Name(), err)
		}
		switch r := r.(type) {
		case *os.File:
			req.stdin = r
		case int: // PIPE without input, or DEVNULL: nothing to read
		}
	}
	if err := checkEncoding(encoding); err != nil {
		return nil, fmt.Errorf("%s: %w", b.Name(), err)
	}
	req.text = encoding != nil || errs != nil || (text != nil && bool(text.Truth())) || (universal != nil && bool(universal.Truth()))
	if cwd != nil {
		var p pathArg
		if err := p.Unpack(cwd); err != nil {
			return nil, fmt.Errorf("%s: cwd: %w", b.Name(), err)
		}
		req.dir = string(p)
	}
	if timeout != nil {
		d, ok := AsDuration(timeout)
		if !ok || d < 0 {
			return nil, fmt.Errorf("%s: timeout must be a non-negative number of seconds or a timedelta, not %s", b.Name(), timeout)
		}
		req.timeout = max(d, 1) // timeout=0 means "already expired", not "none"
	}
	if env != nil {
		mapping, ok := env.(starlark.IterableMapping)
		if !ok {
			return nil, fmt.Errorf("%s: env must be a dict, not %s", b.Name(), env.Type())
		}
		for _, kv := range mapping.Items() {
			k, ok1 := kv[0].(starlark.String)
			v, ok2 := kv[1].(starlark.String)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%s: env keys and values must be str, got %s: %s", b.Name(), kv[0].Type(), kv[1].Type())
			}
			req.env = append(req.env, string(k)+"="+string(v))
		}
	} else {
		req.env = m.environ.List()
	}

	cp, err := m.runCommand(m.ctx(th), th, b.Name(), req)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "call":
		return starlark.MakeInt(cp.returnCode), nil
	case "check_call":
		return starlark.MakeInt(0), nil
	case "check_output":
		return cp.stdout, nil
	}
	return cp, nil
}

// commandLine turns Python's args into an argv: a sequence of str/Path is the
// argv; a str is the program name; with shell=True, /bin/sh -c runs args (a
// str, or a sequence whose first item is the script).
func commandLine(args starlark.Value, shell bool) ([]string, error) {
	var argv []string
	switch a := args.(type) {
	case starlark.String, *Path:
		var p pathArg
		_ = p.Unpack(a)
		argv = []string{string(p)}
	case starlark.Iterable:
		var err error
		if argv, err = stringsOf("args", a); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("args must be a str or a list of str, not %s", args.Type())
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("args is empty")
	}
	if shell {
		argv = append([]string{"/bin/sh", "-c"}, argv...)
	}
	return argv, nil
}

// redirect interprets a stdin/stdout/stderr argument.
func redirect(v starlark.Value, allowSTDOUT bool) (any, error) {
	switch x := v.(type) {
	case nil, starlark.NoneType:
		return nil, nil
	case starlark.Int:
		n, _ := x.Int64()
		switch {
		case n == subprocessPIPE || n == subprocessDEVNULL || (n == subprocessSTDOUT && allowSTDOUT):
			return int(n), nil
		}
		return nil, fmt.Errorf("want subprocess.PIPE, DEVNULL%s, a file object or None, got %d", map[bool]string{true: ", STDOUT"}[allowSTDOUT], n)
	case *File:
		return x.osFile()
	}
	return nil, fmt.Errorf("want subprocess.PIPE, DEVNULL, a file object or None, got %s", v.Type())
}

// lookPath finds a program the way Python's subprocess does: names with a
// slash are used as they are; others are searched in the child's PATH.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if !filepath.IsAbs(p) {
				p = "./" + p
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("no such file or directory: %s (not found in PATH)", starlark.String(name))
}

// runCommand runs a host command to completion, or until the run's context is
// cancelled or the timeout elapses; then the command's process group is killed.
func (m *Modules) runCommand(ctx context.Context, th *starlark.Thread, fn string, req *runRequest) (cp *CompletedProcess, err error) {
	end := m.nested(th, "running host command: "+shellJoin(req.argv))
	defer func() { end(err) }()

	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: not started: %w", fn, context.Cause(ctx))
	}
	runCtx := ctx
	if req.timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, req.timeout)
		defer cancel()
	}
	path, err := lookPath(req.argv[0], req.env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	cmd := exec.CommandContext(runCtx, path, req.argv[1:]...)
	cmd.Args[0] = req.argv[0]
	cmd.Env = req.env
	cmd.Dir = req.dir
	cmd.Stdin = req.stdin // nil: /dev/null
	// Own process group, so that cancellation reaches the command's children;
	// Pdeathsig, so that nothing outlives a crashed driver.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay

	var outBuf, errBuf bytes.Buffer
	switch o := req.stdout.(type) {
	case nil:
		cmd.Stdout = m.stdout()
	case *os.File:
		cmd.Stdout = o
	case int:
		if o == subprocessPIPE {
			cmd.Stdout = &outBuf
		}
	}
	switch o := req.stderr.(type) {
	case nil:
		cmd.Stderr = m.stderr()
	case *os.File:
		cmd.Stderr = o
	case int:
		switch o {
		case subprocessPIPE:
			cmd.Stderr = &errBuf
		case subprocessSTDOUT:
			cmd.Stderr = cmd.Stdout
		}
	}

	if err := cmd.Start(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no such file or directory: %s", fn, starlark.String(req.argv[0]))
		}
		return nil, fmt.Errorf("%s: starting %s: %w", fn, pyRepr(req.args), err)
	}
	waitErr := cmd.Wait()

	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: command %s cancelled: %w", fn, pyRepr(req.args), context.Cause(ctx))
	case runCtx.Err() != nil:
		return nil, &procError{kind: ErrTimeoutExpired, msg: fmt.Sprintf("%s: command %s timed out after %s seconds",
			fn, pyRepr(req.args), pyFloatRepr(req.timeout.Seconds()))}
	case waitErr == nil, errors.As(waitErr, &exitErr), errors.Is(waitErr, exec.ErrWaitDelay):
	default:
		return nil, fmt.Errorf("%s: command %s: %w", fn, pyRepr(req.args), waitErr)
	}
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		m.log(th, fmt.Sprintf("host command %s exited but left its output open; stopped reading after %s", shellJoin(req.argv), waitDelay))
	}

	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = -int(ws.Signal())
	}
	cp = &CompletedProcess{args: req.args, returnCode: code, stdout: starlark.None, stderr: starlark.None}
	if req.stdout == subprocessPIPE {
		cp.stdout = outputValue(outBuf.String(), req.text)
	}
	if req.stderr == subprocessPIPE {
		cp.stderr = outputValue(errBuf.String(), req.text)
	}
	if code != 0 {
		m.log(th, fmt.Sprintf("host command exited with status %d", code))
		if req.check {
			return nil, cp.checkError(fn)
		}
	}
	return cp, nil
}

// outputValue converts captured output: bytes, or str with universal newlines
// in text mode.
func outputValue(s string, text bool) starlark.Value {
	if !text {
		return starlark.Bytes(s)
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return starlark.String(strings.ReplaceAll(s, "\r", "\n"))
}

// procError is a host command failure with a Python-like message.
type procError struct {
	kind error
	msg  string
}

func (e *procError) Error() string { return e.msg }
func (e *procError) Unwrap() error { return e.kind }

// CompletedProcess is what subprocess.run returns: args, returncode, stdout and
// stderr (None unless captured) and check_returncode().
type CompletedProcess struct {
	args           starlark.Value
	returnCode     int
	stdout, stderr starlark.Value
}

func (cp *CompletedProcess) checkError(fn string) error {
	msg := fn + ": " + strings.Replace(calledProcessMessage(cp.args, cp.returnCode), "Command", "command", 1)
	if s, ok := strOrBytes(cp.stderr); ok && strings.TrimSpace(s) != "" {
		const limit = 2000
		s = strings.TrimSpace(s)
		if len(s) > limit {
			s = "..." + s[len(s)-limit:]
		}
		msg += "; stderr:\n" + s
	}
	return &procError{kind: ErrCalledProcess, msg: msg}
}

// ReturnCode is the exit status, or -N when signal N killed the command.
func (cp *CompletedProcess) ReturnCode() int { return cp.returnCode }

// String implements starlark.Value, like Python's repr.
func (cp *CompletedProcess) String() string {
	s := fmt.Sprintf("CompletedProcess(args=%s, returncode=%d", cp.args, cp.returnCode)
	if cp.stdout != starlark.None {
		s += ", stdout=" + cp.stdout.String()
	}
	if cp.stderr != starlark.None {
		s += ", stderr=" + cp.stderr.String()
	}
	return s + ")"
}

// Type implements starlark.Value.
func (cp *CompletedProcess) Type() string { return "CompletedProcess" }

// Freeze implements starlark.Value.
func (cp *CompletedProcess) Freeze() { cp.args.Freeze() }

// Truth implements starlark.Value.
func (cp *CompletedProcess) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (cp *CompletedProcess) Hash() (uint32, error) {
	return 0, fmt.Errorf("unhashable type: CompletedProcess")
}

// Attr implements starlark.HasAttrs.
func (cp *CompletedProcess) Attr(name string) (starlark.Value, error) {
	switch name {
	case "args":
		return cp.args, nil
	case "returncode":
		return starlark.MakeInt(cp.returnCode), nil
	case "stdout":
		return cp.stdout, nil
	case "stderr":
		return cp.stderr, nil
	case "check_returncode":
		return starlark.NewBuiltin("CompletedProcess.check_returncode", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 0); err != nil {
				return nil, err
			}
			if cp.returnCode != 0 {
				return nil, cp.checkError(b.Name())
			}
			return starlark.None, nil
		}), nil
	}
	return nil, nil
}

// AttrNames implements starlark.HasAttrs.
func (cp *CompletedProcess) AttrNames() []string {
	return []string{"args", "check_returncode", "returncode", "stderr", "stdout"}
}

// pyError stands for a Python exception object built by a script (e.g.
// subprocess.CalledProcessError(...)) so that `raise` → fail(err) prints its
// message; its constructor arguments are attributes.
type pyError struct {
	typ   string
	msg   string
	attrs starlark.StringDict
}

// String implements starlark.Value: the exception's message, as str(e) is.
func (e *pyError) String() string { return e.msg }

// Type implements starlark.Value.
func (e *pyError) Type() string { return e.typ }

// Freeze implements starlark.Value.
func (e *pyError) Freeze() { e.attrs.Freeze() }

// Truth implements starlark.Value.
func (e *pyError) Truth() starlark.Bool { return true }

// Hash implements starlark.Value.
func (e *pyError) Hash() (uint32, error) { return starlark.String(e.msg).Hash() }

// Attr implements starlark.HasAttrs.
func (e *pyError) Attr(name string) (starlark.Value, error) {
	if name == "args" {
		return starlark.Tuple{starlark.String(e.msg)}, nil
	}
	return e.attrs[name], nil
}

// AttrNames implements starlark.HasAttrs.
func (e *pyError) AttrNames() []string { return append(e.attrs.Keys(), "args") }

// osSystem is os.system(command): /bin/sh -c command with inherited output;
// it returns the wait status as Python does (exit code << 8, or the signal
// number); os.waitstatus_to_exitcode converts it.
func (m *Modules) osSystem(th *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var command string
	if err := starlark.UnpackPositionalArgs(b.Name(), args, kwargs, 1, &command); err != nil {
		return nil, err
	}
	req := &runRequest{args: starlark.String(command), argv: []string{"/bin/sh", "-c", command}, env: m.environ.List()}
	cp, err := m.runCommand(m.ctx(th), th, b.Name(), req)
	if err != nil {
		return nil, err
	}
	if cp.returnCode < 0 {
		return starlark.MakeInt(-cp.returnCode), nil
	}
	return starlark.MakeInt(cp.returnCode << 8), nil
}
