//go:build !linux

package ext4edit

import "os"

// fileDevice is the image file as a device; its barrier is fsync.
type fileDevice struct{ *os.File }

// fdatasync is fsync here.
func fdatasync(f *os.File) error { return f.Sync() }
