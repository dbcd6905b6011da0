package ext4edit

import "github.com/banger/ext4kit/internal/filelock"

// ErrLocked: another process (or another Image in this process) holds a
// conflicting lock on the image file. Open takes an exclusive lock for
// read-write and a shared lock for read-only sessions unless Options.NoLock
// is set.
var ErrLocked = filelock.ErrLocked
