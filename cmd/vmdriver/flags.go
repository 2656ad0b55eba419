package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/report"
	"github.com/vmdriver/vmdriver/script"
)

// runFlags holds the command line of a test run. It accepts the current
// nixos-test-driver spelling (--config) and the older one (--start-scripts,
// --vlans, --global-timeout, a positional script), with the anchor's
// environment variables as defaults.
type runFlags struct {
	config        string
	startScripts  string
	vmNames       string
	vmScripts     string
	vlans         string
	globalTimeout string
	keepState     bool
	interactive   bool
	noInteractive bool
	outputDir     string
	junitXML      string
	logLevel      report.Level
	logFormat     report.Format
	debugHook     string
	forkSubtests  bool
	warm          bool
	warmFrom      string
	jobs          int    // 0: not given
	backend       string // --backend; "" means the config's, else defaultBackend
	network       string // --net
	python        bool   // --python: run on CPython
	starlark      bool   // --starlark: run on Starlark
	pythonBin     string // --python-bin
	positional    []string
}

func newRunFlagSet(name string, f *runFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(k string) string { return os.Getenv(k) }
	fs.StringVar(&f.config, "config", "", "driver configuration `FILE` (JSON: vms, vlans, global_timeout, test_script; also warm, backend, network)")
	fs.StringVar(&f.config, "c", "", "short for --config")
	fs.StringVar(&f.startScripts, "start-scripts", env("startScripts"), "space-separated start scripts (older spelling; env startScripts)")
	fs.StringVar(&f.vmNames, "vm-names", env("vmNames"), "space-separated machine names, paired with --vm-start-scripts")
	fs.StringVar(&f.vmScripts, "vm-start-scripts", env("vmStartScripts"), "space-separated start scripts, paired with --vm-names")
	fs.StringVar(&f.vlans, "vlans", env("vlans"), "space-separated VLAN numbers (env vlans)")
	fs.StringVar(&f.globalTimeout, "global-timeout", env("globalTimeout"), "global timeout in `SECONDS` (env globalTimeout; default 3600)")
	fs.BoolVar(&f.keepState, "keep-machine-state", false, "reuse machine state (disk images) from a previous run")
	fs.BoolVar(&f.keepState, "K", false, "short for --keep-machine-state")
	fs.BoolVar(&f.keepState, "keep-vm-state", false, "deprecated spelling of --keep-machine-state")
	fs.BoolVar(&f.interactive, "interactive", false, "drop into a REPL with every test symbol instead of running the script")
	fs.BoolVar(&f.interactive, "I", false, "short for --interactive")
	fs.BoolVar(&f.noInteractive, "no-interactive", false, "run the script (the default)")
	fs.StringVar(&f.outputDir, "output_directory", "", "`DIR` for screenshots, copied files and reports (default: the current directory)")
	fs.StringVar(&f.outputDir, "output-directory", "", "same as --output_directory")
	fs.StringVar(&f.outputDir, "o", "", "short for --output_directory")
	fs.StringVar(&f.junitXML, "junit-xml", "", "write a JUnit XML report to `FILE` (relative to the output directory)")
	f.logLevel = report.LevelInfo
	if lv := env("logLevel"); lv != "" {
		f.logLevel.UnmarshalText([]byte(lv))
	}
	fs.TextVar(&f.logLevel, "log-level", f.logLevel, "debug, info, warning or error (env logLevel)")
	fs.TextVar(&f.logFormat, "log-format", report.FormatText, "text, or json for one JSON object per line")
	fs.StringVar(&f.debugHook, "debug-hook-attach", "", "accepted for compatibility; breakpoints are not supported")
	fs.BoolVar(&f.warm, "warm", os.Getenv("VMDRIVER_WARM") == "1", "start machines from post-boot snapshots of earlier runs (boot cold and save one when there is none); env VMDRIVER_WARM=1")
	fs.StringVar(&f.warmFrom, "warm-from", "", "start machines warm from the entries in `DIR` (made by an earlier --warm run's cache or shared by CI), never writing there")
	fs.StringVar(&f.backend, "backend", "", fmt.Sprintf("hypervisor backend the machines run on: %s (default %s, or the config's \"backend\")", strings.Join(backendNames(), ", "), defaultBackend))
	fs.StringVar(&f.network, "net", "", "the VLANs: vde (a VDE switch per VLAN) or tap (a Linux bridge per VLAN and a TAP device per NIC, in a private network namespace; needs root). Default: the config's \"network\", else the backend's: vde for qemu and microvm, tap for firecracker and cloud-hypervisor")
	fs.BoolVar(&f.python, "python", false, "run the script in a real CPython (3.9 or newer) instead of the Starlark engine")
	fs.BoolVar(&f.starlark, "starlark", false, "run the script on the Starlark engine, even if it refuses it")
	fs.StringVar(&f.pythonBin, "python-bin", "", "the Python interpreter's `PATH` (default: python3 from PATH)")
	fs.BoolVar(&f.forkSubtests, "fork-subtests", false, "boot once, run the script's set-up (everything before the first top-level subtest), then each top-level subtest on its own clones of the machines, in parallel")
	jobs := func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("want a whole number of at least 1, got %q", s)
		}
		f.jobs = n
		return nil
	}
	fs.Func("jobs", fmt.Sprintf("run at most `N` forked subtests at once (with --fork-subtests; default %d)", script.DefaultJobs), jobs)
	fs.Func("j", "short for --jobs", jobs)
	return fs
}

// checkCombinations rejects flags that do not go together, and a
// backend that does not exist.
func (f *runFlags) checkCombinations() error {
	if f.backend != "" {
		if err := checkBackend(f.backend); err != nil {
			return err
		}
	}
	switch {
	case f.network != "" && f.network != backend.VDE && f.network != backend.TAP:
		return usageError{fmt.Sprintf("--net: unknown network kind %q; choose vde or tap", f.network)}
	case f.jobs != 0 && !f.forkSubtests:
		return usageError{"-j/--jobs applies only with --fork-subtests"}
	case f.forkSubtests && f.interactive && !f.noInteractive:
		return usageError{"--fork-subtests runs the script as a suite and cannot be combined with -I/--interactive"}
	case f.python && f.starlark:
		return usageError{"--python and --starlark choose one engine each; give one"}
	case f.python && f.interactive && !f.noInteractive:
		return usageError{"-I/--interactive runs on the Starlark engine and cannot be combined with --python"}
	}
	return nil
}

// parseInterspersed parses flags and positional arguments in any order,
// like Python's argparse does for nixos-test-driver.
func parseInterspersed(fs *flag.FlagSet, args []string, f *runFlags) error {
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		args = fs.Args()
		if len(args) == 0 {
			return nil
		}
		f.positional = append(f.positional, args[0])
		args = args[1:]
	}
}

// config turns the flags into a driver configuration. Flags override the
// --config file's values.
func (f *runFlags) driverConfig() (driver.Config, error) {
	var c driver.Config
	if f.config != "" {
		var err error
		c, err = driver.LoadConfig(f.config)
		if err != nil {
			return c, usageError{err.Error()}
		}
	}
	if f.startScripts != "" {
		for _, s := range strings.Fields(f.startScripts) {
			c.Machines = append(c.Machines, driver.MachineConfig{Name: driver.MachineName(s), StartScript: s})
		}
	}
	if f.vmNames != "" || f.vmScripts != "" {
		names, scripts := strings.Fields(f.vmNames), strings.Fields(f.vmScripts)
		if len(names) != len(scripts) {
			return c, usageError{fmt.Sprintf("--vm-names has %d names but --vm-start-scripts has %d scripts", len(names), len(scripts))}
		}
		for i := range names {
			c.Machines = append(c.Machines, driver.MachineConfig{Name: names[i], StartScript: scripts[i]})
		}
	}
	if f.vlans != "" {
		c.VLANs = nil
		for _, v := range strings.Fields(f.vlans) {
			n, err := strconv.Atoi(v)
			if err != nil {
				return c, usageError{fmt.Sprintf("--vlans: %q is not a number", v)}
			}
			c.VLANs = append(c.VLANs, n)
		}
	}
	if f.globalTimeout != "" {
		secs, err := strconv.ParseFloat(f.globalTimeout, 64)
		if err != nil || secs <= 0 {
			return c, usageError{fmt.Sprintf("--global-timeout: %q is not a positive number of seconds", f.globalTimeout)}
		}
		c.GlobalTimeout = time.Duration(secs * float64(time.Second))
	}
	if f.backend != "" {
		c.Backend = f.backend
	}
	if c.Backend == "" {
		c.Backend = defaultBackend
	}
	if err := checkBackend(c.Backend); err != nil {
		return c, err
	}
	if f.network != "" {
		c.Network = f.network
	}
	if f.keepState {
		c.KeepState = true
	}
	if f.warm {
		c.Warm = true
	}
	if f.warmFrom != "" {
		if st, err := os.Stat(f.warmFrom); err != nil || !st.IsDir() {
			return c, usageError{fmt.Sprintf("--warm-from: %q is not a directory of warm entries", f.warmFrom)}
		}
		c.Warm, c.WarmDir, c.WarmReadOnly = true, f.warmFrom, true
	}
	if f.outputDir != "" {
		c.OutputDir = f.outputDir
	}
	if c.OutputDir == "" {
		c.OutputDir = "."
	}
	if st, err := os.Stat(c.OutputDir); err != nil || !st.IsDir() {
		return c, usageError{fmt.Sprintf("output directory %q does not exist or is not a directory", c.OutputDir)}
	}
	if len(f.positional) > 0 {
		c.TestScript = f.positional[0]
	} else if c.TestScript == "" {
		c.TestScript = os.Getenv("testScript")
	}
	if err := c.Validate(); err != nil {
		return c, usageError{err.Error()}
	}
	return c, nil
}

// junitPath resolves --junit-xml against the output directory, like the
// anchor.
func (f *runFlags) junitPath(outDir string) string {
	if f.junitXML == "" || filepath.IsAbs(f.junitXML) {
		return f.junitXML
	}
	return filepath.Join(outDir, f.junitXML)
}
