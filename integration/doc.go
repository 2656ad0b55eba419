// Package integration holds the integration tests of the Machine API on
// real QEMU guests of both kinds (the busybox "minimal" guest and the
// Debian "systemd" guest): commands and their exact output, systemd
// units, ports, files both ways, the screen and consoles, shutdown and a
// second start, crashes, and every bad-input case (broken start scripts,
// QEMU missing or killed, a guest that never answers, a shell that dies).
//
// The package has no code of its own; its tests need QEMU and guest
// images built by `make images` (VMDRIVER_IMAGES), and skip without them
// unless VMDRIVER_REQUIRE_VM=1 (see internal/testenv).
package integration
