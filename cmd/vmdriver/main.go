// Command vmdriver boots virtual machines and runs NixOS-style tests
// against them.
//
//	vmdriver eval-file SCRIPT --start-scripts "run-a-vm run-b-vm"
//	vmdriver image build|list|prune ...
//	vmdriver deps | version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Exit codes shared by every subcommand.
const (
	exitOK    = 0
	exitFail  = 1 // the test (or the requested action) failed
	exitUsage = 2 // bad command line, configuration or script
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var code int
	if filepath.Base(os.Args[0]) == "nixos-test-driver" {
		// Installed or linked under the NixOS driver's name, vmdriver takes
		// exactly that program's command line.
		code = runTest(ctx, cmdCompat, "nixos-test-driver", os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	} else {
		code = run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

// usageError marks errors caused by the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "image":
		err = runImage(ctx, args[1:], stdout, stderr)
	case "eval-file", "run":
		return runTest(ctx, cmdEvalFile, args[0], args[1:], stdin, stdout, stderr)
	case "eval":
		return runTest(ctx, cmdEval, args[0], args[1:], stdin, stdout, stderr)
	case "check":
		return runTest(ctx, cmdCheck, args[0], args[1:], stdin, stdout, stderr)
	case "snapshot":
		return runSnapshot(ctx, args[1:], stdin, stdout, stderr)
	case "deps":
		err = runDeps(args[1:], stdout)
	case "version", "--version", "-version":
		err = runVersion(args[1:], stdout)
	case "help", "-h", "-help", "--help":
		printUsage(stdout)
		return exitOK
	default:
		err = usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "vmdriver: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "run `vmdriver help` for usage")
		return exitUsage
	}
	return exitFail
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: vmdriver COMMAND [ARGS]

commands:
  eval-file SCRIPT [FLAGS]   (alias: run)
        run a NixOS-style test script against the configured machines
  eval CODE [FLAGS]
        run CODE as the test script
  check SCRIPT [FLAGS]
        rewrite, parse and resolve SCRIPT against the machine names; boots
        nothing; says which engine would run it; exit 0 when fine, 2
        otherwise

  flags (both nixos-test-driver spellings): --config FILE, --start-scripts
  "A B", --vm-names/--vm-start-scripts, --vlans "1 2", --global-timeout SECS,
  -K/--keep-machine-state, -I/--interactive, -o/--output_directory DIR,
  --junit-xml FILE, --log-level LEVEL, --log-format text|json,
  --backend NAME ("backend" in the config)
        the hypervisor backend: qemu (the default: the start scripts),
        microvm (QEMU -M microvm), firecracker or cloud-hypervisor; all
        but qemu boot NAME.machine.json beside each start script (written
        by vmdriver image build)

  --net vde|tap ("network" in the config)
        the VLANs: a VDE switch per VLAN (vde, the NixOS driver's; the
        default for qemu and microvm) or a Linux bridge per VLAN with a
        TAP device per NIC, inside a private network namespace that the
        run creates and removes (tap; needs root; the default and only
        kind for firecracker and cloud-hypervisor)

  --warm (env VMDRIVER_WARM=1; "warm": true in the config)
        start each machine from a post-boot snapshot saved by an earlier
        run of the same machine (same start script, files it names,
        environment, QEMU) instead of booting it; without one, boot cold
        and save one once the guest settled. Entries live in the image
        cache's warm/ directory (image list/prune). --warm-from DIR uses
        DIR's entries without writing there

  --python, --starlark, --python-bin PATH
        the script engine: by default a script the Starlark engine accepts
        runs there, any other in a real CPython 3.9+ (python3 from PATH, or
        --python-bin), with the same globals and log; the run's log says
        why in one line. --python and --starlark force one

  --fork-subtests [-j/--jobs N]
        run the script as a suite: boot the machines once, run its set-up
        (every statement before the first top-level "with subtest(...):"),
        snapshot the machines, then run each top-level subtest on fresh
        clones of them, N at a time (default 2), so that a failing subtest
        cannot disturb another; then the statements after the last subtest
        run on the original machines. Each subtest is logged whole when it
        ends and reported in JUnit as usual; the run fails if any subtest
        failed. A statement between two subtests is an error; subtests see
        set-up's values frozen. Not with -I. check --fork-subtests checks
        the split.

  exit codes: 0 pass, 1 test failed, 2 usage or script error, 3 global
  timeout, 4 infrastructure error (the run could not be set up)

  image build --kind minimal|systemd|desktop --out DIR NAME[:VLAN[,VLAN...]]...
        build test guests from Debian packages and write DIR/run-NAME-vm
        start scripts (nixpkgs run-<name>-vm contract); nodes are numbered
        by sorted name, NIC i on VLAN v gets 192.168.v.<node>/24 as ethI;
        then trims the cache to its cap (see prune). Step lines go to
        stderr on a terminal or with -v, never with -q. The guests cannot
        reach the host's networks unless --net-outbound (then they reach
        whatever the host reaches, through QEMU's NAT). desktop is the
        systemd guest with X11 as NixOS X11 tests have it: alice logged
        into :0 (blackbox), xterm, xdotool, wmctrl, x11-utils; Xorg on the
        VGA, or Xvfb with --no-vga (no display device). --packages A,B,...
        installs extra Debian packages (systemd and desktop kinds)
  image list [--cache DIR]
        list the cache (guest images, packages, apt answers) with sizes
        and last use, least recently used first
  image prune [--cache DIR] [--older-than 7d] [--max-size 2G] [--all] [--dry-run]
        remove cache entries last used longer ago than --older-than, then
        least recently used ones until the cache fits --max-size (without
        either: the cap every build applies, 4G or $VMDRIVER_CACHE_CAP);
        entries used in the last 10 minutes stay unless --all
  snapshot --out DIR [FLAGS]
        boot the configured machines (same flags as eval-file), let them
        settle and write each one's warm entry into DIR, printing the
        entries' paths; a run with --warm-from DIR then starts them warm.
        For CI caches and build systems (a Nix derivation's output), where
        the per-user cache is out of reach
  deps  list the host tools vmdriver runs, their Debian packages and
        where each was found; exit 1 if one is missing (make deps installs
        them)
  version, --version
        print the module version, VCS revision and Go version
  help  show this help
`)
}
