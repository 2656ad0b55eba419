package mock

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// The fake guest runs a command the way the real backdoor does: as a bash
// script under `set -euo pipefail`. This file is the small part of bash
// that takes: lists separated by newlines or `;`, `&&` and `||`, the
// upload pipeline, and redirections of stdout and stderr.

// redir is one redirection: op is ">", ">>", "2>", "2>>", "&>", "<",
// "2>&1", ">&2" or "1>&2"; target is the file for those that take one.
type redir struct {
	op     string
	target string
}

// simpleCmd is one command with its redirections.
type simpleCmd struct {
	args   []string
	redirs []redir
}

// andOr is a list of pipelines joined by && (ops[i] before pipes[i+1])
// or ||.
type andOr struct {
	pipes [][]simpleCmd
	ops   []string
}

// errSyntax reports a script the fake guest's bash would not parse.
type errSyntax string

func (e errSyntax) Error() string { return string(e) }

// errUnsupported reports bash the mock does not interpret.
type errUnsupported string

func (e errUnsupported) Error() string { return string(e) }

// parseScript turns lexed words into and-or lists.
func parseScript(ws []word) ([]andOr, error) {
	var (
		lists []andOr
		cur   andOr
		pipe  []simpleCmd
		cmd   simpleCmd
		// cont is set after an operator that needs a command after it
		// (a newline there is just white space).
		cont bool
	)
	endCmd := func(after string) error {
		if len(cmd.args) == 0 {
			if len(cmd.redirs) > 0 {
				return errUnsupported("a redirection without a command")
			}
			return errSyntax(fmt.Sprintf("syntax error near unexpected token `%s'", after))
		}
		pipe = append(pipe, cmd)
		cmd = simpleCmd{}
		return nil
	}
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		if !w.op {
			cmd.args = append(cmd.args, w.s)
			cont = false
			continue
		}
		switch w.s {
		case "\n", ";":
			if cont && w.s == "\n" {
				continue
			}
			if len(cmd.args) == 0 && len(cmd.redirs) == 0 && len(pipe) == 0 && len(cur.pipes) == 0 {
				if w.s == ";" {
					return nil, errSyntax("syntax error near unexpected token `;'")
				}
				continue
			}
			if err := endCmd(w.s); err != nil {
				return nil, err
			}
			cur.pipes = append(cur.pipes, pipe)
			lists = append(lists, cur)
			cur, pipe = andOr{}, nil
		case "|":
			if err := endCmd(w.s); err != nil {
				return nil, err
			}
			cont = true
		case "&&", "||":
			if err := endCmd(w.s); err != nil {
				return nil, err
			}
			cur.pipes = append(cur.pipes, pipe)
			cur.ops = append(cur.ops, w.s)
			pipe = nil
			cont = true
		case "&":
			return nil, errUnsupported("background commands (&)")
		case "2>&1", ">&2", "1>&2":
			cmd.redirs = append(cmd.redirs, redir{op: w.s})
		case ">", ">>", "1>", "1>>", "2>", "2>>", "&>", "<", "0<":
			if i+1 >= len(ws) || ws[i+1].op {
				next := "newline"
				if i+1 < len(ws) && ws[i+1].s != "\n" {
					next = ws[i+1].s
				}
				return nil, errSyntax(fmt.Sprintf("syntax error near unexpected token `%s'", next))
			}
			op := strings.TrimPrefix(w.s, "1")
			if op == "0<" {
				op = "<"
			}
			cmd.redirs = append(cmd.redirs, redir{op: op, target: ws[i+1].s})
			i++
		default:
			return nil, errUnsupported(fmt.Sprintf("shell operator %q", w.s))
		}
	}
	if cont {
		return nil, errSyntax("syntax error: unexpected end of file")
	}
	if len(cmd.args) > 0 || len(cmd.redirs) > 0 || len(pipe) > 0 || len(cur.pipes) > 0 {
		if err := endCmd("newline"); err != nil {
			return nil, err
		}
		cur.pipes = append(cur.pipes, pipe)
		lists = append(lists, cur)
	}
	return lists, nil
}

// runScript runs the lists with bash's errexit rules: a failing command
// ends the script with its status unless it is followed by && or ||;
// `exit N` ends it with N. Stdout is collected, stderr goes to reply's
// stderr (the console) unless redirected.
func (g *Guest) runScript(ctx context.Context, lists []andOr, timeout time.Duration) reply {
	var res reply
	for _, l := range lists {
		status, last, exit := 0, 0, false
		for k, p := range l.pipes {
			if k > 0 {
				if (l.ops[k-1] == "&&") != (status == 0) {
					continue
				}
			}
			r, ex := g.runPipeline(ctx, p, timeout)
			res.out += r.out
			res.stderr += r.stderr
			status, last, exit = r.status, k, ex
			if exit {
				break
			}
		}
		res.status = status
		if exit || (status != 0 && last == len(l.pipes)-1) {
			return res
		}
		if ctx.Err() != nil {
			return res
		}
	}
	return res
}

// runPipeline runs one pipeline; exit reports an `exit` builtin.
func (g *Guest) runPipeline(ctx context.Context, p []simpleCmd, timeout time.Duration) (r reply, exit bool) {
	if len(p) == 1 {
		c := p[0]
		if c.args[0] == "exit" {
			st := 0
			if len(c.args) > 1 {
				st = exitStatus(c.args[1])
			}
			return reply{status: st}, true
		}
		return g.redirected(c, func() reply { return g.simple(ctx, c.args, timeout) }), false
	}
	// The upload pipeline: printf %s B64 | base64 -d >|>> PATH.
	if len(p) == 2 && len(p[0].args) == 3 && p[0].args[0] == "printf" && p[0].args[1] == "%s" && len(p[0].redirs) == 0 &&
		len(p[1].args) == 2 && p[1].args[0] == "base64" && p[1].args[1] == "-d" {
		return g.redirected(p[1], func() reply {
			data, err := base64.StdEncoding.DecodeString(p[0].args[2])
			if err != nil {
				return reply{stderr: "base64: invalid input\n", status: 1}
			}
			return reply{out: string(data)}
		}), false
	}
	return reply{stderr: fmt.Sprintf("mock guest: cannot interpret the pipeline %q; script it with Guest.Handle\n", pipelineText(p)), status: 2}, false
}

// exitStatus is the status `exit ARG` ends with (2 for a non-number, as
// bash's "numeric argument required").
func exitStatus(arg string) int {
	if !isDigits(arg) {
		return 2
	}
	n := 0
	for i := 0; i < len(arg); i++ {
		n = (n*10 + int(arg[i]-'0')) % 256
	}
	return n
}

func pipelineText(p []simpleCmd) string {
	parts := make([]string, len(p))
	for i, c := range p {
		parts[i] = strings.Join(c.args, " ")
	}
	return strings.Join(parts, " | ")
}

// sink is where a file descriptor of a command goes.
type sink struct {
	kind   byte // 'o' the script's stdout, 'e' the console, 'n' /dev/null, 'u' /dev/urandom, 'f' a file
	path   string
	append bool
}

// redirected opens c's redirections as bash does (before the command
// runs: `>` truncates even if the command fails), runs it and routes its
// output.
func (g *Guest) redirected(c simpleCmd, run func() reply) reply {
	fds := [3]sink{1: {kind: 'o'}, 2: {kind: 'e'}}
	for _, rd := range c.redirs {
		switch rd.op {
		case "2>&1":
			fds[2] = fds[1]
		case ">&2":
			fds[1] = fds[2]
		case "<":
			g.mu.Lock()
			ok, _ := g.statLocked(rd.target)
			g.mu.Unlock()
			if !ok && !strings.HasPrefix(rd.target, "/dev/") {
				return reply{stderr: fmt.Sprintf("bash: line 1: %s: No such file or directory\n", rd.target), status: 1}
			}
		default:
			s, err := g.openSink(rd.target, strings.HasSuffix(rd.op, ">>"))
			if err != nil {
				return reply{stderr: "bash: line 1: " + err.Error() + "\n", status: 1}
			}
			switch rd.op {
			case ">", ">>":
				fds[1] = s
			case "2>", "2>>":
				fds[2] = s
			case "&>":
				fds[1], fds[2] = s, s
			}
		}
	}
	r := run()
	var res reply
	res.status = r.status
	for _, o := range []struct {
		text string
		to   sink
	}{{r.out, fds[1]}, {r.stderr, fds[2]}} {
		if o.text == "" {
			continue
		}
		switch o.to.kind {
		case 'o':
			res.out += o.text
		case 'e':
			res.stderr += o.text
		case 'u':
			g.mu.Lock()
			g.urandom = append(g.urandom, []byte(o.text))
			g.mu.Unlock()
		case 'f':
			g.mu.Lock()
			err := g.writeFileLocked(o.to.path, []byte(o.text), true, 0o644)
			g.mu.Unlock()
			if err != nil {
				res.stderr += "bash: line 1: " + err.Error() + "\n"
				res.status = 1
			}
		}
	}
	return res
}

// openSink opens a redirection target: special devices, or a file that
// is created (and truncated unless appendTo) at once.
func (g *Guest) openSink(target string, appendTo bool) (sink, error) {
	switch target {
	case "/dev/null":
		return sink{kind: 'n'}, nil
	case "/dev/urandom", "/dev/random":
		return sink{kind: 'u'}, nil
	case "/dev/stdout":
		return sink{kind: 'o'}, nil
	case "/dev/stderr", "/dev/console", "/dev/ttyS0", "/dev/kmsg":
		return sink{kind: 'e'}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	p := cleanPath(target)
	if ok, dir := g.statLocked(p); ok && dir {
		return sink{}, fmt.Errorf("%s: Is a directory", target)
	}
	if err := g.writeFileLocked(p, nil, appendTo, 0o644); err != nil {
		return sink{}, err
	}
	return sink{kind: 'f', path: p}, nil
}
