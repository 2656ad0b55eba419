package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/vmdriver/vmdriver/images"
)

const imageUsage = `usage: vmdriver image build --kind minimal|systemd|desktop [--no-vga] [--packages A,B,...] --out DIR NAME[:VLAN[,VLAN...]]...
       vmdriver image list [--cache DIR]
       vmdriver image prune [--cache DIR] [--older-than 7d] [--max-size 2G] [--all] [--dry-run]`

func runImage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{imageUsage}
	}
	switch args[0] {
	case "build":
		return runImageBuild(ctx, args[1:], stdout, stderr)
	case "list":
		return runImageList(args[1:], stdout, stderr)
	case "prune":
		return runImagePrune(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown image command %q\n%s", args[0], imageUsage)}
}

func runImageBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", string(images.Minimal), "guest kind: minimal (busybox initramfs), systemd (debootstrap) or desktop (systemd with an X11 session: alice on :0, blackbox, xterm, xdotool)")
	out := fs.String("out", "", "directory for the run-NAME-vm start scripts (created)")
	cache := fs.String("cache", "", "image cache directory (default: the user cache dir)")
	quiet := fs.Bool("q", false, "print only the script paths")
	verbose := fs.Bool("v", false, "print the build steps even when stderr is not a terminal")
	outbound := fs.Bool("net-outbound", false, "let the guests reach the host's networks and the internet through QEMU's NAT (default: isolated; forwarded ports work either way)")
	noVGA := fs.Bool("no-vga", false, "give the machines no display device (QEMU -vga none); the desktop guest's X session then runs on Xvfb")
	var packages []string
	fs.Func("packages", "extra Debian packages `A,B,...` (with their dependencies) for the systemd and desktop guests; the image is cached by the whole set", func(s string) error {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				packages = append(packages, p)
			}
		}
		return nil
	})
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usageError{"image build: --out DIR is required"}
	}
	if fs.NArg() == 0 {
		return usageError{"image build: name at least one machine (NAME...)"}
	}
	switch images.Kind(*kind) {
	case images.Minimal, images.Systemd, images.Desktop:
	default:
		return usageError{fmt.Sprintf("image build: unknown --kind %q (want minimal, systemd or desktop)", *kind)}
	}
	if *quiet && *verbose {
		return usageError{"image build: -q and -v contradict each other"}
	}
	paths, err := images.Build(ctx, images.Options{
		Kind:        images.Kind(*kind),
		OutDir:      *out,
		Names:       fs.Args(),
		CacheDir:    *cache,
		NetOutbound: *outbound,
		NoVGA:       *noVGA,
		Packages:    packages,
		Logf:        progress(stderr, *verbose, *quiet),
	})
	if errors.Is(err, images.ErrBadOptions) {
		return usageError{fmt.Sprintf("image build: %v", err)}
	}
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	return nil
}

// progress returns the builder's log function: its step lines go to w
// when w is a terminal or verbose, and nowhere when quiet or when the
// output is a log file (errors are reported anyway).
func progress(w io.Writer, verbose, quiet bool) func(string, ...any) {
	f, ok := w.(*os.File)
	if quiet || !verbose && !(ok && term.IsTerminal(int(f.Fd()))) {
		return nil
	}
	return func(format string, a ...any) {
		fmt.Fprintf(w, strings.TrimSuffix(format, "\n")+"\n", a...)
	}
}

// parseFlags parses args into fs, which takes no positional arguments
// unless its caller checks them.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
	}
	return nil
}

// cacheDir returns the --cache value, or the default cache directory.
func cacheDir(flagValue string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	return images.DefaultCacheDir()
}

func runImageList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "image cache directory (default: the user cache dir)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("image list: unexpected argument %q (usage: vmdriver image list [--cache DIR])", fs.Arg(0))}
	}
	dir, err := cacheDir(*cache)
	if err != nil {
		return err
	}
	entries, err := images.ListCache(dir)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tNAME\tSIZE\tLAST USED")
	var total int64
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Section, entryName(e), images.FormatSize(e.Size), ago(e.LastUsed, now))
		total += e.Size
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "total %s in %d entries under %s\n", images.FormatSize(total), len(entries), dir)
	return err
}

func runImagePrune(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("image prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache := fs.String("cache", "", "image cache directory (default: the user cache dir)")
	var opts images.PruneOptions
	fs.Func("older-than", "remove entries last used longer ago than this, e.g. 7d or 12h", func(s string) (err error) {
		opts.OlderThan, err = parseAge(s)
		return err
	})
	fs.Func("max-size", "then remove least recently used entries until the cache is at most this big, e.g. 2G or 500M", func(s string) (err error) {
		opts.MaxSize, err = images.ParseSize(s)
		if err == nil && opts.MaxSize == 0 {
			err = fmt.Errorf("invalid size %q: want a positive size, e.g. 2G or 500M", s)
		}
		return err
	})
	fs.BoolVar(&opts.All, "all", false, fmt.Sprintf("also remove entries used in the last %d minutes", int(images.RecentUse.Minutes())))
	fs.BoolVar(&opts.DryRun, "dry-run", false, "only print what would be removed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("image prune: unexpected argument %q (usage: vmdriver image prune [--older-than 7d] [--max-size 2G] ...)", fs.Arg(0))}
	}
	if opts.OlderThan == 0 && opts.MaxSize == 0 {
		limit, err := images.CacheCap()
		if err != nil {
			return usageError{fmt.Sprintf("image prune: %v", err)}
		}
		opts.MaxSize = limit // 0 when VMDRIVER_CACHE_CAP=off: nothing to do
	}
	dir, err := cacheDir(*cache)
	if err != nil {
		return err
	}
	removed, freed, err := images.Prune(ctx, dir, opts)
	verb, total := "removed", "freed"
	if opts.DryRun {
		verb, total = "would remove", "would free"
	}
	now := time.Now()
	for _, e := range removed {
		fmt.Fprintf(stdout, "%s %s (%s, last used %s)\n", verb, filepath.Join(e.Section, e.Name), images.FormatSize(e.Size), ago(e.LastUsed, now))
	}
	fmt.Fprintf(stdout, "%s %.1f MiB\n", total, float64(freed)/(1<<20))
	return err
}

// entryName is a cache entry's name in tables.
func entryName(e images.CacheEntry) string {
	if e.Name == "" {
		return "(whole section)"
	}
	return e.Name
}

// parseAge parses a duration as time.ParseDuration does, plus days
// ("7d", "1.5d") and weeks ("2w").
func parseAge(s string) (time.Duration, error) {
	var unit time.Duration
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	d, err := time.ParseDuration(s)
	if unit != 0 {
		var f float64
		f, err = strconv.ParseFloat(s[:len(s)-1], 64)
		if f *= float64(unit); !(f < math.MaxInt64) { // also NaN
			err = strconv.ErrRange
		}
		d = time.Duration(f)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: want a positive age such as 7d, 12h or 90m", s)
	}
	return d, nil
}

// ago says how long before now t was, for people: "just now",
// "5 minutes ago", "3 days ago", or a date when longer than a month.
func ago(t, now time.Time) string {
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit + " ago"
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute")
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour")
	case d < 30*24*time.Hour:
		return plural(int(d/(24*time.Hour)), "day")
	}
	return t.Format("2006-01-02")
}
