package ext4edit

import "fmt"

// checkSuper reads the superblock as the disk (and the replay overlay)
// holds it, and checks what Open does not: counts in range, descriptor
// flags and itable_unused against the features. Open has checked the
// magic, the checksum, the geometry, the file size and the descriptor
// checksums and locations (a failure there is one KindUnreadable problem).
func (c *checker) checkSuper() bool {
	img := c.img
	blk, off := img.superblockBlock()
	b := make([]byte, img.bs)
	if err := img.readBlock(blk, b); err != nil {
		c.problem(KindUnreadable, "superblock", "", "%v", err)
		return false
	}
	c.sb = superblock{b: b[off : off+superblockSize]}
	sb := c.sb
	if sb.rBlocksCount() > img.blocksCount {
		c.problem(KindSuperblock, "superblock", "", "reserved blocks count %d exceeds the block count %d", sb.rBlocksCount(), img.blocksCount)
	}
	// Free counts beyond the totals: e2fsck recomputes both from the
	// groups and does not count them as errors (the kernel takes the
	// groups' counts at mount too), so a note.
	if sb.freeInodesCount() > img.inodesCount {
		c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("the superblock's free inodes count %d exceeds the inode count %d (recomputed from the groups, as e2fsck and the kernel do)", sb.freeInodesCount(), img.inodesCount))
	}
	if sb.freeBlocksCount() > img.blocksCount {
		c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("the superblock's free blocks count %d exceeds the block count %d (recomputed from the groups, as e2fsck and the kernel do)", sb.freeBlocksCount(), img.blocksCount))
	}
	csums := sb.groupCsums()
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		where := fmt.Sprintf("group %d", g)
		fl := d.flags()
		if !csums && fl&(bgInodeUninit|bgBlockUninit) != 0 {
			c.problem(KindGroupDesc, where, "", "flags 0x%x mark the group uninitialised without uninit_bg or metadata_csum", fl)
		}
		if csums && d.itableUnused() > img.ipg {
			c.problem(KindGroupDesc, where, "", "itable_unused %d exceeds the %d inodes of a group", d.itableUnused(), img.ipg)
		}
		if g == img.groupCount-1 && csums && fl&bgBlockUninit != 0 && !img.compat.has(compatSparseSuper2) {
			// ext2fs never leaves the last group's bitmap uninitialised.
			c.problem(KindGroupDesc, where, "", "the last group is flagged BLOCK_UNINIT")
		}
	}
	return true
}
