// Package ext4edit reads and edits ext4 filesystem images in place, in
// pure Go: no mount, no root, no e2fsprogs. An image is a file holding a
// filesystem (or a GPT/MBR disk holding one in a partition); the editor
// changes it the way the kernel would, so that after every commit it is
// clean for `e2fsck -fn` and mountable.
//
// # Sessions
//
// A session starts with [Open] (an existing filesystem) or [Mkfs] /
// [MkfsFile] (a new one, formatted the way mkfs.ext4 does for the same
// options) and ends with [Image.Close] (commit, then close) or
// [Image.Discard] (close without committing). [Image.Sync] commits and
// keeps the session open. Opening reads only the superblock and the group
// descriptors; bitmaps, inode tables and directory blocks are read when
// an edit first needs them and stay cached for the session, so the cost
// of an edit grows with what it touches, not with the image.
//
// The image file is locked for the session (flock on Unix, LockFileEx on
// Windows): exclusively for a read-write open, shared for a read-only one,
// so a second writer gets [ErrLocked] instead of corrupting the first
// one's work. [Options].NoLock turns that off; LockTimeout waits.
//
// Paths are absolute inside the image ("/etc/passwd"; a relative path is
// taken from the root). Symlinks met on the way are followed inside the
// image, never above its root, with the kernel's bound of 40; the last
// element is followed by the Stat-like calls and not by the L-calls, as
// in package os. A path is at most 4096 bytes (PATH_MAX) and a name 255.
// [Image.ReadFile] returns files up to 1 GiB whole; larger ones stream
// through the [fs.FS] view ([Image.FS]), whose files read straight from
// their blocks, never more than the caller asks for.
//
// # Operations
//
// Every exported method that changes the filesystem (Mkdir, WriteFile,
// Symlink, Link, Mknod, Remove, RemoveAll, Rename, Chown, Chmod, Chtimes,
// Lsetattr, SetXattr, RemoveXattr, and the Close of a [File] from
// [Image.Create]) is one operation: it either completes, or fails and
// leaves the in-memory filesystem exactly as it was before it (every
// block, descriptor and superblock byte it changed is restored). Space is
// checked before an operation changes anything, so [ErrNoSpace] leaves
// nothing behind. Blocks and inodes freed in a session return to the
// bitmaps only at the commit, so new data never lands in a block that the
// committed tree still points at.
//
// [Options].NoUndo drops that rollback for builders that throw the image
// away on any error: an operation that fails after changing something
// leaves the image refusing every later edit with [ErrPartialEdit].
//
// File data does not wait for the commit: [File.Write] and
// [Image.WriteFile] write whole blocks straight into newly allocated
// blocks, which nothing on disk points at until the commit that makes the
// file visible.
//
// # Commits
//
// A commit (Sync, Close) writes the session's dirty metadata in one of
// three ways, so that a crash leaves a filesystem e2fsck accepts:
//
//   - Journaled, where the image has an internal jbd2 journal: the dirty
//     metadata blocks, the changed descriptor blocks and the superblock
//     are logged as one transaction (after the file data and the blocks
//     allocated this session are durable), the commit block is flushed,
//     the blocks are written home and the journal is marked empty. A
//     crash at any point leaves the old tree or the new one once the
//     kernel, e2fsck or this package replays the log.
//   - Ordered, without a journal: bitmaps and descriptors first (space is
//     marked used before anything points at it), then inodes and tree
//     blocks, then directory blocks, then the superblock, with a flush
//     between the steps. The worst crash leaves leaked blocks or inodes,
//     which e2fsck -p reclaims; never a name that points at garbage.
//   - Scratch ([Options].Scratch), for a file no one else sees until
//     Close returns (a builder's temporary image): the dirty set is
//     written home in block order with no barrier, and Close flushes once.
//     The result is as clean as a journaled commit; a crash before Close
//     returns leaves a file to throw away.
//
// # Resizing
//
// [Resize] (or [Image.Resize] within a session) grows a filesystem and
// its image file: the descriptor table grows into the blocks
// resize_inode reserved and, past them or without them, the filesystem
// switches to meta_bg as the kernel's online resize does; new groups'
// bitmaps and inode tables are laid out per flex group as mke2fs lays
// them out, and stay uninitialised where group checksums allow. The
// blocks past the old end (new bitmaps, backups, meta_bg descriptor
// blocks) are written first; the superblock, the descriptor blocks of the
// old area, the old last group's bitmap and the resize inode are one
// commit whose superblock goes home last, so that until the journal is
// empty every reader judges the descriptors on disk by a superblock that
// matches them. A crash leaves the old filesystem or the new one.
// Shrinking moves file data, tree, directory and xattr blocks, the
// journal and the inodes of the removed groups (renumbered, with every
// entry naming them) into the part that stays, copying data into blocks
// the old filesystem does not use before one commit switches the
// pointers; [Image.MinSize] is the smallest size that holds the content.
//
// # Read-only opens and journal replay
//
// An image whose journal holds committed transactions that were never
// written home (a crash of the kernel or of this package mid-commit) is
// replayed the way jbd2 recovers it. A read-write open writes the
// recovered blocks home, empties the journal and goes on. A read-only
// open ([Options].ReadOnly) never writes: the recovered blocks are kept
// in memory as an overlay that every read consults, so the image reads
// as the kernel would see it after recovery while the file stays
// byte-identical.
//
// # Features
//
// Everything mkfs.ext4 makes today and older tools made is read and
// written: 1k, 2k, 4k and 64k blocks, 32- and 64-bit, flex_bg or not,
// meta_bg, resize_inode, metadata_csum (crc32c) or gdt_csum (crc16) or no
// checksums, huge_file, dir_nlink, extra_isize, large_dir, htree
// directories (half-MD4, TEA, legacy; signed or unsigned), orphan_file,
// inline_data files, and ext2/ext3 block-mapped files. A feature whose
// writes are not implemented (encrypt, casefold, bigalloc, verity,
// an external journal, fast_commit blocks in the log ...) makes writes
// fail with [ErrUnsupportedFeature] naming it, before any byte changes;
// an unknown incompat feature refuses the open itself, as the kernel
// does.
//
// # Concurrency
//
// An *Image may be used from several goroutines: its methods, the
// [fs.FS] from [Image.FS] and the files that FS opens serialise on one
// lock per image, so lookups and reads may run beside edits and see each
// operation whole or not at all (a file already open for reading goes on
// reading the blocks it mapped when it was opened). A [File] from
// [Image.Create] is a writer for one
// goroutine at a time, like a bufio.Writer; the Image stays usable by
// others while it is open (each of its allocations takes the image
// lock). Sync and Close close the Files still open and commit what was
// written to them, so no writer may still be using one then; a second
// Close fails with [ErrClosed]. Different images are independent.
// TestConcurrentUse exercises this contract; run it with -race.
//
// # Errors
//
// Every exported method returns an *[fs.PathError] naming the operation
// and the in-image path (or the image file, for Open, Sync and Close),
// wrapping a sentinel that errors.Is matches: [fs.ErrNotExist],
// [fs.ErrExist], [fs.ErrInvalid], [ErrNotDir], [ErrIsDir], [ErrNotEmpty],
// [ErrLoop], [ErrNameTooLong], [ErrTooManyLinks] as package os would
// return them; [ErrNoSpace], [ErrFileTooLarge] and [ErrXattrTooLarge] for
// limits (the message says which and by how much); [ErrCorrupt] for an
// on-disk value out of range or a checksum that does not match;
// [ErrUnsupportedFeature], [ErrNeedsRecovery], [ErrReadOnly],
// [ErrLocked], [ErrClosed] and [ErrPartialEdit] for the state of the
// image or session. Every value read from disk is range-checked before it
// is used: a corrupt or hostile image gives an error, never a panic, a
// hang, an allocation sized by the image or a write outside it.
package ext4edit
