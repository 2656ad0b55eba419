// Command vmdriver boots virtual machines and runs NixOS-style tests
// against them.
//
//	vmdriver image build --kind minimal|systemd --out DIR NAME...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError marks errors caused by the command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "image":
		err = runImage(ctx, args[1:], stdout, stderr)
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
  image build --kind minimal|systemd --out DIR NAME...
        build test guests from Debian packages and write DIR/run-NAME-vm
        start scripts (nixpkgs run-<name>-vm contract)
  help  show this help
`)
}
