package nix_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/internal/testenv"
)

// TestNixFilesParse: every Nix file of the repository parses (Debian's
// nix-bin; no nixpkgs evaluation or build runs here).
func TestNixFilesParse(t *testing.T) {
	bin := testenv.NeedCommand(t, "nix-instantiate")
	files, _ := filepath.Glob("*.nix")
	files = append(files, "../flake.nix")
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if out, err := exec.Command(bin, "--parse", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", f, err, out)
		}
	}
}

// TestVendorHash: package.nix's vendorHash is the hash of `go mod vendor`
// as buildGoModule computes it (NAR hash of the vendor directory), so a
// dependency change that forgot the Nix package fails here.
func TestVendorHash(t *testing.T) {
	if testing.Short() {
		t.Skip("vendors the modules")
	}
	nixHash := testenv.NeedCommand(t, "nix-hash")
	nix := testenv.NeedCommand(t, "nix")
	goBin := testenv.NeedCommand(t, "go")
	dir := filepath.Join(t.TempDir(), "vendor")
	cmd := exec.Command(goBin, "mod", "vendor", "-o", dir)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod vendor: %v\n%s", err, out)
	}
	b32, err := exec.Command(nixHash, "--type", "sha256", "--base32", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	sri, err := exec.Command(nix, "--extra-experimental-features", "nix-command", "hash", "to-sri", "--type", "sha256", strings.TrimSpace(string(b32))).Output()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("package.nix")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`vendorHash = "([^"]+)"`).FindSubmatch(src)
	if m == nil {
		t.Fatal("package.nix has no vendorHash")
	}
	if got, want := string(m[1]), strings.TrimSpace(string(sri)); got != want {
		t.Errorf("package.nix vendorHash = %s, want %s (update it)", got, want)
	}
}

// TestSwapDriver runs swap-driver.sh on a test driver laid out as
// nixpkgs' driver.nix lays it out (a makeWrapper script that execs
// .nixos-test-driver-wrapped with --config), then the swapped wrapper:
// vmdriver, called as nixos-test-driver, must take that command line and
// run the test script it names.
func TestSwapDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	sh := testenv.NeedCommand(t, "sh")
	bash := testenv.NeedCommand(t, "bash") // makeWrapper's wrappers are bash scripts
	goBin := testenv.NeedCommand(t, "go")
	tmp := t.TempDir()

	// vmdriver's package output: bin/nixos-test-driver -> vmdriver.
	vmd := filepath.Join(tmp, "vmdriver")
	must(t, os.MkdirAll(filepath.Join(vmd, "bin"), 0o755))
	build := exec.Command(goBin, "build", "-o", filepath.Join(vmd, "bin", "vmdriver"), "./cmd/vmdriver")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	must(t, os.Symlink("vmdriver", filepath.Join(vmd, "bin", "nixos-test-driver")))

	// The test's driver, as nixpkgs builds it.
	orig := filepath.Join(tmp, "driver")
	must(t, os.MkdirAll(filepath.Join(orig, "bin"), 0o755))
	script := filepath.Join(orig, "test-script")
	must(t, os.WriteFile(script, []byte("print('ran by', 'vmdriver')\n"), 0o644))
	cfg := filepath.Join(tmp, "driver-config.json")
	data, _ := json.Marshal(map[string]any{"vms": map[string]any{}, "vlans": []int{}, "global_timeout": 60, "test_script": script})
	must(t, os.WriteFile(cfg, data, 0o644))
	pythonDriver := filepath.Join(orig, "bin", ".nixos-test-driver-wrapped")
	must(t, os.WriteFile(pythonDriver, []byte("#!/bin/sh\necho the python driver ran >&2\nexit 9\n"), 0o755))
	wrapper := "#! " + bash + " -e\n" +
		"export PATH=/nix/store/example-path/bin${PATH:+':'$PATH}\n" +
		"exec -a \"$0\" \"" + pythonDriver + "\"  --config '" + cfg + "' --log-level info \"$@\"\n"
	must(t, os.WriteFile(filepath.Join(orig, "bin", "nixos-test-driver"), []byte(wrapper), 0o755))

	out := filepath.Join(tmp, "swapped")
	if b, err := exec.Command(sh, "swap-driver.sh", orig, vmd, out).CombinedOutput(); err != nil {
		t.Fatalf("swap-driver.sh: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(out, "test-script")); err != nil {
		t.Errorf("the driver's other files are not kept: %v", err)
	}
	outDir := t.TempDir()
	run := exec.Command(filepath.Join(out, "bin", "nixos-test-driver"), "-o", outDir)
	run.Env = append(os.Environ(), "LOGFILE=/dev/null")
	got, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "ran by vmdriver") || strings.Contains(string(got), "python driver") {
		t.Fatalf("swapped driver: %v\n%s", err, got)
	}

	// A wrapper of another shape is refused, saying why.
	bad := filepath.Join(tmp, "bad")
	must(t, os.MkdirAll(filepath.Join(bad, "bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(bad, "bin", "nixos-test-driver"), []byte("#!/bin/sh\nexec python3 -m test_driver\n"), 0o755))
	if b, err := exec.Command(sh, "swap-driver.sh", bad, vmd, filepath.Join(tmp, "bad-out")).CombinedOutput(); err == nil || !strings.Contains(string(b), "differently") {
		t.Errorf("an unknown wrapper was swapped: %v\n%s", err, b)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
