package backend

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Description describes a machine for backends that build the
// hypervisor's configuration themselves instead of running a start script
// (Firecracker, cloud-hypervisor, QEMU microvm). `vmdriver image build`
// writes one as NAME.machine.json beside run-NAME-vm; DescriptionPath
// finds it from the start script. Relative paths are relative to the
// description file's directory.
type Description struct {
	// Name is the machine's name (the guest's host name).
	Name string `json:"name"`
	// Kernel is the uncompressed kernel (vmlinux, ELF) to boot directly.
	Kernel string `json:"kernel"`
	// Initrd is the initial ramdisk, or "".
	Initrd string `json:"initrd,omitempty"`
	// Cmdline is the kernel command line. Backends append their own
	// console and device parameters.
	Cmdline string `json:"cmdline"`
	// MemoryMiB is the guest's memory.
	MemoryMiB int `json:"memory_mib"`
	// CPUs is the number of virtual CPUs.
	CPUs int `json:"cpus"`
	// Disks are the block devices, in order (the first is vda).
	Disks []DiskDescription `json:"disks,omitempty"`
	// NICs are the network interfaces, in order (eth0, eth1, ...).
	NICs []NICDescription `json:"nics,omitempty"`
	// Shared says the guest mounts the host's shared directory
	// (Spec.SharedDir) at /tmp/shared when the backend can share one.
	Shared bool `json:"shared,omitempty"`
	// Shells lists where the guest offers the driver its root shell:
	// ShellVirtioConsole (hvc0: QEMU, cloud-hypervisor) and ShellVsock
	// (vsock port 1025 when the command line has vmdriver.backdoor=vsock:
	// Firecracker). Empty when not recorded (a description from an older
	// vmdriver): backends then just try.
	Shells []string `json:"shells,omitempty"`
	// Hosts and Net are the guest's /etc/hosts lines and its interface
	// table (for VLAN nodes), which the guest reads from QEMU's fw_cfg
	// (opt/vmdriver/hosts, opt/vmdriver/net); a backend without fw_cfg
	// puts them on the command line (CmdlineWithNet). Empty without
	// VLANs.
	Hosts string `json:"hosts,omitempty"`
	Net   string `json:"net,omitempty"`
	// Dir is the directory the description was loaded from; relative
	// paths resolve against it. It is not part of the file.
	Dir string `json:"-"`
}

// DiskDescription is one block device.
type DiskDescription struct {
	// Path is the disk image. Backends give each machine its own
	// copy-on-write layer over it; the image itself is never written.
	Path string `json:"path"`
	// Format is "raw" or "qcow2".
	Format string `json:"format"`
}

// NICDescription is one network interface.
type NICDescription struct {
	// VLAN is the virtual LAN the interface is on; 0 for the user-mode
	// (host-port-forwarding) network, which only QEMU has.
	VLAN int `json:"vlan"`
	// MAC is the interface's hardware address.
	MAC string `json:"mac"`
}

// ErrNoDescription is wrapped by LoadDescription's error when there is
// no description beside the start script.
var ErrNoDescription = errors.New("no machine description")

// DescriptionPath is where the description of the machine whose start
// script is startScript lives: DIR/NAME.machine.json for DIR/run-NAME-vm.
func DescriptionPath(startScript string) string {
	dir, base := filepath.Split(startScript)
	name := strings.TrimSuffix(strings.TrimPrefix(base, "run-"), "-vm")
	return filepath.Join(dir, name+".machine.json")
}

// LoadDescription reads and checks the description at path.
func LoadDescription(path string) (*Description, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w at %s: this backend boots machines from a description, which `vmdriver image build` writes beside run-NAME-vm (NAME.machine.json)", ErrNoDescription, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the machine description: %w", err)
	}
	var d Description
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("machine description %s: %w", path, err)
	}
	d.Dir = filepath.Dir(path)
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("machine description %s: %w", path, err)
	}
	return &d, nil
}

// Validate checks that the description can be booted.
func (d *Description) Validate() error {
	var errs []error
	if d.Name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if d.Kernel == "" {
		errs = append(errs, errors.New("no kernel"))
	}
	if d.MemoryMiB < 64 {
		errs = append(errs, fmt.Errorf("memory_mib %d: want at least 64", d.MemoryMiB))
	}
	if d.CPUs < 1 {
		errs = append(errs, fmt.Errorf("cpus %d: want at least 1", d.CPUs))
	}
	for i, disk := range d.Disks {
		if disk.Path == "" || (disk.Format != "raw" && disk.Format != "qcow2") {
			errs = append(errs, fmt.Errorf("disk %d: want a path and a format of raw or qcow2", i))
		}
	}
	for i, nic := range d.NICs {
		if nic.VLAN < 0 || nic.VLAN > 255 || len(nic.MAC) != 17 {
			errs = append(errs, fmt.Errorf("nic %d: want a VLAN from 0 to 255 and a MAC aa:bb:cc:dd:ee:ff", i))
		}
	}
	return errors.Join(errs...)
}

// Path resolves a path of the description against its directory.
func (d *Description) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.Dir, p)
}

// Where a guest offers its root shell (Description.Shells).
const (
	ShellVirtioConsole = "virtio-console"
	ShellVsock         = "vsock"
)

// OffersShell reports whether the guest offers its shell on kind, or
// whether that is unknown (no Shells recorded).
func (d *Description) OffersShell(kind string) bool {
	return len(d.Shells) == 0 || slices.Contains(d.Shells, kind)
}

// maxCmdline is the kernel's command line limit on x86 (COMMAND_LINE_SIZE,
// with its terminating NUL).
const maxCmdline = 2047

// CmdlineWithNet returns the kernel command line with the machine's
// network table inline, for hypervisors without QEMU's fw_cfg
// (Firecracker, cloud-hypervisor): "vmdriver.net=fw_cfg" becomes
// "vmdriver.net=cmdline vmdriver.hosts=H vmdriver.nics=N", where H and N
// are Hosts and Net with their lines joined by ';' and their blanks
// turned into ',' (the guest's vmdriver-net turns them back). Without a
// network table the command line is returned as it is. A table that
// would push the line past the kernel's 2 KiB is an error.
func (d *Description) CmdlineWithNet() (string, error) {
	fields := strings.Fields(d.Cmdline)
	i := slices.Index(fields, "vmdriver.net=fw_cfg")
	if i < 0 || d.Hosts == "" {
		return d.Cmdline, nil
	}
	pack := func(what, s string) (string, error) {
		if strings.ContainsAny(s, ";,\"") {
			return "", fmt.Errorf("machine %s: its %s contain ';', ',' or '\"', which the kernel command line cannot carry", d.Name, what)
		}
		lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
		for k, l := range lines {
			lines[k] = strings.Join(strings.Fields(l), ",")
		}
		return strings.Join(lines, ";"), nil
	}
	hosts, err := pack("hosts", d.Hosts)
	if err != nil {
		return "", err
	}
	net := []string{"vmdriver.net=cmdline", "vmdriver.hosts=" + hosts}
	if d.Net != "" {
		nics, err := pack("interfaces", d.Net)
		if err != nil {
			return "", err
		}
		net = append(net, "vmdriver.nics="+nics)
	}
	line := strings.Join(slices.Concat(fields[:i], net, fields[i+1:]), " ")
	if len(line) > maxCmdline-128 { // room for the backend's own parameters
		return "", fmt.Errorf("machine %s: its network table (/etc/hosts and interfaces, %d bytes) does not fit the kernel command line (2 KiB) that this hypervisor must carry it on: use fewer or shorter machine names, or a QEMU backend (fw_cfg has no such limit)", d.Name, len(line)-len(d.Cmdline))
	}
	return line, nil
}
