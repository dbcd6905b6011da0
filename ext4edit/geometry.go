package ext4edit

import (
	"fmt"
	"io/fs"
	"math"
)

// geometry is the fixed shape of a filesystem: sizes, counts and the
// layout-deciding features, derived once from the superblock and checked
// so that every product and offset below fits its type. The editor and
// mkfs both lay out through it, as resize and a checker will.
//
// Field names are short because every block computation uses them (Image
// embeds a geometry). The feature sets are those read at derivation:
// the layout features (sparse_super, sparse_super2, meta_bg, 64bit,
// flex_bg) never change under an open filesystem; the live superblock
// (Image.sb) is authoritative for the ones an edit turns on or off
// (large_file, needs_recovery, has_journal).
type geometry struct {
	bs             uint32 // block size: 1024 << s_log_block_size
	blocksCount    uint64 // s_blocks_count (lo, and hi with 64bit)
	firstDataBlock uint32 // s_first_data_block: 1 with 1 KiB blocks, else 0
	bpg            uint32 // s_blocks_per_group
	ipg            uint32 // s_inodes_per_group
	inodesCount    uint32 // s_inodes_count = groupCount * ipg
	groupCount     uint32
	inodeSize      uint32 // s_inode_size (128 on revision 0)
	descSize       uint32 // group descriptor size: 32, or s_desc_size with 64bit
	descPerBlock   uint32
	gdtBlocks      uint32 // blocks holding the descriptor table
	reservedGdt    uint32 // s_reserved_gdt_blocks (resize_inode)
	itableBlocks   uint32 // inode table blocks per group
	firstMetaBg    uint32 // s_first_meta_bg (meta_bg)
	backupBgs      [2]uint32
	csumSeed       uint32 // what metadata_csum checksums start from

	// The features as the superblock had them when the geometry was
	// derived: the layout ones (sparse_super, sparse_super2, meta_bg,
	// 64bit) never change in a session. Features an edit can flip
	// (has_journal, large_file, needs_recovery) are read from the
	// superblock, never from here.
	compat   compatFeatures
	incompat incompatFeatures
	roCompat roCompatFeatures
}

// newGeometry derives and checks the geometry sb describes. A value out
// of range is ErrCorrupt, never a wrapped or divided-by-zero result.
func newGeometry(sb superblock) (geometry, error) {
	g := geometry{
		blocksCount:    sb.blocksCount(),
		firstDataBlock: sb.firstDataBlock(),
		bpg:            sb.blocksPerGroup(),
		ipg:            sb.inodesPerGroup(),
		inodesCount:    sb.inodesCount(),
		inodeSize:      sb.inodeSize(),
		descSize:       sb.descSize(),
		reservedGdt:    uint32(le16(sb.b, sbReservedGdtBlocks)),
		firstMetaBg:    le32(sb.b, sbFirstMetaBg),
		backupBgs:      [2]uint32{le32(sb.b, sbBackupBgs), le32(sb.b, sbBackupBgs+4)},
		compat:         sb.compat(),
		incompat:       sb.incompat(),
		roCompat:       sb.roCompat(),
	}
	logBS := le32(sb.b, sbLogBlockSize)
	if logBS > 6 {
		return g, corruptf("s_log_block_size %d out of range", logBS)
	}
	g.bs = 1024 << logBS
	switch {
	case g.bs == 1024 && g.firstDataBlock != 1, g.bs > 1024 && g.firstDataBlock != 0:
		return g, corruptf("s_first_data_block %d for %d-byte blocks", g.firstDataBlock, g.bs)
	case g.bpg == 0 || g.bpg > 8*g.bs || g.bpg%8 != 0:
		return g, corruptf("s_blocks_per_group %d", g.bpg)
	case g.ipg == 0 || g.ipg > 8*g.bs || g.ipg%8 != 0:
		return g, corruptf("s_inodes_per_group %d", g.ipg)
	case g.inodeSize < 128 || g.inodeSize > g.bs || g.inodeSize&(g.inodeSize-1) != 0:
		return g, corruptf("s_inode_size %d", g.inodeSize)
	case g.descSize < 32 || g.descSize > 1024 || g.descSize&(g.descSize-1) != 0 ||
		(g.incompat.has(incompat64bit) && g.descSize < 64):
		return g, corruptf("s_desc_size %d", g.descSize)
	case g.blocksCount <= uint64(g.firstDataBlock)+1:
		return g, corruptf("s_blocks_count %d", g.blocksCount)
	case g.blocksCount > uint64(1)<<48:
		return g, corruptf("s_blocks_count %d beyond 2^48", g.blocksCount)
	case g.blocksCount > math.MaxInt64/uint64(g.bs):
		// Byte offsets into the image are int64.
		return g, corruptf("s_blocks_count %d of %d bytes beyond 2^63 bytes", g.blocksCount, g.bs)
	}
	groups := groupsFor(g.blocksCount, g.firstDataBlock, g.bpg)
	if groups > 1<<32-1 || uint64(g.ipg)*groups != uint64(g.inodesCount) {
		return g, corruptf("%d groups of %d inodes do not make s_inodes_count %d", groups, g.ipg, g.inodesCount)
	}
	g.groupCount = uint32(groups)
	g.descPerBlock = g.bs / g.descSize
	g.gdtBlocks = gdtBlocksFor(g.groupCount, g.descSize, g.bs)
	g.itableBlocks = itableBlocksFor(g.ipg, g.inodeSize, g.bs)
	if sb.firstIno() < 11 || sb.firstIno() >= g.inodesCount {
		return g, corruptf("s_first_ino %d", sb.firstIno())
	}
	g.csumSeed = sb.csumSeed()
	return g, nil
}

// groupsFor is how many groups of bpg blocks cover blocks blocks from
// firstData on (the last may be short).
func groupsFor(blocks uint64, firstData, bpg uint32) uint64 {
	return (blocks - uint64(firstData) + uint64(bpg) - 1) / uint64(bpg)
}

// gdtBlocksFor is how many blocks a table of groups descriptors takes.
func gdtBlocksFor(groups, descSize, bs uint32) uint32 {
	return uint32((uint64(groups)*uint64(descSize) + uint64(bs) - 1) / uint64(bs))
}

// itableBlocksFor is how many blocks a group's inode table takes.
func itableBlocksFor(ipg, inodeSize, bs uint32) uint32 {
	return uint32((uint64(ipg)*uint64(inodeSize) + uint64(bs) - 1) / uint64(bs))
}

// bytes is the filesystem's size in bytes (fits an int64: newGeometry).
func (g *geometry) bytes() int64 { return int64(g.blocksCount) * int64(g.bs) }

// inFS reports whether blk is a block of the filesystem (not below
// s_first_data_block, not past the end).
func (g *geometry) inFS(blk uint64) bool {
	return blk >= uint64(g.firstDataBlock) && blk < g.blocksCount
}

// runInFS reports whether the n blocks from start all lie in the
// filesystem (checked: no sum of on-disk values wraps).
func (g *geometry) runInFS(start, n uint64) bool {
	return start >= uint64(g.firstDataBlock) && start <= g.blocksCount && n <= g.blocksCount-start
}

// blockGroup is the group holding block blk (blk >= firstDataBlock).
func (g *geometry) blockGroup(blk uint64) uint32 {
	return uint32((blk - uint64(g.firstDataBlock)) / uint64(g.bpg))
}

// groupOfInode is the group of inode ino (ino >= 1).
func (g *geometry) groupOfInode(ino uint32) uint32 { return (ino - 1) / g.ipg }

// inodeGroup is the group of inode ino (ino >= 1) and its index there.
func (g *geometry) inodeGroup(ino uint32) (group, index uint32) {
	return (ino - 1) / g.ipg, (ino - 1) % g.ipg
}

// groupFirstBlock is the first block of group n.
func (g *geometry) groupFirstBlock(n uint32) uint64 {
	return uint64(g.firstDataBlock) + uint64(n)*uint64(g.bpg)
}

// groupBlocks is the number of blocks in group n (the last may be short).
func (g *geometry) groupBlocks(n uint32) uint32 {
	if n == g.groupCount-1 {
		return uint32(g.blocksCount - g.groupFirstBlock(n))
	}
	return g.bpg
}

// isPowerOf reports whether n is a power of base (1 counts: base^0).
func isPowerOf(n, base uint32) bool {
	for n > 1 {
		if n%base != 0 {
			return false
		}
		n /= base
	}
	return n == 1
}

// hasSuper reports whether group n holds a superblock copy (and, outside
// meta_bg, a copy of the descriptor table): every group, or with
// sparse_super groups 0, 1 and powers of 3, 5 and 7, or with
// sparse_super2 group 0 and the two s_backup_bgs.
func (g *geometry) hasSuper(n uint32) bool {
	if n == 0 {
		return true
	}
	if g.compat.has(compatSparseSuper2) {
		return n == g.backupBgs[0] || n == g.backupBgs[1]
	}
	if !g.roCompat.has(roCompatSparseSuper) {
		return true
	}
	return isPowerOf(n, 3) || isPowerOf(n, 5) || isPowerOf(n, 7)
}

// metaBg reports whether descriptor-table block i is laid out the meta_bg
// way (in the first group of its meta group) rather than after the
// superblock.
func (g *geometry) metaBg(i uint32) bool {
	return g.incompat.has(incompatMetaBG) && i >= g.firstMetaBg
}

// descBlock is the block holding descriptor-table block i (i = group /
// descriptors per block), as ext2fs_descriptor_block_loc2 finds it.
func (g *geometry) descBlock(i uint32) uint64 {
	if !g.metaBg(i) {
		return uint64(g.firstDataBlock) + 1 + uint64(i)
	}
	n := i * g.descPerBlock
	blk := g.groupFirstBlock(n)
	if g.hasSuper(n) {
		blk++
	}
	return blk
}

// superAndDescBlocks calls fn for every block of group n that holds a
// superblock copy, descriptor blocks (primary, backup or meta_bg copies)
// or reserved GDT blocks: what ext2fs_super_and_bgd_loc2 counts. A backup
// table sits right after its group's superblock copy; a meta_bg's
// descriptor block is in its first, second and last group.
func (g *geometry) superAndDescBlocks(n uint32, fn func(blk uint64)) {
	first := g.groupFirstBlock(n)
	if first == 0 && g.bs == 1024 {
		first = 1
	}
	hasSuper := g.hasSuper(n)
	if hasSuper {
		fn(first)
	}
	metaBgSize := g.descPerBlock
	if !g.metaBg(n / metaBgSize) {
		if hasSuper {
			old := uint64(g.gdtBlocks) + uint64(g.reservedGdt)
			if g.incompat.has(incompatMetaBG) {
				old = uint64(g.firstMetaBg)
			}
			for i := uint64(0); i < old; i++ {
				fn(first + 1 + i)
			}
		}
	} else if r := n % metaBgSize; r == 0 || r == 1 || r == metaBgSize-1 {
		off := uint64(0)
		if hasSuper {
			off = 1
		}
		fn(first + off)
	}
}

// backupDescBlock is where the descriptor table copy of group n (which
// must hold a superblock backup, outside meta_bg) starts: right after the
// backup superblock's block.
func (g *geometry) backupDescBlock(n uint32) uint64 { return g.groupFirstBlock(n) + 1 }

// superblockBlock is the block holding the primary superblock and the
// superblock's offset inside it.
func (g *geometry) superblockBlock() (uint64, int) {
	if g.bs == 1024 {
		return 1, 0
	}
	return 0, superblockOffset
}

// metaEnd is the first block of group n past its superblock copy and
// descriptor blocks (superAndDescBlocks, which lie contiguously from the
// group's start): where the group's own free space begins.
func (g *geometry) metaEnd(n uint32) uint64 {
	end := g.groupFirstBlock(n)
	g.superAndDescBlocks(n, func(blk uint64) { end = max(end, blk+1) })
	return end
}

// groupMetaLoc is where one group's block bitmap, inode bitmap and inode
// table lie.
type groupMetaLoc struct{ blockBitmap, inodeBitmap, inodeTable uint64 }

// layoutGroupMeta places the bitmaps and inode tables of groups [from,
// to) the way mke2fs lays out a flex group: in units of flex groups
// aligned to multiples of flex (a first, partial unit when from is not
// aligned), each unit's block bitmaps, then inode bitmaps, then inode
// tables, contiguous from the free space of the unit's first group,
// stepping over the superblock copies and descriptor blocks of the
// groups the run reaches. flex 1 puts each group's own metadata at the
// start of its free space (no flex_bg). It returns the locations, index
// i for group from+i.
func (g *geometry) layoutGroupMeta(from, to, flex uint32) ([]groupMetaLoc, error) {
	if flex == 0 {
		flex = 1
	}
	locs := make([]groupMetaLoc, to-from)
	for leader := from; leader < to; {
		unitEnd := uint32(min(uint64(to), (uint64(leader)/uint64(flex)+1)*uint64(flex)))
		cur := g.metaEnd(leader)
		take := func(cnt uint64) (uint64, error) {
			for {
				if cur >= g.blocksCount {
					return 0, fmt.Errorf("%w: no room for group metadata", fs.ErrInvalid)
				}
				grp := g.blockGroup(cur)
				if e := g.metaEnd(grp); cur < e {
					cur = e
					continue
				}
				// The run must not cross into a group whose start holds
				// a superblock copy or descriptor blocks.
				end := cur + cnt
				if grp+1 < g.groupCount {
					next := g.groupFirstBlock(grp + 1)
					if e := g.metaEnd(grp + 1); end > next && e > next {
						cur = e
						continue
					}
				}
				if end > g.blocksCount {
					return 0, fmt.Errorf("%w: no room for group metadata", fs.ErrInvalid)
				}
				s := cur
				cur = end
				return s, nil
			}
		}
		var err error
		for i := leader; i < unitEnd && err == nil; i++ {
			locs[i-from].blockBitmap, err = take(1)
		}
		for i := leader; i < unitEnd && err == nil; i++ {
			locs[i-from].inodeBitmap, err = take(1)
		}
		for i := leader; i < unitEnd && err == nil; i++ {
			locs[i-from].inodeTable, err = take(uint64(g.itableBlocks))
		}
		if err != nil {
			return nil, err
		}
		leader = unitEnd
	}
	return locs, nil
}
