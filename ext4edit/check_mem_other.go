//go:build !linux

package ext4edit

// zeroedBitmap returns n zero bytes (see the Linux version).
func zeroedBitmap(n int, _ *checker) []byte { return make([]byte, n) }
