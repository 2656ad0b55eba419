package backdoor

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// The wire format, host to guest.
//
// The guest's outer shell reads our bytes as a bash script. After each
// banner the host sends the prelude (preludeLines plus an ack request) in
// one write. It points fd 3 at the console, finds the console's byte
// counter (below) and defines the helpers; the host then frames commands
// as
//
//	__vmd ID 'CMD'                 run CMD with no guest-side time limit
//	__vmdt ID SECS 'CMD1' 'CMD2'…  run CMD1CMD2… for at most SECS seconds
//
// Each framed command is one script line (the single-quoted words may span
// lines). Its reply, guest to host, is
//
//	\036sID MODE\n             the outer shell started the command; MODE is
//	                           c (counted) or w (wrapped), see below
//	<base64 of stdout>         c: one line, no newline (base64 -w 0)
//	                           w: wrapped at 76 columns (base64 | cat)
//	\036xID STATUS\n           the command exited (written to the console
//	                           directly, so it may land anywhere inside the
//	                           base64 text, between two writes of base64)
//	\036eID COUNT\n            stdout reached EOF: the output is complete;
//	                           COUNT (mode c only) is the console's byte
//	                           counter read just before this record
//	                           (\036eID in mode w, \036eID - if the counter
//	                           became unreadable)
//
// The prelude's ack request is answered \036aID VALUE\n: VALUE is the
// console counter read just before the ack (mode c), or a word saying why
// there is none (nodebugfs, consoles=N, unreadable: mode w), or ! when the
// shell lacks the prelude (see rebaselineRequest). Records are \036, a
// type letter, a payload without newlines, and \n; base64 never contains
// \036, so the host cuts records out of the stream wherever they appear and
// what is left is the command's base64 text.
//
// Why this shape:
//   - One round trip per command: the status and the end of the output
//     come unasked (the Python driver asks for ${PIPESTATUS[0]} in a second
//     exchange).
//   - Without a time limit a command costs one exec (base64) in mode c; the
//     subshell, the eval and the counter read are forks of bash or
//     builtins, far cheaper than exec under TCG.
//   - The command runs in a subshell via eval, so a syntax error in it, an
//     `exit`, or `set -e` ending it cannot touch the outer shell, and its
//     stdin is /dev/null so a command that reads stdin cannot eat the
//     protocol bytes that follow it.
//   - The status is written to the console by the pipeline's left side as
//     soon as the command exits, while base64 may still be waiting for EOF:
//     if a background child keeps stdout open, the host still learns the
//     status and can say precisely what is wrong.
//   - The command gets fd 3 closed, so it cannot write markers by accident.
//   - With a time limit, the command travels as argv of `bash -c`, as in
//     the Python driver. Linux caps one argv string at 128 KiB, so the
//     host splits a longer command into chunks of at most argChunk bytes
//     that the guest joins back ("$*" with IFS empty) and evals. Either
//     way $1 is unbound, as with the Python driver's `bash -c`.
//   - The time limit ends the command's whole process group, not just one
//     process. `timeout` does not do that reliably: busybox timeout
//     signals only its child (bash -c), and bash does not exec the last
//     command of a compound command, so in `echo a; sleep 10` the sleep
//     survives, holds stdout open and keeps the shell busy (coreutils
//     timeout moves itself to a new group and signals that, so there only
//     a grandchild that leaves the group survives). So __vmdtr starts
//     `setsid bash -c …` as a background job: the job of a non-interactive
//     shell is no group leader, so both busybox and util-linux setsid call
//     setsid() in place and exec, and $! is the new session and group id.
//     A watchdog (__vmdw, a coprocess: a fork of bash, builtins only until
//     it fires) waits SECS with `read -t` on a pipe that __vmdtr closes
//     once the command exited; if the time is up first it writes "t",
//     then sends TERM to the group, and KILL 2 s later, so "t" is waiting
//     in the pipe when `wait` returns. The group is never the outer
//     shell's (nor the watchdog's). The status is then 124, as with
//     coreutils timeout and on the Python driver's NixOS guests (busybox
//     timeout gives 143), else the command's own. Ending the group costs
//     no more execs than `timeout`: setsid and bash. A guest without
//     setsid on its PATH (checked once, by the prelude) gets the
//     `timeout SECS bash -c …` form instead, with its weakness.
//   - Ids (a counter) let the host recognise replies of commands it no
//     longer waits for (Send, or abandoned after a deadline) and drop them.
//
// Output integrity. QEMU's virtconsole does not throttle the guest: when
// its socket is full it drops guest-to-host bytes, whole guest writes or
// the tail of one, so a loss can have any length. Linux's virtio_console
// counts the bytes of every console write in debugfs
// (/sys/kernel/debug/virtio-ports/vportNpM, "bytes_sent: N"), and a write
// to hvc0 returns only once QEMU took its bytes, dropped or not. So in
// mode c the guest reads that counter with bash builtins (no exec) before
// the ack and before each end marker, and the host, which counts every
// byte it receives, checks that both sides moved by the same amount: any
// loss, of any size, is found and its size named. Bytes other guest
// processes write to the console are counted on both sides. The output can
// then be one base64 line, which base64 writes in 4 KiB blocks instead of
// 77-byte lines: fast.
//
// Without the counter (debugfs not mounted, not exactly one console port)
// the guest falls back to mode w: both coreutils and busybox base64 wrap at
// 76 columns by default, and the host checks the wrapping: every line but
// the last must be exactly 76 characters, the last at most 76 and a
// multiple of 4. base64 alone would write one 77-byte line per write() to
// the console, so losses would be whole lines, invisible to that check (and
// slow: 1 MiB in seconds); piped through cat, the console sees large
// writes that do not align with lines, and a gap is invisible only if its
// length is a multiple of 77 (a 4096-byte page is 53*77+15).
//
// After WithoutBanner the guest shell and its counter predate the
// connection, so the host cannot know the counter's offset: WaitReady sends
// rebaselineRequest (the ack alone; the prelude is already in the guest),
// and a Run without it takes the first end marker as the baseline. When
// the banner appears again the guest rebooted: its counter and shell are
// new, and the host sends the prelude again.
//
// Limits of the count: a byte another guest process writes to the console
// between the counter read and the marker is seen by the host before the
// marker but was not counted. At an end marker that only makes the host
// look ahead, which proves nothing was lost, so the old baseline stays; at
// an ack (the baseline itself) it would make the next command look short
// by that many bytes. Bytes written at any other moment are counted on
// both sides.
//
// Speed, measured on the minimal busybox guest under TCG: a `true` round
// trip takes about 15 ms in mode c, 20 ms in mode w (one more exec); 64 MiB
// of output take 23 s in mode c and 13 s in mode w, as cat writes 64 KiB
// per write() and base64 -w 0 writes 4 KiB. `base64 -w 0 | cat` would be
// as fast as mode w, for that extra exec per command.
const (
	recMark   = 0x1e // starts a record; the record ends at '\n'
	recStart  = 's'
	recStatus = 'x'
	recEnd    = 'e'
	recAck    = 'a'

	modeCounted = "c" // start marker: one base64 line, end marker counts
	modeWrapped = "w" // start marker: wrapped base64, no count

	lineLen   = 76 // base64 line length without the newline
	lineBytes = 57 // decoded bytes per full line
	maxRecord = 64 // longest legal record payload

	// argChunk bounds one argv string of the timeout variant (the kernel
	// allows 128 KiB per string).
	argChunk = 64 << 10

	// portsDir is where Linux's virtio_console keeps its per-port debugfs
	// files. The guest variable __vmd_ports overrides it (tests fake it).
	portsDir = "/sys/kernel/debug/virtio-ports"

	// preludeVersion names the prelude's generation, so that a restored
	// guest shell set up by another version gets the full prelude again.
	preludeVersion = "3"
)

// preludeLines define the guest-side helpers. The fake guest recognises
// them line by line, so each is one line.
//
//	__vmdn     reads bytes_sent of the console port into __vmd_b (builtins
//	           only); on failure it gives the counter up for good
//	__vmdp     finds the one port file with "is_console: yes"; __vmd_why
//	           says why there is none
//	__vmda ID  answers the ack request
//	__vmdo     prints the start marker, runs its arguments as the left side
//	           of the base64 pipeline, then prints the end marker
//	__vmdr, __vmdtr  the left sides: run the command, report its status
//	__vmdtk    __vmdtr's fallback, with timeout(1), for guests without setsid
//	__vmdw PGID SECS  the watchdog of __vmdtr (see above); it exits only
//	           once its stdin closed, so the coprocess's pipes are still
//	           there when __vmdtr looks for the "t"
var preludeLines = []string{
	`exec 3>&1`,
	`__vmd_v=` + preludeVersion,
	`__vmdn() { local k v; __vmd_b=; [[ -n ${__vmd_port-} ]] || return 0; { while IFS=': ' read -r k v; do if [[ $k == bytes_sent ]]; then __vmd_b=$v; break; fi; done <"$__vmd_port"; } 2>/dev/null; [[ $__vmd_b =~ ^[0-9]+$ ]] || { __vmd_b=; __vmd_port=; __vmd_why=unreadable; }; }`,
	`__vmdp() { local d=${__vmd_ports:-` + portsDir + `} f k v c n=0 p=; __vmd_port=; if [[ ! -d $d ]]; then __vmd_why=nodebugfs; return 0; fi; for f in "$d"/vport*; do c=; { while IFS=': ' read -r k v; do [[ $k == is_console && $v == yes ]] && c=1; done <"$f"; } 2>/dev/null; [[ -n $c ]] && { n=$((n+1)); p=$f; }; done; if ((n != 1)); then __vmd_why=consoles=$n; return 0; fi; __vmd_port=$p; __vmdn; }`,
	`__vmda() { __vmdn; printf '\036a%s %s\n' "$1" "${__vmd_b:-${__vmd_why:-unknown}}"; }`,
	`__vmdr() { ( __vmd_c=$2; set --; set -euo pipefail; eval "$__vmd_c" ) </dev/null 3>&-; printf '\036x%s %d\n' "$1" $? >&3; }`,
	`__vmdw() { read -t "$2"; if (($? > 128)); then echo t; kill -TERM -- "-$1"; sleep 2; kill -KILL -- "-$1"; read; fi; } 2>/dev/null`,
	`__vmdtr() { local p s; if (($# == 3)); then setsid bash -c "set -euo pipefail; $3" </dev/null 3>&- & else setsid bash -c '` + joinChunks + `' bash "${@:3}" </dev/null 3>&- & fi; p=$!; coproc __vmdw "$p" "$2"; wait "$p" 2>/dev/null; s=$?; read -t 0 -u "${COPROC[0]}" && s=124; exec {COPROC[1]}>&-; printf '\036x%s %d\n' "$1" "$s" >&3; }`,
	`__vmdtk() { if (($# == 3)); then timeout "$2" bash -c "set -euo pipefail; $3"; else timeout "$2" bash -c '` + joinChunks + `' bash "${@:3}"; fi </dev/null 3>&-; printf '\036x%s %d\n' "$1" $? >&3; }`,
	`__vmdo() { if [[ -n ${__vmd_port-} ]]; then printf '\036s%s c\n' "$2"; "$@" | base64 -w 0; __vmdn; printf '\036e%s %s\n' "$2" "${__vmd_b:--}"; else printf '\036s%s w\n' "$2"; "$@" | base64 | cat; printf '\036e%s\n' "$2"; fi; }`,
	`__vmd() { __vmdo __vmdr "$@"; }`,
	`if command -v setsid >/dev/null; then __vmdt() { __vmdo __vmdtr "$@"; }; else __vmdt() { __vmdo __vmdtk "$@"; }; fi`,
	`__vmdp`,
}

// joinChunks is the script of `bash -c` for a command sent in chunks (as
// its arguments): join them, then run the command as __vmdr does.
const joinChunks = `IFS=; __vmd_c="$*"; unset IFS; set --; set -euo pipefail; eval "$__vmd_c"`

// ackPrefix starts the last line of the prelude; the id follows.
const ackPrefix = `__vmda `

// rebaselinePrefix starts rebaselineRequest; the id follows.
const rebaselinePrefix = `[[ ${__vmd_v-} == ` + preludeVersion + ` ]] && __vmda `

// prelude returns the set-up script, acknowledged with id.
func prelude(id uint64) string {
	return strings.Join(preludeLines, "\n") + "\n" + ackPrefix + strconv.FormatUint(id, 10) + "\n"
}

// rebaselineRequest asks a guest shell that should already have the
// prelude for a fresh ack (with the counter); a shell without it, or with
// another version's, answers "!".
func rebaselineRequest(id uint64) string {
	ids := strconv.FormatUint(id, 10)
	return rebaselinePrefix + ids + ` || printf '\036a%s !\n' ` + ids + "\n"
}

// errNUL rejects commands bash cannot read.
var errNUL = errors.New("backdoor: command contains a NUL byte, which bash cannot read; pass binary data another way (for example base64-encoded)")

// frame returns the script line that runs cmd with reply id id.
func frame(id uint64, cmd string, timeout time.Duration) string {
	var b strings.Builder
	b.Grow(len(cmd) + len(cmd)/16 + 40)
	if timeout <= 0 {
		b.WriteString("__vmd ")
		b.WriteString(strconv.FormatUint(id, 10))
		b.WriteByte(' ')
		writeQuoted(&b, cmd)
		b.WriteByte('\n')
		return b.String()
	}
	b.WriteString("__vmdt ")
	b.WriteString(strconv.FormatUint(id, 10))
	b.WriteByte(' ')
	b.WriteString(formatSeconds(timeout))
	for first := true; first || cmd != ""; first = false {
		n := min(len(cmd), argChunk)
		b.WriteByte(' ')
		writeQuoted(&b, cmd[:n])
		cmd = cmd[n:]
	}
	b.WriteByte('\n')
	return b.String()
}

// formatSeconds renders d for the guest's `read -t` or timeout(1), rounded
// up to a millisecond so it never becomes 0 (read -t 0 would fire at once,
// timeout 0 would mean "no limit").
func formatSeconds(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatFloat(float64(ms)/1000, 'f', -1, 64)
}

// writeQuoted writes s as one bash single-quoted word.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('\'')
	for {
		i := strings.IndexByte(s, '\'')
		if i < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteString(`'\''`)
		s = s[i+1:]
	}
	b.WriteString(s)
	b.WriteByte('\'')
}

// shellQuote returns s as one bash single-quoted word.
func shellQuote(s string) string {
	var b strings.Builder
	writeQuoted(&b, s)
	return b.String()
}

// shortCmd renders a command for messages.
func shortCmd(cmd string) string {
	const max = 80
	if len(cmd) > max {
		return strconv.Quote(cmd[:max]) + "…"
	}
	return strconv.Quote(cmd)
}
