package vmtest_test

import (
	"strings"
	"testing"

	"github.com/vmdriver/vmdriver/vmtest"
)

// A test gets a booted guest in one call; it is closed when the test ends.
func ExampleMinimal() {
	var t *testing.T // in a test: func TestKernel(t *testing.T)
	m := vmtest.Minimal(t)
	out, err := m.Succeed(t.Context(), "uname -r")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest kernel %s", strings.TrimSpace(out))
}
