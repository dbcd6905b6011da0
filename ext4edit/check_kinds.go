package ext4edit

import "fmt"

// The problem kinds Check reports. Tests and tools match these strings.
const (
	KindUnreadable        ProblemKind = "unreadable_metadata"   // superblock or descriptors unusable
	KindSuperblock        ProblemKind = "superblock"            // a superblock field out of range
	KindGroupDesc         ProblemKind = "group_descriptor"      // locations, flags, itable_unused
	KindMetadataOverlap   ProblemKind = "metadata_overlap"      // bitmaps or tables overlapping
	KindBitmapChecksum    ProblemKind = "bitmap_checksum"       // block or inode bitmap crc32c
	KindBlockBitmap       ProblemKind = "block_bitmap_differs"  // in use but free, or the reverse
	KindInodeBitmap       ProblemKind = "inode_bitmap_differs"  // likewise for inodes
	KindBitmapPadding     ProblemKind = "bitmap_padding"        // bits past the last group's end
	KindFreeCount         ProblemKind = "free_count"            // a group's free blocks/inodes/dirs
	KindInodeChecksum     ProblemKind = "inode_checksum"        // metadata_csum of an inode
	KindInodeMode         ProblemKind = "inode_mode"            // not a known file type
	KindInodeFlags        ProblemKind = "inode_flags"           // flags the features do not allow
	KindInodeExtra        ProblemKind = "inode_extra_isize"     // i_extra_isize out of range
	KindInodeDtime        ProblemKind = "inode_dtime"           // in use with dtime set
	KindInodeSize         ProblemKind = "inode_size"            // i_size against the blocks
	KindInodeBlocks       ProblemKind = "inode_i_blocks"        // i_blocks against the blocks
	KindExtentTree        ProblemKind = "extent_tree"           // header, order, ranges
	KindExtentChecksum    ProblemKind = "extent_checksum"       // extent block tail
	KindBlockMap          ProblemKind = "block_map"             // indirect pointers out of range
	KindBlockRange        ProblemKind = "block_out_of_range"    // a block past the filesystem
	KindBlockClaimedTwice ProblemKind = "block_claimed_twice"   // by two owners, or metadata
	KindSymlink           ProblemKind = "symlink"               // fast/slow symlink shape
	KindXattrBlock        ProblemKind = "xattr_block"           // header, checksum, refcount
	KindXattrInode        ProblemKind = "xattr_entry"           // an attribute entry: bounds, hash
	KindDirEntry          ProblemKind = "dir_entry"             // rec_len, name_len, name
	KindDirEntryInode     ProblemKind = "dir_entry_inode"       // names an unused or bad inode
	KindDirFileType       ProblemKind = "dir_file_type"         // file type against the inode
	KindDirDots           ProblemKind = "dir_dots"              // '.' and '..'
	KindDirChecksum       ProblemKind = "dir_checksum"          // leaf tail crc32c, missing tail
	KindHtree             ProblemKind = "htree"                 // dx root, limits, counts, tails
	KindUnconnected       ProblemKind = "unconnected_directory" // not reachable from /
	KindDirHardlink       ProblemKind = "directory_hard_link"   // a directory named twice
	KindRoot              ProblemKind = "root"                  // inode 2 not a directory
	KindLinkCount         ProblemKind = "link_count"            // i_links_count against names
	KindUnattached        ProblemKind = "unattached_inode"      // in use, named nowhere
	KindJournal           ProblemKind = "journal"               // journal inode or superblock
	KindOrphan            ProblemKind = "orphan_list"           // s_last_orphan's chain
)

// maxProblems bounds a report: a shredded image gives this many, and a
// count of the rest.
const maxProblems = 1000

func (r *CheckReport) add(p Problem) {
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	} else {
		r.more++
	}
}

func (r *CheckReport) finish() *CheckReport {
	if r.more > 0 {
		r.Problems = append(r.Problems, Problem{Kind: "more", Structure: "filesystem", Message: fmt.Sprintf("%d more problems not listed", r.more)})
	}
	r.Clean = len(r.Problems) == 0
	if r.Problems == nil {
		r.Problems = []Problem{}
	}
	return r
}
