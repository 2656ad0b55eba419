#!/bin/sh
# swap-driver.sh ORIG VMDRIVER OUT
#
# Makes OUT a copy of the NixOS test driver derivation ORIG (what
# nixos/lib/testing/driver.nix builds: bin/nixos-test-driver, a makeWrapper
# script that execs bin/.nixos-test-driver-wrapped with the test's
# --config and flags) whose wrapper execs VMDRIVER/bin/nixos-test-driver
# instead, with the same arguments and environment.
set -eu
orig=$1 vmdriver=$2 out=$3
wrapper=$orig/bin/nixos-test-driver
target=$orig/bin/.nixos-test-driver-wrapped
if ! grep -qF "$target" "$wrapper"; then
	echo "swap-driver: $wrapper does not exec $target; this nixpkgs builds its test driver differently" >&2
	exit 1
fi
mkdir -p "$out/bin"
for f in "$orig"/*; do
	case ${f##*/} in bin) ;; *) ln -s "$f" "$out/" ;; esac
done
# The paths have no characters sed treats specially except '.', which
# only ever matches itself here.
sed "s|$target|$vmdriver/bin/nixos-test-driver|g" "$wrapper" >"$out/bin/nixos-test-driver"
chmod +x "$out/bin/nixos-test-driver"
