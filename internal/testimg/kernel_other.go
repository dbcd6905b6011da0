//go:build !linux

package testimg

import "testing"

// RequireKernelMount skips t: mounting an ext4 image through a loop
// device is a Linux test (see the Linux version).
func RequireKernelMount(t testing.TB) {
	t.Helper()
	t.Skip("kernel mount test: needs Linux (loop devices and the ext4 driver)")
}

// Mount skips t (see RequireKernelMount).
func Mount(t testing.TB, img string, ro bool) (dir string, unmount func()) {
	t.Helper()
	RequireKernelMount(t)
	return "", func() {}
}
