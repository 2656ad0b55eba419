package main

import (
	"fmt"
	"io"
	"runtime/debug"
	"text/tabwriter"

	"github.com/vmdriver/vmdriver/internal/hosttools"
)

// runDeps prints the host tools table with where each tool was found, and
// fails when one is missing: the same table `make deps` installs from.
// Optional tools are listed but never make it fail.
func runDeps(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{"usage: vmdriver deps (takes no arguments)"}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOOL\tPACKAGE\tFOUND\tNEEDED BY")
	var missing []string
	for _, t := range hosttools.All() {
		pkg := t.Package
		switch {
		case t.Optional:
			pkg = "(optional)"
		case pkg == "":
			pkg = "(yours)"
		}
		where, err := hosttools.Path(t.Name)
		switch {
		case err != nil && t.Optional:
			where = "not installed (optional)"
		case err != nil:
			where = "MISSING"
			missing = append(missing, t.Name)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, pkg, where, t.NeededBy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(missing) > 0 {
		return hosttools.Need(missing...)
	}
	return nil
}

// version describes this binary from the build information Go embeds:
// the module version, the VCS revision and time (with "+dirty" when the
// tree had uncommitted changes), and the Go version.
func version(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "vmdriver (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	out := "vmdriver " + v
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		out += " " + rev + dirty
		if when != "" {
			out += " " + when
		}
	}
	return out + " " + bi.GoVersion
}

func runVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return usageError{"usage: vmdriver version (takes no arguments)"}
	}
	_, err := fmt.Fprintln(stdout, version(debug.ReadBuildInfo()))
	return err
}
