package hosttools

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestTableParses(t *testing.T) {
	tools, err := parse(tableText)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools) < 10 {
		t.Fatalf("only %d tools in the table", len(tools))
	}
	for _, tool := range tools {
		if strings.ContainsAny(tool.Name, " \t") || strings.ContainsAny(tool.Package, " \t") {
			t.Errorf("%q / %q: names and packages have no blanks", tool.Name, tool.Package)
		}
		if tool.NeededBy == "" {
			t.Errorf("%s: say who needs it", tool.Name)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tt := range []struct{ name, text, want string }{
		{"two columns", "zstd\tzstd\n", "want NAME<TAB>PACKAGE<TAB>NEEDED-BY"},
		{"no package", "zstd\t\tsnapshots\n", "want NAME"},
		{"listed twice", "a\tp\tx\nb\tq\ty\na\tp\tz\n", "a is listed twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parse = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestPath(t *testing.T) {
	if p, err := Path("sh"); err != nil || !filepath.IsAbs(p) {
		t.Errorf("Path(sh) = %q, %v; want an absolute path", p, err)
	}
	if _, err := Path("no-such-tool"); !errors.Is(err, ErrUnlisted) || !strings.Contains(err.Error(), "tools.tsv") {
		t.Errorf("Path of an unlisted tool = %v, want ErrUnlisted pointing at tools.tsv", err)
	}
	// A listed tool that is not installed: an empty PATH and no sbin hit.
	t.Setenv("PATH", t.TempDir())
	old := sbinDirs
	sbinDirs = nil
	t.Cleanup(func() { sbinDirs = old })
	_, err := Path("vde_switch")
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "Debian package vde2") {
		t.Errorf("Path of a missing tool = %v, want ErrMissing naming package vde2", err)
	}
	err = Need("depmod", "vde_switch", "go")
	for _, want := range []string{"depmod (package kmod)", "vde_switch (package vde2)", "go (not a Debian package", "apt-get install kmod vde2"} {
		if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), want) {
			t.Errorf("Need = %v, want ErrMissing containing %q", err, want)
		}
	}
	if err := Need("depmod", "nope"); !errors.Is(err, ErrUnlisted) {
		t.Errorf("Need with an unlisted name = %v, want ErrUnlisted", err)
	}
}

func TestPathFindsSbin(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "depmod"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	old := sbinDirs
	sbinDirs = []string{dir}
	t.Cleanup(func() { sbinDirs = old })
	if p, err := Path("depmod"); err != nil || p != filepath.Join(dir, "depmod") {
		t.Errorf("Path(depmod) = %q, %v; want the sbin copy", p, err)
	}
}

// TestEveryRunToolIsListed reads the whole module's Go source and checks
// that every host program named by a constant where code runs or looks
// one up is in the table, and that nothing but this package searches PATH.
func TestEveryRunToolIsListed(t *testing.T) {
	root := filepath.Join("..", "..")
	found := map[string][]string{}
	fset := token.NewFileSet()
	var files []*ast.File
	consts := map[string]string{} // "dir.Name" and "pkg.Name" -> value
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n != ".." && n != "." && (strings.HasPrefix(n, ".") || n == "build" || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		files = append(files, f)
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[filepath.Dir(path)+"."+n.Name] = s
							consts[f.Name.Name+"."+n.Name] = s
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		path := fset.Position(f.Package).Filename
		dir := filepath.Dir(path)
		resolve := func(e ast.Expr) (string, bool) {
			switch e := e.(type) {
			case *ast.Ident:
				s, ok := consts[dir+"."+e.Name]
				return s, ok
			case *ast.SelectorExpr:
				if x, ok := e.X.(*ast.Ident); ok {
					s, ok := consts[x.Name+"."+e.Sel.Name]
					return s, ok
				}
			}
			return stringLit(e)
		}
		note := func(e ast.Expr) {
			if s, ok := resolve(e); ok {
				pos := fset.Position(e.Pos())
				found[s] = append(found[s], pos.String())
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				name := callName(n.Fun)
				switch name {
				case "exec.LookPath":
					if dir != filepath.Join(root, "internal", "hosttools") {
						t.Errorf("%s: exec.LookPath outside hosttools: use hosttools.Path (testenv.NeedCommand in tests)", fset.Position(n.Pos()))
					}
					note(n.Args[0])
				case "exec.Command", "hosttools.Path", "hosttools.MissingError", "Path", "MissingError":
					note(n.Args[0])
				case "exec.CommandContext", "testenv.NeedCommand", "runTool":
					note(n.Args[1])
				case "hosttools.Need", "Need":
					for _, a := range n.Args {
						note(a)
					}
				}
			case *ast.CompositeLit:
				if id, ok := n.Type.(*ast.Ident); ok && id.Name == "command" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok {
							if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "name" {
								note(kv.Value)
							}
						}
					}
				}
			}
			return true
		})
	}
	// The scan must see the uses it exists to check.
	for _, want := range []string{"depmod", "vde_switch", "qemu-img", "zstd", "debootstrap", "qemu-system-x86_64"} {
		if len(found[want]) == 0 {
			t.Errorf("the scan found no use of %s: is it still reading the source?", want)
		}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range found {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		if strings.HasPrefix(name, "/") || strings.HasPrefix(name, "no-such") || strings.HasPrefix(name, "nope") {
			continue // paths of files the code made, and this test's own negatives
		}
		if _, ok := Lookup(name); !ok {
			t.Errorf("%s runs %q, which internal/hosttools/tools.tsv does not list (add it with its Debian package)", found[name][0], name)
		}
	}
}

func callName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok {
			return x.Name + "." + e.Sel.Name
		}
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

func TestOptionalTool(t *testing.T) {
	tools, err := parse("fc\toptional\tbackend/x\ngo\t-\tbuilding\n")
	if err != nil {
		t.Fatal(err)
	}
	if !tools[0].Optional || tools[0].Package != "" || tools[1].Optional {
		t.Fatalf("parsed %+v", tools)
	}
	fc, ok := Lookup("firecracker")
	if !ok || !fc.Optional {
		t.Fatalf("firecracker row = %+v, %v; want an optional tool", fc, ok)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := Path("firecracker"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "install it yourself") {
		t.Errorf("Path(firecracker) = %v", err)
	}
}
