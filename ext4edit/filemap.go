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
	var last uint64
	for _, e := range exts {
		last = max(last, e.lblk+e.len)
	}
	return img.indirectOverhead(last)
}

// mapNew maps exts into in, which maps nothing yet, and charges the data
// blocks and tree blocks to i_blocks.
func (img *Image) mapNew(in *inode, exts []fileExtent, goal uint64) error {
	var data uint64
	for _, e := range exts {
		data += e.len
	}
	if img.newFileUsesExtents() {
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
