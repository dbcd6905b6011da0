package ext4edit

import "io"

// device is what an Image reads and writes: the image file, or in tests a
// wrapper that injects faults (a crash after N writes, lost unflushed
// writes) to prove commits are atomic.
type device interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
}
