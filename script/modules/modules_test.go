package modules

import (
	"slices"
	"testing"

	"go.starlark.net/starlark"
)

func tmpDir(t *testing.T) starlark.StringDict {
	return starlark.StringDict{"tmp": starlark.String(t.TempDir())}
}

func TestLookup(t *testing.T) {
	m := newModules(t, Host{})
	for _, name := range []string{"json", "re", "shlex", "time", "os", "os.path", "math", "subprocess",
		"tempfile", "datetime", "shutil", "pathlib", "urllib", "urllib.parse", "typing", "sys"} {
		if m.Lookup(name) == nil {
			t.Errorf("Lookup(%q) = nil", name)
		}
		if !slices.Contains(m.Names(), name) {
			t.Errorf("Names() lacks %q", name)
		}
	}
	if v := m.Lookup("socket"); v != nil {
		t.Errorf("Lookup(socket) = %v, want nil", v)
	}
	osPath, _ := m.Lookup("os").(starlark.HasAttrs).Attr("path")
	if osPath != m.Lookup("os.path") {
		t.Errorf("os.path attribute and Lookup(\"os.path\") differ")
	}
	if m.Lookup("json") != m.Lookup("json") {
		t.Errorf("Lookup returns a new module each time")
	}
}

func TestJSON(t *testing.T) {
	runSnippets(t, []snippet{
		{"loads", `json = import_("json")
res = json.loads('{"a": [1, 2.5, true, null], "b": {"c": "d"}, "z": 0}')`,
			`{"a": [1, 2.5, True, None], "b": {"c": "d"}, "z": 0}`, ""},
		{"loads bytes", `json = import_("json")
res = json.loads(b'[1, "x"]')`, `[1, "x"]`, ""},
		{"loads big int", `json = import_("json")
res = json.loads("12345678901234567890") + 1`, `12345678901234567891`, ""},
		{"loads exponent is float", `json = import_("json")
res = json.loads("1e3")`, `1000.0`, ""},
		{"loads invalid", `json = import_("json")
res = json.loads("{'a': 1}")`, "", "json.loads: invalid JSON"},
		{"loads wrong type", `json = import_("json")
res = json.loads(1)`, "", "json.loads: the JSON object must be str or bytes, not int"},
		{"dumps default separators", `json = import_("json")
res = json.dumps({"a": [1, 2.5, True, None], "b": "é\n\"\\"})`,
			`str:{"a": [1, 2.5, true, null], "b": "\u00e9\n\"\\"}`, ""},
		{"dumps indent sort_keys", `json = import_("json")
res = json.dumps({"b": 1, "a": [1, {}], "c": []}, indent=2, sort_keys=True)`,
			"str:{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": 1,\n  \"c\": []\n}", ""},
		{"dumps indent 0", `json = import_("json")
res = json.dumps([1, 2], indent=0)`, "str:[\n1,\n2\n]", ""},
		{"dumps indent str", `json = import_("json")
res = json.dumps((1,), indent="\t")`, "str:[\n\t1\n]", ""},
		{"dumps ensure_ascii", `json = import_("json")
res = [json.dumps("é😀\x7f"), json.dumps("é😀", ensure_ascii=False)]`,
			`["\"\\u00e9\\ud83d\\ude00\\u007f\"", "\"é😀\""]`, ""},
		{"dumps separators", `json = import_("json")
res = json.dumps({"a": [1, 2]}, separators=(",", ":"))`, `str:{"a":[1,2]}`, ""},
		{"dumps floats like Python", `json = import_("json")
res = json.dumps([1.0, 1e16, 1e-5, 0.1, 123456.789, float("inf"), 1e22, -0.0, 5e-324])`,
			`str:[1.0, 1e+16, 1e-05, 0.1, 123456.789, Infinity, 1e+22, -0.0, 5e-324]`, ""},
		{"dumps allow_nan", `json = import_("json")
res = json.dumps(float("nan"), allow_nan=False)`, "", "json.dumps: out of range float values are not JSON compliant"},
		{"dumps non-str keys", `json = import_("json")
res = json.dumps({1: "a", None: 2, False: 3, 1.5: 4})`, `str:{"1": "a", "null": 2, "false": 3, "1.5": 4}`, ""},
		{"dumps bad key", `json = import_("json")
res = json.dumps({(1, 2): 1})`, "", "json.dumps: keys must be str, int, float, bool or None, not tuple"},
		{"dumps unserializable", `json = import_("json")
res = json.dumps([set([1])])`, "", "json.dumps: Object of type set is not JSON serializable"},
		{"dumps default", `json = import_("json")
res = json.dumps(set([2, 1]), default=lambda s: sorted(s))`, `str:[1, 2]`, ""},
		{"dumps circular", `json = import_("json")
l = []
l.append(l)
res = json.dumps(l)`, "", "json.dumps: circular reference detected"},
		{"dumps big int", `json = import_("json")
res = json.dumps(12345678901234567890)`, `str:12345678901234567890`, ""},
		{"dump and load_", `json = import_("json")
p = tmp + "/x.json"
for f in with_(open(p, "w")):
    json.dump({"k": [1, 2]}, f, indent=1)
for f in with_(open(p)):
    res = [json.load_(f)]
res.append(getattr(json, "load") == json.load_)
res.append(open(p).read())`, `[{"k": [1, 2]}, True, "{\n \"k\": [\n  1,\n  2\n ]\n}"]`, ""},
	}, tmpDir)
}

func TestShlex(t *testing.T) {
	runSnippets(t, []snippet{
		{"quote", `shlex = import_("shlex")
res = [shlex.quote(""), shlex.quote("abc-_./=:,@%+09"), shlex.quote("it's a test"), shlex.quote("$x")]`,
			`["''", "abc-_./=:,@%+09", "'it'\"'\"'s a test'", "'$x'"]`, ""},
		{"split", `shlex = import_("shlex")
res = shlex.split("a \"b c\" 'd e' f\\ g \"h\\\"i\" \"j\\k\" ''  x'y'\"z\"")`,
			`["a", "b c", "d e", "f g", "h\"i", "j\\k", "", "xyz"]`, ""},
		{"split comments", `shlex = import_("shlex")
res = [shlex.split("a # b\nc", comments=True), shlex.split("a # b")]`,
			`[["a", "c"], ["a", "#", "b"]]`, ""},
		{"split unclosed", `shlex = import_("shlex")
res = shlex.split("a \"b")`, "", "shlex.split: no closing quotation"},
		{"split trailing backslash", `shlex = import_("shlex")
res = shlex.split("a\\")`, "", "shlex.split: no escaped character"},
		{"join round trip", `shlex = import_("shlex")
words = ["a b", "c", "it's", "", "$HOME"]
res = [shlex.join(words), shlex.split(shlex.join(words)) == words]`,
			`["'a b' c 'it'\"'\"'s' '' '$HOME'", True]`, ""},
	}, nil)
}

func TestMath(t *testing.T) {
	runSnippets(t, []snippet{
		{"basics", `math = import_("math")
res = [math.ceil(1.2), math.floor(-1.5), math.ceil(3), math.sqrt(16), math.pow(2, 10), math.trunc(-2.7), math.fabs(-1)]`,
			`[2, -2, 3, 4.0, 1024.0, -2, 1.0]`, ""},
		{"constants", `math = import_("math")
res = [math.inf > 1e308, math.isinf(-math.inf), math.isnan(math.nan), math.pi == 3.141592653589793, math.tau == 2 * math.pi, math.e > 2.7]`,
			`[True, True, True, True, True, True]`, ""},
		{"isclose", `math = import_("math")
res = [math.isclose(1.0, 1.0 + 1e-10), math.isclose(1, 1.1), math.isclose(1, 1.05, rel_tol=0.1), math.isclose(0, 1e-12, abs_tol=1e-9)]`,
			`[True, False, True, True]`, ""},
		{"integers", `math = import_("math")
res = [math.gcd(12, 18), math.gcd(), math.factorial(5), math.factorial(0), math.log2(8), math.log10(1000)]`,
			`[6, 0, 120, 1, 3.0, 3.0]`, ""},
		{"sqrt domain", `math = import_("math")
res = math.sqrt(-1)`, "", "math.sqrt: math domain error"},
		{"ceil of string", `math = import_("math")
res = math.ceil("x")`, "", "math.ceil: got string, want float or int"},
		{"no round", `math = import_("math")
res = math.round(1.5)`, "", "has no .round field"},
	}, nil)
}

func TestOSPath(t *testing.T) {
	runSnippets(t, []snippet{
		{"join", `os = import_("os")
res = [os.path.join("a", "b/", "c"), os.path.join("a", "/b", "c"), os.path.join("a/", ""), os.path.join("/")]`,
			`["a/b/c", "/b/c", "a/", "/"]`, ""},
		{"basename dirname", `path = import_("os", "path")
res = [path.basename("/a/b/"), path.basename("/a/b"), path.dirname("/a/b"), path.dirname("/a"), path.dirname("a"), path.dirname("//a"), path.dirname("/a//b")]`,
			`["", "b", "/a", "/", "", "//", "/a"]`, ""},
		{"split splitext", `path = import_("os.path")
res = [path.split("/a/b.c"), path.splitext("a/b.tar.gz"), path.splitext(".bashrc"), path.splitext("a.b/c"), path.splitext("..x"), path.splitext("x.")]`,
			`[("/a", "b.c"), ("a/b.tar", ".gz"), (".bashrc", ""), ("a.b/c", ""), ("..x", ""), ("x", ".")]`, ""},
		{"normpath abspath", `path = import_("os.path")
res = [path.normpath("a//b/../c/."), path.normpath(""), path.normpath("//x"), path.abspath("/a/../b"), path.isabs("/x"), path.isabs("x")]`,
			`["a/c", ".", "//x", "/b", True, False]`, ""},
		{"file tests", `os = import_("os")
p = os.path.join(tmp, "f")
open(p, "w").write("abc")
os.symlink(p, tmp + "/l")
os.symlink(tmp + "/missing", tmp + "/broken")
res = [os.path.exists(tmp), os.path.isdir(tmp), os.path.isfile(tmp), os.path.isfile(p), os.path.exists(p + "x"),
       os.path.getsize(p), os.path.islink(tmp + "/l"), os.path.exists(tmp + "/broken"), os.path.lexists(tmp + "/broken")]`,
			`[True, True, False, True, False, 3, True, False, True]`, ""},
		{"getsize missing", `os = import_("os")
res = os.path.getsize(tmp + "/nope")`, "", "os.path.getsize: stat"},
	}, tmpDir)
}

func TestOS(t *testing.T) {
	t.Setenv("VMD_MODULES_TEST", "from-driver")
	runSnippets(t, []snippet{
		{"environ", `os = import_("os")
a = os.environ.get("VMD_MODULES_TEST")
os.environ["VMD_NEW"] = "1"
res = [a, os.environ["VMD_NEW"], os.getenv("VMD_NEW"), os.getenv("VMD_NOPE"), os.getenv("VMD_NOPE", "d"),
       "VMD_NEW" in os.environ, os.environ.pop("VMD_NEW"), "VMD_NEW" in os.environ, os.environ.get("VMD_NOPE", "x")]`,
			`["from-driver", "1", "1", None, "d", True, "1", False, "x"]`, ""},
		{"environ missing key", `os = import_("os")
res = os.environ["VMD_NOPE"]`, "", `key "VMD_NOPE" not in os._Environ`},
		{"environ non-str value", `os = import_("os")
os.environ["X"] = 1`, "", "os.environ: keys and values must be str"},
		{"mkdir makedirs listdir remove", `os = import_("os")
os.mkdir(tmp + "/d")
os.makedirs(tmp + "/d/e/f")
os.makedirs(tmp + "/d/e/f", exist_ok=True)
open(tmp + "/d/x", "w").close()
a = sorted(os.listdir(tmp + "/d"))
os.remove(tmp + "/d/x")
os.rename(tmp + "/d/e", tmp + "/d/g")
res = [a, os.listdir(tmp + "/d")]`, `[["e", "x"], ["g"]]`, ""},
		{"makedirs exists", `os = import_("os")
os.makedirs(tmp)`, "", "os.makedirs: mkdir " /* + path */},
		{"mkdir exists", `os = import_("os")
os.mkdir(tmp)`, "", "file exists"},
		{"remove dir", `os = import_("os")
os.remove(tmp)`, "", "is a directory"},
		{"system", `os = import_("os")
res = [os.system("exit 3"), os.waitstatus_to_exitcode(os.system("exit 3")), os.system("true"), os.system("kill -9 $$")]`,
			`[768, 3, 0, 9]`, ""},
	}, tmpDir)
}

func TestURLLibAndTyping(t *testing.T) {
	runSnippets(t, []snippet{
		{"quote", `p = import_("urllib.parse")
res = [p.quote("a b/c?d=é~"), p.quote("a/b", safe=""), p.quote_plus("a b&c/"), p.unquote("a%20b%zz"), p.unquote_plus("a+b%2B")]`,
			`["a%20b/c%3Fd%3D%C3%A9~", "a%2Fb", "a+b%26c%2F", "a b%zz", "a b+"]`, ""},
		{"urlencode", `urlencode = import_("urllib.parse", "urlencode")
urllib = import_("urllib")
res = [urlencode({"a": "1 2", "b": "x&y"}), urlencode([("a", 1), ("b", True)]), urlencode({"k": [1, 2]}, doseq=True), urllib.parse.quote("x y")]`,
			`["a=1+2&b=x%26y", "a=1&b=True", "k=1&k=2", "x%20y"]`, ""},
		{"typing", `Optional = import_("typing", "Optional")
res = Optional`, `None`, ""},
	}, nil)
}

func TestPathlib(t *testing.T) {
	runSnippets(t, []snippet{
		{"parts", `Path = import_("pathlib", "Path")
p = Path("/tmp") / "a" / "b.tar.gz"
res = [str(p), p.name, str(p.parent), p.suffix, p.stem, str(Path("a//b/./c/")), str("x" / Path("y")), str(Path()),
       str(Path("a", "/b")), str(Path("a").parent), str(Path("/").parent), p.parts, str(p.with_suffix(".zip")), str(p.with_name("c"))]`,
			`["/tmp/a/b.tar.gz", "b.tar.gz", "/tmp/a", ".gz", "b.tar", "a/b/c", "x/y", ".", "/b", ".", "/", ("/", "tmp", "a", "b.tar.gz"), "/tmp/a/b.tar.zip", "/tmp/a/c"]`, ""},
		{"files", `pathlib = import_("pathlib")
d = pathlib.Path(tmp) / "sub"
d.mkdir()
f = d / "x.txt"
n = f.write_text("héllo")
os = import_("os")
res = [n, f.exists(), f.is_file(), d.is_dir(), f.read_text(), f.read_bytes(), os.path.exists(f), [str(x) == str(f) for x in d.iterdir()], f == d / "x.txt"]`,
			`[5, True, True, True, "héllo", b"héllo", True, [True], True]`, ""},
		{"read missing", `Path = import_("pathlib", "Path")
res = Path(tmp, "nope").read_text()`, "", "Path.read_text: open"},
	}, tmpDir)
}

// TestReuseAfterFreeze: ExecFile freezes a script's globals, modules
// included; os.environ must stay usable by the next chunk of the same run.
func TestReuseAfterFreeze(t *testing.T) {
	m := newModules(t, Host{})
	if _, err := execScript(t, m, `os = import_("os")
os.environ["VMD_A"] = "1"`, nil); err != nil {
		t.Fatal(err)
	}
	globals, err := execScript(t, m, `os = import_("os")
os.environ["VMD_B"] = "2"
res = [os.environ["VMD_A"], os.getenv("VMD_B")]`, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := globals["res"].String(), `["1", "2"]`; got != want {
		t.Errorf("res = %s, want %s", got, want)
	}
}

// TestConcurrentScripts runs scripts on one Modules from several goroutines
// (meaningful under -race).
func TestConcurrentScripts(t *testing.T) {
	m := newModules(t, Host{})
	dir := t.TempDir()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			_, err := execScript(t, m, `re = import_("re")
json = import_("json")
os = import_("os")
tempfile = import_("tempfile")
for j in range(50):
    os.environ["VMD_%d" % i] = str(j)
    assert_ok = re.search(r"(\d+)$", "n %d\n" % j).group(1) == str(j)
    if not assert_ok:
        fail("re")
    json.loads(json.dumps({"i": i, "j": j}))
    f = tempfile.NamedTemporaryFile(dir=tmp)
    f.write("x")
    f.close()
`, starlark.StringDict{"i": starlark.MakeInt(i), "tmp": starlark.String(dir)})
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
