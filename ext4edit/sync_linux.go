package ext4edit

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// fileDevice is the image file as a device. Its barrier is fdatasync: the
// image never changes size, and fdatasync still flushes the allocation of
// blocks written into holes (needed to read the data back), so it is as
// durable as fsync for us while skipping the host inode's timestamps.
type fileDevice struct{ *os.File }

func (d fileDevice) Sync() error { return fdatasync(d.File) }

// fdatasync flushes f's data and what reading it back needs.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return f.Sync()
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return f.Sync()
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

// writeVectorAt writes bufs back to back at off with pwritev, so a run of
// cached blocks goes out in one system call without first being copied
// into one buffer (whose fresh pages each cost a page fault: the larger
// part of a short-lived resize process's time).
func (d fileDevice) writeVectorAt(bufs [][]byte, off int64) error {
	rc, err := d.File.SyscallConn()
	if err != nil {
		return err
	}
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for len(bufs) > 0 {
			n := min(len(bufs), iovMax)
			w, err := unix.Pwritev(int(fd), bufs[:n], off)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = &os.PathError{Op: "pwritev", Path: d.File.Name(), Err: err}
				return
			}
			if w == 0 {
				werr = &os.PathError{Op: "pwritev", Path: d.File.Name(), Err: io.ErrShortWrite}
				return
			}
			off += int64(w)
			// Drop what was written, the last buffer possibly in part.
			for w > 0 && len(bufs) > 0 {
				if w >= len(bufs[0]) {
					w -= len(bufs[0])
					bufs = bufs[1:]
					continue
				}
				bufs[0] = bufs[0][w:]
				w = 0
			}
		}
	}); err != nil {
		return err
	}
	return werr
}

// iovMax is Linux's IOV_MAX: the most buffers one pwritev takes.
const iovMax = 1024
