package guestcmd

import (
	"net/netip"
	"testing"
	"time"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"plain/path_1.2,x=y:z@h%+", "plain/path_1.2,x=y:z@h%+"},
		{"-rf", "'-rf'"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{`"$HOME" ` + "`x`", `'"$HOME" ` + "`x`'"},
		{"tab\there\nnewline", "'tab\there\nnewline'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestCommands pins the exact text of every command: unit tests answer
// them through these builders, and the integration tests run them on
// real guests, so a change here is deliberate.
func TestCommands(t *testing.T) {
	clock := time.Unix(1790000000, 5)
	tests := []struct{ got, want string }{
		{FileExists(`/tmp/it's a "file" $HOME`), `test -e '/tmp/it'\''s a "file" $HOME'`},
		{PortOpen("localhost", 80), ": 2>/dev/null </dev/tcp/localhost/80"},
		{PortOpen("a b", 1), ": 2>/dev/null <'/dev/tcp/a b/1'"},
		{UnixSocketOpen("/run/my app.sock", false), "nc -z -U '/run/my app.sock'"},
		{UnixSocketOpen("/run/log.sock", true), "nc -z -uU /run/log.sock"},
		{TTYText(2), `fold -w"$(stty -F /dev/tty2 size | awk '{print $2}')" /dev/vcs2`},
		{DumpTTY(3), "fold -w 80 /dev/vcs3 | systemd-cat"},
		{Systemctl("is-active nginx.service", ""), "systemctl is-active nginx.service"},
		{Systemctl("is-active app.service", "o'brien"),
			`su -l 'o'\''brien' --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user is-active app.service'`},
		{StartUnit("my app.service", ""), "systemctl start 'my app.service'"},
		{StopUnit("a.service", "bob"), `su -l bob --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user stop a.service'`},
		{UnitInfo("web server.service", ""), "systemctl --no-pager show 'web server.service'"},
		{UnitProperty("a.service", "MainPID", ""), "systemctl --no-pager show a.service --property=MainPID"},
		{UnitProperty("a b", "X Y", "al ice"),
			`su -l 'al ice' --shell /bin/sh -c 'XDG_RUNTIME_DIR=/run/user/$(id -u) systemctl --user --no-pager show '\''a b'\'' --property='\''X Y'\'''`},
		{ListJobs(""), "systemctl list-jobs --full 2>&1"},
		{Sleep(20 * time.Millisecond), "sleep 0.02"},
		{Sleep(90 * time.Second), "sleep 90"},
		{MkdirAll("/srv/data dir"), "mkdir -p -- '/srv/data dir'"},
		{CopyTree("/tmp/shared/copy1/x", "/etc/o'neil"), `cp -r -- /tmp/shared/copy1/x '/etc/o'\''neil'`},
		{Upload([]byte("hi\n"), "/root/my dir/b", false), "printf %s aGkK | base64 -d > '/root/my dir/b'"},
		{Upload(nil, "/b", true), "printf %s '' | base64 -d >> /b"},
		{PowerOff(), "poweroff"},
		{ForcePowerOff(), "poweroff -f"},
		{ListInterfaces(), "ip -o link; ip -o addr"},
		{Unmount("/tmp/shared", "/tmp/shared/x y"), "sync\numount '/tmp/shared/x y' 2>&1\numount /tmp/shared 2>&1\n"},
		{Unmount(), "sync\n"},
		{Mount9p("shared", "/tmp/shared", "trans=virtio,version=9p2000.L"), "mount -t 9p -o trans=virtio,version=9p2000.L shared /tmp/shared\n"},
		{Remount9p("s", "/a b", "o"), "grep -q ' /a b 9p ' /proc/mounts || mount -t 9p -o o s '/a b'\n"},
		{SetClock(clock), "date -s @1790000000.000000005 >/dev/null 2>&1 || date -s @1790000000 >/dev/null\n"},
		{SetHostname("web-1"), "echo web-1 > /proc/sys/kernel/hostname\necho web-1 > /etc/hostname\n"},
		{SetMachineID("0123abcd"), "echo 0123abcd > /etc/machine-id\n"},
		{AddEntropy("a1b2"), "echo a1b2 > /dev/urandom\n"},
		{SetMAC("eth1", "52:54:00:12:01:05"), "ip link set dev eth1 address 52:54:00:12:01:05\n"},
		{ReplaceAddr("eth1", netip.MustParsePrefix("192.168.1.2/24"), netip.MustParsePrefix("192.168.1.5/24")),
			"ip addr del 192.168.1.2/24 dev eth1\nip addr add 192.168.1.5/24 dev eth1\n"},
		{FlushNeighbours("eth1"), "ip neigh flush dev eth1\n"},
		{AddHost("192.168.1.5 web-1"), "echo '192.168.1.5 web-1' >> /etc/hosts\n"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got  %q\nwant %q", tt.got, tt.want)
		}
	}
	if Settle() == "" || ListMounts9p() == "" {
		t.Error("an empty command")
	}
}
