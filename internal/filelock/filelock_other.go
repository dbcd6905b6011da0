//go:build (!unix && !windows) || aix

package filelock

import "os"

// Lock does nothing here. plan9, js and wasip1 have no file locking
// that Go can reach, and AIX has no flock(2): its only locks are POSIX
// record locks, which belong to the process (so they cannot detect a second
// open of the same file in this process) and vanish when any descriptor of
// the file is closed. Rather than pretend, nothing is locked on these
// platforms.
func Lock(f *os.File, exclusive bool) error { return nil }

// Unlock does nothing; see Lock.
func Unlock(f *os.File) error { return nil }
