package ext4edit

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// zeroedBitmap returns n zero bytes for a bitmap of the filesystem's
// blocks. Large ones are an anonymous mapping: pages nobody touches (the
// empty groups of a mostly empty 1 TiB image) cost neither time nor
// memory, where a heap allocation would be cleared whole. The mapping
// goes when owner becomes unreachable.
func zeroedBitmap(n int, owner *checker) []byte {
	if n < 1<<20 {
		return make([]byte, n)
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]byte, n)
	}
	runtime.AddCleanup(owner, func(b []byte) { _ = unix.Munmap(b) }, b)
	return b
}
