package integration

import (
	"context"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/qemu"
	"github.com/vmdriver/vmdriver/internal/testenv"
	"github.com/vmdriver/vmdriver/machine"
)

// noSharedDir is the QEMU backend claiming, as Firecracker and
// cloud-hypervisor do, that its guests see no shared directory.
type noSharedDir struct{ *qemu.Backend }

func (noSharedDir) SharesDir() bool { return false }

// TestCopyWithoutSharedDir runs the copy checks of TestGuests on a
// backend without a shared directory: the trees travel through the shell
// as tar archives. The guest's 9p share is unmounted first, so a copy
// that went through it would fail.
func TestCopyWithoutSharedDir(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs")
	}
	for _, k := range guestKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			testenv.NeedQEMU(t)
			m := machine.StartT(t, noSharedDir{sharedBackend()}, k.name,
				machine.WithStartScript(testenv.StartScript(t, k.name)),
				machine.WithOutputDir(t.TempDir()),
				machine.WithBootTimeout(bootTimeout))
			ctx, cancel := context.WithTimeout(context.Background(), bootTimeout+time.Minute)
			defer cancel()
			if _, err := m.Succeed(ctx, "umount /tmp/shared && ! grep -q ' /tmp/shared ' /proc/mounts"); err != nil {
				t.Fatal(err)
			}
			t.Run("CopyFromHost", func(t *testing.T) { checkCopyFromHost(testCtx(t, 3*time.Minute), t, k, m) })
			t.Run("CopyFromMachine", func(t *testing.T) { checkCopyFromMachine(testCtx(t, 3*time.Minute), t, k, m) })
			if out, err := m.Succeed(ctx, "ls /tmp | grep -c '^tmp\\.' || true"); err != nil || out != "0\n" {
				t.Errorf("temporary archives left in the guest's /tmp: %q, %v", out, err)
			}
		})
	}
}
