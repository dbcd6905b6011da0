package ext4edit

import (
	"errors"
	"fmt"
	"io/fs"
)

// Sentinel errors. Every public method wraps them in an *fs.PathError that
// names the operation and the in-image path, so callers test with errors.Is.
var (
	// ErrUnsupportedFeature: the image uses a feature whose writes (or, for
	// incompat features, reads) this package does not implement. The
	// wrapping error names the feature. Nothing was written.
	ErrUnsupportedFeature = errors.New("unsupported ext4 feature")
	// ErrCorrupt: an on-disk value is out of range or a checksum mismatches.
	ErrCorrupt = errors.New("corrupt ext4 filesystem")
	// ErrNoSpace: not enough free blocks or inodes. Detected before the
	// image changes.
	ErrNoSpace = errors.New("no space left in ext4 image")
	// ErrReadOnly: a write was attempted on an image opened read-only.
	ErrReadOnly = errors.New("ext4 image opened read-only")
	// ErrNeedsRecovery: the journal holds transactions that were never
	// checkpointed; the image must be replayed (mount it, or e2fsck -fy)
	// before it can be edited.
	ErrNeedsRecovery = errors.New("ext4 journal needs recovery")
	// ErrClosed: the Image was used after Close.
	ErrClosed = errors.New("ext4 image is closed")
	// ErrNotDir, ErrIsDir, ErrNotEmpty, ErrLoop, ErrInvalidPath mirror the
	// errno values os would return.
	ErrNotDir       = errors.New("not a directory")
	ErrIsDir        = errors.New("is a directory")
	ErrNotEmpty     = errors.New("directory not empty")
	ErrLoop         = errors.New("too many levels of symbolic links")
	ErrInvalidPath  = errors.New("invalid path")
	ErrTooManyLinks = errors.New("too many links")
	ErrNameTooLong  = errors.New("file name too long")
	// ErrPartialEdit: an operation on an image opened with Options.NoUndo
	// failed after changing part of the in-memory filesystem, which is now
	// inconsistent. The failing operation's error wraps it besides its
	// cause; every later edit, Sync and Close's commit fail with it (naming
	// the first failure). The image must be thrown away.
	ErrPartialEdit = errors.New("ext4 edit failed part way without rollback (Options.NoUndo)")
	// ErrFileTooLarge mirrors EFBIG: a file would grow past the largest
	// size its inode can map (the kernel's s_maxbytes: 2^32-1 blocks for
	// an extent-mapped file, the reach of triple indirection for a
	// block-mapped one, less without huge_file). The wrapping error names
	// both sizes. Nothing was written; a larger image does not help.
	ErrFileTooLarge = errors.New("file too large")
	// ErrXattrTooLarge: extended attributes do not fit the space ext4
	// gives one inode's attributes without the ea_inode feature: the
	// in-inode area (inode size - 128 - i_extra_isize, less a 4-byte
	// header and a 4-byte end marker) and one attribute block (the block
	// size, less a 32-byte header and the end marker). Each attribute
	// takes a 16-byte entry plus its name and its value, each padded to 4
	// bytes, and must fit whole in one of the two, so no value larger
	// than a block fits. The wrapping error names the attribute, the
	// bytes it needs and the bytes free in each place. Nothing was
	// changed; unlike ErrNoSpace, a larger image does not help.
	ErrXattrTooLarge = errors.New("extended attributes too large for one ext4 inode")
)

// corruptf returns an error wrapping ErrCorrupt with a description of the
// structure and its location.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// unsupportedf returns an error wrapping ErrUnsupportedFeature.
func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUnsupportedFeature, fmt.Sprintf(format, args...))
}

// pathErr wraps err for op on name unless it already is a PathError.
func pathErr(op, name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}
