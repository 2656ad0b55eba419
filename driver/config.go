package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vmdriver/vmdriver/backend"
)

// DefaultGlobalTimeout is the NixOS test framework's default globalTimeout.
const DefaultGlobalTimeout = time.Hour

// Config describes one test run: what the NixOS driver reads from its
// JSON configuration or its older command-line flags.
type Config struct {
	// Machines are the machines to create, in the order given; the
	// driver sorts them by name like the NixOS driver.
	Machines []MachineConfig
	// VLANs are the virtual network numbers (1–255) to create.
	VLANs []int
	// GlobalTimeout bounds the whole test script; zero means
	// DefaultGlobalTimeout.
	GlobalTimeout time.Duration
	// TestScript is the path of the test script, if any.
	TestScript string
	// OutputDir receives screenshots, copied files and reports; it must
	// exist. Empty means the current directory.
	OutputDir string
	// KeepState keeps each machine's state directory (disk images)
	// across runs instead of starting afresh.
	KeepState bool
	// Warm starts every machine from a post-boot snapshot saved by an
	// earlier run when there is one (booting cold and saving one when
	// there is not): see machine.WithWarm.
	Warm bool
	// WarmDir holds the warm entries; empty means the image cache's
	// warm/ directory (images.DefaultCacheDir()/warm).
	WarmDir string
	// WarmReadOnly uses WarmDir's entries but never writes one.
	WarmReadOnly bool
	// Network is the kind of the VLANs: backend.VDE (a VDE switch per
	// VLAN, the NixOS driver's) or backend.TAP (a Linux bridge per VLAN
	// and a TAP device per NIC, in a private network namespace; needs
	// root). Empty means the backend's preferred kind: VDE for QEMU, TAP
	// for Firecracker and cloud-hypervisor.
	Network string
	// Backend names the hypervisor backend ("qemu", "microvm",
	// "firecracker", "cloud-hypervisor"), as the config file's "backend"
	// key gives it. The driver itself runs whatever backend WithBackend
	// passes; the command line turns this name into one.
	Backend string
}

// MachineConfig is one machine of a run.
type MachineConfig struct {
	// Name is the machine's name; scripts see it (pythonized) as a global.
	Name string
	// StartScript starts the machine (a nixpkgs-style run-NAME-vm).
	StartScript string
}

var startScriptName = regexp.MustCompile(`run-(.+)-vm$`)

// MachineName derives a machine's name from its start script the way the
// NixOS driver does (`run-(.+)-vm`), or returns "machine".
func MachineName(startScript string) string {
	if m := startScriptName.FindStringSubmatch(filepath.Base(startScript)); m != nil {
		return m[1]
	}
	return "machine"
}

// jsonConfig mirrors the NixOS driver's --config file.
type jsonConfig struct {
	VMs map[string]struct {
		Name        string `json:"name"`
		StartScript string `json:"start_script"`
	} `json:"vms"`
	Containers        map[string]json.RawMessage `json:"containers"`
	VLANs             []int                      `json:"vlans"`
	GlobalTimeout     *float64                   `json:"global_timeout"`
	EnableSSHBackdoor bool                       `json:"enable_ssh_backdoor"`
	TestScript        string                     `json:"test_script"`
	Warm              bool                       `json:"warm"`
	Backend           string                     `json:"backend"`
	Network           string                     `json:"network"`
}

// LoadConfig reads a NixOS driver configuration file (`--config FILE`):
//
//	{"vms": {"NAME": {"name": "NAME", "start_script": "PATH"}},
//	 "vlans": [1], "global_timeout": 3600, "test_script": "PATH"}
//
// vmdriver also reads "warm": true, "backend": "NAME" and "network":
// "vde" or "tap" (Config.Backend, Config.Network).
//
// Errors name the file and, for malformed JSON, the position.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading driver config: %w", err)
	}
	var jc jsonConfig
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&jc); err != nil {
		return Config{}, fmt.Errorf("driver config %s: %s", path, describeJSONError(data, err))
	}
	if len(jc.Containers) > 0 {
		return Config{}, fmt.Errorf("driver config %s: containers (systemd-nspawn machines) are not supported; use VMs", path)
	}
	var c Config
	for key, vm := range jc.VMs {
		name := vm.Name
		if name == "" {
			name = key
		}
		if vm.StartScript == "" {
			return Config{}, fmt.Errorf("driver config %s: vms.%s has no start_script", path, key)
		}
		c.Machines = append(c.Machines, MachineConfig{Name: name, StartScript: vm.StartScript})
	}
	sort.Slice(c.Machines, func(i, j int) bool { return c.Machines[i].Name < c.Machines[j].Name })
	c.VLANs = jc.VLANs
	if jc.GlobalTimeout != nil {
		if *jc.GlobalTimeout <= 0 {
			return Config{}, fmt.Errorf("driver config %s: global_timeout must be positive, got %v", path, *jc.GlobalTimeout)
		}
		c.GlobalTimeout = time.Duration(*jc.GlobalTimeout * float64(time.Second))
	}
	c.TestScript = jc.TestScript
	c.Warm = jc.Warm
	c.Backend = jc.Backend
	c.Network = jc.Network
	return c, c.Validate()
}

func describeJSONError(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		off = int64(len(data))
		err = errors.New("unexpected end of file: the JSON is incomplete")
	}
	if off < 0 {
		return err.Error()
	}
	line, col := 1, 1
	for _, b := range data[:min(int(off), len(data))] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("line %d, column %d: %v", line, col, err)
}

// Validate checks a configuration before anything starts.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for _, m := range c.Machines {
		if m.Name == "" {
			return errors.New("a machine has an empty name")
		}
		if seen[m.Name] {
			return fmt.Errorf("two machines are named %q", m.Name)
		}
		seen[m.Name] = true
	}
	switch c.Network {
	case "", backend.VDE, backend.TAP:
	default:
		return fmt.Errorf("network %q: VLANs are %q (VDE switches) or %q (Linux bridges and TAP devices)", c.Network, backend.VDE, backend.TAP)
	}
	for _, v := range c.VLANs {
		if v < 1 || v > 255 {
			return fmt.Errorf("vlan %d is out of range: VLAN numbers are 1 to 255", v)
		}
	}
	if c.OutputDir != "" {
		st, err := os.Stat(c.OutputDir)
		if err != nil {
			return fmt.Errorf("output directory: %w", err)
		}
		if !st.IsDir() {
			return fmt.Errorf("output directory %s is not a directory", c.OutputDir)
		}
	}
	return nil
}

// PythonName is the name under which a test script sees a machine: the
// NixOS driver's rule (a first character outside [A-Za-z_] and any later
// character outside [A-Za-z0-9_] become '_').
func PythonName(name string) string {
	b := []byte(name)
	for i, c := range b {
		ok := c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}
