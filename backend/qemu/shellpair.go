package qemu

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

// shellBufSize is the send buffer asked for on QEMU's end of the guest
// shell channel. QEMU's virtconsole drops guest output that its chardev
// cannot write at once (a console port is never throttled), and with
// small guest writes each queued skb costs far more than its payload, so
// the kernel default (about 208 KiB) holds only tens of KiB of output: a
// host reader that stalls a fraction of a second loses bytes. 16 MiB
// rides out such stalls at any console speed.
const shellBufSize = 16 << 20

// shellChildFD is the descriptor QEMU's end of the shell channel has in
// the start script and in the QEMU it execs: the first of
// exec.Cmd.ExtraFiles.
const shellChildFD = 3

// shellPair is the guest shell channel: a connected unix stream
// socketpair made before QEMU is spawned.
type shellPair struct {
	// ours is the driver's end, for the backdoor.
	ours net.Conn
	// theirs is QEMU's end, passed to the start script and closed by us
	// right after the spawn.
	theirs *os.File
	// sndbuf is QEMU's send buffer as the kernel reports it (twice the
	// payload it was asked for: the kernel counts its own overhead).
	sndbuf int
	// forced is true when SO_SNDBUFFORCE worked; otherwise the size is
	// capped at net.core.wmem_max.
	forced bool
}

// newShellPair makes the socketpair and sizes its buffers. Both ends are
// close-on-exec, so no other child inherits them; ExtraFiles clears the
// flag on the copy QEMU gets.
func newShellPair() (*shellPair, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the guest shell socketpair: %w", os.NewSyscallError("socketpair", err))
	}
	oursFD, theirsFD := fds[0], fds[1]
	forced := setBuf(theirsFD, syscall.SO_SNDBUFFORCE, syscall.SO_SNDBUF, shellBufSize)
	// A unix stream socket charges queued data to the sender, so this
	// matters little; it keeps the two ends symmetric.
	setBuf(oursFD, syscall.SO_RCVBUFFORCE, syscall.SO_RCVBUF, shellBufSize)
	sndbuf, err := syscall.GetsockoptInt(theirsFD, syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	if err != nil {
		sndbuf = -1
	}
	theirs := os.NewFile(uintptr(theirsFD), "qemu-shell")
	f := os.NewFile(uintptr(oursFD), "shell")
	// FileConn works on a duplicate; the original is ours to close.
	ours, err := net.FileConn(f)
	f.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("using the guest shell socketpair: %w", err)
	}
	return &shellPair{ours: ours, theirs: theirs, sndbuf: sndbuf, forced: forced}, nil
}

// setBuf sets a socket buffer size with the privileged option (which
// ignores the sysctl limit) and falls back to the ordinary one (capped at
// net.core.wmem_max or rmem_max). It reports whether the privileged one
// worked. Failures only leave a smaller buffer, so they are not errors.
func setBuf(fd, forceOpt, opt, size int) bool {
	err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, forceOpt, size)
	if err == nil {
		return true
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, opt, size)
	return false
}

// describe says, for the log, how large QEMU's send buffer is.
func (p *shellPair) describe() string {
	if p.sndbuf < 0 {
		return "guest shell channel: socketpair (QEMU's send buffer size unknown)"
	}
	how := "SO_SNDBUFFORCE"
	if !p.forced {
		how = "SO_SNDBUF, capped by net.core.wmem_max; give the driver CAP_NET_ADMIN (root) or raise that sysctl if guest output goes missing"
	}
	return fmt.Sprintf("guest shell channel: socketpair, QEMU's send buffer %d KiB as the kernel counts it (asked for %d KiB with %s)",
		p.sndbuf>>10, shellBufSize>>10, how)
}
