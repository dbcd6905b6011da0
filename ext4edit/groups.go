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
func (g groupDesc) inodeTable() uint64  { return g.lohi32(bgInodeTableLo, bgInodeTableHi) }
func (g groupDesc) freeBlocks() uint32  { return g.lohi16(bgFreeBlocksCountLo, bgFreeBlocksCountHi) }
func (g groupDesc) freeInodes() uint32  { return g.lohi16(bgFreeInodesCountLo, bgFreeInodesCountHi) }
func (g groupDesc) usedDirs() uint32    { return g.lohi16(bgUsedDirsCountLo, bgUsedDirsCountHi) }
func (g groupDesc) itableUnused() uint32 {
	return g.lohi16(bgItableUnusedLo, bgItableUnusedHi)
}
func (g groupDesc) flags() uint16 { return le16(g.b, bgFlags) }

func (g groupDesc) setFreeBlocks(v uint32)   { g.setLohi16(bgFreeBlocksCountLo, bgFreeBlocksCountHi, v) }
func (g groupDesc) setFreeInodes(v uint32)   { g.setLohi16(bgFreeInodesCountLo, bgFreeInodesCountHi, v) }
func (g groupDesc) setUsedDirs(v uint32)     { g.setLohi16(bgUsedDirsCountLo, bgUsedDirsCountHi, v) }
func (g groupDesc) setItableUnused(v uint32) { g.setLohi16(bgItableUnusedLo, bgItableUnusedHi, v) }
func (g groupDesc) setFlags(v uint16)        { put16(g.b, bgFlags, v) }

func (g groupDesc) setBlockBitmap(b uint64) { g.setLohi32(bgBlockBitmapLo, bgBlockBitmapHi, b) }
func (g groupDesc) setInodeBitmap(b uint64) { g.setLohi32(bgInodeBitmapLo, bgInodeBitmapHi, b) }
func (g groupDesc) setInodeTable(b uint64)  { g.setLohi32(bgInodeTableLo, bgInodeTableHi, b) }

func (g groupDesc) setBlockBitmapCsum(c uint32) {
	g.setLohi16(bgBlockBitmapCsumLo, bgBlockBitmapCsumHi, c)
}
func (g groupDesc) setInodeBitmapCsum(c uint32) {
	g.setLohi16(bgInodeBitmapCsumLo, bgInodeBitmapCsumHi, c)
}

// checksum computes bg_checksum for group number group: crc32c & 0xFFFF
// under metadata_csum, crc16 under gdt_csum (uninit_bg). scratch, when it
// holds at least 4 + the descriptor's bytes, spares an allocation: open
// checksums every descriptor (8192 of them in 1 TiB), and the crc is then
// one call over the group number and the descriptor with bg_checksum
// zeroed instead of several small ones.
func (g groupDesc) checksum(sb superblock, seed uint32, group uint32, scratch []byte) uint16 {
	if len(scratch) < 4+len(g.b) {
		scratch = make([]byte, 4+len(g.b))
	}
	buf := scratch[:4+len(g.b)]
	put32(buf, 0, group)
	copy(buf[4:], g.b)
	put16(buf, 4+bgChecksum, 0)
	if sb.metadataCsum() {
		return uint16(crc32cRaw(seed, buf))
	}
	// gdt_csum skips bg_checksum where metadata_csum zeroes it.
	c := crc16(^uint16(0), sb.uuid())
	c = crc16(c, buf[:4+bgChecksum])
	return crc16(c, buf[4+bgChecksum+2:])
}

// groupMetadata calls fn for every block of group g that holds a
// superblock copy, descriptor blocks or reserved GDT blocks
// (superAndDescBlocks), plus every group's bitmaps and inode table that
// lie inside g (with flex_bg they may belong to other groups).
func (img *Image) groupMetadata(g uint32, fn func(blk uint64)) {
	img.superAndDescBlocks(g, fn)
	first := img.groupFirstBlock(g)
	end := first + uint64(img.groupBlocks(g))
	if first == 0 && img.bs == 1024 {
		first = 1
	}
	for i := uint32(0); i < img.groupCount; i++ {
		d := img.gd(i)
		for _, b := range []uint64{d.blockBitmap(), d.inodeBitmap()} {
			if b >= first && b < end {
				fn(b)
			}
		}
		it := d.inodeTable()
		for b := max(it, first); b < min(it+uint64(img.itableBlocks), end); b++ {
			fn(b)
		}
	}
}

// gd returns a read-only view of group g's descriptor.
func (img *Image) gd(g uint32) groupDesc {
	off := uint64(g) * uint64(img.descSize)
	return groupDesc{b: img.gdt[off : off+uint64(img.descSize)], big: img.descSize >= 64}
}

// gdW returns a writable view of group g's descriptor; the old bytes are
// kept for rollback of the current operation and the group is marked dirty.
func (img *Image) gdW(g uint32) groupDesc {
	d := img.gd(g)
	img.undo.touched = true
	if img.undo.active {
		if _, ok := img.undo.gd[g]; !ok {
			img.undo.gd[g] = gdUndoRec{old: append([]byte(nil), d.b...), dirty: img.dirty.gdt[g]}
		}
	}
	img.dirty.gdt[g] = true
	return d
}
