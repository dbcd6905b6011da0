package ext4edit

// The resize inode (inode 7, compat feature resize_inode) owns the blocks
// mke2fs reserves after the descriptor table so that the table can grow
// in place (s_reserved_gdt_blocks of them), and their copies in every
// group holding a superblock backup. It is a block-mapped file that uses
// only its double-indirect pointer (ext2fs_create_resize_inode):
//
//	i_block[13] (EXT2_DIND_BLOCK) -> the dind block, 4-byte block numbers.
//	dind[(desc_blocks + j) % (block size / 4)] = the primary reserved
//	    block j (j < s_reserved_gdt_blocks), at s_first_data_block + 1 +
//	    desc_blocks + j. The slot index counts from the table's start, so
//	    a reserved block keeps its slot when the table grows over the
//	    ones before it.
//	primary reserved block j, read as an indirect block: the block
//	    numbers of its copies, one per group g >= 1 holding a backup, in
//	    group order: primary + g * s_blocks_per_group.
//
// i_blocks counts the dind block, the primary reserved blocks and all
// their copies; i_size is that of a file reaching the end of the
// double-indirect range. e2fsck's check_resize_inode checks exactly this
// shape; a resize keeps it (or, when the table outgrows the reservation,
// turns the feature off for meta_bg and empties the inode).
const (
	resizeIno     = 7
	iBlockDind    = 13 // index of the double-indirect pointer in i_block
	iBlockPtrSize = 4  // bytes per block pointer in i_block and indirect blocks
)

// resizeInodeDind returns the dind block of the resize inode in.
func resizeInodeDind(in *inode) uint64 {
	return uint64(le32(in.iblock(), iBlockDind*iBlockPtrSize))
}

// buildResizeInode rewrites the resize inode's blocks for the geometry
// the image has now: the dind block and every primary reserved block's
// list of copies, through the cache, and i_blocks. dind is the inode's
// existing dind block.
func (img *Image) buildResizeInode(in *inode, dind uint64) error {
	apb := img.apb()
	sbBlk := uint64(img.firstDataBlock)
	backups := []uint64{}
	for g := uint32(1); g < img.groupCount; g++ {
		if img.hasSuper(g) {
			backups = append(backups, uint64(g)*uint64(img.bpg))
		}
	}
	if uint64(len(backups)) > apb {
		return corruptf("%d superblock backups do not fit one indirect block of the resize inode", len(backups))
	}
	db, err := img.cache.getW(dind, kindMeta)
	if err != nil {
		return err
	}
	clear(db)
	// The reserved blocks are rewritten whole: one buffer for all of them
	// (mapped populated where it is large), not one page fault per block.
	slab := bigBuffer(int(img.reservedGdt)*int(img.bs), img)
	for j := uint64(0); j < uint64(img.reservedGdt); j++ {
		pblk := sbBlk + 1 + uint64(img.gdtBlocks) + j
		put32(db, int((uint64(img.gdtBlocks)+j)%apb)*iBlockPtrSize, uint32(pblk))
		ib := img.cache.rewrite(pblk, kindMeta, slab[j*uint64(img.bs):(j+1)*uint64(img.bs):(j+1)*uint64(img.bs)])
		for k, off := range backups {
			put32(ib, k*iBlockPtrSize, uint32(pblk+off))
		}
	}
	blocks := 1 + uint64(img.reservedGdt)*(1+uint64(len(backups)))
	return in.setBlocks512(img, blocks*uint64(img.bs/512))
}
