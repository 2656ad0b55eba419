// Package netns holds a private network namespace for a run's TAP
// networks: bridges and TAP devices live in it, never in the host's own
// namespace, so nothing the driver does can change the host's network.
//
// The namespace is anonymous (nothing under /run/netns) and is held only
// by the NS's file descriptor and by the processes started inside it, so
// the kernel removes it, with every bridge and TAP device in it, when the
// driver closes it or dies, however it dies.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrPermission is wrapped by New when the caller may not create a
// network namespace.
var ErrPermission = errors.New("creating a network namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")

// NS is a private network namespace.
type NS struct {
	f     *os.File
	inode uint64
}

// New creates a network namespace with only a loopback device in it. The
// calling goroutine's thread is not moved: the namespace is made on a
// thread of its own that returns to the host's namespace afterwards.
func New() (*NS, error) {
	var ns *NS
	err := onThread(func() error {
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return fmt.Errorf("opening this thread's network namespace: %w", err)
		}
		defer host.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%w: %v", ErrPermission, err)
			}
			return fmt.Errorf("creating a network namespace: %w", err)
		}
		f, openErr := os.Open("/proc/thread-self/ns/net")
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			if f != nil {
				f.Close()
			}
			return errTainted{fmt.Errorf("returning to the host's network namespace: %w", err)}
		}
		if openErr != nil {
			return fmt.Errorf("opening the new network namespace: %w", openErr)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return fmt.Errorf("network namespace: %w", err)
		}
		ns = &NS{f: f, inode: st.Ino}
		return nil
	})
	return ns, err
}

// Inode is the namespace's inode number: the one /proc/PID/ns/net links
// to as net:[INODE] for every process inside it.
func (n *NS) Inode() uint64 { return n.inode }

// Do runs f on an OS thread inside the namespace and returns its error.
// Sockets f creates, and devices it opens, belong to the namespace for
// their whole life; processes it starts live in it. The thread goes back
// to the host's namespace afterwards, and stays alive: Linux sends a
// child's parent-death signal when the thread that forked it exits, so a
// hypervisor f starts outlives Do.
func (n *NS) Do(f func() error) error {
	return onThread(func() error {
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			return fmt.Errorf("opening this thread's network namespace: %w", err)
		}
		defer host.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("entering the network namespace: %w", err)
		}
		ferr := f()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			return errTainted{fmt.Errorf("returning to the host's network namespace: %w (after: %v)", err, ferr)}
		}
		return ferr
	})
}

// Close releases the driver's hold on the namespace. The kernel removes
// it once no process runs inside it any more.
func (n *NS) Close() error { return n.f.Close() }

// errTainted marks an error after which the thread is still in a
// foreign namespace: onThread lets it end rather than return it to the
// Go scheduler.
type errTainted struct{ error }

func (e errTainted) Unwrap() error { return e.error }

// onThread runs f on a goroutine locked to its OS thread. The thread is
// handed back to the runtime afterwards unless f reports it tainted, in
// which case the goroutine exits still locked and the runtime ends the
// thread.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := f()
		var t errTainted
		if !errors.As(err, &t) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
