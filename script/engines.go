package script

import (
	"context"
	"fmt"

	"github.com/vmdriver/vmdriver/driver"
)

// What every script engine shares (this one, and the CPython bridge in
// script/cpython), so that both log and report a script alike.

// SubtestFailure is the line that reports a failed subtest, as the NixOS
// driver words it; msg is the error's message.
func SubtestFailure(name, msg string) string {
	return `Test "` + name + `" failed with error: "` + msg + `"`
}

// AliasWarning is the warning logged the first time a script uses the
// implicit `machine` for the only machine, called name.
func AliasWarning(name string) string {
	return fmt.Sprintf("using the implicit name `machine` for the only machine is deprecated; call it by its name, %s", driver.PythonName(name))
}

// SyncMachines runs `sync` on every configured machine of d that is up,
// as the NixOS driver does after the test script; failures are logged.
func SyncMachines(ctx context.Context, d *driver.Driver, log driver.Logger) {
	for _, m := range d.Machines() {
		if m.IsUp() {
			if _, err := m.Execute(ctx, "sync"); err != nil {
				log.Warn(m.Name(), "sync after the test script failed: "+err.Error())
			}
		}
	}
}
