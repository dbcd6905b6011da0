package ext4edit

import (
	"fmt"
	"strings"
)

// The three feature sets of the superblock (s_feature_compat,
// s_feature_incompat, s_feature_ro_compat), typed so a bit of one set
// cannot be tested against another.
type (
	compatFeatures   uint32
	incompatFeatures uint32
	roCompatFeatures uint32
)

const (
	compatDirPrealloc   compatFeatures = 0x1
	compatImagicInodes  compatFeatures = 0x2
	compatHasJournal    compatFeatures = 0x4
	compatExtAttr       compatFeatures = 0x8
	compatResizeInode   compatFeatures = 0x10
	compatDirIndex      compatFeatures = 0x20
	compatLazyBG        compatFeatures = 0x40
	compatExcludeBitmap compatFeatures = 0x100
	compatSparseSuper2  compatFeatures = 0x200
	compatFastCommit    compatFeatures = 0x400
	compatStableInodes  compatFeatures = 0x800
	compatOrphanFile    compatFeatures = 0x1000
)

const (
	incompatCompression incompatFeatures = 0x1
	incompatFiletype    incompatFeatures = 0x2
	incompatRecover     incompatFeatures = 0x4
	incompatJournalDev  incompatFeatures = 0x8
	incompatMetaBG      incompatFeatures = 0x10
	incompatExtents     incompatFeatures = 0x40
	incompat64bit       incompatFeatures = 0x80
	incompatMMP         incompatFeatures = 0x100
	incompatFlexBG      incompatFeatures = 0x200
	incompatEAInode     incompatFeatures = 0x400
	incompatDirData     incompatFeatures = 0x1000
	incompatCsumSeed    incompatFeatures = 0x2000
	incompatLargedir    incompatFeatures = 0x4000
	incompatInlineData  incompatFeatures = 0x8000
	incompatEncrypt     incompatFeatures = 0x10000
	incompatCasefold    incompatFeatures = 0x20000
)

const (
	roCompatSparseSuper   roCompatFeatures = 0x1
	roCompatLargeFile     roCompatFeatures = 0x2
	roCompatBtreeDir      roCompatFeatures = 0x4
	roCompatHugeFile      roCompatFeatures = 0x8
	roCompatGdtCsum       roCompatFeatures = 0x10
	roCompatDirNlink      roCompatFeatures = 0x20
	roCompatExtraIsize    roCompatFeatures = 0x40
	roCompatHasSnapshot   roCompatFeatures = 0x80
	roCompatQuota         roCompatFeatures = 0x100
	roCompatBigalloc      roCompatFeatures = 0x200
	roCompatMetadataCsum  roCompatFeatures = 0x400
	roCompatReplica       roCompatFeatures = 0x800
	roCompatReadonly      roCompatFeatures = 0x1000
	roCompatProject       roCompatFeatures = 0x2000
	roCompatSharedBlocks  roCompatFeatures = 0x4000
	roCompatVerity        roCompatFeatures = 0x8000
	roCompatOrphanPresent roCompatFeatures = 0x10000
)

// e2fsprogs' names for the bits, used in refusals.
var (
	compatNames = map[uint32]string{
		0x1: "dir_prealloc", 0x2: "imagic_inodes", 0x4: "has_journal", 0x8: "ext_attr",
		0x10: "resize_inode", 0x20: "dir_index", 0x40: "lazy_bg", 0x100: "snapshot_bitmap",
		0x200: "sparse_super2", 0x400: "fast_commit", 0x800: "stable_inodes", 0x1000: "orphan_file",
	}
	incompatNames = map[uint32]string{
		0x1: "compression", 0x2: "filetype", 0x4: "needs_recovery", 0x8: "journal_dev",
		0x10: "meta_bg", 0x40: "extent", 0x80: "64bit", 0x100: "mmp", 0x200: "flex_bg",
		0x400: "ea_inode", 0x1000: "dirdata", 0x2000: "metadata_csum_seed", 0x4000: "large_dir",
		0x8000: "inline_data", 0x10000: "encrypt", 0x20000: "casefold",
	}
	roCompatNames = map[uint32]string{
		0x1: "sparse_super", 0x2: "large_file", 0x4: "btree_dir", 0x8: "huge_file",
		0x10: "uninit_bg", 0x20: "dir_nlink", 0x40: "extra_isize", 0x80: "snapshot",
		0x100: "quota", 0x200: "bigalloc", 0x400: "metadata_csum", 0x800: "replica",
		0x1000: "read-only", 0x2000: "project", 0x4000: "shared_blocks", 0x8000: "verity",
		0x10000: "orphan_present",
	}
)

func (f compatFeatures) has(m compatFeatures) bool     { return f&m != 0 }
func (f incompatFeatures) has(m incompatFeatures) bool { return f&m != 0 }
func (f roCompatFeatures) has(m roCompatFeatures) bool { return f&m != 0 }

// String lists the set's bits by e2fsprogs' names, comma-separated.
func (f compatFeatures) String() string   { return featureList(uint32(f), compatNames) }
func (f incompatFeatures) String() string { return featureList(uint32(f), incompatNames) }
func (f roCompatFeatures) String() string { return featureList(uint32(f), roCompatNames) }

// featureList names the bits of mask, for messages.
func featureList(mask uint32, names map[uint32]string) string {
	var out []string
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if mask&bit == 0 {
			continue
		}
		if n, ok := names[bit]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("unknown(0x%x)", bit))
		}
	}
	return strings.Join(out, ",")
}
