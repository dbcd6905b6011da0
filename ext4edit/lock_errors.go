package ext4edit

import "errors"

// ErrLocked: another process (or another Image in this process) holds a
// conflicting lock on the image file. Open takes an exclusive lock for
// read-write and a shared lock for read-only sessions unless Options.NoLock
// is set.
var ErrLocked = errors.New("image is locked by another process")
