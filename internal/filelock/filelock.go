// Package filelock takes advisory whole-file locks that do not block: an
// ext4 image under edit, an output directory being published into.
package filelock

import "errors"

// ErrLocked: another process (or another open of the file in this
// process) holds a conflicting lock.
var ErrLocked = errors.New("locked by another process")
