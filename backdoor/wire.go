package backdoor

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// The wire format, host to guest.
//
// The guest's outer shell reads our bytes as a bash script. Right after the
// banner the host sends the prelude (preludeLines plus an ack line) in one
// write. It defines two functions in the outer shell and points fd 3 at
// the console:
//
//	__vmd ID 'CMD'                 run CMD with no guest-side time limit
//	__vmdt ID SECS 'CMD1' 'CMD2'…  run CMD1CMD2… under `timeout SECS`
//
// Each framed command is one script line (the single-quoted words may span
// lines). Its reply, guest to host, is
//
//	\036sID\n                  the outer shell started the command
//	<base64 of stdout>         wrapped at 76 columns
//	\036xID STATUS\n           the command exited (written to the console
//	                           directly, so it may land anywhere inside the
//	                           base64 text, between two writes of base64)
//	\036eID\n                  stdout reached EOF: the output is complete
//
// and the prelude answers \036aID\n. Records are \036, a type letter, a
// payload without newlines, and \n; base64 never contains \036, so the host
// cuts records out of the stream wherever they appear and what is left is
// the command's base64 text.
//
// Why this shape:
//   - One round trip per command: the status and the end of the output
//     come unasked (the Python driver asks for ${PIPESTATUS[0]} in a second
//     exchange).
//   - Without a time limit a command costs one exec (base64); the subshell
//     and the eval are forks of bash, far cheaper than exec under TCG.
//   - The command runs in a subshell via eval, so a syntax error in it, an
//     `exit`, or `set -e` ending it cannot touch the outer shell, and its
//     stdin is /dev/null so a command that reads stdin cannot eat the
//     protocol bytes that follow it.
//   - The status is written to the console by the pipeline's left side as
//     soon as the command exits, while base64 may still be waiting for EOF:
//     if a background child keeps stdout open, the host still learns the
//     status and can say precisely what is wrong.
//   - The command gets fd 3 closed, so it cannot write markers by accident.
//   - Under `timeout`, the command travels as argv of `bash -c`, as in the
//     Python driver, so bash can exec the last command itself and the
//     timeout signal hits it (busybox timeout signals only its child, not
//     the process group). Linux caps one argv string at 128 KiB, so the
//     host splits a longer command into chunks of at most argChunk bytes
//     that the guest joins back ("$*" with IFS empty) and evals. Either
//     way $1 is unbound, as with the Python driver's `bash -c`.
//   - Ids (a counter) let the host recognise replies of commands it no
//     longer waits for (Send, or abandoned after a deadline) and drop them.
//
// Output integrity: both coreutils and busybox base64 wrap at 76 columns
// by default, and the host checks the wrapping: every line but the last
// must be exactly 76 characters, the last at most 76 and a multiple of 4.
// QEMU's virtconsole drops whole buffers (4 KiB) of guest-to-host bytes
// when the host side is slow; with `base64 -w 0` such a loss would still
// decode as valid base64 and go unnoticed. With 77-byte lines (76 + \n) a
// gap is invisible only if its length is a multiple of 77; a 4096-byte page
// is 53*77+15, so n dropped pages with n < 77 always break a line length.
// The host reads continuously so that such losses should not happen at
// all; the check makes sure they cannot go unnoticed when they do.
const (
	recMark   = 0x1e // starts a record; the record ends at '\n'
	recStart  = 's'
	recStatus = 'x'
	recEnd    = 'e'
	recAck    = 'a'

	lineLen   = 76 // base64 line length without the newline
	lineBytes = 57 // decoded bytes per full line
	maxRecord = 64 // longest legal record payload

	// argChunk bounds one argv string of the timeout variant (the kernel
	// allows 128 KiB per string).
	argChunk = 64 << 10
)

// preludeLines define the guest-side helpers. The fake guest recognises
// them line by line, so each definition is one line.
var preludeLines = []string{
	`exec 3>&1`,
	`__vmd() { printf '\036s%s\n' "$1"; { ( __vmd_c=$2; set --; set -euo pipefail; eval "$__vmd_c" ) </dev/null 3>&-; printf '\036x%s %d\n' "$1" $? >&3; } | base64; printf '\036e%s\n' "$1"; }`,
	`__vmdt() { printf '\036s%s\n' "$1"; { if (($# == 3)); then timeout "$2" bash -c "set -euo pipefail; $3"; else timeout "$2" bash -c 'IFS=; __vmd_c="$*"; unset IFS; set --; set -euo pipefail; eval "$__vmd_c"' bash "${@:3}"; fi </dev/null 3>&-; printf '\036x%s %d\n' "$1" $? >&3; } | base64; printf '\036e%s\n' "$1"; }`,
}

// ackPrefix starts the last line of the prelude; the id follows.
const ackPrefix = `printf '\036a%s\n' `

// prelude returns the set-up script, acknowledged with id.
func prelude(id uint64) string {
	return strings.Join(preludeLines, "\n") + "\n" + ackPrefix + strconv.FormatUint(id, 10) + "\n"
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

// formatSeconds renders d for timeout(1), rounded up to a millisecond so
// it never becomes 0 (which would mean "no limit").
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
