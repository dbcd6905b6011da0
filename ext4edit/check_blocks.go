package ext4edit

import "fmt"

// checker holds what the passes learn. Memory: two bitmaps of the
// filesystem's blocks (a 1 TiB image of 4 KiB blocks: 32 MiB each) and
// per in-use inode a few words, never per inode of the table.
type checker struct {
	img *Image
	rep *CheckReport
	sb  superblock // as on disk (through the replay overlay)

	used    []byte // blocks found in use: metadata, then every inode's
	claimed []byte // blocks an inode claimed (to tell data from metadata)

	inodes map[uint32]*inodeFacts // every inode in use
	xattr  map[uint64]*xattrFacts // attribute blocks by block number
	dirs   []uint32               // directories in use, in inode order

	blockBuf  []byte
	lostFound uint32 // what / names lost+found

	rawIno   uint32 // the inode rawCache holds
	rawCache []byte
}

// inodeFacts is what pass 1 keeps of an inode in use.
type inodeFacts struct {
	mode   uint16
	links  uint16
	refs   uint32 // names found by the directory pass, '.' and '..' included
	parent uint32 // the directory naming it (directories only)
	dotdot uint32 // what its '..' says (directories only)
	dir    *dirBlocks
}

// dirBlocks maps a directory's logical blocks to physical ones.
type dirBlocks struct {
	lblks []uint32
	pblks []uint64
	index bool // EXT4_INDEX_FL
}

type xattrFacts struct {
	refcount uint32
	users    uint32
}

func newChecker(img *Image) *checker {
	c := &checker{img: img, rep: &CheckReport{}, inodes: map[uint32]*inodeFacts{}, xattr: map[uint64]*xattrFacts{}}
	c.blockBuf = make([]byte, img.bs)
	n := (img.blocksCount + 7) / 8
	c.used = make([]byte, n)
	c.claimed = make([]byte, n)
	return c
}

func (c *checker) problem(kind ProblemKind, structure, path, format string, args ...any) {
	c.rep.add(Problem{Kind: kind, Structure: structure, Path: path, Message: fmt.Sprintf(format, args...)})
}

func inodeName(ino uint32) string { return fmt.Sprintf("inode %d", ino) }

func (c *checker) run() {
	img := c.img
	c.rep.Blocks = img.blocksCount
	c.rep.NeedsRecovery = img.overlay != nil || img.sb.hasIncompat(incompatRecover)
	if !c.checkSuper() {
		return
	}
	c.markMetadata()
	c.passInodes()
	c.checkXattrRefcounts()
	c.passDirs()
	c.passConnectivity()
	c.passLinkCounts()
	c.passBitmaps()
	c.checkJournal()
	c.noteNotChecked()
	for i := range c.used {
		c.rep.BlocksUsed += uint64(popcount8(c.used[i]))
	}
}

func popcount8(b byte) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

// markMetadata marks every group's superblock copy, descriptor blocks,
// reserved descriptor blocks, bitmaps and inode table, reporting tables
// that overlap each other or fixed metadata.
func (c *checker) markMetadata() {
	img := c.img
	if img.firstDataBlock == 1 {
		setBit(c.used, 0) // the boot block of a 1 KiB-block filesystem
	}
	for g := uint32(0); g < img.groupCount; g++ {
		img.superAndDescBlocks(g, func(blk uint64) {
			if blk < img.blocksCount {
				setBit(c.used, blk)
			}
		})
	}
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		where := fmt.Sprintf("group %d", g)
		mark := func(what string, blk, n uint64) {
			for b := blk; b < blk+n && b < img.blocksCount; b++ {
				if testBit(c.used, b) {
					c.problem(KindMetadataOverlap, where, "", "%s block %d is also other metadata", what, b)
					return
				}
				setBit(c.used, b)
			}
		}
		mark("block bitmap", d.blockBitmap(), 1)
		mark("inode bitmap", d.inodeBitmap(), 1)
		mark("inode table", d.inodeTable(), uint64(img.itableBlocks))
		if !img.incompat.has(incompatFlexBG) {
			first, end := img.groupFirstBlock(g), img.groupFirstBlock(g)+uint64(img.groupBlocks(g))
			for _, b := range []uint64{d.blockBitmap(), d.inodeBitmap(), d.inodeTable(), d.inodeTable() + uint64(img.itableBlocks) - 1} {
				if b < first || b >= end {
					c.problem(KindGroupDesc, where, "", "bitmap or inode table block %d outside the group (blocks %d-%d) without flex_bg", b, first, end-1)
					break
				}
			}
		}
	}
}

// claim marks blk as used by inode ino; false (and a problem) when it lies
// outside the filesystem or something else has it.
func (c *checker) claim(ino uint32, blk uint64, path string) bool {
	img := c.img
	if blk < uint64(img.firstDataBlock) || blk >= img.blocksCount {
		c.problem(KindBlockRange, inodeName(ino), path, "block %d outside the filesystem (%d-%d)", blk, img.firstDataBlock, img.blocksCount-1)
		return false
	}
	if testBit(c.used, blk) {
		what := "filesystem metadata"
		if testBit(c.claimed, blk) {
			what = "another inode or block of this one"
		}
		c.problem(KindBlockClaimedTwice, inodeName(ino), path, "block %d is also %s", blk, what)
		return false
	}
	setBit(c.used, blk)
	setBit(c.claimed, blk)
	return true
}
