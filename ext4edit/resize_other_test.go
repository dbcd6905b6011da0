//go:build !linux

package ext4edit_test

import "testing"

// rzKernelWrite needs the Linux kernel's ext4 driver and loop devices.
func rzKernelWrite(t *testing.T, img string) {}

// rzAllocated is not measured off Linux.
func rzAllocated(t *testing.T, name string) (int64, bool) { return 0, false }
