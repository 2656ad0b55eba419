package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/vmdriver/vmdriver/internal/sparsecopy"
)

// Guest RAM as a file.
//
// A machine whose memory size the driver can read from its start script
// gets its RAM from a file the driver creates (in /dev/shm, unlinked at
// once and handed to QEMU as an inherited descriptor, so nothing outlives
// the run however it ends), mapped shared. A snapshot then streams no RAM
// (the x-ignore-shared migration capability) and instead copies the
// file, sparsely, into the snapshot directory while the guest is paused.
// A restored clone maps that frozen copy privately: it copies nothing up
// front, and each clone's writes stay its own. A clone's own RAM is such
// a private mapping, so its snapshots carry the RAM in the stream as
// usual. When the size cannot be read, RAM stays anonymous and snapshots
// stream it, as before, and the log says why once.

const (
	// ramID is the memory backend's id, and so the RAM block's name in
	// the migration stream: every machine of ours has it.
	ramID = "vmdriver-ram"
	// ramChildFD is the descriptor the live RAM file has in QEMU.
	ramChildFD = shellChildFD + 1
	// ramFile names the frozen RAM in a snapshot directory.
	ramFile = "ram"
	// ramDir is where live RAM files are created: tmpfs, so guest memory
	// is not written back to a disk (a file on disk made a TCG boot 17 %
	// slower here).
	ramDir = "/dev/shm"
)

// ramPlan says how one QEMU process gets its guest RAM.
type ramPlan struct {
	mib int64 // 0: anonymous RAM, QEMU's default
	// live is the shared RAM file of a machine that boots (fd 4 in QEMU).
	live *os.File
	// frozen is the snapshot RAM file a restored clone maps privately.
	frozen string
}

// args returns the QEMU arguments of the plan.
func (p ramPlan) args() []string {
	if p.mib == 0 {
		return nil
	}
	obj := fmt.Sprintf("memory-backend-ram,id=%s,size=%dM", ramID, p.mib)
	switch {
	case p.live != nil:
		obj = fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=/proc/self/fd/%d,share=on", ramID, p.mib, ramChildFD)
	case p.frozen != "":
		obj = fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=off", ramID, p.mib, qemuEscape(p.frozen))
	}
	return []string{"-object", obj, "-machine", "memory-backend=" + ramID}
}

// memFlag matches a start script's -m option: "-m 1024", "-m 1G".
var memFlag = regexp.MustCompile(`(?:^|[\s"'])-m\s+["']?(\d+)([MmGg]?)\b`)

// scriptMemoryMiB reads the guest memory size from a start script, or
// says why it cannot.
func scriptMemoryMiB(script string, env []string) (int64, string) {
	data, err := os.ReadFile(script)
	if err != nil {
		return 0, err.Error()
	}
	text := string(data)
	if strings.Contains(text, "memory-backend") || strings.Contains(text, "-numa") || strings.Contains(text, "-mem-path") {
		return 0, "the start script sets up guest memory itself"
	}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == "QEMU_OPTS" && memFlag.MatchString(" "+v) {
			return 0, "QEMU_OPTS sets -m"
		}
	}
	sizes := map[int64]bool{}
	for _, m := range memFlag.FindAllStringSubmatch(text, -1) {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		if strings.EqualFold(m[2], "g") {
			n *= 1024
		}
		sizes[n] = true
	}
	if len(sizes) != 1 {
		return 0, fmt.Sprintf("the start script gives %d memory sizes (-m), not one", len(sizes))
	}
	for n := range sizes {
		return n, ""
	}
	return 0, ""
}

// liveRAM creates the shared RAM file of a booting machine, already
// unlinked: only the descriptors keep it, QEMU's and the instance's.
func liveRAM(mib int64) (*os.File, error) {
	f, err := os.CreateTemp(ramDir, "vmdriver-ram-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	if err := f.Truncate(mib << 20); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// frozenRAM returns the path a clone maps privately: the snapshot's own
// file when QEMU may open it read-write (it never writes to a private
// mapping's file, but opens it so), else a sparse copy in the clone's
// state directory (a snapshot in a read-only place, such as a Nix store).
func frozenRAM(ctx context.Context, snapDir, stateDir string) (string, error) {
	p := filepath.Join(snapDir, ramFile)
	if syscall.Access(p, 6 /* R_OK|W_OK */) == nil {
		return p, nil
	}
	src, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst := filepath.Join(stateDir, "snapshot-ram")
	os.Remove(dst)
	return dst, sparsecopy.File(ctx, src, dst)
}

// qemuEscape doubles commas, as QEMU option values need.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
