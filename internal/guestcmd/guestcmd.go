// Package guestcmd holds the text of every command the driver itself
// sends to a guest's root shell, one builder per intent.
//
// Package machine builds its guest commands only here, and unit tests
// script the mock guest's answers with the same builders
// (mock.Guest.Answer(guestcmd.UnitInfo("nginx.service", ""), ...)), so a
// change to a command's text changes both at once. What the commands do
// in a real shell (quoting, redirections, the base64 upload, /dev/vcsN)
// is tested on real guests by package integration.
//
// Every argument that reaches the shell is quoted as one word, unless a
// builder's documentation says it takes shell text.
package guestcmd

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Quote quotes s as one word for a POSIX shell. Words made only of safe
// characters stay as they are, which keeps logged commands readable.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r)) {
			safe = false
			break
		}
	}
	if safe && s[0] != '-' {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// FileExists succeeds when path exists.
func FileExists(path string) string { return "test -e " + Quote(path) }

// PortOpen succeeds when addr:port accepts a TCP connection: bash
// connects when it opens /dev/tcp/ADDR/PORT, so the probe starts no
// program (busybox's nc has no -z).
func PortOpen(addr string, port int) string {
	return ": 2>/dev/null <" + Quote("/dev/tcp/"+addr+"/"+strconv.Itoa(port))
}

// UnixSocketOpen succeeds when the unix socket at path accepts
// connections (a datagram socket with datagram); it needs an nc with -U,
// such as netcat-openbsd.
func UnixSocketOpen(path string, datagram bool) string {
	flag := "-U"
	if datagram {
		flag = "-uU"
	}
	return "nc -z " + flag + " " + Quote(path)
}

// TTYText prints the text of virtual terminal n, folded at its width.
func TTYText(n int) string {
	tty := strconv.Itoa(n)
	return `fold -w"$(stty -F /dev/tty` + tty + ` size | awk '{print $2}')" /dev/vcs` + tty
}

// DumpTTY writes the text of virtual terminal n into the journal.
func DumpTTY(n int) string { return "fold -w 80 /dev/vcs" + strconv.Itoa(n) + " | systemd-cat" }

// Systemctl runs `systemctl q`, as user's manager when user is set. q is
// shell text: it is not quoted.
func Systemctl(q, user string) string {
	if user == "" {
		return "systemctl " + q
	}
	inner := "XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user " + q
	return "su -l " + Quote(user) + " --shell /bin/sh -c " + Quote(inner)
}

// StartUnit starts unit (as user's manager when user is set).
func StartUnit(unit, user string) string { return Systemctl("start "+Quote(unit), user) }

// StopUnit stops unit.
func StopUnit(unit, user string) string { return Systemctl("stop "+Quote(unit), user) }

// UnitInfo prints every property of unit as KEY=VALUE lines.
func UnitInfo(unit, user string) string { return Systemctl("--no-pager show "+Quote(unit), user) }

// UnitProperty prints one property of unit as a KEY=VALUE line.
func UnitProperty(unit, property, user string) string {
	return Systemctl("--no-pager show "+Quote(unit)+" --property="+Quote(property), user)
}

// ListJobs prints the manager's pending jobs ("No jobs running." when
// there are none).
func ListJobs(user string) string { return Systemctl("list-jobs --full 2>&1", user) }

// Sleep sleeps d in the guest.
func Sleep(d time.Duration) string {
	return "sleep " + strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// MkdirAll creates dir and its parents.
func MkdirAll(dir string) string { return "mkdir -p -- " + Quote(dir) }

// CopyTree copies the file or directory tree src to dst.
func CopyTree(src, dst string) string { return "cp -r -- " + Quote(src) + " " + Quote(dst) }

// Upload writes data to path (appends with appendTo) through base64
// text, for guests without a shared directory.
func Upload(data []byte, path string, appendTo bool) string {
	redirect := " > "
	if appendTo {
		redirect = " >> "
	}
	return "printf %s " + Quote(base64.StdEncoding.EncodeToString(data)) + " | base64 -d" + redirect + Quote(path)
}

// PackTree writes a tar archive of parent/name (a file or a directory
// tree) to stdout, its entries under ./name, for copies from guests
// without a shared directory.
func PackTree(parent, name string) string {
	return "tar -cf - -C " + Quote(parent) + " " + Quote("./"+name)
}

// UnpackTree unpacks the tar archive at archive, whose entries are under
// ./name, to dst as `cp -r` would copy name there, and removes the
// archive, whatever happens.
func UnpackTree(archive, name, dst string) string {
	return "d=$(mktemp -d) && if tar -xf " + Quote(archive) + " -C \"$d\" && cp -r -- \"$d\"/" + Quote(name) + " " + Quote(dst) +
		"; then rc=0; else rc=$?; fi; rm -rf -- \"$d\" " + Quote(archive) + "; exit $rc"
}

// TempPath prints a fresh temporary file's path (made empty).
func TempPath() string { return "mktemp" }

// PowerOff powers the guest off cleanly.
func PowerOff() string { return "poweroff" }

// ForcePowerOff powers the guest off at once, without stopping services.
func ForcePowerOff() string { return "poweroff -f" }

// Settle waits, on a guest with systemd, until its boot has finished
// (running or degraded); on other guests it does nothing.
func Settle() string {
	return `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then systemctl is-system-running --wait >/dev/null 2>&1 || true; fi`
}

// ListInterfaces lists the network interfaces and their addresses, one
// line each (iproute2's and busybox's ip -o).
func ListInterfaces() string { return "ip -o link; ip -o addr" }

// ListMounts9p lists the 9p mounts as "SOURCE DIR OPTIONS" lines, with
// shell builtins only.
func ListMounts9p() string {
	return `while read -r src dir fs opts rest; do if [ "$fs" = 9p ]; then echo "$src $dir $opts"; fi; done < /proc/mounts`
}

// Unmount syncs the file systems, then unmounts dirs, the last one
// first (the innermost of nested mounts); umount's complaint goes to
// stdout, so that an error can quote it.
func Unmount(dirs ...string) string {
	var sb strings.Builder
	sb.WriteString("sync\n")
	for k := len(dirs) - 1; k >= 0; k-- {
		fmt.Fprintf(&sb, "umount %s 2>&1\n", Quote(dirs[k]))
	}
	return sb.String()
}

// Mount9p is a line that mounts the 9p share source at dir.
func Mount9p(source, dir, options string) string {
	return fmt.Sprintf("mount -t 9p -o %s %s %s\n", Quote(options), Quote(source), Quote(dir))
}

// Remount9p is a line that mounts the 9p share source at dir unless a 9p
// file system is mounted there already.
func Remount9p(source, dir, options string) string {
	return "grep -q " + Quote(" "+dir+" 9p ") + " /proc/mounts || " + Mount9p(source, dir, options)
}

// The lines of a clone's identity fix-up, which give a restored guest
// its own clock, names, entropy and addresses. Each ends in a newline;
// they are sent together as one script.

// SetClock is a line that sets the guest's clock to t (to the second
// where date takes no fraction, as busybox's).
func SetClock(t time.Time) string {
	secs := t.Unix()
	return fmt.Sprintf("date -s @%d.%09d >/dev/null 2>&1 || date -s @%d >/dev/null\n", secs, t.Nanosecond(), secs)
}

// SetHostname is a line that sets the kernel's host name and
// /etc/hostname. It writes /proc rather than running hostname: a builtin
// starts no process, and each costs tenths of a second in a guest whose
// translated code is gone.
func SetHostname(name string) string {
	return fmt.Sprintf("echo %s > /proc/sys/kernel/hostname\necho %s > /etc/hostname\n", Quote(name), Quote(name))
}

// SetMachineID is a line that writes /etc/machine-id (id in hex).
func SetMachineID(id string) string { return "echo " + Quote(id) + " > /etc/machine-id\n" }

// AddEntropy is a line that writes host randomness (hex) into the
// guest's entropy pool.
func AddEntropy(seed string) string { return "echo " + Quote(seed) + " > /dev/urandom\n" }

// SetMAC is a line that gives interface dev the hardware address mac.
func SetMAC(dev, mac string) string {
	return fmt.Sprintf("ip link set dev %s address %s\n", Quote(dev), Quote(mac))
}

// ReplaceAddr is the lines that replace address old of interface dev
// with new.
func ReplaceAddr(dev string, old, new netip.Prefix) string {
	return fmt.Sprintf("ip addr del %s dev %s\nip addr add %s dev %s\n", old, Quote(dev), new, Quote(dev))
}

// FlushNeighbours is a line that empties the neighbour cache of dev.
func FlushNeighbours(dev string) string { return "ip neigh flush dev " + Quote(dev) + "\n" }

// AddHost is a line that appends line to /etc/hosts.
func AddHost(line string) string { return "echo " + Quote(line) + " >> /etc/hosts\n" }

// The X11 display of NixOS tests: display :0, alice's authority file,
// unless the root shell says otherwise.
const xEnv = `DISPLAY="${DISPLAY:-:0}" XAUTHORITY="${XAUTHORITY:-/home/alice/.Xauthority}" `

// XReady succeeds once the graphical target was reached and the X
// server's socket exists (the NixOS driver's test; Debian's systemd says
// "graphical.target", NixOS's "Current graphical").
func XReady() string {
	return `journalctl -b SYSLOG_IDENTIFIER=systemd | grep -q 'Reached target.*[Gg]raphical' && [ -e /tmp/.X11-unix/X0 ]`
}

// WindowTree prints the X11 window tree of display :0.
func WindowTree() string { return xEnv + "xwininfo -root -tree" }

// ScreenDump writes display :0 as a gzip'ed X window dump, in base64, to
// stdout (the shell's output is text).
func ScreenDump() string {
	return "set -o pipefail; " + xEnv + "xwd -root -silent | gzip -1 | base64 -w0"
}

// XKey presses a key or chord in xdotool's names ("ctrl+alt+Delete") on
// display :0.
func XKey(keys string) string { return xEnv + "xdotool key --clearmodifiers " + Quote(keys) }

// XType types text on display :0, pausing delay after each key.
func XType(text string, delay time.Duration) string {
	return xEnv + "xdotool type --clearmodifiers --delay " + strconv.Itoa(int(delay.Milliseconds())) + " -- " + Quote(text)
}

// SwitchRoot leaves the initrd for stage 2 without waiting (a guest whose
// backdoor runs in the initrd: NixOS's testing.initrdBackdoor).
func SwitchRoot() string { return "systemctl isolate --no-block initrd-switch-root.target" }
