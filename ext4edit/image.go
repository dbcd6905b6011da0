package ext4edit

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/banger/ext4kit/internal/filelock"
)

// Image is an open ext4 filesystem inside a file. It is not safe for
// concurrent use.
type Image struct {
	// mu serialises every public method: edits, and reads through the
	// shared block cache (fs.FS users read concurrently).
	mu     sync.Mutex
	f      *os.File
	dev    device // all filesystem I/O goes through dev (f, or a test wrapper)
	path   string
	off    int64 // byte offset of the filesystem in f
	ro     bool
	closed bool
	locked bool
	opts   Options
	now    func() time.Time

	sb superblock

	geometry           // validated at open
	writeRefusal error // why writes are refused (features, state), nil when writable

	gdt      []byte // every group descriptor, descSize bytes each
	gdtDirty map[uint32]bool

	cache *blockCache

	// Per-group in-memory bitmaps are cache blocks; these sets remember
	// whose checksums must be recomputed at commit.
	blockBitmapDirty map[uint32]bool
	inodeBitmapDirty map[uint32]bool

	// pendingFree holds blocks released this session. They return to the
	// bitmaps at commit, never earlier: the committed tree may still point
	// at them, so new file data must not land there before it is replaced.
	pendingFree []blockRun
	// pendingInodeFrees holds inodes whose last link went this session;
	// like blocks, they are released at commit.
	pendingInodeFrees []uint32

	// overlay holds journal-replayed blocks of a read-only open: reads see
	// the recovered filesystem while the file stays untouched.
	overlay map[uint64][]byte

	// Operation state: a failed public operation is rolled back in memory.
	opActive bool
	// opTouched: the running operation changed a block, descriptor or
	// open File (set even without undo, for Options.NoUndo); partial is
	// the ErrPartialEdit a NoUndo operation left when it failed after that.
	opTouched bool
	partial   error
	// unflushed: a scratch commit (Options.Scratch) wrote without a
	// barrier; Close flushes.
	unflushed   bool
	gdUndo      map[uint32]gdUndoRec
	sbUndo      []byte
	pendingUndo int
	inodeUndo   int
	orphanUndo  []*File // Files orphaned by the current operation
	dataWritten bool    // file data went to disk since the last commit
	genCounter  uint32
	// dirPaths caches where directory paths lead (path.go), so an edit
	// deep in the tree does not walk from the root each time.
	dirPaths  map[string]uint32
	dirKeyBuf []byte
	// dirPathBytes is the bytes of dirPaths' keys (maxDirPathBytes).
	dirPathBytes int
	padBuf       []byte // writeData's last block
	// wbLo, wbHi and wbBytes gather small data writes whose writeback has
	// not started yet (startWriteback).
	wbLo, wbHi, wbBytes int64
	// blockHint and inodeHint hold, per group, a bit below which the
	// block (inode) bitmap is known full: allocation starts there instead
	// of rescanning from the group's start each time.
	blockHint map[uint32]uint32
	inodeHint map[uint32]uint32
	bufMu     sync.Mutex
	writeBufs [][]byte // spare File write buffers
	openFiles []*File
}

// blockRun is a run of contiguous blocks.
type blockRun struct {
	start uint64
	len   uint64
}

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
	if img.needsReplay() {
		if err := img.replay(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNeedsRecovery, err)
		}
		if err := img.load(limit); err != nil {
			return nil, err
		}
		img.resetState()
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
		first := uint64(img.firstDataBlock) + 1
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
			if b < uint64(img.firstDataBlock) || b >= img.blocksCount {
				return corruptf("group %d descriptor points at block %d outside the filesystem", g, b)
			}
		}
		if d.inodeTable()+uint64(img.itableBlocks) > img.blocksCount {
			return corruptf("group %d inode table runs past the end", g)
		}
		if d.freeInodes() > img.ipg || d.freeBlocks() > img.groupBlocks(g) {
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
	const jbd2Magic = 0xC03B3998
	be32 := func(off int) uint32 {
		return uint32(buf[off])<<24 | uint32(buf[off+1])<<16 | uint32(buf[off+2])<<8 | uint32(buf[off+3])
	}
	if be32(0) != jbd2Magic {
		return corruptf("journal superblock magic 0x%08x", be32(0))
	}
	if be32(0x1C) != 0 { // s_start: first log block, 0 when the journal is empty
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
	img.dirPaths = nil
	img.forgetAllocHints()
	img.gdtDirty = map[uint32]bool{}
	img.gdUndo = map[uint32]gdUndoRec{}
	img.blockBitmapDirty = map[uint32]bool{}
	img.inodeBitmapDirty = map[uint32]bool{}
}

// readBlock reads block blk of the filesystem into buf (len == block size).
func (img *Image) readBlock(blk uint64, buf []byte) error {
	if blk >= img.blocksCount {
		return corruptf("block %d beyond the end of the filesystem (%d blocks)", blk, img.blocksCount)
	}
	if d, ok := img.overlay[blk]; ok {
		copy(buf, d)
		return nil
	}
	n, err := img.dev.ReadAt(buf, img.off+int64(blk)*int64(img.bs))
	if err == io.EOF && n == len(buf) {
		err = nil
	}
	if err == io.EOF {
		return corruptf("block %d beyond the end of the image file", blk)
	}
	return err
}

// writebackStarter is a device that can start writing a range to stable
// storage without waiting for it.
type writebackStarter interface{ startWriteback(off, n int64) }

// writebackMin is the smallest data write whose writeback starts at once:
// data is written long before the commit that makes it reachable, so by
// the commit's first barrier most of it is already on disk instead of all
// of it being queued then. Small writes are left to the barrier.
const writebackMin = 256 << 10

// writeData writes file data straight to blocks start.. that were free
// and were allocated by the current operation.
func (img *Image) writeData(start uint64, p []byte) error {
	n := (uint64(len(p)) + uint64(img.bs) - 1) / uint64(img.bs)
	if start < uint64(img.firstDataBlock) || start+n > img.blocksCount {
		return fmt.Errorf("internal error: data write to blocks %d+%d outside the filesystem", start, n)
	}
	for b := start; b < start+n; b++ {
		if err := img.cache.forget(b); err != nil {
			return err
		}
	}
	img.dataWritten = true
	whole := len(p) / int(img.bs) * int(img.bs)
	if _, err := img.dev.WriteAt(p[:whole], img.off+int64(start)*int64(img.bs)); err != nil {
		return err
	}
	if whole < len(p) {
		// The last block is partial: pad it with zeros (copying one
		// block, not the whole buffer).
		if len(img.padBuf) != int(img.bs) {
			img.padBuf = make([]byte, img.bs)
		}
		clear(img.padBuf[copy(img.padBuf, p[whole:]):])
		if _, err := img.dev.WriteAt(img.padBuf, img.off+(int64(start)+int64(whole)/int64(img.bs))*int64(img.bs)); err != nil {
			return err
		}
	}
	img.startWriteback(img.off+int64(start)*int64(img.bs), int64(n)*int64(img.bs))
	return nil
}

// startWriteback starts writing back data just written at [off, off+n)
// where the device can: a large write at once, small ones (a tree of
// small files) gathered until they add up to writebackMin, over the range
// they span.
func (img *Image) startWriteback(off, n int64) {
	wb, ok := img.dev.(writebackStarter)
	if !ok {
		return
	}
	if n >= writebackMin {
		wb.startWriteback(off, n)
		return
	}
	if img.wbBytes == 0 {
		img.wbLo, img.wbHi = off, off+n
	} else {
		img.wbLo, img.wbHi = min(img.wbLo, off), max(img.wbHi, off+n)
	}
	if img.wbBytes += n; img.wbBytes >= writebackMin {
		wb.startWriteback(img.wbLo, img.wbHi-img.wbLo)
		img.wbBytes = 0
	}
}

// writable reports whether edits are allowed.
func (img *Image) writable() error {
	switch {
	case img.closed:
		return ErrClosed
	case img.ro:
		return ErrReadOnly
	case img.partial != nil:
		return img.partial
	}
	return img.writeRefusal
}

// mutate runs fn as one operation: on error every in-memory change it made
// is undone, so the image commits as if it never ran.
func (img *Image) mutate(op, name string, fn func() error) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return pathErr(op, name, err)
	}
	if img.opts.NoUndo {
		return pathErr(op, name, img.mutateNoUndo(op, name, fn))
	}
	img.opActive = true
	img.sbUndo = append(img.sbUndo[:0], img.sb.b...)
	img.pendingUndo = len(img.pendingFree)
	img.inodeUndo = len(img.pendingInodeFrees)
	err := fn()
	if err != nil {
		img.cache.rollback()
		for g, u := range img.gdUndo {
			copy(img.gd(g).b, u.old)
			if !u.dirty {
				delete(img.gdtDirty, g)
			}
		}
		copy(img.sb.b, img.sbUndo)
		img.pendingFree = img.pendingFree[:img.pendingUndo]
		img.pendingInodeFrees = img.pendingInodeFrees[:img.inodeUndo]
		for _, f := range img.orphanUndo {
			f.orphaned = false
		}
		img.forgetDirPaths()
		img.forgetAllocHints()
	} else {
		img.cache.endOp()
	}
	clear(img.gdUndo)
	img.orphanUndo = img.orphanUndo[:0]
	img.opActive = false
	return pathErr(op, name, err)
}

// mutateNoUndo runs fn without snapshots (Options.NoUndo). A failure
// after fn changed something leaves the image refusing further edits.
func (img *Image) mutateNoUndo(op, name string, fn func() error) error {
	img.opTouched = false
	frees, inodeFrees := len(img.pendingFree), len(img.pendingInodeFrees)
	err := fn()
	if err == nil {
		return nil
	}
	// Caches may describe what fn did before it failed.
	img.forgetDirPaths()
	img.forgetAllocHints()
	if img.opTouched || len(img.pendingFree) != frees || len(img.pendingInodeFrees) != inodeFrees {
		img.partial = fmt.Errorf("%w: %s %s: %w", ErrPartialEdit, op, name, err)
		return fmt.Errorf("%w (%w)", err, ErrPartialEdit)
	}
	return err
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
	if img.closed {
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
	if img.closed {
		return ErrClosed
	}
	var err error
	if !img.ro {
		err = img.closeOpenFiles()
	}
	img.mu.Lock()
	defer img.mu.Unlock()
	if !img.ro {
		cerr := img.commit()
		if cerr == nil && img.unflushed {
			// A scratch image's one flush (Options.Scratch).
			if cerr = img.dev.Sync(); cerr == nil {
				img.unflushed = false
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
	if img.closed {
		return ErrClosed
	}
	if img.locked {
		_ = filelock.Unlock(img.f)
	}
	img.closed = true
	return pathErr("close", img.path, img.f.Close())
}

// commit writes the dirty set. With a journal the metadata goes through
// one jbd2 transaction (journal.go). Without one the order makes a crash
// leave at worst leaked blocks: bitmaps and descriptors first (space is
// marked used before anything points at it), then inodes and tree blocks,
// then directory blocks, then the superblock.
func (img *Image) commit() error {
	if img.partial != nil {
		return img.partial
	}
	work := img.dataWritten || len(img.gdtDirty) > 0 || len(img.pendingFree) > 0 ||
		len(img.pendingInodeFrees) > 0 || img.cache.hasDirty()
	if !work {
		return nil
	}
	if !img.sb.groupCsums() {
		if err := img.clearStaleLazyInit(); err != nil {
			return err
		}
	}
	var err error
	switch {
	case img.opts.Scratch:
		err = img.commitScratch()
	case img.sb.hasCompat(compatHasJournal):
		// One transaction carries everything, frees included.
		if err = img.applyPendingFrees(); err != nil {
			return err
		}
		img.finishGroups()
		img.sb.updateChecksum()
		err = img.commitJournaled() // its first barrier covers file data too
	default:
		err = img.commitOrdered()
	}
	if err != nil {
		return err
	}
	clear(img.gdtDirty)
	for blk := range img.cache.blocks {
		img.cache.markClean(blk)
	}
	img.dataWritten = false
	return nil
}

// commitScratch writes the dirty set home in block order, with no journal
// and no barrier (Options.Scratch): Close flushes once. Runs of adjacent
// blocks (inode tables, fresh directory blocks) go out in one write each.
func (img *Image) commitScratch() error {
	if err := img.applyPendingFrees(); err != nil {
		return err
	}
	img.finishGroups()
	blks := img.cache.dirtyWhere(func(*cblock) bool { return true })
	bs := int(img.bs)
	const maxRun = 1 << 20
	var run []byte
	var runStart uint64
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		if runStart+uint64(len(run)/bs) > img.blocksCount {
			return fmt.Errorf("internal error: write to blocks %d+%d beyond the end", runStart, len(run)/bs)
		}
		_, err := img.dev.WriteAt(run, img.off+int64(runStart)*int64(bs))
		run = run[:0]
		return err
	}
	for _, blk := range blks {
		if len(run) > 0 && (blk != runStart+uint64(len(run)/bs) || len(run)+bs > maxRun) {
			if err := flush(); err != nil {
				return err
			}
		}
		if len(run) == 0 {
			runStart = blk
		}
		run = append(run, img.cache.blocks[blk].data...)
	}
	if err := flush(); err != nil {
		return err
	}
	if err := img.writeDescBlocks(); err != nil {
		return err
	}
	img.sb.updateChecksum()
	if _, err := img.dev.WriteAt(img.sb.b, img.off+superblockOffset); err != nil {
		return err
	}
	img.unflushed = true
	return nil
}

// writeDescBlocks writes the dirty descriptor-table blocks home.
func (img *Image) writeDescBlocks() error {
	for _, i := range img.dirtyDescBlocks() {
		buf, err := img.descBlockImage(i)
		if err != nil {
			return err
		}
		if err := img.writeRaw(img.descBlock(i), buf); err != nil {
			return err
		}
	}
	return nil
}

// descBlockImage returns descriptor-table block i as it must be on disk.
func (img *Image) descBlockImage(i uint32) ([]byte, error) {
	start := uint64(i) * uint64(img.bs)
	end := min(start+uint64(img.bs), uint64(len(img.gdt)))
	buf := make([]byte, img.bs)
	if err := img.readBlock(img.descBlock(i), buf); err != nil {
		return nil, err
	}
	copy(buf, img.gdt[start:end])
	return buf, nil
}

func (img *Image) dirtyDescBlocks() []uint32 {
	descBlocks := map[uint32]bool{}
	for g := range img.gdtDirty {
		descBlocks[g/img.descPerBlock] = true
	}
	return sortedKeys(descBlocks)
}

// commitJournaled logs every dirty metadata block, the changed descriptor
// blocks and the superblock's block as one transaction.
func (img *Image) commitJournaled() error {
	j, err := img.openJournal()
	if err != nil {
		return err
	}
	// One pass over the dirty set, in block order:
	//   - blocks allocated this session (new directory, tree and attribute
	//     blocks) go home before the log, like file data: nothing on disk
	//     points at them until the transaction commits, so they need no
	//     journaling, and the log's first barrier makes them durable;
	//   - logged blocks that read as zeros are written home as zeros now,
	//     a no-op byte for byte: where the image file is sparse, the
	//     checkpoint's barrier then overwrites allocated blocks instead of
	//     also waiting for the host filesystem to commit their allocation;
	//   - the rest is logged, grouped by kind.
	var zero []byte
	var byKind [numKinds][]loggedBlock
	for _, blk := range img.cache.dirtyWhere(func(*cblock) bool { return true }) {
		b := img.cache.blocks[blk]
		switch {
		case b.fresh:
			if err := img.writeRaw(blk, b.data); err != nil {
				return err
			}
			img.cache.markClean(blk)
			continue
		case b.zeroOnDisk:
			if zero == nil {
				zero = make([]byte, img.bs)
			}
			if err := img.writeRaw(blk, zero); err != nil {
				return err
			}
		}
		byKind[b.kind] = append(byKind[b.kind], loggedBlock{blk, b.data})
	}
	var blocks []loggedBlock
	for _, lbs := range byKind {
		blocks = append(blocks, lbs...)
	}
	for _, i := range img.dirtyDescBlocks() {
		buf, err := img.descBlockImage(i)
		if err != nil {
			return err
		}
		blocks = append(blocks, loggedBlock{img.descBlock(i), buf})
	}
	// The superblock's block goes last: if the set must be split into
	// several transactions, the counts land with the final one.
	sbBlk, sbOff := img.superblockBlock()
	buf := make([]byte, img.bs)
	if err := img.readBlock(sbBlk, buf); err != nil {
		return err
	}
	copy(buf[sbOff:], img.sb.b)
	blocks = append(blocks, loggedBlock{sbBlk, buf})
	return img.journalCommit(j, blocks)
}

// commitOrdered writes without a journal, in an order where a crash at
// any point leaves what e2fsck repairs as leaked space: nothing on disk
// points at a block or inode before its contents are durable, and an
// inode or block is marked free only after what pointed at it is gone.
func (img *Image) commitOrdered() error {
	// 1. File data and the blocks allocated this session (new directory
	// blocks, tree blocks, attribute blocks): nothing points at them yet.
	fresh := img.cache.dirtyWhere(func(b *cblock) bool { return b.fresh })
	if err := img.writeBlocks(fresh); err != nil {
		return err
	}
	if len(fresh) > 0 || img.dataWritten {
		if err := img.dev.Sync(); err != nil {
			return err
		}
	}
	// 2. Allocations (bitmaps, descriptors) durable before the inodes and
	// tree blocks that use them: space in use is never marked free.
	if err := img.writeGroups(); err != nil {
		return err
	}
	if err := img.writeInodesAndTrees(); err != nil {
		return err
	}
	// 3. Directory entries: added ones name inodes durable since step 2;
	// removed ones stop naming inodes still intact on disk.
	if err := img.writeBlocks(img.cache.dirtyByKind(kindDir)); err != nil {
		return err
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	// 4. Frees: inodes unlinked in step 3, and released blocks.
	if len(img.pendingInodeFrees) > 0 || len(img.pendingFree) > 0 {
		if err := img.applyPendingFrees(); err != nil {
			return err
		}
		// The freed inodes first, then the bitmaps that free them and
		// their blocks: never space marked free while still in use.
		img.finishGroups()
		if err := img.writeInodesAndTrees(); err != nil {
			return err
		}
		if err := img.writeGroups(); err != nil {
			return err
		}
	}
	// 5. The superblock's counts.
	img.sb.updateChecksum()
	if _, err := img.dev.WriteAt(img.sb.b, img.off+superblockOffset); err != nil {
		return err
	}
	return img.dev.Sync()
}

// writeGroups writes the dirty bitmaps and descriptors (checksums
// updated) and syncs.
func (img *Image) writeGroups() error {
	img.finishGroups()
	if err := img.writeBlocks(img.cache.dirtyByKind(kindBitmap)); err != nil {
		return err
	}
	if err := img.writeDescBlocks(); err != nil {
		return err
	}
	clear(img.gdtDirty)
	return img.dev.Sync()
}

// writeInodesAndTrees writes the dirty inode-table and tree blocks and
// syncs.
func (img *Image) writeInodesAndTrees() error {
	if err := img.writeBlocks(img.cache.dirtyWhere(func(b *cblock) bool { return b.kind == kindMeta || b.kind == kindInode })); err != nil {
		return err
	}
	return img.dev.Sync()
}

// writeBlocks writes dirty cache blocks home and marks them clean.
func (img *Image) writeBlocks(blks []uint64) error {
	for _, blk := range blks {
		if err := img.writeRaw(blk, img.cache.blocks[blk].data); err != nil {
			return err
		}
		img.cache.markClean(blk)
	}
	return nil
}

func sortedKeys[K ~uint32 | ~uint64, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// errNotFound is what lookups return for an absent name.
var errNotFound = fs.ErrNotExist
