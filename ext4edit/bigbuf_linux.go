package ext4edit

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// bigBuffer returns n zeroed bytes for a structure read whole at open
// (the group descriptor table: 512 KiB in a 1 TiB image). Large ones are
// mapped with MAP_POPULATE: one system call fills the pages, where a
// fresh heap allocation would fault them in one at a time as the read
// lands, a cost that dominated opening large images from a short-lived
// process. owner releases the mapping when it becomes unreachable.
func bigBuffer(n int, owner *Image) []byte {
	if n < bigBufferMin {
		return make([]byte, n)
	}
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return make([]byte, n)
	}
	runtime.AddCleanup(owner, func(b []byte) { _ = unix.Munmap(b) }, b)
	return b
}

// bigBufferMin is the size from which bigBuffer maps.
const bigBufferMin = 64 << 10
