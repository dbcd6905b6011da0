package ext4edit

import "fmt"

// commit writes the dirty set. With a journal the metadata goes through
// one jbd2 transaction (journal.go). Without one the order makes a crash
// leave at worst leaked blocks: bitmaps and descriptors first (space is
// marked used before anything points at it), then inodes and tree blocks,
// then directory blocks, then the superblock.
func (img *Image) commit() error {
	if img.undo.partial != nil {
		return img.undo.partial
	}
	work := img.dirty.data || len(img.dirty.gdt) > 0 || len(img.pending.blocks) > 0 ||
		len(img.pending.inodes) > 0 || img.cache.hasDirty()
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
	case img.dirty.ordered:
		err = img.commitOrdered()
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
	clear(img.dirty.gdt)
	for blk := range img.cache.blocks {
		img.cache.markClean(blk)
	}
	img.dirty.data = false
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
	img.dirty.unflushed = true
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
	for g := range img.dirty.gdt {
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
		case b.fresh || img.outside(blk):
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
		if img.outside(img.descBlock(i)) {
			if err := img.writeRaw(img.descBlock(i), buf); err != nil {
				return err
			}
			continue
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

// outside reports whether blk lay past the end of the filesystem at the
// last commit (the commit of a grow): nothing on disk points at it until
// the superblock commits, so like a fresh block it goes home before the
// log instead of through it.
func (img *Image) outside(blk uint64) bool {
	return img.dirty.outsideFrom != 0 && blk >= img.dirty.outsideFrom
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
	if len(fresh) > 0 || img.dirty.data {
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
	if len(img.pending.inodes) > 0 || len(img.pending.blocks) > 0 {
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
	clear(img.dirty.gdt)
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
