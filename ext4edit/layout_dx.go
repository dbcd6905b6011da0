package ext4edit

// Hash-indexed directories (htree). Block 0 is the dx root: "." (12
// bytes), ".." whose rec_len covers the rest of the block, then, inside
// that space:
const (
	dxRootInfo      = 0x18 // struct dx_root_info
	dxRootHashVer   = 0x1C // __u8 hash_version
	dxRootInfoLen   = 0x1D // __u8 info_length (8)
	dxRootLevels    = 0x1E // __u8 indirect_levels (index levels below the root)
	dxRootCountOff  = 0x20 // struct dx_countlimit, then dx_entry[] of the root
	dxNodeCountOff  = 0x08 // in an interior block, after the fake empty entry
	dxEntrySize     = 8    // struct dx_entry {__le32 hash; __le32 block}
	dxTailSize      = 8    // struct dx_tail {__le32 dt_reserved; __le32 dt_checksum}
	dxCountLimitLim = 0    // __le16 limit
	dxCountLimitCnt = 2    // __le16 count
	// dx_entry[0] overlays dx_countlimit: its hash is implicitly 0 and its
	// block is at offset 4.
)

func dxCount(b []byte, countOff int) int { return int(le16(b, countOff+dxCountLimitCnt)) }

func dxHashAt(b []byte, countOff, i int) uint32 {
	if i == 0 {
		return 0
	}
	return le32(b, countOff+i*dxEntrySize)
}

func dxBlockAt(b []byte, countOff, i int) uint32 { return le32(b, countOff+i*dxEntrySize+4) }
