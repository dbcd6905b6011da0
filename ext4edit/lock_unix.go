//go:build unix && !aix

package ext4edit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an advisory flock(2) lock on the whole of f without
// blocking: exclusive for a read-write session, shared for a read-only one.
// flock locks belong to the open file description, so two opens of the
// same image conflict even inside one process, and the lock goes away when
// f is closed. When a conflicting lock is held elsewhere the error wraps
// ErrLocked.
func lockFile(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK), errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("%w (%s)", ErrLocked, f.Name())
		default:
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
	}
}

// unlockFile releases the lock taken by lockFile.
func unlockFile(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_UN)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("unlocking %s: %w", f.Name(), err)
		}
		return nil
	}
}
