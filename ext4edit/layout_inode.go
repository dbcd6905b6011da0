package ext4edit

// The inode (struct ext4_inode): 128 bytes of the original ext2 layout,
// then i_extra_isize bytes of extension fields, then in-inode extended
// attributes up to s_inode_size. We keep the raw bytes, so every field we
// do not touch (osd1, i_version_hi, i_projid, xattrs ...) survives.
const (
	iMode        = 0x00 // __le16 i_mode
	iUIDLo       = 0x02 // __le16 i_uid
	iSizeLo      = 0x04 // __le32 i_size_lo
	iAtime       = 0x08 // __le32 i_atime
	iCtime       = 0x0C // __le32 i_ctime
	iMtime       = 0x10 // __le32 i_mtime
	iDtime       = 0x14 // __le32 i_dtime
	iGIDLo       = 0x18 // __le16 i_gid
	iLinksCount  = 0x1A // __le16 i_links_count
	iBlocksLo    = 0x1C // __le32 i_blocks_lo
	iFlags       = 0x20 // __le32 i_flags
	iBlock       = 0x28 // __le32 i_block[15] (60 bytes: block map, extent root or inline data)
	iBlockLen    = 60
	iGeneration  = 0x64 // __le32 i_generation
	iFileACLLo   = 0x68 // __le32 i_file_acl_lo
	iSizeHigh    = 0x6C // __le32 i_size_high
	iBlocksHigh  = 0x74 // __le16 l_i_blocks_high
	iFileACLHigh = 0x76 // __le16 l_i_file_acl_high
	iUIDHigh     = 0x78 // __le16 l_i_uid_high
	iGIDHigh     = 0x7A // __le16 l_i_gid_high
	iChecksumLo  = 0x7C // __le16 l_i_checksum_lo
	iExtraIsize  = 0x80 // __le16 i_extra_isize
	iChecksumHi  = 0x82 // __le16 i_checksum_hi
	iCtimeExtra  = 0x84 // __le32 i_ctime_extra
	iMtimeExtra  = 0x88 // __le32 i_mtime_extra
	iAtimeExtra  = 0x8C // __le32 i_atime_extra
	iCrtime      = 0x90 // __le32 i_crtime
	iCrtimeExtra = 0x94 // __le32 i_crtime_extra

	goodOldInodeSize = 128
	// extraIsizeDefault is sizeof(struct ext4_inode) - 128: every field
	// through i_projid.
	extraIsizeDefault = 32
)

// i_flags bits we act on.
const (
	flagSecrm      = 0x1
	flagIndex      = 0x1000     // EXT4_INDEX_FL: hash-indexed directory
	flagEncrypt    = 0x800      // EXT4_ENCRYPT_FL
	flagHugeFile   = 0x40000    // EXT4_HUGE_FILE_FL: i_blocks in fs blocks
	flagExtents    = 0x80000    // EXT4_EXTENTS_FL
	flagVerity     = 0x100000   // EXT4_VERITY_FL
	flagEAInode    = 0x200000   // EXT4_EA_INODE_FL
	flagInlineData = 0x10000000 // EXT4_INLINE_DATA_FL
	flagCasefold   = 0x40000000 // EXT4_CASEFOLD_FL
)

// Reserved inode numbers.
const (
	badBlocksIno = 1 // EXT2_BAD_INO: owns the bad blocks list
	rootIno      = 2
	journalIno   = 8
)
