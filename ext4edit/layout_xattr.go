package ext4edit

const (
	// xattrMagic is h_magic of both struct ext4_xattr_header and
	// struct ext4_xattr_ibody_header (EXT4_XATTR_MAGIC).
	xattrMagic = 0xEA020000

	// struct ext4_xattr_header (attribute block header), 32 bytes:
	xattrHdrMagic    = 0  // __le32 h_magic:    EXT4_XATTR_MAGIC
	xattrHdrRefcount = 4  // __le32 h_refcount: number of inodes sharing the block
	xattrHdrBlocks   = 8  // __le32 h_blocks:   number of blocks used, always 1
	xattrHdrHash     = 12 // __le32 h_hash:     ext4_xattr_rehash over all e_hash
	xattrHdrChecksum = 16 // __le32 h_checksum: crc32c(fs uuid seed, le64 block number, block); caller's job
	// 20: __u32 h_reserved[3], zero.
	xattrHdrSize = 32 // sizeof(struct ext4_xattr_header)

	// struct ext4_xattr_ibody_header (in-inode area header), 4 bytes:
	// 0: __le32 h_magic.
	xattrIbodyHdrSize = 4

	// struct ext4_xattr_entry, 16 bytes followed by e_name[e_name_len]
	// (not NUL terminated), the whole padded to EXT4_XATTR_PAD:
	xattrEntNameLen   = 0  // __u8   e_name_len:   length of e_name (the suffix after the prefix)
	xattrEntNameIndex = 1  // __u8   e_name_index: prefix index, see splitXattrName
	xattrEntValueOffs = 2  // __le16 e_value_offs: offset of the value (block start / first ibody entry)
	xattrEntValueInum = 4  // __le32 e_value_inum: EA inode holding the value (ea_inode feature), else 0
	xattrEntValueSize = 8  // __le32 e_value_size: length of the value in bytes
	xattrEntHash      = 12 // __le32 e_hash:       ext4_xattr_hash_entry of name and value
	xattrEntName      = 16 // char   e_name[]
	xattrEntSize      = 16 // sizeof(struct ext4_xattr_entry) without the name

	xattrPad        = 4 // EXT4_XATTR_PAD: entries and values are padded to 4 bytes
	xattrMaxNameLen = 255

	// Hash shifts of fs/ext4/xattr.c.
	xattrNameHashShift  = 5  // NAME_HASH_SHIFT
	xattrValueHashShift = 16 // VALUE_HASH_SHIFT
	xattrBlockHashShift = 16 // BLOCK_HASH_SHIFT

	// xattrAliasPrefix spells an (e_name_index, e_name) pair that has no
	// canonical full name, see joinXattrName.
	xattrAliasPrefix = "ext4.index"
)
