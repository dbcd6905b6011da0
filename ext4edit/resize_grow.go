package ext4edit

import (
	"errors"
	"fmt"
	"slices"
)

// grow takes the filesystem (committed, nothing pending) to want blocks
// or, after resizedSuperblock's trimming, a little less.
//
// Order of writes, so that a crash leaves the old filesystem or the new:
//  1. The file is cut to the old filesystem's end and extended: the new
//     area reads as zeros (inode tables need no writing).
//  2. The new groups' bitmaps go straight to the new area, which nothing
//     in the old filesystem points at; so do the backup superblocks and
//     descriptor tables, everywhere they live (the old filesystem's
//     backups are read only when its primary is lost).
//  3. One commit carries the superblock, the descriptor table, the old
//     last group's bitmap and the resize inode: a journal transaction
//     where there is a journal (descriptor blocks in the new area are
//     written before the log like fresh blocks; its first barrier makes
//     the writes of step 2 durable; the superblock goes home last).
func (img *Image) grow(want uint64) error {
	p, err := img.planGrow(want)
	if err != nil || p == nil {
		return err
	}
	old, nsb, ng, locs, resize, dind := p.old, p.nsb, p.ng, p.locs, p.resize, p.dind
	gdtBuf := make([]byte, uint64(ng.groupCount)*uint64(ng.descSize))
	copy(gdtBuf, img.gdt)

	// 1. The file.
	oldBytes, newBytes := old.bytes(), ng.bytes()
	if err := img.f.Truncate(oldBytes); err != nil {
		return err
	}
	if err := img.f.Truncate(newBytes); err != nil {
		_ = img.f.Truncate(oldBytes)
		return err
	}
	oldSB, oldGdt := img.sb, img.gdt
	img.geometry, img.sb, img.gdt = ng, nsb, gdtBuf
	img.resetState()
	undo := func(err error) error {
		img.geometry, img.sb, img.gdt = old, oldSB, oldGdt
		img.resetState()
		img.pending = pendingFrees{}
		_ = img.f.Truncate(oldBytes)
		return err
	}

	// 2. New groups.
	if err := img.initNewGroups(old.groupCount, locs); err != nil {
		return undo(err)
	}
	// The old last group reaches further.
	last := old.groupCount - 1
	if added := ng.groupBlocks(last) - old.groupBlocks(last); added > 0 {
		if !img.blockUninit(last) {
			bm, err := img.blockBitmapW(last)
			if err != nil {
				return undo(err)
			}
			for b := uint64(old.groupBlocks(last)); b < uint64(ng.groupBlocks(last)); b++ {
				clearBit(bm, b)
			}
		}
		d := img.gdW(last)
		d.setFreeBlocks(d.freeBlocks() + added)
	}
	// Superblock copies and descriptor blocks that move between old groups
	// (sparse_super2's second backup follows the last group).
	if err := img.moveOldGroupMetadata(&old); err != nil {
		return undo(err)
	}
	if resize != nil {
		if ng.compat.has(compatResizeInode) {
			if err := img.buildResizeInode(resize, dind); err != nil {
				return undo(err)
			}
		} else {
			// Converted to meta_bg: the reservation is all in the table.
			img.freeBlocks(dind, 1)
			clear(resize.iblock())
			if err := resize.setBlocks512(img, 0); err != nil {
				return undo(err)
			}
		}
		resize.setCtime(img.now())
		if err := img.writeInode(resize); err != nil {
			return undo(err)
		}
	}
	img.sb.setFreeBlocksCount(img.countFreeBlocks())
	img.sb.setFreeInodesCount(uint32(img.countFreeInodes()))
	for g := last; g < ng.groupCount; g++ {
		img.dirty.gdt[g] = true
	}

	// 3. Backups: superblock copies and descriptor tables as the new
	// filesystem has them, written before the commit so that they share
	// its first barrier. Nothing the old filesystem uses changes: the
	// blocks are backups (read only when the primary is lost) or were
	// outside it, and the descriptor blocks past the old table were
	// reserved for it.
	img.finishGroups()
	if err := img.writeBackups(); err != nil {
		return undo(err)
	}
	// 4. The commit.
	img.dirty.outsideFrom = old.blocksCount
	img.dirty.data = true // the writes above share the first barrier
	if err := img.commitResize(false); err != nil {
		return err
	}
	img.resetState()
	return nil
}

// commitResize commits a prepared resize (its superblock goes home last:
// journalOne) and, with backupsAfter, then writes the backup superblocks
// and descriptors (a shrink: their blocks may hold data the old
// filesystem still uses until the commit). Past the commit the old
// filesystem is gone once the transaction lands: a failure leaves the
// image refusing edits.
func (img *Image) commitResize(backupsAfter bool) error {
	img.dirty.resized = true
	err := img.commit()
	img.dirty.outsideFrom, img.dirty.checkpointFirst, img.dirty.resized = 0, 0, false
	if err != nil {
		img.undo.partial = fmt.Errorf("%w: resize: %w", ErrPartialEdit, err)
		return err
	}
	if !backupsAfter {
		return nil
	}
	if err := img.writeBackups(); err != nil {
		img.undo.partial = fmt.Errorf("%w: resize (backup superblocks): %w", ErrPartialEdit, err)
		return err
	}
	if img.opts.Scratch {
		img.dirty.unflushed = true // Close flushes once
		return nil
	}
	return img.dev.Sync()
}

// growPlan is a grow checked and laid out, before anything is written.
type growPlan struct {
	old, ng geometry
	nsb     superblock
	locs    []groupMetaLoc
	resize  *inode // the resize inode as it is (nil: none)
	dind    uint64 // its dind block, kept or released
	n       int    // blocks the commit writes through a journal
}

// planGrow checks a grow to want blocks (nil: nothing to grow).
func (img *Image) planGrow(want uint64) (*growPlan, error) {
	p := &growPlan{old: img.geometry}
	var err error
	if p.nsb, p.ng, err = img.resizedSuperblock(want); err != nil {
		return nil, err
	}
	if p.ng.blocksCount <= p.old.blocksCount {
		return nil, nil
	}
	flex := uint32(1)
	if p.ng.incompat.has(incompatFlexBG) {
		if lg := p.nsb.b[sbLogGroupsPerFlex]; lg < 31 {
			flex = 1 << lg
		}
	}
	if p.locs, err = p.ng.layoutGroupMeta(p.old.groupCount, p.ng.groupCount, flex); err != nil {
		return nil, err
	}
	if p.old.compat.has(compatResizeInode) {
		if p.resize, err = img.readInode(resizeIno); err != nil {
			return nil, err
		}
		if p.dind = resizeInodeDind(p.resize); !p.old.inFS(p.dind) || p.dind < p.old.metaEnd(0) {
			return nil, corruptf("resize inode's dind block %d", p.dind)
		}
	}
	p.n = growCommitBlocks(p.old, p.ng)
	if err := img.checkGrowFits(p.n); err != nil {
		return nil, err
	}
	return p, nil
}

// growCommitBlocks bounds what a grow's commit writes through a journal:
// the superblock, the descriptor blocks of the old area that change, the
// old last group's bitmaps, the resize inode, its dind and reserved blocks.
func growCommitBlocks(old, ng geometry) int {
	n := 1 + 2 + 1 + 1 + int(old.reservedGdt)
	firstDesc := (old.groupCount - 1) / ng.descPerBlock
	for i := firstDesc; i < ng.gdtBlocks; i++ {
		if ng.descBlock(i) < old.blocksCount {
			n++
		}
	}
	return n
}

// growBorrowing grows a filesystem without a journal through a temporary
// one (resize_tempjournal.go), sized for the grow's commit and added only
// once the grow's checks pass. Without room for a journal the grow goes
// the ordered way.
func (img *Image) growBorrowing(want uint64) error {
	p, err := img.planGrow(want)
	if err != nil || p == nil {
		return err
	}
	t, err := img.addTempJournal(img.tempJournalBlocks(p.n), img.groupFirstBlock(img.groupCount/2), img.blocksCount, false)
	if errors.Is(err, errNoTempJournal) {
		return img.grow(want)
	}
	if err != nil {
		return err
	}
	if err := img.grow(want); err != nil {
		return t.giveBack(img, err)
	}
	return t.remove(img)
}

// checkGrowFits refuses, before anything is written, a grow whose commit
// of n blocks would not fit one journal transaction.
func (img *Image) checkGrowFits(n int) error {
	if !img.sb.hasCompat(compatHasJournal) || img.opts.Scratch {
		return nil
	}
	j, err := img.openJournal()
	if err != nil {
		return err
	}
	if !j.fitsOneTransaction(n) {
		return fmt.Errorf("%w: the journal (%d blocks) cannot hold the resize's %d metadata blocks in one transaction", ErrNoSpace, j.maxlen, n)
	}
	return nil
}

// initNewGroups fills the descriptors of groups from.. (locs: their
// bitmaps and inode tables) and writes the bitmaps that must exist on
// disk straight to the new area. With group checksums a new group is
// INODE_UNINIT (its inode table reads as zeros: ITABLE_ZEROED), and
// BLOCK_UNINIT when it holds nothing but its own superblock copy and
// descriptor blocks, as the kernel's ext4_init_block_bitmap rebuilds
// exactly those; the last group and groups holding other groups' bitmaps
// and inode tables (flex_bg) get a real block bitmap. Without group
// checksums every group's bitmaps are written.
func (img *Image) initNewGroups(from uint32, locs []groupMetaLoc) error {
	n := uint32(len(locs))
	csums := img.sb.groupCsums()
	// Per group, the blocks of every group's metadata lying in it.
	type run struct{ start, n uint64 }
	inGroup := make([][]run, n)
	add := func(start, cnt uint64) error {
		for b := start; b < start+cnt; {
			g := img.blockGroup(b)
			if g < from || !img.inFS(b) {
				return fmt.Errorf("internal error: new group metadata at block %d outside the new groups", b)
			}
			end := min(start+cnt, img.groupFirstBlock(g)+uint64(img.groupBlocks(g)))
			inGroup[g-from] = append(inGroup[g-from], run{b, end - b})
			b = end
		}
		return nil
	}
	for i, l := range locs {
		d := img.gd(from + uint32(i))
		d.setBlockBitmap(l.blockBitmap)
		d.setInodeBitmap(l.inodeBitmap)
		d.setInodeTable(l.inodeTable)
		for _, r := range []run{{l.blockBitmap, 1}, {l.inodeBitmap, 1}, {l.inodeTable, uint64(img.itableBlocks)}} {
			if err := add(r.start, r.n); err != nil {
				return err
			}
		}
	}
	w := newRunWriter(img)
	for i := uint32(0); i < n; i++ {
		g := from + i
		first := img.groupFirstBlock(g)
		nblk := uint64(img.groupBlocks(g))
		own := img.metaEnd(g) - first
		used := own
		for _, r := range inGroup[i] {
			used += r.n
		}
		d := img.gd(g)
		var flags uint16
		if csums {
			flags = bgInodeUninit | bgItableZeroed
			d.setItableUnused(img.ipg)
			if used == own && g != img.groupCount-1 {
				flags |= bgBlockUninit
			}
		}
		d.setFlags(flags)
		d.setFreeBlocks(uint32(nblk - used))
		d.setFreeInodes(img.ipg)
		if flags&bgBlockUninit == 0 {
			bm := make([]byte, img.bs)
			setBits(bm, 0, own)
			for _, r := range inGroup[i] {
				setBits(bm, r.start-first, r.start-first+r.n)
			}
			setBits(bm, nblk, uint64(img.bs)*8)
			if img.sb.metadataCsum() {
				d.setBlockBitmapCsum(crc32cRaw(img.csumSeed, bm[:img.bpg/8]))
			}
			if err := w.add(d.blockBitmap(), bm); err != nil {
				return err
			}
		}
		if flags&bgInodeUninit == 0 {
			ib := make([]byte, img.bs)
			setBits(ib, uint64(img.ipg), uint64(img.bs)*8)
			if img.sb.metadataCsum() {
				d.setInodeBitmapCsum(crc32cRaw(img.csumSeed, ib[:img.ipg/8]))
			}
			if err := w.add(d.inodeBitmap(), ib); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// moveOldGroupMetadata reconciles the old groups' superblock copies and
// descriptor blocks with the new layout: blocks no longer holding one are
// freed, blocks that now must are claimed (they must be free).
func (img *Image) moveOldGroupMetadata(old *geometry) error {
	for g := uint32(0); g < old.groupCount; g++ {
		gone, added, changed := superAndDescChange(old, &img.geometry, g)
		if !changed {
			continue
		}
		for _, b := range gone {
			img.freeBlocks(b, 1)
		}
		for _, b := range added {
			bm, err := img.blockBitmapW(g)
			if err != nil {
				return err
			}
			i := b - img.groupFirstBlock(g)
			if testBit(bm, i) {
				return unsupportedf("growing: block %d, needed for group %d's superblock copy or descriptors, is in use", b, g)
			}
			setBit(bm, i)
			d := img.gdW(g)
			d.setFreeBlocks(d.freeBlocks() - 1)
		}
		img.dirty.gdt[g] = true
	}
	return nil
}

// superAndDescChange compares group g's superblock copy and descriptor
// blocks (superAndDescBlocks) in two geometries: the blocks only old has,
// those only ng has, and whether they differ at all.
func superAndDescChange(old, ng *geometry, g uint32) (gone, added []uint64, changed bool) {
	var was, is []uint64
	old.superAndDescBlocks(g, func(b uint64) { was = append(was, b) })
	ng.superAndDescBlocks(g, func(b uint64) { is = append(is, b) })
	if slices.Equal(was, is) {
		return nil, nil, false
	}
	for _, b := range was {
		if !slices.Contains(is, b) {
			gone = append(gone, b)
		}
	}
	for _, b := range is {
		if !slices.Contains(was, b) {
			added = append(added, b)
		}
	}
	return gone, added, true
}

// writeBackups writes every superblock copy, and the descriptor table's
// copies: after the table in each group holding a superblock copy (the
// blocks before s_first_meta_bg with meta_bg), and each meta_bg
// descriptor block's two copies in the second and last group of its meta
// group. The caller flushes.
func (img *Image) writeBackups() error { return img.writeBackupCopies(true) }

// writeBackupCopies writes the backup superblocks and, with descs, the
// backup descriptor tables.
func (img *Image) writeBackupCopies(descs bool) error {
	w := newRunWriter(img)
	classic := img.gdtBlocks
	if img.incompat.has(incompatMetaBG) {
		classic = min(img.firstMetaBg, img.gdtBlocks)
	}
	bs := uint64(img.bs)
	// Every copy of descriptor block i shares one buffer.
	descBlocks := map[uint32][]byte{}
	descBlock := func(i uint32) []byte {
		if b, ok := descBlocks[i]; ok {
			return b
		}
		b := make([]byte, bs)
		copy(b, img.gdt[min(uint64(i)*bs, uint64(len(img.gdt))):min(uint64(i+1)*bs, uint64(len(img.gdt)))])
		descBlocks[i] = b
		return b
	}
	for g := uint32(1); g < img.groupCount; g++ {
		if !img.hasSuper(g) {
			continue
		}
		cp := make([]byte, bs)
		copy(cp, img.sb.b)
		put16(cp, sbBlockGroupNr, uint16(g))
		superblock{cp[:superblockSize]}.updateChecksum()
		first := img.groupFirstBlock(g)
		if err := w.add(first, cp); err != nil {
			return err
		}
		if !descs || img.metaBg(g/img.descPerBlock) {
			continue // a meta_bg group's copies come below
		}
		for i := uint32(0); i < classic; i++ {
			if err := w.add(first+1+uint64(i), descBlock(i)); err != nil {
				return err
			}
		}
	}
	if descs && img.incompat.has(incompatMetaBG) {
		for i := img.firstMetaBg; i < img.gdtBlocks; i++ {
			for _, g := range []uint64{uint64(i)*uint64(img.descPerBlock) + 1, uint64(i+1)*uint64(img.descPerBlock) - 1} {
				if g >= uint64(img.groupCount) {
					continue
				}
				blk := img.groupFirstBlock(uint32(g))
				if img.hasSuper(uint32(g)) {
					blk++
				}
				if err := w.add(blk, descBlock(i)); err != nil {
					return err
				}
			}
		}
	}
	return w.flush()
}

// runWriter gathers block writes and issues them in block order, adjacent
// blocks as one write.
type runWriter struct {
	img    *Image
	blocks map[uint64][]byte
	bytes  int
}

func newRunWriter(img *Image) *runWriter {
	return &runWriter{img: img, blocks: map[uint64][]byte{}}
}

const runWriterMax = 8 << 20

func (w *runWriter) add(blk uint64, b []byte) error {
	w.blocks[blk] = b
	w.bytes += len(b)
	if w.bytes >= runWriterMax {
		return w.flush()
	}
	return nil
}

func (w *runWriter) flush() error {
	bs := uint64(w.img.bs)
	var run [][]byte
	var start, n uint64 // the run: n blocks from start
	out := func() error {
		if n == 0 {
			return nil
		}
		if !w.img.runInFS(start, n) {
			return fmt.Errorf("internal error: write to blocks %d+%d outside the filesystem", start, n)
		}
		err := w.img.writeVectorAt(run, w.img.off+int64(start)*int64(bs))
		run, n = run[:0], 0
		return err
	}
	for _, k := range sortedKeys(w.blocks) {
		if n > 0 && k != start+n {
			if err := out(); err != nil {
				return err
			}
		}
		if n == 0 {
			start = k
		}
		b := w.blocks[k]
		run = append(run, b)
		n += uint64(len(b)) / bs
	}
	if err := out(); err != nil {
		return err
	}
	clear(w.blocks)
	w.bytes = 0
	return nil
}

// vectorWriter is a device that writes several buffers back to back in
// one call (pwritev).
type vectorWriter interface {
	writeVectorAt(bufs [][]byte, off int64) error
}

// writeVectorAt writes bufs back to back at off: in one call where the
// device can, else gathered into one buffer. It consumes bufs.
func (img *Image) writeVectorAt(bufs [][]byte, off int64) error {
	if vw, ok := img.dev.(vectorWriter); ok {
		return vw.writeVectorAt(bufs, off)
	}
	if len(bufs) == 1 {
		_, err := img.dev.WriteAt(bufs[0], off)
		return err
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	one := make([]byte, 0, total)
	for _, b := range bufs {
		one = append(one, b...)
	}
	_, err := img.dev.WriteAt(one, off)
	return err
}
