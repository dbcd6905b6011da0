package ext4edit

// Group descriptors (struct ext4_group_desc): 32 bytes, or s_desc_size
// (64) with the 64bit feature. The whole table is read at open; a 1 TiB
// image has 8192 groups, 512 KiB of descriptors.
const (
	bgBlockBitmapLo     = 0x00 // __le32 bg_block_bitmap_lo
	bgInodeBitmapLo     = 0x04 // __le32 bg_inode_bitmap_lo
	bgInodeTableLo      = 0x08 // __le32 bg_inode_table_lo
	bgFreeBlocksCountLo = 0x0C // __le16 bg_free_blocks_count_lo
	bgFreeInodesCountLo = 0x0E // __le16 bg_free_inodes_count_lo
	bgUsedDirsCountLo   = 0x10 // __le16 bg_used_dirs_count_lo
	bgFlags             = 0x12 // __le16 bg_flags
	bgBlockBitmapCsumLo = 0x18 // __le16 bg_block_bitmap_csum_lo
	bgInodeBitmapCsumLo = 0x1A // __le16 bg_inode_bitmap_csum_lo
	bgItableUnusedLo    = 0x1C // __le16 bg_itable_unused_lo
	bgChecksum          = 0x1E // __le16 bg_checksum
	bgBlockBitmapHi     = 0x20 // __le32 bg_block_bitmap_hi (64-byte descriptors only)
	bgInodeBitmapHi     = 0x24 // __le32 bg_inode_bitmap_hi
	bgInodeTableHi      = 0x28 // __le32 bg_inode_table_hi
	bgFreeBlocksCountHi = 0x2C // __le16 bg_free_blocks_count_hi
	bgFreeInodesCountHi = 0x2E // __le16 bg_free_inodes_count_hi
	bgUsedDirsCountHi   = 0x30 // __le16 bg_used_dirs_count_hi
	bgItableUnusedHi    = 0x32 // __le16 bg_itable_unused_hi
	bgBlockBitmapCsumHi = 0x38 // __le16 bg_block_bitmap_csum_hi
	bgInodeBitmapCsumHi = 0x3A // __le16 bg_inode_bitmap_csum_hi

	// bg_flags
	bgInodeUninit  = 0x1 // inode table and bitmap not initialised
	bgBlockUninit  = 0x2 // block bitmap not initialised
	bgItableZeroed = 0x4 // inode table is zeroed
)

// groupDesc is a view of one descriptor's bytes.
type groupDesc struct {
	b   []byte
	big bool // 64-byte descriptor: the _hi halves exist
}

func (g groupDesc) lohi32(lo, hi int) uint64 {
	v := uint64(le32(g.b, lo))
	if g.big {
		v |= uint64(le32(g.b, hi)) << 32
	}
	return v
}

func (g groupDesc) setLohi32(lo, hi int, v uint64) {
	put32(g.b, lo, uint32(v))
	if g.big {
		put32(g.b, hi, uint32(v>>32))
	}
}

func (g groupDesc) lohi16(lo, hi int) uint32 {
	v := uint32(le16(g.b, lo))
	if g.big {
		v |= uint32(le16(g.b, hi)) << 16
	}
	return v
}

func (g groupDesc) setLohi16(lo, hi int, v uint32) {
	put16(g.b, lo, uint16(v))
	if g.big {
		put16(g.b, hi, uint16(v>>16))
	}
}

func (g groupDesc) blockBitmap() uint64 { return g.lohi32(bgBlockBitmapLo, bgBlockBitmapHi) }

func (g groupDesc) inodeBitmap() uint64 { return g.lohi32(bgInodeBitmapLo, bgInodeBitmapHi) }

func (g groupDesc) inodeTable() uint64 { return g.lohi32(bgInodeTableLo, bgInodeTableHi) }

func (g groupDesc) freeBlocks() uint32 { return g.lohi16(bgFreeBlocksCountLo, bgFreeBlocksCountHi) }

func (g groupDesc) freeInodes() uint32 { return g.lohi16(bgFreeInodesCountLo, bgFreeInodesCountHi) }

func (g groupDesc) usedDirs() uint32 { return g.lohi16(bgUsedDirsCountLo, bgUsedDirsCountHi) }

func (g groupDesc) itableUnused() uint32 {
	return g.lohi16(bgItableUnusedLo, bgItableUnusedHi)
}

func (g groupDesc) flags() uint16 { return le16(g.b, bgFlags) }

func (g groupDesc) setFreeBlocks(v uint32) { g.setLohi16(bgFreeBlocksCountLo, bgFreeBlocksCountHi, v) }

func (g groupDesc) setFreeInodes(v uint32) { g.setLohi16(bgFreeInodesCountLo, bgFreeInodesCountHi, v) }

func (g groupDesc) setUsedDirs(v uint32) { g.setLohi16(bgUsedDirsCountLo, bgUsedDirsCountHi, v) }

func (g groupDesc) setItableUnused(v uint32) { g.setLohi16(bgItableUnusedLo, bgItableUnusedHi, v) }

func (g groupDesc) setFlags(v uint16) { put16(g.b, bgFlags, v) }

func (g groupDesc) setBlockBitmap(b uint64) { g.setLohi32(bgBlockBitmapLo, bgBlockBitmapHi, b) }

func (g groupDesc) setInodeBitmap(b uint64) { g.setLohi32(bgInodeBitmapLo, bgInodeBitmapHi, b) }

func (g groupDesc) setInodeTable(b uint64) { g.setLohi32(bgInodeTableLo, bgInodeTableHi, b) }

func (g groupDesc) setBlockBitmapCsum(c uint32) {
	g.setLohi16(bgBlockBitmapCsumLo, bgBlockBitmapCsumHi, c)
}

func (g groupDesc) setInodeBitmapCsum(c uint32) {
	g.setLohi16(bgInodeBitmapCsumLo, bgInodeBitmapCsumHi, c)
}
