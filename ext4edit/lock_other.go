//go:build (!unix && !windows) || aix

package ext4edit

import "os"

// lockFile does nothing here. plan9, js and wasip1 have no file locking
// that Go can reach, and AIX has no flock(2): its only locks are POSIX
// record locks, which belong to the process (so they cannot detect a second
// Image on the same file in this process) and vanish when any descriptor of
// the file is closed. Rather than pretend, the image is not locked on these
// platforms; Options.NoLock behaves the same as the default.
func lockFile(f *os.File, exclusive bool) error { return nil }

// unlockFile does nothing; see lockFile.
func unlockFile(f *os.File) error { return nil }
