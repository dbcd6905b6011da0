package ext4edit

// Extent trees. Every node starts with struct ext4_extent_header (12
// bytes); the root lives in i_block (60 bytes: header + 4 entries), other
// nodes fill a block and end with struct ext4_extent_tail (crc32c) right
// after eh_max entries.
const (
	ehMagic      = 0x00 // __le16 eh_magic (0xF30A)
	ehEntries    = 0x02 // __le16 eh_entries
	ehMax        = 0x04 // __le16 eh_max
	ehDepth      = 0x06 // __le16 eh_depth (0 = leaf)
	ehGeneration = 0x08 // __le32 eh_generation
	ehSize       = 12

	// struct ext4_extent (leaf entry), 12 bytes
	eeBlock   = 0x0 // __le32 ee_block: first logical block
	eeLen     = 0x4 // __le16 ee_len: > 32768 means unwritten, len-32768
	eeStartHi = 0x6 // __le16 ee_start_hi
	eeStartLo = 0x8 // __le32 ee_start_lo
	// struct ext4_extent_idx (index entry), 12 bytes
	eiBlock   = 0x0 // __le32 ei_block: first logical block covered
	eiLeafLo  = 0x4 // __le32 ei_leaf_lo
	eiLeafHi  = 0x8 // __le16 ei_leaf_hi
	entrySize = 12

	extentMagic    = 0xF30A
	maxInitLen     = 32768 // EXT_INIT_MAX_LEN
	maxExtentDepth = 5
	rootEntries    = (iBlockLen - ehSize) / entrySize // 4
)

func extentPblk(e []byte) uint64 {
	return uint64(le32(e, eeStartLo)) | uint64(le16(e, eeStartHi))<<32
}

func indexPblk(e []byte) uint64 {
	return uint64(le32(e, eiLeafLo)) | uint64(le16(e, eiLeafHi))<<32
}

func setExtent(e []byte, lblk uint32, n uint16, pblk uint64) {
	put32(e, eeBlock, lblk)
	put16(e, eeLen, n)
	put16(e, eeStartHi, uint16(pblk>>32))
	put32(e, eeStartLo, uint32(pblk))
}

func setIndex(e []byte, lblk uint32, pblk uint64) {
	put32(e, eiBlock, lblk)
	put32(e, eiLeafLo, uint32(pblk))
	put16(e, eiLeafHi, uint16(pblk>>32))
	put16(e, 10, 0)
}
