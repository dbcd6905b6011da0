package ext4edit

import (
	"os"

	"golang.org/x/sys/unix"
)

// fileDevice is the image file as a device. Its barrier is fdatasync: the
// image never changes size, and fdatasync still flushes the allocation of
// blocks written into holes (needed to read the data back), so it is as
// durable as fsync for us while skipping the host inode's timestamps.
type fileDevice struct{ *os.File }

func (d fileDevice) Sync() error {
	rc, err := d.File.SyscallConn()
	if err != nil {
		return d.File.Sync()
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return d.File.Sync()
	}
	return serr
}

// startWriteback starts writing [off, off+n) back to the disk, without
// waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE: no durability by
// itself, the commit's fdatasync still provides that).
func (d fileDevice) startWriteback(off, n int64) {
	rc, err := d.File.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
}
