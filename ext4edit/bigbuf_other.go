//go:build !linux

package ext4edit

// bigBuffer returns n zeroed bytes (see the Linux version).
func bigBuffer(n int, owner *Image) []byte { return make([]byte, n) }
