#!/bin/sh
# Installs the Debian packages vmdriver's build, images and tests need.
# Idempotent: it installs only what is missing. As root it runs apt-get;
# otherwise it prints the command to run and fails.
set -eu

# command:package pairs; the command proves the package is installed.
need="
qemu-system-x86_64:qemu-system-x86
qemu-img:qemu-utils
busybox:busybox-static
debootstrap:debootstrap
mkfs.ext4:e2fsprogs
xz:xz-utils
cpio:cpio
zstd:zstd
vde_switch:vde2
dpkg-deb:dpkg
apt-get:apt
ip:iproute2
setsid:util-linux
"
# Firmware for QEMU's default VGA card and SeaBIOS come with qemu-system-x86
# (through seabios and ipxe-qemu); checked by file, not command.
files="
/usr/share/seabios/bios-256k.bin:seabios
/usr/share/seabios/vgabios-stdvga.bin:seabios
"

missing=""
for pair in $need; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/sbin/$cmd" ] || missing="$missing $pkg"
done
for pair in $files; do
	f=${pair%%:*}
	pkg=${pair#*:}
	[ -e "$f" ] || missing="$missing $pkg"
done

if [ -z "$missing" ]; then
	echo "deps: all present"
	exit 0
fi
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages:$missing" >&2
	echo "deps: run as root: apt-get update && apt-get install -y $missing" >&2
	exit 1
fi
echo "deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: installed $missing"
