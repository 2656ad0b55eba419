package report_test

import (
	"errors"
	"os"
	"time"

	"github.com/vmdriver/vmdriver/report"
)

func Example() {
	// A fixed clock that ticks 250ms per reading keeps the output stable.
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { t = t.Add(250 * time.Millisecond); return t }

	log := report.New(report.Options{
		Out:         os.Stdout,
		Color:       report.ColorFor(os.Stdout), // false here: not a terminal
		SerialToOut: true,
		Now:         clock,
	})
	script := log.Nested("", "run the VM test script")
	end := log.Subtest("boot")
	log.Info("server", "starting vm")
	log.Serial("server", "Welcome to vmdriver!")
	end(nil)
	log.Failure(`unit "nginx.service" is failed`, &report.Location{
		File: "test.star", Line: 7, Col: 8, Source: `server.wait_for_unit("nginx.service")`,
	})
	script(errors.New("test failed"))
	_ = log.Close()
	// Output:
	// run the VM test script
	//   subtest: boot
	//     server: starting vm
	//     server # Welcome to vmdriver!
	//   (finished: subtest: boot, in 0.75 seconds)
	// !!! test.star:7:8:
	// !!!     server.wait_for_unit("nginx.service")
	// !!!            ^
	// !!! unit "nginx.service" is failed
	// (failed: run the VM test script, in 1.50 seconds)
}
