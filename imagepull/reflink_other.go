//go:build !linux

package imagepull

import (
	"errors"
	"os"
)

// reflinkRange: no FICLONERANGE here; Clone copies the bytes.
func reflinkRange(out, in *os.File, n int64) error {
	return errors.New("reflinks are not supported on this system")
}

// nextData: without SEEK_DATA all of the range is data (the copy still
// writes no zero block).
func nextData(in *os.File, off, n int64) (start, end int64, err error) {
	return off, n, nil
}

// copyRange copies through a buffer.
func copyRange(out, in *os.File, off, n int64) error {
	return copyRangeBuffered(out, in, off, n)
}

// diskBytes is fi's size (allocated blocks are not reported here).
func diskBytes(fi os.FileInfo) int64 { return fi.Size() }
