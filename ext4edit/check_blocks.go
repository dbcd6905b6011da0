package ext4edit

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"strings"
)

// checker holds what the passes learn. Memory: two bitmaps of the
// filesystem's blocks (a 1 TiB image of 4 KiB blocks: 32 MiB each) and
// per in-use inode a few words, never per inode of the table.
type checker struct {
	img *Image
	rep *CheckReport
	sb  superblock // as on disk (through the replay overlay)

	used      []byte   // blocks found in use: metadata, then every inode's
	groupUsed []uint32 // how many of each group's blocks are in used

	inodes factsTable             // every inode in use
	xattr  map[uint64]*xattrFacts // attribute blocks by block number
	dirs   []uint32               // directories in use, in inode order

	blockBuf   []byte
	blockNames map[string]bool // the directory block being checked
	// eaValueRefs: the inode being checked keeps an attribute value in
	// an EA inode.
	eaValueRefs bool
	table       []byte // one group's inode table, reused
	lostFound   uint32 // what / names lost+found
	fromBackup  bool   // opened through the group 1 backup (its overlay is not a replay)

	rawIno   uint32 // the inode rawCache holds
	rawCache []byte
}

// factsTable finds an inode's facts: through an index by inode number
// where the filesystem has at most indexedInodes inodes (4 bytes each),
// through a map (a few words per inode in use) beyond.
type factsTable struct {
	all   []inodeFacts
	index []uint32 // 1 + position in all; 0 absent
	m     map[uint32]uint32
}

const indexedInodes = 1 << 23

func newFactsTable(inodes, inUse uint32) factsTable {
	all := make([]inodeFacts, 0, min(inUse, 1<<20))
	if inodes <= indexedInodes {
		return factsTable{all: all, index: make([]uint32, uint64(inodes)+1)}
	}
	return factsTable{all: all, m: map[uint32]uint32{}}
}

// get returns ino's facts, nil when it is not in use.
func (t *factsTable) get(ino uint32) *inodeFacts {
	var i uint32
	if t.index != nil {
		if uint64(ino) < uint64(len(t.index)) {
			i = t.index[ino]
		}
	} else {
		i = t.m[ino]
	}
	if i == 0 {
		return nil
	}
	return &t.all[i-1]
}

// add records ino as in use and returns its facts to fill.
func (t *factsTable) add(ino uint32, f inodeFacts) *inodeFacts {
	f.ino = ino
	t.all = append(t.all, f)
	i := uint32(len(t.all))
	if t.index != nil {
		t.index[ino] = i
	} else {
		t.m[ino] = i
	}
	return &t.all[i-1]
}

// inodeFacts is what pass 1 keeps of an inode in use.
type inodeFacts struct {
	ino   uint32
	mode  uint16
	links uint16
	refs  uint32 // names found by the directory pass, '.' and '..' included
	gen   uint32 // i_generation, which seeds its blocks' checksums
	// The first name found for it (pass 2), to name it in the report.
	nameDir uint32
	name    string
	parent  uint32 // the directory naming it (directories only)
	dotdot  uint32 // what its '..' says (directories only)
	dir     *dirBlocks
	// eaInode: EXT4_EA_INODE_FL, an attribute value's inode, which no
	// directory names.
	eaInode bool
	// encrypted: EXT4_ENCRYPT_FL (fscrypt); casefold: EXT4_CASEFOLD_FL.
	encrypted, casefold bool
}

// dirBlocks maps a directory's logical blocks to physical ones.
type dirBlocks struct {
	lblks  []uint32
	pblks  []uint64
	index  bool   // EXT4_INDEX_FL
	inline []byte // the inode of an inline-data directory (its entries)
}

type xattrFacts struct {
	refcount uint32
	users    uint32
}

func newChecker(img *Image) *checker {
	c := &checker{img: img, rep: &CheckReport{}, inodes: newFactsTable(img.inodesCount, img.inodesCount-min(img.sb.freeInodesCount(), img.inodesCount)), xattr: map[uint64]*xattrFacts{}}
	c.blockBuf = make([]byte, img.bs)
	c.used = zeroedBitmap(int((img.blocksCount+7)/8), c)
	c.groupUsed = make([]uint32, img.groupCount)
	return c
}

func (c *checker) problem(kind ProblemKind, structure, path, format string, args ...any) {
	c.rep.add(Problem{Kind: kind, Structure: structure, Path: path, Message: fmt.Sprintf(format, args...)})
}

func inodeName(ino uint32) string { return fmt.Sprintf("inode %d", ino) }

func (c *checker) run() {
	img := c.img
	c.rep.Blocks = img.blocksCount
	replayed := img.overlay != nil && !c.fromBackup
	c.rep.NeedsRecovery = replayed || img.sb.hasIncompat(incompatRecover)
	if replayed {
		c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("the journal needed recovery: checked as the filesystem reads after replaying it (%d blocks, in memory; the file is unchanged). e2fsck -n checks it without the replay", len(img.overlay)))
	}
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
	c.namePaths()
	c.rep.BlocksUsed = onesCount(c.used)
}

// onesCount is the number of bits set in b.
func onesCount(b []byte) uint64 {
	var n uint64
	for len(b) >= 8 {
		n += uint64(bits.OnesCount64(binary.LittleEndian.Uint64(b)))
		b = b[8:]
	}
	for _, x := range b {
		n += uint64(bits.OnesCount8(x))
	}
	return n
}

// markMetadata marks every group's superblock copy, descriptor blocks,
// reserved descriptor blocks, bitmaps and inode table, reporting tables
// that overlap each other or fixed metadata.
func (c *checker) markMetadata() {
	img := c.img
	if img.firstDataBlock == 1 {
		setBit(c.used, 0) // the boot block of a 1 KiB-block filesystem (no group's)
	}
	for g := uint32(0); g < img.groupCount; g++ {
		img.superAndDescBlocks(g, func(blk uint64) {
			if blk < img.blocksCount && !testBit(c.used, blk) {
				c.use(blk)
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
				c.use(b)
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
		if c.sb.hasRoCompat(roCompatSharedBlocks) {
			// shared_blocks (e2fsck -E unshare_blocks undoes it): a
			// block may have several owners, as e2fsck allows.
			return true
		}
		c.problem(KindBlockClaimedTwice, inodeName(ino), path, "block %d is also filesystem metadata, another inode's or this inode's elsewhere", blk)
		return false
	}
	c.use(blk)
	return true
}

// use marks blk in use and counts it for its group.
func (c *checker) use(blk uint64) {
	setBit(c.used, blk)
	c.groupUsed[c.img.blockGroup(blk)]++
}

// readBlocks reads the blocks from blk on into buf (a whole number of
// blocks): one read, or block by block through the replay overlay.
func (c *checker) readBlocks(blk uint64, buf []byte) error {
	img := c.img
	bs := uint64(img.bs)
	// buf may end inside a block (an inode table read up to its last
	// used inode): that block counts too.
	n := (uint64(len(buf)) + bs - 1) / bs
	if blk+n < blk || blk+n > img.blocksCount {
		return corruptf("blocks %d+%d beyond the end of the filesystem", blk, n)
	}
	if img.overlay == nil {
		_, err := img.dev.ReadAt(buf, img.off+int64(blk)*int64(img.bs))
		return err
	}
	// Through the replay overlay, a block at a time; a partial last
	// block is read whole and cut.
	for i := uint64(0); i < n; i++ {
		dst := buf[i*bs : min((i+1)*bs, uint64(len(buf)))]
		if uint64(len(dst)) < bs {
			dst = c.blockBuf
		}
		if err := img.readBlock(blk+i, dst); err != nil {
			return err
		}
		if uint64(len(buf)) < (i+1)*bs {
			copy(buf[i*bs:], dst)
		}
	}
	return nil
}

// namePaths fills in the path of every problem about an inode that a
// directory names, from the first name pass 2 found for it and its
// parents'.
func (c *checker) namePaths() {
	for i := range c.rep.Problems {
		p := &c.rep.Problems[i]
		var ino uint32
		if p.Path != "" || !strings.HasPrefix(p.Structure, "inode ") {
			continue
		}
		if _, err := fmt.Sscanf(p.Structure, "inode %d", &ino); err == nil {
			p.Path = c.pathOf(ino)
		}
	}
}

// pathOf is ino's path from /, "" where no chain of names reaches it.
func (c *checker) pathOf(ino uint32) string {
	if ino == rootIno {
		return "/"
	}
	var parts []string
	for steps := 0; ino != rootIno; steps++ {
		f := c.inodes.get(ino)
		if f == nil || f.name == "" || steps > 4096 {
			return ""
		}
		parts = append(parts, f.name)
		ino = f.nameDir
	}
	var b strings.Builder
	for i := len(parts) - 1; i >= 0; i-- {
		b.WriteString("/")
		b.WriteString(parts[i])
	}
	return b.String()
}
