package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/vmdriver/vmdriver/images"
)

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "build" {
		return usageError{"usage: vmdriver image build --kind minimal|systemd --out DIR NAME[:VLAN[,VLAN...]]..."}
	}
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", string(images.Minimal), "guest kind: minimal (busybox initramfs) or systemd (debootstrap)")
	out := fs.String("out", "", "directory for the run-NAME-vm start scripts (created)")
	cache := fs.String("cache", "", "image cache directory (default: the user cache dir)")
	quiet := fs.Bool("q", false, "print only the script paths")
	if err := fs.Parse(args[1:]); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{err.Error()}
	}
	if *out == "" {
		return usageError{"image build: --out DIR is required"}
	}
	if fs.NArg() == 0 {
		return usageError{"image build: name at least one machine (NAME...)"}
	}
	switch images.Kind(*kind) {
	case images.Minimal, images.Systemd:
	default:
		return usageError{fmt.Sprintf("image build: unknown --kind %q (want minimal or systemd)", *kind)}
	}
	logf := func(format string, a ...any) {
		if !*quiet {
			fmt.Fprintf(stderr, "image: "+strings.TrimSuffix(format, "\n")+"\n", a...)
		}
	}
	paths, err := images.Build(ctx, images.Options{
		Kind:     images.Kind(*kind),
		OutDir:   *out,
		Names:    fs.Args(),
		CacheDir: *cache,
		Logf:     logf,
	})
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}
