package ext4edit

// The superblock (struct ext4_super_block) lives at byte 1024 of the
// filesystem and is 1024 bytes long. We keep its raw bytes and decode
// fields on demand, so fields this package does not know survive a rewrite.
const (
	superblockOffset = 1024
	superblockSize   = 1024
	ext4Magic        = 0xEF53
)

// Byte offsets of the fields we use (kernel names).
const (
	sbInodesCount       = 0x00  // __le32 s_inodes_count
	sbBlocksCountLo     = 0x04  // __le32 s_blocks_count_lo
	sbRBlocksCountLo    = 0x08  // __le32 s_r_blocks_count_lo
	sbFreeBlocksCountLo = 0x0C  // __le32 s_free_blocks_count_lo
	sbFreeInodesCount   = 0x10  // __le32 s_free_inodes_count
	sbFirstDataBlock    = 0x14  // __le32 s_first_data_block
	sbLogBlockSize      = 0x18  // __le32 s_log_block_size (size = 1024 << n)
	sbLogClusterSize    = 0x1C  // __le32 s_log_cluster_size
	sbBlocksPerGroup    = 0x20  // __le32 s_blocks_per_group
	sbClustersPerGroup  = 0x24  // __le32 s_clusters_per_group
	sbInodesPerGroup    = 0x28  // __le32 s_inodes_per_group
	sbWtime             = 0x30  // __le32 s_wtime
	sbMaxMntCount       = 0x36  // __le16 s_max_mnt_count
	sbMagic             = 0x38  // __le16 s_magic
	sbState             = 0x3A  // __le16 s_state (1 = cleanly unmounted, 2 = errors)
	sbErrors            = 0x3C  // __le16 s_errors (1 = continue)
	sbLastcheck         = 0x40  // __le32 s_lastcheck
	sbCreatorOS         = 0x48  // __le32 s_creator_os (0 Linux, 1 Hurd, ...)
	sbRevLevel          = 0x4C  // __le32 s_rev_level (0 = good old, 1 = dynamic)
	sbFirstIno          = 0x54  // __le32 s_first_ino
	sbInodeSize         = 0x58  // __le16 s_inode_size
	sbBlockGroupNr      = 0x5A  // __le16 s_block_group_nr (of a backup copy)
	sbFeatureCompat     = 0x5C  // __le32 s_feature_compat
	sbFeatureIncompat   = 0x60  // __le32 s_feature_incompat
	sbFeatureRoCompat   = 0x64  // __le32 s_feature_ro_compat
	sbUUID              = 0x68  // __u8 s_uuid[16]
	sbVolumeName        = 0x78  // char s_volume_name[16]
	sbReservedGdtBlocks = 0xCE  // __le16 s_reserved_gdt_blocks
	sbJournalInum       = 0xE0  // __le32 s_journal_inum
	sbJournalDev        = 0xE4  // __le32 s_journal_dev
	sbLastOrphan        = 0xE8  // __le32 s_last_orphan
	sbHashSeed          = 0xEC  // __le32 s_hash_seed[4]
	sbDefHashVersion    = 0xFC  // __u8 s_def_hash_version
	sbJnlBackupType     = 0xFD  // __u8 s_jnl_backup_type (1 = EXT3_JNL_BACKUP_BLOCKS)
	sbDescSize          = 0xFE  // __le16 s_desc_size
	sbDefaultMountOpts  = 0x100 // __le32 s_default_mount_opts
	sbFirstMetaBg       = 0x104 // __le32 s_first_meta_bg
	sbMkfsTime          = 0x108 // __le32 s_mkfs_time
	sbJnlBlocks         = 0x10C // __le32 s_jnl_blocks[17]: i_block[15], i_size_high, i_size
	sbBlocksCountHi     = 0x150 // __le32 s_blocks_count_hi
	sbRBlocksCountHi    = 0x154 // __le32 s_r_blocks_count_hi
	sbFreeBlocksCountHi = 0x158 // __le32 s_free_blocks_count_hi
	sbMinExtraIsize     = 0x15C // __le16 s_min_extra_isize
	sbWantExtraIsize    = 0x15E // __le16 s_want_extra_isize
	sbFlags             = 0x160 // __le32 s_flags (1 signed hash, 2 unsigned hash)
	sbLogGroupsPerFlex  = 0x174 // __u8 s_log_groups_per_flex
	sbChecksumType      = 0x175 // __u8 s_checksum_type (1 = crc32c)
	sbOverheadClusters  = 0x248 // __le32 s_overhead_clusters (0: the kernel computes it)
	sbBackupBgs         = 0x24C // __le32 s_backup_bgs[2] (sparse_super2)
	sbLpfIno            = 0x268 // __le32 s_lpf_ino: lost+found's inode, when recorded
	sbChecksumSeed      = 0x270 // __le32 s_checksum_seed (csum_seed feature)
	sbWtimeHi           = 0x274 // __u8 s_wtime_hi
	sbMkfsTimeHi        = 0x276 // __u8 s_mkfs_time_hi
	sbLastcheckHi       = 0x277 // __u8 s_lastcheck_hi
	sbEncoding          = 0x27C // __le16 s_encoding (casefold: 1 = utf8-12.1)
	sbEncodingFlags     = 0x27E // __le16 s_encoding_flags (1 = strict: names must be valid)
	sbOrphanFileInum    = 0x280 // __le32 s_orphan_file_inum (orphan_file)
	sbChecksum          = 0x3FC // __le32 s_checksum
)

// s_flags bits.
const (
	sbFlagSignedHash   = 0x1
	sbFlagUnsignedHash = 0x2
)

// superblock wraps the raw 1024 bytes.
type superblock struct{ b []byte }

func (s superblock) inodesCount() uint32    { return le32(s.b, sbInodesCount) }
func (s superblock) firstDataBlock() uint32 { return le32(s.b, sbFirstDataBlock) }
func (s superblock) blocksPerGroup() uint32 { return le32(s.b, sbBlocksPerGroup) }
func (s superblock) inodesPerGroup() uint32 { return le32(s.b, sbInodesPerGroup) }
func (s superblock) compat() compatFeatures { return compatFeatures(le32(s.b, sbFeatureCompat)) }
func (s superblock) incompat() incompatFeatures {
	return incompatFeatures(le32(s.b, sbFeatureIncompat))
}
func (s superblock) roCompat() roCompatFeatures {
	return roCompatFeatures(le32(s.b, sbFeatureRoCompat))
}
func (s superblock) revLevel() uint32 { return le32(s.b, sbRevLevel) }
func (s superblock) uuid() []byte     { return s.b[sbUUID : sbUUID+16] }
func (s superblock) state() uint16    { return le16(s.b, sbState) }

func (s superblock) hasCompat(f compatFeatures) bool     { return s.compat().has(f) }
func (s superblock) hasIncompat(f incompatFeatures) bool { return s.incompat().has(f) }
func (s superblock) hasRoCompat(f roCompatFeatures) bool { return s.roCompat().has(f) }

func (s superblock) setCompat(f compatFeatures)     { put32(s.b, sbFeatureCompat, uint32(f)) }
func (s superblock) setIncompat(f incompatFeatures) { put32(s.b, sbFeatureIncompat, uint32(f)) }
func (s superblock) setRoCompat(f roCompatFeatures) { put32(s.b, sbFeatureRoCompat, uint32(f)) }

func (s superblock) blocksCount() uint64 {
	v := uint64(le32(s.b, sbBlocksCountLo))
	if s.hasIncompat(incompat64bit) {
		v |= uint64(le32(s.b, sbBlocksCountHi)) << 32
	}
	return v
}

func (s superblock) rBlocksCount() uint64 {
	v := uint64(le32(s.b, sbRBlocksCountLo))
	if s.hasIncompat(incompat64bit) {
		v |= uint64(le32(s.b, sbRBlocksCountHi)) << 32
	}
	return v
}

func (s superblock) freeBlocksCount() uint64 {
	v := uint64(le32(s.b, sbFreeBlocksCountLo))
	if s.hasIncompat(incompat64bit) {
		v |= uint64(le32(s.b, sbFreeBlocksCountHi)) << 32
	}
	return v
}

func (s superblock) setFreeBlocksCount(v uint64) {
	put32(s.b, sbFreeBlocksCountLo, uint32(v))
	if s.hasIncompat(incompat64bit) {
		put32(s.b, sbFreeBlocksCountHi, uint32(v>>32))
	}
}

func (s superblock) freeInodesCount() uint32     { return le32(s.b, sbFreeInodesCount) }
func (s superblock) setFreeInodesCount(v uint32) { put32(s.b, sbFreeInodesCount, v) }

// inodeSize is 128 on revision 0 filesystems, s_inode_size otherwise.
func (s superblock) inodeSize() uint32 {
	if s.revLevel() == 0 {
		return 128
	}
	return uint32(le16(s.b, sbInodeSize))
}

// firstIno is the first non-reserved inode (11 on revision 0).
func (s superblock) firstIno() uint32 {
	if s.revLevel() == 0 {
		return 11
	}
	return le32(s.b, sbFirstIno)
}

// descSize is the group descriptor size: 32 unless 64bit sets s_desc_size.
func (s superblock) descSize() uint32 {
	if s.hasIncompat(incompat64bit) {
		return uint32(le16(s.b, sbDescSize))
	}
	return 32
}

func (s superblock) hashSeed() (seed [4]uint32) {
	for i := range seed {
		seed[i] = le32(s.b, sbHashSeed+4*i)
	}
	return seed
}

// metadataCsum reports whether metadata_csum checksums are in force.
func (s superblock) metadataCsum() bool { return s.hasRoCompat(roCompatMetadataCsum) }

// groupCsums reports whether group descriptors carry a checksum and the
// UNINIT flags are meaningful.
// hurd: made by the GNU Hurd, whose ext2 has no directory entry file
// types (e2fsck ignores the filetype feature there).
func (s superblock) hurd() bool { return le32(s.b, sbCreatorOS) == 1 }

func (s superblock) groupCsums() bool { return s.metadataCsum() || s.hasRoCompat(roCompatGdtCsum) }

// csumSeed is the seed every metadata_csum checksum starts from.
func (s superblock) csumSeed() uint32 {
	if s.hasIncompat(incompatCsumSeed) {
		return le32(s.b, sbChecksumSeed)
	}
	return crc32cRaw(^uint32(0), s.uuid())
}

// updateChecksum recomputes s_checksum over the first 1020 bytes.
func (s superblock) updateChecksum() {
	if s.metadataCsum() {
		put32(s.b, sbChecksum, crc32cRaw(^uint32(0), s.b[:sbChecksum]))
	}
}

func (s superblock) checksumOK() bool {
	return !s.metadataCsum() || le32(s.b, sbChecksum) == crc32cRaw(^uint32(0), s.b[:sbChecksum])
}
