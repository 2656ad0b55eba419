package firecracker

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/internal/cachedir"
)

// warmFormat names the layout of WarmKey's text; change it when what a
// warm entry holds changes.
const warmFormat = "firecracker warm 1"

var _ backend.WarmKeyer = (*Backend)(nil)

// WarmKey describes what decides what spec's machine boots into on this
// backend: the firecracker binary, the machine description and the files
// it names (kernel, initrd, disks), and what the backend adds (the
// console arguments, the backdoor's vsock port).
func (b *Backend) WarmKey(spec backend.Spec) (string, error) {
	bin, err := b.binaryPath()
	if err != nil {
		return "", err
	}
	id, err := cachedir.FileIdentity(bin)
	if err != nil {
		return "", err
	}
	path := backend.DescriptionPath(spec.StartScript)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading the machine description: %w", err)
	}
	desc, err := backend.LoadDescription(path)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\nfirecracker %s\ndescription %x\nconsole %q\nbackdoor %d\n", warmFormat, id, sha256.Sum256(data), consoleArgs, BackdoorPort)
	files := []string{desc.Kernel, desc.Initrd}
	for _, d := range desc.Disks {
		files = append(files, d.Path)
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		fid, err := cachedir.FileIdentity(desc.Path(f))
		if err != nil {
			return "", fmt.Errorf("machine description: %w", err)
		}
		fmt.Fprintf(&sb, "file %s\n", fid)
	}
	return sb.String(), nil
}
