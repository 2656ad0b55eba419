// Package hosttools is the one table of host programs vmdriver runs and the
// Debian package that provides each. `make deps` installs from the same
// table (tools.tsv, embedded here), so an error that says which package to
// install can never disagree with what set-up installs.
//
// Code finds a program with Path or checks several with Need; both refuse
// a name the table does not list, so a new tool cannot slip in without
// `make deps` learning to install it.
package hosttools

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

//go:embed tools.tsv
var tableText string

// Tool is one row of the table.
type Tool struct {
	// Name is the program's name, or an absolute path for a file the
	// code reads (firmware, certificates).
	Name string
	// Package is the Debian package that installs it, or "" for a
	// prerequisite the user brings (Go, make) or an optional tool.
	Package string
	// Optional marks a tool that is not a Debian package and that only
	// an optional part of vmdriver needs (a hypervisor other than
	// QEMU): `make deps` neither installs nor requires it. Its package
	// column reads "optional".
	Optional bool
	// NeededBy says which part of vmdriver uses it.
	NeededBy string
}

var (
	// ErrMissing is wrapped by the error for a listed tool that is not
	// installed.
	ErrMissing = errors.New("not installed")
	// ErrUnlisted is wrapped by the error for a name the table does not
	// list: a programming error, caught by the tests.
	ErrUnlisted = errors.New("host tool not in the tools table")
)

// missingTools is Need's error: its own wording, and ErrMissing to test.
type missingTools string

func (e missingTools) Error() string { return string(e) }
func (e missingTools) Unwrap() error { return ErrMissing }

var parsed = sync.OnceValues(func() ([]Tool, error) { return parse(tableText) })

// parse reads the table: tab-separated name, package, needed-by; '#'
// starts a comment line. The package "-" marks a prerequisite, "optional"
// an optional tool.
func parse(text string) ([]Tool, error) {
	var tools []Tool
	seen := map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 || f[0] == "" || f[1] == "" {
			return nil, fmt.Errorf("tools.tsv:%d: want NAME<TAB>PACKAGE<TAB>NEEDED-BY, got %q", i+1, line)
		}
		if seen[f[0]] {
			return nil, fmt.Errorf("tools.tsv:%d: %s is listed twice", i+1, f[0])
		}
		seen[f[0]] = true
		t := Tool{Name: f[0], Package: f[1], NeededBy: f[2]}
		switch t.Package {
		case "-":
			t.Package = ""
		case "optional":
			t.Package = ""
			t.Optional = true
		}
		tools = append(tools, t)
	}
	return tools, nil
}

// All returns the table in its file order.
func All() []Tool {
	tools, err := parsed()
	if err != nil {
		panic("hosttools: " + err.Error()) // embedded file: caught by the tests
	}
	return slices.Clone(tools)
}

// Lookup returns the table's row for name.
func Lookup(name string) (Tool, bool) {
	for _, t := range All() {
		if t.Name == name {
			return t, true
		}
	}
	return Tool{}, false
}

// sbinDirs are searched after PATH: a non-root user's PATH often lacks
// them, yet depmod, mkfs.ext4 and chroot live there and run unprivileged.
var sbinDirs = []string{"/usr/sbin", "/sbin"}

// Path returns the absolute path of the listed program name: from PATH,
// else from the sbin directories. A missing program's error wraps
// ErrMissing and names the Debian package to install.
func Path(name string) (string, error) {
	if _, ok := Lookup(name); !ok {
		return "", MissingError(name)
	}
	if filepath.IsAbs(name) {
		if _, err := os.Stat(name); err != nil {
			return "", MissingError(name)
		}
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", MissingError(name)
}

// MissingError returns the error that says the listed tool name is not
// installed and what installs it. It wraps ErrMissing; packages keep one
// as their own sentinel (qemu.ErrNoQEMU) so callers can test for it.
func MissingError(name string) error {
	t, ok := Lookup(name)
	switch {
	case !ok:
		return fmt.Errorf("%w: %q (add it to internal/hosttools/tools.tsv with its Debian package)", ErrUnlisted, name)
	case t.Optional:
		return fmt.Errorf("%s is %w (needed by %s; it is not a Debian package: install it yourself)", t.Name, ErrMissing, t.NeededBy)
	case t.Package == "":
		return fmt.Errorf("%s is %w (needed by %s)", t.Name, ErrMissing, t.NeededBy)
	}
	return fmt.Errorf("%s is %w: install the Debian package %s (`make deps` installs all that vmdriver needs)", t.Name, ErrMissing, t.Package)
}

// Need checks that every named tool is installed and returns one error
// naming all the missing ones and their packages.
func Need(names ...string) error {
	var missing, pkgs []string
	for _, name := range names {
		if _, err := Path(name); err != nil {
			if errors.Is(err, ErrUnlisted) {
				return err
			}
			t, _ := Lookup(name)
			if t.Package == "" {
				missing = append(missing, name+" (not a Debian package: install it yourself)")
			} else {
				missing = append(missing, fmt.Sprintf("%s (package %s)", name, t.Package))
			}
			if t.Package != "" && !slices.Contains(pkgs, t.Package) {
				pkgs = append(pkgs, t.Package)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	slices.Sort(pkgs)
	msg := "missing host tools: " + strings.Join(missing, ", ")
	if len(pkgs) > 0 {
		msg += "; install them with `make deps` or apt-get install " + strings.Join(pkgs, " ")
	}
	return missingTools(msg)
}
