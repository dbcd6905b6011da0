package ext4edit

import (
	"io/fs"
	"time"
)

// Options control how an image is opened. The zero value opens the whole
// file read-write with an exclusive lock.
type Options struct {
	// ReadOnly opens the image without write access; every edit fails with
	// ErrReadOnly.
	ReadOnly bool
	// Offset is the byte offset of the filesystem inside the file (for a
	// disk image whose partition start is known).
	Offset int64
	// Partition selects a 1-based partition of a GPT or MBR disk image; it
	// overrides Offset. Zero means the file is the filesystem itself.
	Partition int
	// NoLock skips the advisory lock on the image file.
	NoLock bool
	// LockTimeout is how long Open waits for a lock another process holds
	// before failing with ErrLocked (naming the image); 0 fails at once.
	LockTimeout time.Duration
	// UID and GID own every inode this session creates (default 0:0, root).
	UID, GID uint32
	// Now, when set, supplies the timestamps of created and changed inodes
	// (for reproducible images). Default time.Now. Like every time the
	// editor stores, its times are clamped to Image.TimeRange.
	Now func() time.Time
	// NoUndo turns off the rollback of failed operations, for builders
	// that throw the image away on any error (imagepull.BuildExt4): every
	// operation otherwise snapshots each block, descriptor and the
	// superblock before it first changes them, which is a large part of
	// the cost of creating a small file. An operation that fails before
	// changing anything (a name that exists, a missing parent, no space
	// found up front) still leaves the image as it was; one that fails
	// part way makes every later edit and the commit fail with
	// ErrPartialEdit, and Close then only closes the file.
	NoUndo bool
	// Scratch says the image file is private to this process until Close
	// returns: nothing mounts, reads or publishes it before (a builder's
	// temporary file, renamed into place after Close and removed on any
	// error). Commits then skip crash safety: no journal transaction, no
	// ordering barriers; Sync writes the dirty metadata home without
	// flushing it, and Close flushes everything once (fdatasync). The
	// image is as valid (e2fsck -fn clean) after Close as with a
	// journaled commit, but a crash before Close returns leaves a file to
	// throw away. Where the file can (Linux), it is flushed in the
	// background every 64 MiB of file data written, so Close's flush has
	// only the last stretch left.
	Scratch bool
	// KeepDirTimes leaves a directory's mtime and ctime alone when an
	// entry is added to it or removed from it. A builder that sets every
	// directory's times itself (from tar headers) then sets them once, as
	// each directory is made or declared, instead of remembering every
	// directory to set its times again after the last entry.
	KeepDirTimes bool
	// DropVerity removes a dm-verity hash tree that follows the
	// filesystem (a sealed image: see ErrVeritySealed) when the image is
	// opened for writing: its superblock is zeroed and, when the file is
	// the filesystem alone (no Partition), the file is cut to the
	// filesystem's end. Without it, a sealed image opens but refuses every
	// write. The image's root hash no longer describes it afterwards.
	DropVerity bool

	// skipReplay (Check only, read-only) reads the filesystem as it is on
	// disk when the journal that needs recovery cannot be replayed, as
	// e2fsck -n does.
	skipReplay bool
}

// InodeInfo is what FileInfo.Sys returns: the raw inode fields behind a name.
type InodeInfo struct {
	Ino        uint32
	Mode       uint16 // raw i_mode, type bits included (IModeRegular|0644 ...)
	UID, GID   uint32
	LinksCount uint16
	Size       uint64
	Blocks     uint64 // in 512-byte units, as stat(2) reports them
	Atime      time.Time
	Mtime      time.Time
	Ctime      time.Time
	Crtime     time.Time // zero where the inode has no creation time
	Flags      uint32
	Generation uint32
	// Rdev is the device number of a character or block device node.
	Major, Minor uint32
}

// Attr names inode fields to set in one Lsetattr call; nil fields are left
// alone. It exists for tools (debugfs's set_inode_field) that set fields
// directly; ordinary callers use Chmod, Chown and Chtimes. Times outside
// what the inode holds are clamped to Image.TimeRange (the 32-bit range
// where the inode lacks a field's extra word), never wrapped.
type Attr struct {
	Mode       *uint16 // raw i_mode including the type bits (IModeRegular|0o644 ...)
	UID, GID   *uint32
	Atime      *time.Time
	Mtime      *time.Time
	Ctime      *time.Time
	Crtime     *time.Time
	LinksCount *uint16
	Generation *uint32
	Flags      *uint32
}

// merge copies the fields of a that are set into attr (the values, so
// the caller may reuse what a points at).
func (attr *Attr) merge(a Attr) {
	copyIfSet(&attr.Mode, a.Mode)
	copyIfSet(&attr.UID, a.UID)
	copyIfSet(&attr.GID, a.GID)
	copyIfSet(&attr.Atime, a.Atime)
	copyIfSet(&attr.Mtime, a.Mtime)
	copyIfSet(&attr.Ctime, a.Ctime)
	copyIfSet(&attr.Crtime, a.Crtime)
	copyIfSet(&attr.LinksCount, a.LinksCount)
	copyIfSet(&attr.Generation, a.Generation)
	copyIfSet(&attr.Flags, a.Flags)
}

// copyIfSet points *dst at a copy of *src when src is set.
func copyIfSet[T any](dst **T, src *T) {
	if src != nil {
		v := *src
		*dst = &v
	}
}

// Raw i_mode bits, for Attr.Mode and InodeInfo.Mode: the file type
// (mask IModeType, the kernel's S_IFMT) and the set-id and sticky bits
// (S_ISUID ...), as <sys/stat.h> and the ext4 inode store them. The
// permission bits are the low nine, as in fs.FileMode.
const (
	IModeType     uint16 = 0xF000 // S_IFMT: the type bits
	IModeSocket   uint16 = 0xC000 // S_IFSOCK
	IModeSymlink  uint16 = 0xA000 // S_IFLNK
	IModeRegular  uint16 = 0x8000 // S_IFREG
	IModeBlockDev uint16 = 0x6000 // S_IFBLK
	IModeDir      uint16 = 0x4000 // S_IFDIR
	IModeCharDev  uint16 = 0x2000 // S_IFCHR
	IModeFIFO     uint16 = 0x1000 // S_IFIFO
	IModeSetuid   uint16 = 0x0800 // S_ISUID
	IModeSetgid   uint16 = 0x0400 // S_ISGID
	IModeSticky   uint16 = 0x0200 // S_ISVTX
	IModePermMask uint16 = 0x01FF // rwxrwxrwx
)

// Short internal names for the type bits above.
const (
	sIFMT   = IModeType
	sIFSOCK = IModeSocket
	sIFLNK  = IModeSymlink
	sIFREG  = IModeRegular
	sIFBLK  = IModeBlockDev
	sIFDIR  = IModeDir
	sIFCHR  = IModeCharDev
	sIFIFO  = IModeFIFO
	sISUID  = IModeSetuid
	sISGID  = IModeSetgid
	sISVTX  = IModeSticky
)

// unixMode converts an fs.FileMode to i_mode bits (type and permissions).
func unixMode(m fs.FileMode) uint16 {
	v := uint16(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= sISUID
	}
	if m&fs.ModeSetgid != 0 {
		v |= sISGID
	}
	if m&fs.ModeSticky != 0 {
		v |= sISVTX
	}
	switch {
	case m&fs.ModeDir != 0:
		v |= sIFDIR
	case m&fs.ModeSymlink != 0:
		v |= sIFLNK
	case m&fs.ModeNamedPipe != 0:
		v |= sIFIFO
	case m&fs.ModeSocket != 0:
		v |= sIFSOCK
	case m&fs.ModeCharDevice != 0:
		v |= sIFCHR
	case m&fs.ModeDevice != 0:
		v |= sIFBLK
	default:
		v |= sIFREG
	}
	return v
}

// fileMode converts i_mode bits to an fs.FileMode.
func fileMode(v uint16) fs.FileMode {
	m := fs.FileMode(v & 0o777)
	if v&sISUID != 0 {
		m |= fs.ModeSetuid
	}
	if v&sISGID != 0 {
		m |= fs.ModeSetgid
	}
	if v&sISVTX != 0 {
		m |= fs.ModeSticky
	}
	switch v & sIFMT {
	case sIFDIR:
		m |= fs.ModeDir
	case sIFLNK:
		m |= fs.ModeSymlink
	case sIFIFO:
		m |= fs.ModeNamedPipe
	case sIFSOCK:
		m |= fs.ModeSocket
	case sIFCHR:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case sIFBLK:
		m |= fs.ModeDevice
	case sIFREG:
	default:
		m |= fs.ModeIrregular
	}
	return m
}
