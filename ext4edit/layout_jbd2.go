package ext4edit

import "encoding/binary"

// The jbd2 journal (internal, in inode s_journal_inum). Every jbd2 block
// starts with a 12-byte big-endian header; the journal superblock is its
// block 0. Only what a commit and a replay need is decoded.
const (
	jMagic = 0xC03B3998

	// journal_header_t
	jhMagic     = 0x0 // __be32 h_magic
	jhBlocktype = 0x4 // __be32 h_blocktype
	jhSequence  = 0x8 // __be32 h_sequence (transaction ID)
	jhSize      = 12

	jbtDescriptor = 1
	jbtCommit     = 2
	jbtSuperV1    = 3
	jbtSuperV2    = 4
	jbtRevoke     = 5

	// journal_superblock_t
	jsBlocksize   = 0x0C  // __be32 s_blocksize
	jsMaxlen      = 0x10  // __be32 s_maxlen: journal length in blocks
	jsFirst       = 0x14  // __be32 s_first: first log block
	jsSequence    = 0x18  // __be32 s_sequence: first transaction expected in the log
	jsStart       = 0x1C  // __be32 s_start: block of the log's start, 0 = empty
	jsErrno       = 0x20  // __be32 s_errno
	jsCompat      = 0x24  // __be32 s_feature_compat
	jsIncompat    = 0x28  // __be32 s_feature_incompat
	jsRoCompat    = 0x2C  // __be32 s_feature_ro_compat
	jsUUID        = 0x30  // __u8 s_uuid[16]
	jsNrUsers     = 0x40  // __be32 s_nr_users
	jsUsers       = 0x100 // __u8 s_users[16*48]
	jsChecksumTyp = 0x50  // __u8 s_checksum_type (4 = crc32c)
	jsNumFCBlks   = 0x54  // __be32 s_num_fc_blks
	jsChecksum    = 0xFC  // __be32 s_checksum (csum v2/v3)
	jsSize        = 1024

	jCompatChecksum    = 0x1 // v1 commit-block checksums
	jIncompatRevoke    = 0x1
	jIncompat64bit     = 0x2
	jIncompatAsync     = 0x4
	jIncompatCsumV2    = 0x8
	jIncompatCsumV3    = 0x10
	jIncompatFastCommt = 0x20
	jKnownIncompat     = jIncompatRevoke | jIncompat64bit | jIncompatAsync | jIncompatCsumV2 | jIncompatCsumV3

	// Block tag flags.
	jFlagEscape   = 1 // the block began with jMagic; its first word is zeroed in the log
	jFlagSameUUID = 2 // no UUID follows the tag
	jFlagDeleted  = 4
	jFlagLastTag  = 8

	// commit_header: after the header
	jcChksumType = 0x0C // __u8 h_chksum_type
	jcChksumSize = 0x0D // __u8 h_chksum_size
	jcChksum     = 0x10 // __be32 h_chksum[8]
	jcCommitSec  = 0x30 // __be64 h_commit_sec
	jcCommitNsec = 0x38 // __be32 h_commit_nsec

	// jbd2_journal_revoke_header_t
	jrCount = 0x0C // __be32 r_count: bytes used in the block
	jrSize  = 16
)

var be = binary.BigEndian
