//go:build unix && !aix

package filelock

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Lock takes an advisory flock(2) lock on the whole of f without
// blocking: exclusive for a writer, shared for a reader.
// flock locks belong to the open file description, so two opens of the
// same file conflict even inside one process, and the lock goes away when
// f is closed. When a conflicting lock is held elsewhere the error wraps
// ErrLocked.
func Lock(f *os.File, exclusive bool) error {
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

// Unlock releases the lock taken by Lock.
func Unlock(f *os.File) error {
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
