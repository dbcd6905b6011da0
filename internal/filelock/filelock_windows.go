//go:build windows

package filelock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/windows"
)

// Windows byte-range locks are mandatory: while one is held, other handles
// cannot read (exclusive) or write (any lock) the locked bytes. To behave
// like the advisory flock used on Unix, the lock covers one byte far
// beyond the end of any possible image file (NTFS files end below 2^44 bytes);
// LockFileEx allows locking past end of file. Every caller locks the same
// byte, so locks still conflict with each other, but ordinary I/O on the
// file by this or any other process is never refused.
const (
	lockOffset = 1 << 62
	lockLen    = 1
)

func lockOverlapped() *windows.Overlapped {
	return &windows.Overlapped{
		Offset:     uint32(uint64(lockOffset) & 0xFFFFFFFF),
		OffsetHigh: uint32(uint64(lockOffset) >> 32),
	}
}

// Lock takes a LockFileEx lock on f without blocking
// (LOCKFILE_FAIL_IMMEDIATELY): exclusive for a writer, shared
// for a reader. Locks belong to the file handle, so two opens of
// the same file conflict even inside one process; closing f releases the
// lock. When a conflicting lock is held elsewhere the error wraps
// ErrLocked.
func Lock(f *os.File, exclusive bool) error {
	flags := uint32(windows.LOCKFILE_FAIL_IMMEDIATELY)
	if exclusive {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	err := windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, lockLen, 0, lockOverlapped())
	switch {
	case err == nil:
		return nil
	case errors.Is(err, windows.ERROR_LOCK_VIOLATION):
		return fmt.Errorf("%w (%s)", ErrLocked, f.Name())
	default:
		return fmt.Errorf("locking %s: %w", f.Name(), err)
	}
}

// Unlock releases the lock taken by Lock.
func Unlock(f *os.File) error {
	if err := windows.UnlockFileEx(windows.Handle(f.Fd()), 0, lockLen, 0, lockOverlapped()); err != nil {
		return fmt.Errorf("unlocking %s: %w", f.Name(), err)
	}
	return nil
}
