package modules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.starlark.net/starlark"
)

func TestOpen(t *testing.T) {
	runSnippets(t, []snippet{
		{"write read", `p = tmp + "/f"
f = open(p, "w")
n = f.write("héllo\n")
f.writelines(["a\n", "b"])
f.close()
res = [n, open(p).read(), open(p, "rb").read(), open(p).readlines(), [l for l in open(p)], open(p).read(3), open(p, "rb").read(3), f.closed, f.name == p, f.mode]`,
			`[6, "héllo\na\nb", b"héllo\na\nb", ["héllo\n", "a\n", "b"], ["héllo\n", "a\n", "b"], "hél", b"hé", True, True, "w"]`, ""},
		{"append exclusive", `p = tmp + "/f"
open(p, "w").write("a")
open(p, "a").write("b")
res = [open(p).read()]
open(tmp + "/g", "x").write("new")
res.append(open(tmp + "/g").read())`, `["ab", "new"]`, ""},
		{"exclusive exists", `open(tmp + "/g", "x").close()
open(tmp + "/g", "x")`, "", "open: open "},
		{"seek tell readline", `p = tmp + "/f"
f = open(p, "w+")
f.write("one\ntwo\n")
f.seek(0)
a = f.readline()
t = f.tell()
f.write("TWO\n")
f.seek(0)
res = [a, t, f.read(), f.seek(0, 2)]
f.close()`, `["one\n", 4, "one\nTWO\n", 8]`, ""},
		{"with closes", `for f in with_(open(tmp + "/f", "w")):
    f.write("x")
    inside = f.closed
res = [inside, f.closed, open(tmp + "/f").read()]`, `[False, True, "x"]`, ""},
		{"read write-only", `f = open(tmp + "/f", "w")
f.read()`, "", "file.read: file not open for reading (mode \"w\")"},
		{"write read-only", `open(tmp + "/f", "w").close()
open(tmp + "/f").write("x")`, "", "file.write: file not open for writing (mode \"r\")"},
		{"closed", `f = open(tmp + "/f", "w")
f.close()
f.write("x")`, "", "file.write: I/O operation on closed file"},
		{"missing", `open(tmp + "/nope")`, "", "open: open "},
		{"bad mode", `open(tmp + "/f", "rw")`, "", `open: invalid mode "rw": must have exactly one of r, w, a, x`},
		{"bad encoding", `open(tmp + "/f", "w", encoding="latin-1")`, "", `open: unsupported encoding "latin-1": only UTF-8 is supported`},
		{"write wrong type", `open(tmp + "/f", "w").write(1)`, "", "file.write: want str or bytes, got int"},
	}, tmpDir)
}

func TestTempfile(t *testing.T) {
	runSnippets(t, []snippet{
		{"NamedTemporaryFile", `tempfile = import_("tempfile")
os = import_("os")
for f in with_(tempfile.NamedTemporaryFile(dir=tmp, suffix=".txt")):
    f.write(b"abc")
    f.write("def")
    f.flush()
    name = f.name
    inside = [os.path.exists(name), open(name).read(), name.endswith(".txt"), name.startswith(tmp + "/tmp")]
    f.seek(0)
    back = f.read()
res = inside + [back, os.path.exists(name)]`, `[True, "abcdef", True, True, b"abcdef", False]`, ""},
		{"NamedTemporaryFile text no delete", `tempfile = import_("tempfile")
f = tempfile.NamedTemporaryFile(mode="w", delete=False, dir=tmp, prefix="keep-")
f.write("x")
f.close()
res = [open(f.name).read(), f.name.split("/")[-1].startswith("keep-")]`, `["x", True]`, ""},
		{"TemporaryDirectory", `tempfile = import_("tempfile")
os = import_("os")
for d in with_(tempfile.TemporaryDirectory(dir=tmp)):
    open(d + "/f", "w").write("x")
    os.makedirs(d + "/ro/sub")
    open(d + "/ro/sub/f", "w").write("y")
    os.chmod(d + "/ro/sub", 0o500)
    os.chmod(d + "/ro", 0o500)
    inside = os.path.isdir(d)
res = [inside, os.path.exists(d)]`, `[True, False]`, ""},
		{"TemporaryDirectory cleanup", `tempfile = import_("tempfile")
os = import_("os")
t = tempfile.TemporaryDirectory(prefix="x", dir=tmp)
a = os.path.isdir(t.name)
t.cleanup()
t.cleanup()
res = [a, os.path.exists(t.name), t.name.startswith(tmp + "/x")]`, `[True, False, True]`, ""},
		{"mkdtemp and gettempdir", `tempfile = import_("tempfile")
os = import_("os")
d = tempfile.mkdtemp(dir=tmp, prefix="p", suffix="s")
os.environ["TMPDIR"] = tmp
res = [os.path.isdir(d), os.path.basename(d)[0], d[-1], tempfile.gettempdir() == tmp, tempfile.mkdtemp().startswith(tmp + "/tmp")]`,
			`[True, "p", "s", True, True]`, ""},
		{"bad prefix", `tempfile = import_("tempfile")
tempfile.mkdtemp(prefix="a/b")`, "", "tempfile.mkdtemp: prefix and suffix must not contain /"},
	}, tmpDir)
}

// TestCloseCleansUp: Modules.Close removes what the script left behind.
func TestCloseCleansUp(t *testing.T) {
	dir := t.TempDir()
	m := New(Host{})
	globals, err := execScript(t, m, `tempfile = import_("tempfile")
td = tempfile.TemporaryDirectory(dir=tmp)
ntf = tempfile.NamedTemporaryFile(dir=tmp)
kept = tempfile.NamedTemporaryFile(dir=tmp, delete=False)
f = open(tmp + "/plain", "w")
f.write("data")
res = [td.name, ntf.name, kept.name]`, starlark.StringDict{"tmp": starlark.String(dir)})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for v := range globals["res"].(*starlark.List).Elements() {
		paths = append(paths, string(v.(starlark.String)))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing before Close: %v", p, err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, p := range paths[:2] {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Close (err %v)", p, err)
		}
	}
	if _, err := os.Stat(paths[2]); err != nil {
		t.Errorf("delete=False file removed by Close: %v", err)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "plain")); string(data) != "data" {
		t.Errorf("plain file holds %q after Close", data)
	}
	if closed, _ := globals["f"].(*File).Attr("closed"); closed != starlark.True {
		t.Errorf("open file not closed by Close")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestShutil(t *testing.T) {
	runSnippets(t, []snippet{
		{"copy", `shutil = import_("shutil")
os = import_("os")
open(tmp + "/a", "w").write("A")
os.chmod(tmp + "/a", 0o750)
os.mkdir(tmp + "/d")
r1 = shutil.copyfile(tmp + "/a", tmp + "/b")
r2 = shutil.copy(tmp + "/a", tmp + "/d")
r3 = shutil.copy2(tmp + "/a", tmp + "/c")
res = [r1 == tmp + "/b", r2 == tmp + "/d/a", r3 == tmp + "/c", open(tmp + "/b").read(), open(tmp + "/d/a").read(), open(tmp + "/c").read()]`,
			`[True, True, True, "A", "A", "A"]`, ""},
		{"copyfile same file", `shutil = import_("shutil")
open(tmp + "/a", "w").write("A")
shutil.copyfile(tmp + "/a", tmp + "/a")`, "", "are the same file"},
		{"copytree move rmtree", `shutil = import_("shutil")
os = import_("os")
os.makedirs(tmp + "/t/u")
open(tmp + "/t/u/f", "w").write("F")
shutil.copytree(tmp + "/t", tmp + "/t2")
shutil.move(tmp + "/t2", tmp + "/t3")
a = open(tmp + "/t3/u/f").read()
shutil.rmtree(tmp + "/t3")
shutil.rmtree(tmp + "/nope", ignore_errors=True)
res = [a, os.path.exists(tmp + "/t3"), os.path.exists(tmp + "/t2")]`, `["F", False, False]`, ""},
		{"rmtree missing", `shutil = import_("shutil")
shutil.rmtree(tmp + "/nope")`, "", "shutil.rmtree: lstat "},
		{"which", `shutil = import_("shutil")
res = [shutil.which("sh") != None, shutil.which("vmd-no-such-program"), shutil.which("sh", path="/nonexistent"), shutil.which("/bin/sh")]`,
			`[True, None, None, "/bin/sh"]`, ""},
	}, tmpDir)
}

func TestFileModeParsing(t *testing.T) {
	for _, c := range []struct {
		mode    string
		r, w, b bool
		err     string
	}{
		{mode: "r", r: true},
		{mode: "rb", r: true, b: true},
		{mode: "w+", r: true, w: true},
		{mode: "a", w: true},
		{mode: "xb", w: true, b: true},
		{mode: "rt", r: true},
		{mode: "", err: "exactly one of"},
		{mode: "rw", err: "exactly one of"},
		{mode: "rbt", err: "invalid mode"},
		{mode: "r++", err: "invalid mode"},
		{mode: "rU", err: "invalid mode"},
	} {
		fm, err := parseFileMode(c.mode)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseFileMode(%q) error %v, want %q", c.mode, err, c.err)
			}
			continue
		}
		if err != nil || fm.readable != c.r || fm.writable != c.w || fm.binary != c.b {
			t.Errorf("parseFileMode(%q) = %+v, %v", c.mode, fm, err)
		}
	}
}
