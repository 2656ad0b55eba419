package script_test

import (
	"io"
	"testing"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/driver"
	"github.com/vmdriver/vmdriver/script"
)

// BenchmarkRunEmpty measures the fixed cost of script.Run: globals,
// modules, rewrite, compile, thread and global-timeout setup.
func BenchmarkRunEmpty(b *testing.B) {
	d, err := driver.New(b.Context(), driver.Config{OutputDir: b.TempDir()}, driver.WithBackend(mock.New()), driver.WithLogger(&recLogger{}))
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	ctx := testCtx(b)
	opts := script.Options{Driver: d, Filename: "empty.py", Source: []byte{}, Stdout: io.Discard}
	b.ReportAllocs()
	for b.Loop() {
		if err := script.Run(ctx, opts); err != nil {
			b.Fatal(err)
		}
	}
}
