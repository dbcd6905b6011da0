package imagepull

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// reflinkRange makes out's first n bytes share in's extents
// (FICLONERANGE): instant, and no space used until either side is
// written. It fails where the host filesystem has no reflinks (ext4,
// tmpfs) or the files are on different filesystems.
func reflinkRange(out, in *os.File, n int64) error {
	return unix.IoctlFileCloneRange(int(out.Fd()), &unix.FileCloneRange{
		Src_fd: int64(in.Fd()), Src_offset: 0, Src_length: uint64(n), Dest_offset: 0,
	})
}

// nextData returns the first data extent of in at or after off, cut at n:
// [start, end). start >= n means none is left.
func nextData(in *os.File, off, n int64) (start, end int64, err error) {
	start, err = unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return n, n, nil // only a hole is left
	}
	if err != nil {
		return off, n, nil // no SEEK_DATA here: all of it is data
	}
	if start >= n {
		return n, n, nil
	}
	end, err = unix.Seek(int(in.Fd()), start, unix.SEEK_HOLE)
	if err != nil {
		return start, n, nil
	}
	return start, min(end, n), nil
}

// copyRange copies [off, off+n) of in to out at the same offset inside
// the kernel (copy_file_range: no user-space buffer; a reflink where the
// filesystem chooses to), falling back to a buffered copy. It starts the
// range's writeback once it is copied (sync_file_range), so the disk
// writes overlap the copying instead of all waiting for the final flush,
// which is what makes a plain cp + sync slow.
func copyRange(out, in *os.File, off, n int64) error {
	for n > 0 {
		ro, wo := off, off
		k, err := unix.CopyFileRange(int(in.Fd()), &ro, int(out.Fd()), &wo, int(min(n, 1<<30)), 0)
		if err != nil || k == 0 {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return copyRangeBuffered(out, in, off, n)
		}
		_ = unix.SyncFileRange(int(out.Fd()), off, int64(k), unix.SYNC_FILE_RANGE_WRITE)
		off, n = off+int64(k), n-int64(k)
	}
	return nil
}

// diskBytes is the space fi's blocks take on disk.
func diskBytes(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
