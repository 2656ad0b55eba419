package machine_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vmdriver/vmdriver/backend/mock"
	"github.com/vmdriver/vmdriver/machine"
)

// TestBadOptions: an option given a value it cannot use fails New with a
// message naming it, instead of a silent default.
func TestBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  machine.Option
		want string
	}{
		{"empty start script", machine.WithStartScript(""), "WithStartScript needs a non-empty value"},
		{"empty state dir", machine.WithStateDir(""), "WithStateDir needs a non-empty value"},
		{"empty shared dir", machine.WithSharedDir(""), "WithSharedDir"},
		{"empty output dir", machine.WithOutputDir(""), "WithOutputDir"},
		{"env without =", machine.WithEnv("A=1", "QEMU_OPTS"), `WithEnv: "QEMU_OPTS" is not KEY=VALUE`},
		{"env without key", machine.WithEnv("=1"), `WithEnv: "=1" is not KEY=VALUE`},
		{"nil logger", machine.WithLogger(nil), "WithLogger needs a Logger"},
		{"zero boot timeout", machine.WithBootTimeout(0), "WithBootTimeout needs a positive duration, got 0s"},
		{"negative command timeout", machine.WithCommandTimeout(-time.Second), "WithCommandTimeout needs a positive duration, got -1s"},
		{"zero held warning", machine.WithHeldStdoutWarning(0), "WithHeldStdoutWarning"},
		{"nil node numbers", machine.WithNodeNumbers(nil), "WithNodeNumbers"},
		{"empty warm dir", machine.WithWarm(""), "WithWarm needs a non-empty value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := machine.New(mock.New(), "vm", tt.opt)
			if err == nil {
				m.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, machine.ErrBadOption) || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "machine vm: ") {
				t.Errorf("New = %v, want ErrBadOption naming the machine and %q", err, tt.want)
			}
		})
	}
	m, err := machine.New(mock.New(), "vm", machine.WithEnv("A=1", "B="), machine.WithBootTimeout(time.Second))
	if err != nil {
		t.Fatalf("good options: %v", err)
	}
	m.Close()
}
