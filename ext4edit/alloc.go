package ext4edit

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Bitmaps load on first use. A group flagged BLOCK_UNINIT or INODE_UNINIT
// (only meaningful with group checksums) has no valid bitmap on disk: its
// bitmap is built in memory the way the kernel's ext4_init_block_bitmap
// does, so metadata locations (superblock and descriptor backups, bitmaps,
// inode tables that flex_bg put here) are never handed out.

func (img *Image) blockUninit(g uint32) bool {
	return img.sb.groupCsums() && img.gd(g).flags()&bgBlockUninit != 0
}

func (img *Image) inodeUninit(g uint32) bool {
	return img.sb.groupCsums() && img.gd(g).flags()&bgInodeUninit != 0
}

// blockBitmap returns group g's block bitmap (read-only view).
func (img *Image) blockBitmap(g uint32) ([]byte, error) {
	blk := img.gd(g).blockBitmap()
	if img.blockUninit(g) {
		if b, ok := img.cache.blocks[blk]; ok {
			return b.data, nil
		}
		buf := make([]byte, img.bs)
		img.markGroupMetadata(g, buf)
		setBits(buf, uint64(img.groupBlocks(g)), uint64(img.bs)*8)
		img.cache.evict()
		img.cache.blocks[blk] = &cblock{data: buf}
		img.cache.clean++
		return buf, nil
	}
	_, cached := img.cache.blocks[blk]
	buf, err := img.cache.get(blk)
	if err != nil {
		return nil, err
	}
	if !cached && !img.bitmapCsumOK(g, buf[:img.bpg/8], bgBlockBitmapCsumLo, bgBlockBitmapCsumHi) {
		delete(img.cache.blocks, blk)
		img.cache.clean--
		return nil, corruptf("group %d block bitmap (block %d) checksum mismatch", g, blk)
	}
	if !cached && img.gd(g).flags()&bgBlockUninit != 0 {
		// BLOCK_UNINIT without group checksums (uninit_bg turned off):
		// the flag does not count, but the bitmap on disk may never have
		// been written and show the group's superblock backup and
		// descriptor blocks free. Metadata is in use whatever the bitmap
		// says: it is never handed out.
		img.markGroupMetadata(g, buf)
	}
	return buf, nil
}

// markGroupMetadata sets the bits of group g's own metadata (superblock
// and descriptor backups, bitmaps, inode table) in its block bitmap buf.
func (img *Image) markGroupMetadata(g uint32, buf []byte) {
	first := img.groupFirstBlock(g)
	img.groupMetadata(g, func(b uint64) { setBit(buf, b-first) })
}

// blockBitmapW returns group g's block bitmap for modification.
func (img *Image) blockBitmapW(g uint32) ([]byte, error) {
	if _, err := img.blockBitmap(g); err != nil {
		return nil, err
	}
	buf, err := img.cache.getW(img.gd(g).blockBitmap(), kindBitmap)
	if err != nil {
		return nil, err
	}
	if img.gd(g).flags()&bgBlockUninit != 0 {
		// Written now, the bitmap is initialised whatever the features.
		d := img.gdW(g)
		d.setFlags(d.flags() &^ bgBlockUninit)
		if nblk := uint64(img.groupBlocks(g)); nblk < uint64(img.bs)*8 && !testBit(buf, uint64(img.bs)*8-1) {
			setBits(buf, nblk, uint64(img.bs)*8)
		}
	}
	img.dirty.blockBitmaps[g] = true
	img.gdW(g)
	return buf, nil
}

// inodeBitmap returns group g's inode bitmap (read-only view).
func (img *Image) inodeBitmap(g uint32) ([]byte, error) {
	blk := img.gd(g).inodeBitmap()
	if img.inodeUninit(g) {
		if b, ok := img.cache.blocks[blk]; ok {
			return b.data, nil
		}
		buf := make([]byte, img.bs)
		for i := uint64(img.ipg); i < uint64(img.bs)*8; i++ {
			setBit(buf, i)
		}
		img.cache.evict()
		img.cache.blocks[blk] = &cblock{data: buf}
		img.cache.clean++
		return buf, nil
	}
	_, cached := img.cache.blocks[blk]
	buf, err := img.cache.get(blk)
	if err != nil {
		return nil, err
	}
	if !cached && !img.bitmapCsumOK(g, buf[:img.ipg/8], bgInodeBitmapCsumLo, bgInodeBitmapCsumHi) {
		delete(img.cache.blocks, blk)
		img.cache.clean--
		return nil, corruptf("group %d inode bitmap (block %d) checksum mismatch", g, blk)
	}
	return buf, nil
}

func (img *Image) inodeBitmapW(g uint32) ([]byte, error) {
	if _, err := img.inodeBitmap(g); err != nil {
		return nil, err
	}
	buf, err := img.cache.getW(img.gd(g).inodeBitmap(), kindBitmap)
	if err != nil {
		return nil, err
	}
	// The bits past the group's inodes must read as used. A bitmap the
	// kernel never initialised (INODE_UNINIT left behind when uninit_bg
	// was turned off) has them clear: e2fsck wants them set.
	if !testBit(buf, uint64(img.bs)*8-1) {
		setBits(buf, uint64(img.ipg), uint64(img.bs)*8)
	}
	img.dirty.inodeBitmaps[g] = true
	img.gdW(g)
	return buf, nil
}

// bitmapCsumOK checks a bitmap against the checksum group g's descriptor
// stores for it (lo/hi halves; only the low 16 bits in 32-byte
// descriptors). Without metadata_csum there is nothing to check.
func (img *Image) bitmapCsumOK(g uint32, bits []byte, loOff, hiOff int) bool {
	if !img.sb.metadataCsum() {
		return true
	}
	d := img.gd(g)
	want := uint32(le16(d.b, loOff))
	got := crc32cRaw(img.csumSeed, bits)
	if img.descSize >= 64 {
		want |= uint32(le16(d.b, hiOff)) << 16
	} else {
		got &= 0xFFFF
	}
	return got == want
}

func setBit(b []byte, i uint64)       { b[i/8] |= 1 << (i % 8) }
func clearBit(b []byte, i uint64)     { b[i/8] &^= 1 << (i % 8) }
func testBit(b []byte, i uint64) bool { return b[i/8]&(1<<(i%8)) != 0 }

// freeBlocksTotal is the number of blocks free for allocation now (blocks
// released this session return only at commit). The superblock's count is
// kept equal to the descriptors' sum: load sets it, allocation and commit
// maintain it, rollback restores it.
func (img *Image) freeBlocksTotal() uint64 { return img.sb.freeBlocksCount() }

// allocBlocks allocates n blocks near goal, as few runs as the free space
// allows. It fails with ErrNoSpace, before changing anything, when fewer
// than n blocks are free.
func (img *Image) allocBlocks(goal uint64, n uint64) ([]blockRun, error) {
	if n == 0 {
		return nil, nil
	}
	if img.freeBlocksTotal() < n {
		return nil, fmt.Errorf("%w: %d blocks needed, %d free", ErrNoSpace, n, img.freeBlocksTotal())
	}
	if !img.inFS(goal) {
		goal = uint64(img.firstDataBlock)
	}
	startG := img.blockGroup(goal)
	var runs []blockRun
	for i := uint32(0); i <= img.groupCount && n > 0; i++ {
		g := (startG + i) % img.groupCount
		if img.gd(g).freeBlocks() == 0 {
			continue
		}
		from := uint64(0)
		if i == 0 {
			from = goal - img.groupFirstBlock(g)
		}
		got, err := img.allocInGroup(g, from, n)
		if err != nil {
			return nil, err
		}
		for _, r := range got {
			n -= r.len
			if len(runs) > 0 && runs[len(runs)-1].start+runs[len(runs)-1].len == r.start {
				runs[len(runs)-1].len += r.len
			} else {
				runs = append(runs, r)
			}
		}
		if i == 0 && n > 0 && from > 0 {
			// Wrap around to the part of the goal group before goal.
			got, err := img.allocInGroup(g, 0, n)
			if err != nil {
				return nil, err
			}
			for _, r := range got {
				n -= r.len
				runs = append(runs, r)
			}
		}
	}
	if n > 0 {
		return nil, fmt.Errorf("%w: group free counts disagree with the bitmaps", ErrCorrupt)
	}
	return runs, nil
}

// countFreeBlocks sums the group descriptors' free counts.
func (img *Image) countFreeBlocks() uint64 {
	var t uint64
	for g := uint32(0); g < img.groupCount; g++ {
		t += uint64(img.gd(g).freeBlocks())
	}
	return t
}

func (img *Image) countFreeInodes() uint64 {
	var t uint64
	for g := uint32(0); g < img.groupCount; g++ {
		t += uint64(img.gd(g).freeInodes())
	}
	return t
}

// allocInGroup takes up to n free blocks of group g at or after bit from.
func (img *Image) allocInGroup(g uint32, from, n uint64) ([]blockRun, error) {
	bm, err := img.blockBitmap(g)
	if err != nil {
		return nil, err
	}
	limit := uint64(img.groupBlocks(g))
	first := img.groupFirstBlock(g)
	d := img.gd(g)
	var runs []blockRun
	// Bits below the hint are in use: start there when from is lower.
	hint := uint64(img.hints.block[g])
	i := max(from, hint)
	for i < limit && n > 0 {
		// Skip full words and bytes quickly.
		if i%64 == 0 && i+64 <= limit && binary.LittleEndian.Uint64(bm[i/8:]) == ^uint64(0) {
			i += 64
			continue
		}
		if i%8 == 0 && bm[i/8] == 0xFF {
			i += 8
			continue
		}
		if testBit(bm, i) {
			i++
			continue
		}
		j := i
		for j < limit && j-i < n && !testBit(bm, j) {
			j++
		}
		r := blockRun{start: first + i, len: j - i}
		if err := img.checkNotMeta(g, d, r); err != nil {
			return nil, err
		}
		runs = append(runs, r)
		n -= r.len
		i = j
	}
	if len(runs) == 0 {
		if from <= hint {
			img.setBlockHint(g, i)
		}
		return nil, nil
	}
	wbm, err := img.blockBitmapW(g)
	if err != nil {
		return nil, err
	}
	var total uint64
	for _, r := range runs {
		for b := r.start; b < r.start+r.len; b++ {
			setBit(wbm, b-first)
		}
		total += r.len
	}
	wd := img.gdW(g)
	if uint64(wd.freeBlocks()) < total {
		return nil, corruptf("group %d free block count %d below what its bitmap shows free", g, wd.freeBlocks())
	}
	wd.setFreeBlocks(wd.freeBlocks() - uint32(total))
	img.sb.setFreeBlocksCount(img.sb.freeBlocksCount() - min(total, img.sb.freeBlocksCount()))
	if from <= hint {
		// The scan began at the hint and took every free bit it met.
		img.setBlockHint(g, i)
	}
	return runs, nil
}

// setBlockHint records that group g's bits below i are in use.
func (img *Image) setBlockHint(g uint32, i uint64) {
	if img.hints.block == nil {
		img.hints.block = map[uint32]uint32{}
	}
	img.hints.block[g] = uint32(i)
}

// forgetAllocHints drops the allocation hints (bits they cover may be
// free again: a rollback, frees returning to the bitmaps).
func (img *Image) forgetAllocHints() {
	clear(img.hints.block)
	clear(img.hints.inode)
}

// checkNotMeta is a last guard: a run the bitmap calls free must not cover
// this group's own bitmaps or inode table. Hitting it means the bitmap is
// corrupt, not that we should write there.
func (img *Image) checkNotMeta(g uint32, d groupDesc, r blockRun) error {
	end := r.start + r.len
	in := func(b uint64) bool { return b >= r.start && b < end }
	it := d.inodeTable()
	if in(d.blockBitmap()) || in(d.inodeBitmap()) || (it < end && it+uint64(img.itableBlocks) > r.start) {
		return corruptf("group %d bitmap marks its own metadata free", g)
	}
	return nil
}

// freeBlocks releases blocks at the next commit.
func (img *Image) freeBlocks(start, n uint64) {
	if n == 0 {
		return
	}
	img.pending.blocks = append(img.pending.blocks, blockRun{start, n})
}

// applyPendingFrees releases the session's unlinked inodes and returns
// the released blocks to the bitmaps.
func (img *Image) applyPendingFrees() error {
	img.forgetAllocHints()
	for _, ino := range img.pending.inodes {
		if err := img.freeInode(ino); err != nil {
			return err
		}
	}
	img.pending.inodes = img.pending.inodes[:0]
	for _, r := range img.pending.blocks {
		for b := r.start; b < r.start+r.len; {
			if !img.inFS(b) {
				return fmt.Errorf("internal error: freeing block %d outside the filesystem", b)
			}
			g := img.blockGroup(b)
			first := img.groupFirstBlock(g)
			end := min(r.start+r.len, first+uint64(img.groupBlocks(g)))
			bm, err := img.blockBitmapW(g)
			if err != nil {
				return err
			}
			var cnt uint32
			for ; b < end; b++ {
				if !testBit(bm, b-first) {
					return corruptf("freeing block %d that is already free", b)
				}
				clearBit(bm, b-first)
				cnt++
			}
			d := img.gdW(g)
			d.setFreeBlocks(d.freeBlocks() + cnt)
			img.sb.setFreeBlocksCount(img.sb.freeBlocksCount() + uint64(cnt))
		}
	}
	img.pending.blocks = img.pending.blocks[:0]
	return nil
}

// allocInode allocates an inode, preferring goal group.
func (img *Image) allocInode(goal uint32, dir bool) (uint32, error) {
	if goal >= img.groupCount {
		goal = 0
	}
	for i := uint32(0); i < img.groupCount; i++ {
		g := (goal + i) % img.groupCount
		if img.gd(g).freeInodes() == 0 {
			continue
		}
		bm, err := img.inodeBitmap(g)
		if err != nil {
			return 0, err
		}
		// Inodes below the hint are in use.
		hint := img.hints.inode[g]
		idx := firstZero(bm, uint64(hint), uint64(img.ipg))
		if idx < 0 {
			return 0, corruptf("group %d inode bitmap full but free count %d", g, img.gd(g).freeInodes())
		}
		ino := uint64(g)*uint64(img.ipg) + uint64(idx) + 1
		if ino < uint64(img.sb.firstIno()) {
			return 0, corruptf("reserved inode %d marked free", ino)
		}
		if err := img.claimInode(g, uint32(idx), dir); err != nil {
			return 0, err
		}
		if img.hints.inode == nil {
			img.hints.inode = map[uint32]uint32{}
		}
		img.hints.inode[g] = uint32(idx) + 1
		return uint32(ino), nil
	}
	return 0, fmt.Errorf("%w: no free inodes", ErrNoSpace)
}

// claimInode marks inode idx of group g used and keeps the lazy-init
// bookkeeping (INODE_UNINIT, bg_itable_unused) the way the kernel does.
func (img *Image) claimInode(g, idx uint32, dir bool) error {
	wasUninit := img.inodeUninit(g)
	bm, err := img.inodeBitmapW(g)
	if err != nil {
		return err
	}
	setBit(bm, uint64(idx))
	d := img.gdW(g)
	if wasUninit {
		d.setFlags(d.flags() &^ bgInodeUninit)
	}
	d.setFreeInodes(d.freeInodes() - 1)
	if dir {
		d.setUsedDirs(d.usedDirs() + 1)
	}
	if img.sb.groupCsums() {
		used := img.ipg - min(d.itableUnused(), img.ipg)
		if idx >= used {
			// Inodes between the old high-water mark and idx become part
			// of the initialised table; unless the table is known zeroed,
			// zero them so no stale bytes look like inodes.
			if d.flags()&bgItableZeroed == 0 {
				for i := used; i < idx; i++ {
					if err := img.zeroInodeSlot(g, i); err != nil {
						return err
					}
				}
			}
			d.setItableUnused(img.ipg - idx - 1)
		}
	}
	img.sb.setFreeInodesCount(img.sb.freeInodesCount() - 1)
	return nil
}

// firstZero is the first clear bit of bm in [from, limit), or -1; from is
// a multiple of 8 or rounded down to one.
func firstZero(bm []byte, from, limit uint64) int64 {
	for i := from &^ 7; i < limit; i += 8 {
		if bm[i/8] != 0xFF {
			j := i + uint64(bits.TrailingZeros8(^bm[i/8]))
			if j < limit {
				return int64(j)
			}
			return -1
		}
	}
	return -1
}

// releaseInode marks ino free.
func (img *Image) releaseInode(ino uint32, dir bool) error {
	g, idx := img.inodeGroup(ino)
	bm, err := img.inodeBitmapW(g)
	if err != nil {
		return err
	}
	if !testBit(bm, uint64(idx)) {
		return corruptf("freeing inode %d that is already free", ino)
	}
	clearBit(bm, uint64(idx))
	delete(img.hints.inode, g)
	d := img.gdW(g)
	d.setFreeInodes(d.freeInodes() + 1)
	if dir && d.usedDirs() > 0 {
		d.setUsedDirs(d.usedDirs() - 1)
	}
	img.sb.setFreeInodesCount(img.sb.freeInodesCount() + 1)
	return nil
}

// finishGroups recomputes the bitmap and descriptor checksums of every
// group changed since the last commit.
func (img *Image) finishGroups() {
	// A group whose change was rolled back has no dirty bitmap left.
	for g := range img.dirty.blockBitmaps {
		if b, ok := img.cache.blocks[img.gd(g).blockBitmap()]; ok && b.dirty && img.sb.metadataCsum() {
			img.gdW(g).setBlockBitmapCsum(crc32cRaw(img.csumSeed, b.data[:img.bpg/8]))
		}
	}
	for g := range img.dirty.inodeBitmaps {
		if b, ok := img.cache.blocks[img.gd(g).inodeBitmap()]; ok && b.dirty && img.sb.metadataCsum() {
			img.gdW(g).setInodeBitmapCsum(crc32cRaw(img.csumSeed, b.data[:img.ipg/8]))
		}
	}
	clear(img.dirty.blockBitmaps)
	clear(img.dirty.inodeBitmaps)
	for g := range img.dirty.gdt {
		d := img.gd(g)
		if img.sb.groupCsums() {
			put16(d.b, bgChecksum, d.checksum(img.sb, img.csumSeed, g, nil))
		}
	}
}

// clearStaleLazyInit drops what uninit_bg left in the descriptors of a
// filesystem that no longer has group checksums (tune2fs -O ^uninit_bg
// keeps it): BLOCK_UNINIT, INODE_UNINIT and bg_itable_unused mean nothing
// there to the kernel or to us, but e2fsck still reads bg_itable_unused
// and would take inodes we allocate for ones in a group's unused area.
// Every group is normalised as e2fsck would repair it, with the bitmaps
// it implies written out (a BLOCK_UNINIT group's on-disk bitmap was never
// written), so the committed filesystem reads the same to every reader.
func (img *Image) clearStaleLazyInit() error {
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		flags := d.flags() & (bgBlockUninit | bgInodeUninit)
		if flags == 0 && d.itableUnused() == 0 {
			continue
		}
		if flags&bgBlockUninit != 0 {
			if _, err := img.blockBitmapW(g); err != nil {
				return err
			}
		}
		if flags&bgInodeUninit != 0 {
			if _, err := img.inodeBitmapW(g); err != nil {
				return err
			}
		}
		d = img.gdW(g)
		d.setFlags(d.flags() &^ (bgBlockUninit | bgInodeUninit))
		d.setItableUnused(0)
	}
	return nil
}

// setBits sets bits [from, to), whole bytes at a time where it can.
func setBits(b []byte, from, to uint64) {
	for ; from < to && from%8 != 0; from++ {
		setBit(b, from)
	}
	for ; from+8 <= to; from += 8 {
		b[from/8] = 0xFF
	}
	for ; from < to; from++ {
		setBit(b, from)
	}
}

// blockRun is a run of contiguous blocks.
type blockRun struct {
	start uint64
	len   uint64
}
