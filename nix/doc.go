// Package nix holds vmdriver's Nix packaging (package.nix, with-vmdriver.nix,
// swap-driver.sh; flake.nix at the root). It has no Go code of its own: its
// tests parse every Nix file, recompute package.nix's vendorHash and run
// the driver swap against the vmdriver command line.
package nix
