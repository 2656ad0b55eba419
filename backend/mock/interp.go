package mock

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backdoor"
)

// word is one shell word; op marks an unquoted operator (|, ||, &&, ;,
// &, a newline, or a redirection such as >, >>, 2>, 2>&1, >&2, <).
type word struct {
	s  string
	op bool
}

// lex splits a script into words the way a POSIX shell quotes them
// ('...', "...", backslashes, backslash-newline, # comments) and
// operators, which need no spaces around them (`a>f`, `2>/dev/null`). It
// does not expand anything; $(...) and backticks stay literal text.
func lex(s string) ([]word, error) {
	var words []word
	var cur strings.Builder
	inWord, quoted := false, false
	flush := func() {
		if inWord {
			words = append(words, word{s: cur.String()})
		}
		cur.Reset()
		inWord, quoted = false, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '\n':
			flush()
			words = append(words, word{s: "\n", op: true})
		case (c == '(' || c == ')') && !inWord:
			// Subshells and groups are beyond the mock: the parser
			// reports them.
			flush()
			words = append(words, word{s: string(c), op: true})
		case c == '#' && !inWord:
			for i+1 < len(s) && s[i+1] != '\n' {
				i++
			}
		case c == '\'':
			inWord, quoted = true, true
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unexpected EOF while looking for matching `''")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case c == '"':
			inWord, quoted = true, true
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unexpected EOF while looking for matching `\"'")
			}
		case c == '\\':
			if i+1 < len(s) && s[i+1] == '\n' {
				i++ // line continuation
				continue
			}
			inWord, quoted = true, true
			if i+1 < len(s) {
				i++
				cur.WriteByte(s[i])
			}
		case strings.IndexByte("|&;<>", c) >= 0:
			fd := ""
			if (c == '>' || c == '<') && inWord && !quoted && isDigits(cur.String()) {
				fd = cur.String()
				cur.Reset()
				inWord = false
			}
			flush()
			op, n := operatorAt(s[i:])
			words = append(words, word{s: fd + op, op: true})
			i += n - 1
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	flush()
	return words, nil
}

// operatorAt returns the operator s starts with and its length.
func operatorAt(s string) (string, int) {
	for _, op := range []string{"||", "&&", ">>", ">&", "&>", "<<", "|", "&", ";", ">", "<"} {
		if strings.HasPrefix(s, op) {
			if op == ">&" {
				// >&N duplicates a descriptor: the digits belong to it.
				n := len(op)
				for n < len(s) && s[n] >= '0' && s[n] <= '9' {
					n++
				}
				return s[:n], n
			}
			return op, len(op)
		}
	}
	return s[:1], 1
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func texts(ws []word) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.s
	}
	return out
}

// reply is a built-in command's outcome; stderr goes to the serial
// console, as the real backdoor's stderr does.
type reply struct {
	out    string
	stderr string
	status int
}

var vcsRE = regexp.MustCompile(`/dev/vcs(\d+)`)

// serve is the backdoor.GuestHandler of the guest.
func (g *Guest) serve(ctx context.Context, req backdoor.GuestRequest) backdoor.GuestReply {
	// A paused guest runs nothing until it is resumed.
	if in := g.instance(); in != nil && !in.gate.wait(ctx.Done()) {
		return backdoor.GuestReply{Status: 143}
	}
	g.mu.Lock()
	g.commands = append(g.commands, req.Command)
	rhs := slices.Clone(g.reqHandlers)
	chs := slices.Clone(g.handlers)
	g.mu.Unlock()
	for _, h := range rhs {
		if r, ok := h(ctx, req); ok {
			return r
		}
	}
	for _, h := range chs {
		if out, status, ok := h(req.Command); ok {
			return backdoor.GuestReply{Output: []byte(out), Status: status}
		}
	}
	r := g.builtin(ctx, req.Command, req.Timeout)
	if r.stderr != "" {
		g.ConsoleText(r.stderr)
	}
	return backdoor.GuestReply{Output: []byte(r.out), Status: r.status}
}

// rawText handles unframed text written to the guest shell: the outer
// bash would run it as a script, so "poweroff" powers off.
func (g *Guest) rawText(text string) {
	g.mu.Lock()
	g.raw = append(g.raw, text)
	g.mu.Unlock()
	for _, line := range strings.Split(text, "\n") {
		switch strings.TrimSpace(line) {
		case "poweroff", "poweroff -f", "halt -p":
			g.PowerOff()
		case "reboot", "reboot -f":
			g.Reboot()
		}
	}
}

// builtin runs a command with the fake commands: a script of one or more
// lines, under bash's errexit rules (see runScript).
func (g *Guest) builtin(ctx context.Context, cmd string, timeout time.Duration) reply {
	cmd = strings.TrimSpace(cmd)
	if strings.HasPrefix(cmd, "fold ") {
		return g.fold(cmd)
	}
	if m := tcpProbeRE.FindStringSubmatch(cmd); m != nil {
		return g.nc([]string{"-z", m[1], m[2]})
	}
	ws, err := lex(cmd)
	if err != nil {
		return reply{stderr: fmt.Sprintf("bash: -c: line 1: %v\n", err), status: 2}
	}
	lists, err := parseScript(ws)
	if err != nil {
		if _, ok := err.(errSyntax); ok {
			return reply{stderr: fmt.Sprintf("bash: -c: line 1: %v\n", err), status: 2}
		}
		return reply{stderr: fmt.Sprintf("mock guest: cannot interpret %q (%v); script it with Guest.Handle\n", cmd, err), status: 2}
	}
	return g.runScript(ctx, lists, timeout)
}

// simple runs one simple command (no operators).
func (g *Guest) simple(ctx context.Context, args []string, timeout time.Duration) reply {
	name, rest := args[0], args[1:]
	switch name {
	case "true", ":", "sync":
		return reply{}
	case "false":
		return reply{status: 1}
	case "echo":
		nl := "\n"
		if len(rest) > 0 && rest[0] == "-n" {
			nl, rest = "", rest[1:]
		}
		return reply{out: strings.Join(rest, " ") + nl}
	case "sleep":
		return sleep(ctx, rest, timeout)
	case "test", "[":
		if name == "[" {
			if len(rest) == 0 || rest[len(rest)-1] != "]" {
				return reply{stderr: "bash: [: missing `]'\n", status: 2}
			}
			rest = rest[:len(rest)-1]
		}
		return g.test(rest)
	case "cat":
		var b strings.Builder
		for _, p := range dropFlags(rest) {
			g.mu.Lock()
			data, err := g.readFileLocked(p)
			g.mu.Unlock()
			if err != nil {
				return reply{out: b.String(), stderr: "cat: " + err.Error() + "\n", status: 1}
			}
			b.Write(data)
		}
		return reply{out: b.String()}
	case "mkdir":
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, p := range dropFlags(rest) {
			if err := g.mkdirAllLocked(p); err != nil {
				return reply{stderr: "mkdir: " + err.Error() + "\n", status: 1}
			}
		}
		return reply{}
	case "cp":
		recursive := slices.Contains(rest, "-r") || slices.Contains(rest, "-R") || slices.Contains(rest, "-a")
		ps := dropFlags(rest)
		if len(ps) != 2 {
			return reply{stderr: "cp: mock supports exactly one source and one target\n", status: 1}
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if err := g.copyLocked(ps[0], ps[1], recursive); err != nil {
			return reply{stderr: "cp: " + err.Error() + "\n", status: 1}
		}
		return reply{}
	case "rm":
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, p := range dropFlags(rest) {
			if err := g.removeAllLocked(p); err != nil {
				return reply{stderr: "rm: " + err.Error() + "\n", status: 1}
			}
		}
		return reply{}
	case "systemctl":
		g.mu.Lock()
		defer g.mu.Unlock()
		out, errOut, st := g.managerLocked("").systemctl(rest)
		return reply{out: out, stderr: errOut, status: st}
	case "su":
		return g.su(ctx, rest, timeout)
	case "date":
		return g.date(rest)
	case "hostname":
		return g.hostnameCmd(rest)
	case "ip":
		return g.ip(rest)
	case "nc":
		return g.nc(rest)
	case "poweroff", "halt":
		// Like a real power-off, the command never reports back.
		g.PowerOff()
		<-ctx.Done()
		return reply{status: 143}
	case "reboot":
		g.Reboot()
		<-ctx.Done()
		return reply{status: 143}
	}
	return reply{stderr: fmt.Sprintf("bash: line 1: %s: command not found\n", name), status: 127}
}

// dropFlags removes options and "--" from an argument list.
func dropFlags(args []string) []string {
	var out []string
	flags := true
	for _, a := range args {
		if flags && a == "--" {
			flags = false
			continue
		}
		if flags && strings.HasPrefix(a, "-") && a != "-" {
			continue
		}
		out = append(out, a)
	}
	return out
}

// sleep waits in "guest time", honouring the guest-side timeout (status
// 124, as coreutils timeout reports it) and the request's end.
func sleep(ctx context.Context, args []string, timeout time.Duration) reply {
	if len(args) != 1 {
		return reply{stderr: "sleep: missing operand\n", status: 1}
	}
	secs, err := strconv.ParseFloat(args[0], 64)
	if err != nil || secs < 0 {
		return reply{stderr: fmt.Sprintf("sleep: invalid time interval '%s'\n", args[0]), status: 1}
	}
	d := time.Duration(secs * float64(time.Second))
	status := 0
	if timeout > 0 && d > timeout {
		d, status = timeout, 124
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return reply{status: status}
	case <-ctx.Done():
		return reply{status: 143}
	}
}

func (g *Guest) test(args []string) reply {
	if len(args) != 2 {
		return reply{stderr: "mock test: only `test -e|-f|-d|-S PATH` is supported\n", status: 2}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	p := cleanPath(args[1])
	ok, dir := g.statLocked(p)
	var res bool
	switch args[0] {
	case "-e":
		res = ok || g.unixStream[p] || g.unixDgram[p]
	case "-f":
		res = ok && !dir
	case "-d":
		res = ok && dir
	case "-S":
		res = g.unixStream[p] || g.unixDgram[p]
	default:
		return reply{stderr: fmt.Sprintf("mock test: unsupported test %s\n", args[0]), status: 2}
	}
	if res {
		return reply{}
	}
	return reply{status: 1}
}

// su runs `su -l USER --shell /bin/sh -c CMD`; a `systemctl --user`
// inside CMD talks to USER's manager.
func (g *Guest) su(ctx context.Context, args []string, timeout time.Duration) reply {
	var user, inner string
	haveC := false
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-l" || a == "-" || a == "--login":
		case a == "--shell" || a == "-s":
			i++
		case a == "-c" || a == "--command":
			if i+1 < len(args) {
				inner, haveC = args[i+1], true
			}
			i++
		case strings.HasPrefix(a, "-"):
		default:
			if user == "" {
				user = a
			}
		}
	}
	if user == "" || !haveC {
		return reply{stderr: "su: mock supports only su -l USER --shell /bin/sh -c CMD\n", status: 1}
	}
	if i := strings.Index(inner, "systemctl --user "); i >= 0 {
		ws, err := lex(inner[i+len("systemctl --user "):])
		if err != nil {
			return reply{stderr: fmt.Sprintf("sh: %v\n", err), status: 2}
		}
		toStdout := false
		ws = slices.DeleteFunc(ws, func(w word) bool {
			if w.op && w.s == "2>&1" {
				toStdout = true
				return true
			}
			return false
		})
		g.mu.Lock()
		out, errOut, st := g.managerLocked(user).systemctl(texts(ws))
		g.mu.Unlock()
		if toStdout {
			return reply{out: out + errOut, status: st}
		}
		return reply{out: out, stderr: errOut, status: st}
	}
	return g.builtin(ctx, inner, timeout)
}

// tcpProbeRE matches the TCP port probe Machine sends: bash opening
// /dev/tcp/ADDR/PORT (the address may be single-quoted).
var tcpProbeRE = regexp.MustCompile(`^: 2>/dev/null <'?/dev/tcp/([^/']+)/([0-9]+)'?$`)

// nc runs `nc -z [-w N] ADDR PORT` and `nc -z -U|-uU PATH`.
func (g *Guest) nc(args []string) reply {
	unix, dgram := false, false
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-w" || a == "-W":
			i++
		case strings.HasPrefix(a, "-"):
			if strings.Contains(a, "U") {
				unix = true
			}
			if strings.Contains(a, "u") {
				dgram = true
			}
		default:
			pos = append(pos, a)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if unix {
		if len(pos) != 1 {
			return reply{stderr: "nc: mock: need one socket path\n", status: 1}
		}
		p := cleanPath(pos[0])
		if (dgram && g.unixDgram[p]) || (!dgram && g.unixStream[p]) {
			return reply{}
		}
		return reply{status: 1}
	}
	if len(pos) != 2 {
		return reply{stderr: "nc: mock: need ADDR PORT\n", status: 1}
	}
	port, err := strconv.Atoi(pos[1])
	if err != nil {
		return reply{stderr: fmt.Sprintf("nc: port number invalid: %s\n", pos[1]), status: 1}
	}
	if g.ports[portKey(pos[0], port)] {
		return reply{}
	}
	return reply{status: 1}
}

// fold answers the TTY commands: `fold ... /dev/vcsN` prints the TTY's
// text; with `| systemd-cat` the text goes to the journal, hence the
// serial console.
func (g *Guest) fold(cmd string) reply {
	m := vcsRE.FindStringSubmatch(cmd)
	if m == nil {
		return reply{stderr: "fold: mock: no /dev/vcsN\n", status: 1}
	}
	n, _ := strconv.Atoi(m[1])
	g.mu.Lock()
	text, ok := g.tty[n]
	g.mu.Unlock()
	if !ok {
		text = ""
	}
	if strings.Contains(cmd, "systemd-cat") {
		for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
			g.ConsoleLine(line)
		}
		return reply{}
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return reply{out: text}
}
