package ext4edit

import "fmt"

// One interface over the two ways an inode maps logical blocks: extent
// trees and ext2/ext3 block maps. Inline data maps nothing.

// usesMapping reports whether i_block holds a block mapping (fast
// symlinks, device nodes and inline data do not).
func (img *Image) usesMapping(in *inode) bool {
	if in.hasInlineData() {
		return false
	}
	switch in.mode() & sIFMT {
	case sIFREG, sIFDIR:
		return true
	case sIFLNK:
		return !img.isFastSymlink(in)
	}
	return false
}

// mapBlock returns the physical block behind logical block lblk; 0 is a hole.
func (img *Image) mapBlock(in *inode, lblk uint64) (uint64, error) {
	if in.hasInlineData() {
		return 0, fmt.Errorf("internal error: block map of inline-data inode %d", in.ino)
	}
	if in.hasExtents() {
		return img.extentMap(in, lblk)
	}
	return img.indirectMap(in, lblk)
}

// walkFile visits every mapped run (leaf) and every tree block (node).
func (img *Image) walkFile(in *inode, leaf func(fileExtent) error, node func(blk uint64)) error {
	if !img.usesMapping(in) {
		return nil
	}
	if in.hasExtents() {
		return img.extentWalk(in, leaf, node)
	}
	return img.indirectWalk(in, leaf, node)
}

// newFileUsesExtents decides the mapping of a file created now.
func (img *Image) newFileUsesExtents() bool { return img.sb.hasIncompat(incompatExtents) }

// mapOverhead is how many tree blocks mapping exts (into an empty inode)
// needs at most.
func (img *Image) mapOverhead(exts []fileExtent, extents bool) uint64 {
	if extents {
		return img.extentTreeBlocks(uint64(len(splitExtents(exts))))
	}
	return img.indirectOverhead(exts)
}

// mapTally is mapOverhead kept up to date as a File appends runs in
// logical order, so the space check before each allocation costs the
// same for the first run as for the ten-thousandth: a sparse file of
// many small fragments does not walk every run written so far each time.
type mapTally struct {
	extents bool
	split   uint64 // extents of the runs before the last, split at maxInitLen
	last    uint64 // the last run's length: it may still grow
	ind     indirectTally
}

// tallyOf is the tally of exts (in logical order, not overlapping).
func (img *Image) tallyOf(exts []fileExtent) mapTally {
	t := mapTally{extents: img.newFileUsesExtents()}
	if !t.extents {
		t.ind = img.newIndirectTally()
	}
	for _, e := range exts {
		t.add(e, false)
	}
	return t
}

// add counts run e: a new run, or (merged) blocks that extend the last.
func (t *mapTally) add(e fileExtent, merged bool) {
	if !t.extents {
		t.ind.add(e)
		return
	}
	if merged {
		t.last += e.len
		return
	}
	t.split += (t.last + maxInitLen - 1) / maxInitLen
	t.last = e.len
}

// overhead is mapOverhead of the runs counted.
func (t *mapTally) overhead(img *Image) uint64 {
	if !t.extents {
		return t.ind.blocks()
	}
	return img.extentTreeBlocks(t.split + (t.last+maxInitLen-1)/maxInitLen)
}

// maxFileSize is the largest i_size a regular file mapped with extents
// (or a block map) can have here: the kernel's s_maxbytes
// (ext4_max_size, ext4_max_bitmap_size), so that the kernel can read and
// extend every file the editor writes. Beyond it the last logical block
// does not fit ee_block (2^32-1 blocks of extents), the reach of triple
// indirection, or, without huge_file, a 32-bit i_blocks count of the
// data and pointer blocks of a dense file that size.
func (img *Image) maxFileSize(extents bool) uint64 {
	bits := uint64(10)
	for 1<<bits < uint64(img.bs) {
		bits++
	}
	huge := img.sb.hasRoCompat(roCompatHugeFile)
	if extents {
		res := uint64(1<<32-1) << bits
		if !huge {
			res = min(res, (uint64(1<<32-1)>>(bits-9))<<bits)
		}
		return res
	}
	ppb := uint64(img.bs / 4)
	upper := uint64(1<<48 - 1) // i_blocks in filesystem blocks (HUGE_FILE_FL)
	if !huge {
		upper = uint64(1<<32-1) >> (bits - 9) // 512-byte sectors, 32 bits
	}
	res := directBlocks + ppb + ppb*ppb + ppb*ppb*ppb
	meta := 1 + (1 + ppb) + (1 + ppb + ppb*ppb)
	if res+meta > upper {
		// The i_blocks limit binds: the data blocks of a dense file
		// whose data and pointer blocks make upper.
		res = upper
		upper -= directBlocks + ppb
		meta = 1
		if upper < ppb*ppb {
			meta += 1 + (upper+ppb-1)/ppb
		} else {
			meta += 1 + ppb
			upper -= ppb * ppb
			meta += 1 + (upper+ppb-1)/ppb + (upper+ppb*ppb-1)/(ppb*ppb)
		}
		res -= meta
	}
	return res << bits
}

// mapNew maps exts into in, which maps nothing yet, and charges the data
// blocks and tree blocks to i_blocks.
func (img *Image) mapNew(in *inode, exts []fileExtent, goal uint64) error {
	return img.mapNewAs(in, exts, goal, img.newFileUsesExtents())
}

// mapNewAs is mapNew with the mapping chosen: an extent tree, or a block
// map (a shrink rebuilds an ext3 file's map as the block map it was).
func (img *Image) mapNewAs(in *inode, exts []fileExtent, goal uint64, extents bool) error {
	var data uint64
	for _, e := range exts {
		data += e.len
	}
	if extents {
		if err := img.extentBuild(in, exts, goal); err != nil {
			return err
		}
		return in.addBlocks(img, int64(data))
	}
	in.setFlags(in.flags() &^ flagExtents)
	clear(in.iblock())
	need := img.mapOverhead(exts, false)
	runs, err := img.allocBlocks(goal, need)
	if err != nil {
		return err
	}
	pool := &poolAlloc{runs: runs}
	for _, e := range exts {
		for i := uint64(0); i < e.len; i++ {
			if _, err := img.indirectSet(in, e.lblk+i, e.pblk+i, pool.next); err != nil {
				return err
			}
		}
	}
	return in.addBlocks(img, int64(data+need))
}

// mapAppend maps n blocks lblk.. -> pblk.. past the current end of in.
func (img *Image) mapAppend(in *inode, lblk, pblk, n uint64) error {
	if in.hasExtents() {
		if err := img.extentAppend(in, lblk, pblk, n); err != nil {
			return err
		}
		return in.addBlocks(img, int64(n))
	}
	alloc := func() (uint64, error) {
		r, err := img.allocBlocks(pblk, 1)
		if err != nil {
			return 0, err
		}
		return r[0].start, nil
	}
	for i := uint64(0); i < n; i++ {
		c, err := img.indirectSet(in, lblk+i, pblk+i, alloc)
		if err != nil {
			return err
		}
		if err := in.addBlocks(img, int64(c)+1); err != nil {
			return err
		}
	}
	return nil
}

// freeMapping releases every data and tree block of in and empties its
// mapping (i_block, i_blocks less the xattr block, EXTENTS_FL kept on
// extent inodes with an empty root).
func (img *Image) freeMapping(in *inode) error {
	if !img.usesMapping(in) {
		return nil
	}
	var runs []blockRun
	err := img.walkFile(in, func(e fileExtent) error {
		runs = append(runs, blockRun{e.pblk, e.len})
		return nil
	}, func(blk uint64) { runs = append(runs, blockRun{blk, 1}) })
	if err != nil {
		return err
	}
	for _, r := range runs {
		img.freeBlocks(r.start, r.len)
	}
	ext := in.hasExtents()
	clear(in.iblock())
	if ext {
		root := in.iblock()
		put16(root, ehMagic, extentMagic)
		put16(root, ehMax, rootEntries)
	}
	var keep int64
	if in.fileACL() != 0 {
		keep = 1
	}
	return in.setBlocks512(img, uint64(keep)*uint64(img.bs/512))
}

// fileBlockCount is the number of logical blocks covered by size bytes.
func (img *Image) fileBlockCount(size uint64) uint64 {
	return (size + uint64(img.bs) - 1) / uint64(img.bs)
}
