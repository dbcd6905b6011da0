package ext4edit

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/banger/ext4kit/internal/filelock"
)

// Open opens the ext4 filesystem in the file at path. Only the superblock
// and the group descriptors are read.
func Open(path string, opts *Options) (*Image, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	img, err := open(path, o)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	return img, nil
}

func open(path string, o Options) (*Image, error) {
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	img, err := openOn(f, path, o, false)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// openOn opens the filesystem in f (opened from path) for editing: f is
// already locked when locked is true. On error f stays open (a lock taken
// here released) for the caller to close. Open and MkfsFile share it.
func openOn(f *os.File, path string, o Options, locked bool) (*Image, error) {
	img := &Image{f: f, dev: hookDevice(path, fileDevice{f}), path: path, ro: o.ReadOnly, opts: o, off: o.Offset, now: o.Now}
	if img.now == nil {
		img.now = time.Now
	}
	ok := false
	defer func() {
		if !ok && img.locked && !locked {
			_ = filelock.Unlock(f)
		}
	}()
	limit := int64(-1)
	if o.Partition > 0 {
		poff, psize, err := partitionOffset(f, o.Partition)
		if err != nil {
			return nil, err
		}
		img.off, limit = poff, psize
	}
	if img.off < 0 {
		return nil, fmt.Errorf("negative offset %d", img.off)
	}
	switch {
	case locked:
		img.locked = true
	case !o.NoLock:
		if err := lockWithin(f, !o.ReadOnly, o.LockTimeout); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		img.locked = true
	}
	if err := img.load(limit); err != nil {
		return nil, err
	}
	img.resetState()
	if img.needsReplay() && !(o.skipReplay && o.ReadOnly) {
		if err := img.replay(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNeedsRecovery, err)
		}
		if err := img.load(limit); err != nil {
			return nil, err
		}
		img.resetState()
	}
	if !img.ro {
		if err := img.checkVeritySeal(o.DropVerity); err != nil {
			return nil, err
		}
	}
	if !img.ro && img.writeRefusal == nil {
		if err := img.checkJournalClean(); err != nil {
			return nil, err
		}
		if img.sb.hasCompat(compatHasJournal) {
			if _, err := img.openJournal(); err != nil {
				img.writeRefusal = err
			}
		}
	}
	ok = true
	return img, nil
}

// load reads and validates the superblock and the descriptor table.
func (img *Image) load(limit int64) error {
	st, err := img.f.Stat()
	if err != nil {
		return err
	}
	avail := st.Size() - img.off
	if limit >= 0 && limit < avail {
		avail = limit
	}
	if avail < superblockOffset+superblockSize {
		return corruptf("image is %d bytes, too small to hold a superblock", avail)
	}
	img.sb = superblock{b: make([]byte, superblockSize)}
	if _, err := img.dev.ReadAt(img.sb.b, img.off+superblockOffset); err != nil {
		return err
	}
	if img.overlay != nil && img.bs != 0 {
		sbBlk, sbOff := img.superblockBlock()
		if d, ok := img.overlay[sbBlk]; ok {
			copy(img.sb.b, d[sbOff:sbOff+superblockSize])
		}
	}
	sb := img.sb
	if le16(sb.b, sbMagic) != ext4Magic {
		return corruptf("bad superblock magic 0x%04x", le16(sb.b, sbMagic))
	}
	if !sb.checksumOK() {
		return corruptf("superblock checksum mismatch")
	}
	if unknown := sb.incompat() &^ knownIncompat; unknown != 0 {
		return unsupportedf("incompat features %s", unknown.String())
	}
	if bad := sb.incompat() & (incompatCompression | incompatJournalDev | incompatDirData); bad != 0 {
		return unsupportedf("%s (cannot be read)", bad.String())
	}
	if sb.hasRoCompat(roCompatBigalloc) {
		// Cluster bitmaps would be read as block bitmaps: refuse outright.
		return unsupportedf("bigalloc")
	}
	g, err := newGeometry(sb)
	if err != nil {
		return err
	}
	img.geometry = g
	if need := img.bytes(); avail < need {
		return corruptf("image holds %d bytes but the filesystem needs %d", avail, need)
	}

	img.gdt = bigBuffer(int(img.gdtBlocks)*int(img.bs), img)
	if !sb.hasIncompat(incompatMetaBG) && img.overlay == nil {
		// The table is contiguous after the superblock: one read.
		first := img.descBlock(0)
		if first+uint64(img.gdtBlocks) > img.blocksCount {
			return corruptf("descriptor table runs past the end")
		}
		if _, err := img.dev.ReadAt(img.gdt, img.off+int64(first)*int64(img.bs)); err != nil {
			return err
		}
	} else {
		for i := uint32(0); i < img.gdtBlocks; i++ {
			blk := img.descBlock(i)
			if err := img.readBlock(blk, img.gdt[uint64(i)*uint64(img.bs):uint64(i+1)*uint64(img.bs)]); err != nil {
				return err
			}
		}
	}
	img.gdt = img.gdt[:uint64(img.groupCount)*uint64(img.descSize)]
	scratch := make([]byte, 4+img.descSize)
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		if sb.groupCsums() && le16(d.b, bgChecksum) != d.checksum(sb, img.csumSeed, g, scratch) {
			return corruptf("group %d descriptor checksum mismatch", g)
		}
		for _, b := range []uint64{d.blockBitmap(), d.inodeBitmap(), d.inodeTable()} {
			if !img.inFS(b) {
				return corruptf("group %d descriptor points at block %d outside the filesystem", g, b)
			}
		}
		if d.inodeTable()+uint64(img.itableBlocks) > img.blocksCount {
			return corruptf("group %d inode table runs past the end", g)
		}
		// A journal that still holds a resize may have sent the new
		// descriptors home but not yet the superblock (journalOne): counts
		// sized for the new geometry are what replay makes right. The
		// kernel does not check them at mount either.
		if (d.freeInodes() > img.ipg || d.freeBlocks() > img.groupBlocks(g)) && !sb.hasIncompat(incompatRecover) {
			return corruptf("group %d free counts out of range", g)
		}
	}
	// Like the kernel at mount, take the free counts from the group
	// descriptors: the superblock's copies lag behind after a kernel
	// session or a journal replay. They reach the disk with the next commit.
	img.sb.setFreeBlocksCount(img.countFreeBlocks())
	img.sb.setFreeInodesCount(uint32(img.countFreeInodes()))
	img.writeRefusal = img.writePolicy()
	return nil
}

const knownIncompat = incompatCompression | incompatFiletype | incompatRecover | incompatJournalDev |
	incompatMetaBG | incompatExtents | incompat64bit | incompatMMP | incompatFlexBG | incompatEAInode |
	incompatDirData | incompatCsumSeed | incompatLargedir | incompatInlineData | incompatEncrypt | incompatCasefold

// Features whose writes we implement. Anything else makes the image
// read-only for us, refused before any byte changes.
const (
	writableCompat = compatDirPrealloc | compatHasJournal | compatExtAttr | compatResizeInode |
		compatDirIndex | compatLazyBG | compatSparseSuper2 | compatFastCommit | compatStableInodes |
		compatOrphanFile | compatImagicInodes
	writableIncompat = incompatFiletype | incompatMetaBG | incompatExtents | incompat64bit |
		incompatFlexBG | incompatCsumSeed | incompatLargedir | incompatInlineData
	writableRoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir | roCompatHugeFile |
		roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize | roCompatMetadataCsum | roCompatProject
)

// writePolicy returns why this image may not be written, or nil.
func (img *Image) writePolicy() error {
	if img.sealed != nil {
		return img.sealed
	}
	sb := img.sb
	if sb.hasIncompat(incompatRecover) {
		return fmt.Errorf("%w: the journal holds unreplayed transactions (mount and unmount it, or run e2fsck -fy, first)", ErrNeedsRecovery)
	}
	if bad := sb.compat() &^ writableCompat; bad != 0 {
		return unsupportedf("writing with %s", bad.String())
	}
	if bad := sb.incompat() &^ writableIncompat; bad != 0 {
		return unsupportedf("writing with %s", bad.String())
	}
	if bad := sb.roCompat() &^ writableRoCompat; bad != 0 {
		return unsupportedf("writing with %s", bad.String())
	}
	if cs := sb.b[sbChecksumType]; sb.metadataCsum() && cs != 1 {
		return unsupportedf("checksum type %d", cs)
	}
	if sb.state()&2 != 0 {
		return fmt.Errorf("%w: the filesystem has errors recorded; run e2fsck first", ErrCorrupt)
	}
	if le32(sb.b, sbLastOrphan) != 0 {
		return fmt.Errorf("%w: orphan inodes await cleanup (mount it once, or run e2fsck -fy)", ErrNeedsRecovery)
	}
	if sb.hasCompat(compatHasJournal) && le32(sb.b, sbJournalInum) == 0 {
		return unsupportedf("external journal")
	}
	return nil
}

// checkJournalClean refuses an image whose internal journal still has a
// log to replay (s_start != 0 in the journal superblock).
func (img *Image) checkJournalClean() error {
	if !img.sb.hasCompat(compatHasJournal) {
		return nil
	}
	jino := le32(img.sb.b, sbJournalInum)
	in, err := img.readInode(jino)
	if err != nil {
		return fmt.Errorf("journal inode: %w", err)
	}
	blk, err := img.mapBlock(in, 0)
	if err != nil {
		return fmt.Errorf("journal inode: %w", err)
	}
	if blk == 0 {
		return corruptf("journal inode %d has no superblock", jino)
	}
	buf := make([]byte, img.bs)
	if err := img.readBlock(blk, buf); err != nil {
		return err
	}
	if m := be.Uint32(buf[jhMagic:]); m != jMagic {
		return corruptf("journal superblock magic 0x%08x", m)
	}
	if be.Uint32(buf[jsStart:]) != 0 { // the log's first block, 0 when the journal is empty
		return fmt.Errorf("%w: the journal is not empty (mount and unmount it, or run e2fsck -fy, first)", ErrNeedsRecovery)
	}
	return nil
}

// lockWithin takes the image lock, retrying for up to timeout while
// another process holds it (0: fail at once).
func lockWithin(f *os.File, exclusive bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := filelock.Lock(f, exclusive)
		if err == nil || !errors.Is(err, ErrLocked) || !time.Now().Before(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resetState empties every in-memory structure derived from the disk.
func (img *Image) resetState() {
	img.cache = newBlockCache(img)
	img.paths.dirs = nil
	img.forgetAllocHints()
	img.dirty.gdt = map[uint32]bool{}
	img.undo.gd = map[uint32]gdUndoRec{}
	img.dirty.blockBitmaps = map[uint32]bool{}
	img.dirty.inodeBitmaps = map[uint32]bool{}
}

// writable reports whether edits are allowed.
func (img *Image) writable() error {
	switch {
	case img.closed:
		return ErrClosed
	case img.ro:
		return ErrReadOnly
	case img.undo.partial != nil:
		return img.undo.partial
	}
	return img.writeRefusal
}

// readOnlyOp checks the image can be read.
func (img *Image) readable() error {
	if img.closed {
		return ErrClosed
	}
	return nil
}

// Sync commits every pending change and keeps the image open.
func (img *Image) Sync() error {
	img.mu.Lock()
	gone := img.closed || img.closing
	img.mu.Unlock()
	if gone {
		return ErrClosed
	}
	if img.ro {
		return nil
	}
	if err := img.closeOpenFiles(); err != nil {
		return err
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.commit(); err != nil {
		return pathErr("sync", img.path, err)
	}
	return nil
}

// Close commits every pending change and closes the image.
func (img *Image) Close() error {
	img.mu.Lock()
	if img.closed || img.closing {
		img.mu.Unlock()
		return ErrClosed
	}
	img.closing = true // a second Close, racing this one, fails
	img.mu.Unlock()
	var err error
	if !img.ro {
		err = img.closeOpenFiles()
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitEarlyFlush()
	if !img.ro {
		cerr := img.commit()
		if cerr == nil && img.dirty.unflushed {
			// A scratch image's one flush (Options.Scratch).
			if cerr = img.dev.Sync(); cerr == nil {
				img.dirty.unflushed = false
			}
		}
		if err == nil {
			err = cerr
		}
	}
	if img.locked {
		_ = filelock.Unlock(img.f)
	}
	if cerr := img.f.Close(); err == nil {
		err = cerr
	}
	img.closed = true
	return pathErr("close", img.path, err)
}

// Discard closes the image without committing: every change since the
// last Sync is dropped and the filesystem stays as it was. (File data
// already streamed went only into blocks that stay free.)
func (img *Image) Discard() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if img.closed || img.closing {
		return ErrClosed
	}
	img.waitEarlyFlush()
	if img.locked {
		_ = filelock.Unlock(img.f)
	}
	img.closed = true
	return pathErr("close", img.path, img.f.Close())
}
