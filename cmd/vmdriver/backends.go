package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vmdriver/vmdriver/backend"
	"github.com/vmdriver/vmdriver/backend/cloudhypervisor"
	"github.com/vmdriver/vmdriver/backend/firecracker"
	"github.com/vmdriver/vmdriver/backend/qemu"
)

// defaultBackend is the backend a run uses without --backend.
const defaultBackend = "qemu"

// backends are the hypervisor backends --backend chooses from, by
// backend.Backend.Name. A new backend is one more entry.
var backends = map[string]func() backend.Backend{
	"qemu":    func() backend.Backend { return qemu.New() },
	"microvm": func() backend.Backend { return qemu.NewMicrovm() },
	// Firecracker and cloud-hypervisor boot machines from their
	// descriptions; their VLAN NICs are TAP devices (--net tap, their
	// default).
	"firecracker":      func() backend.Backend { return firecracker.New() },
	"cloud-hypervisor": func() backend.Backend { return cloudhypervisor.New() },
}

// backendNames lists the names --backend takes, sorted.
func backendNames() []string {
	names := make([]string, 0, len(backends))
	for name := range backends {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// checkBackend returns a usage error naming the choices unless name is
// a backend.
func checkBackend(name string) error {
	if _, ok := backends[name]; !ok {
		return usageError{fmt.Sprintf("unknown backend %q (--backend, or the config's \"backend\"); choose one of: %s", name, strings.Join(backendNames(), ", "))}
	}
	return nil
}

// newBackend returns a fresh backend by name.
func newBackend(name string) (backend.Backend, error) {
	if err := checkBackend(name); err != nil {
		return nil, err
	}
	return backends[name](), nil
}
