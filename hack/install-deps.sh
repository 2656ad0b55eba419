#!/bin/sh
# Installs the Debian packages vmdriver's build, images and tests need,
# from the one table of host tools (internal/hosttools/tools.tsv) that the
# code's "missing host tool" errors also read. Idempotent: it installs only
# what is missing. As root it runs apt-get; otherwise it prints the command
# to run and fails.
set -eu
cd "$(dirname "$0")/.."
table=internal/hosttools/tools.tsv

missing=""
absent_prereq=""
tab=$(printf '\t')
while IFS="$tab" read -r name pkg _; do
	case "$name" in '' | '#'*) continue ;; esac
	[ "$pkg" = optional ] && continue # not required: install it yourself
	case "$name" in
	/*) [ -e "$name" ] && continue ;;
	*) command -v "$name" >/dev/null 2>&1 || [ -x "/usr/sbin/$name" ] || [ -x "/sbin/$name" ] && continue ;;
	esac
	if [ "$pkg" = - ]; then
		absent_prereq="$absent_prereq $name"
	else
		missing="$missing $pkg"
	fi
done <"$table"

if [ -n "$absent_prereq" ]; then
	echo "deps: missing prerequisites that are not installed from Debian here:$absent_prereq" >&2
	exit 1
fi
if [ -z "$missing" ]; then
	echo "deps: all present"
	exit 0
fi
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing Debian packages: $missing" >&2
	echo "deps: run as root: apt-get update && apt-get install -y $missing" >&2
	exit 1
fi
echo "deps: installing $missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "deps: installed $missing"
