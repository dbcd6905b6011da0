package ext4edit

import (
	"bytes"
	"fmt"
)

// passInodes is e2fsck's pass 1: every inode the tables hold in use
// (i_links_count > 0; the reserved ones always), its checksum, mode,
// flags and extra size, its blocks (extent tree or block map, attribute
// block) marked and counted against i_blocks and i_size.
func (c *checker) passInodes() {
	img := c.img
	csums := c.sb.groupCsums()
	isz := uint64(img.inodeSize)
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		n := img.ipg
		if csums {
			if d.flags()&bgInodeUninit != 0 {
				continue
			}
			if u := d.itableUnused(); u <= n {
				n -= u
			}
		}
		if n == 0 {
			continue
		}
		if need := int(uint64(n) * isz); cap(c.table) < need {
			c.table = make([]byte, need)
		}
		table := c.table[:uint64(n)*isz]
		if err := c.readBlocks(d.inodeTable(), table); err != nil {
			c.problem(KindUnreadable, fmt.Sprintf("group %d", g), "", "inode table: %v", err)
			return
		}
		for i := uint32(0); i < n; i++ {
			ino := g*img.ipg + i + 1
			raw := table[uint64(i)*isz : uint64(i+1)*isz]
			c.inode(&inode{ino: ino, b: raw})
		}
	}
}

func (c *checker) inode(in *inode) {
	img := c.img
	ino := in.ino
	reserved := ino < c.sb.firstIno()
	if in.links() == 0 && !reserved {
		// A deleted inode carries its deletion time (e2fsck's "deleted
		// inode has zero dtime").
		if in.mode() != 0 && le32(in.b, iDtime) == 0 {
			c.problem(KindInodeDtime, inodeName(ino), "", "deleted (no links) but its dtime is zero")
		}
		// e2fsck verifies every inode it scans that is not all zeros,
		// deleted ones too ("passes checks, but checksum does not
		// match").
		if c.sb.metadataCsum() && !allZero(in.b) && img.storedInodeCsum(in) != img.inodeCsum(in) {
			c.problem(KindInodeChecksum, inodeName(ino), "", "deleted inode: checksum 0x%08x, computed 0x%08x", img.storedInodeCsum(in), img.inodeCsum(in))
		}
		return
	}
	if ino == badBlocksIno {
		// The bad blocks list: its data blocks are the bad blocks, which
		// it owns (marked in use, never handed out); one that is also a
		// superblock, descriptor, bitmap or inode table is e2fsck's "on
		// the bad block list" problem (a claim of metadata), and its map
		// must stay inside the filesystem.
		c.inodes.add(ino, inodeFacts{})
		// e2fsck's "the bad block inode looks invalid": it has no mode,
		// owner, links, inline data or attribute block.
		if in.mode() != 0 || in.uid() != 0 || in.gid() != 0 || in.links() != 0 || in.flags()&flagInlineData != 0 || in.fileACL() != 0 {
			c.problem(KindInodeMode, inodeName(ino), "", "the bad blocks inode has a mode, owner, links, inline data or an attribute block")
			return
		}
		if in.flags()&flagExtents == 0 {
			c.walkBlockMap(in)
		}
		return
	}
	if reserved && ino != rootIno && ino != journalIno && ino != resizeIno && in.mode() == 0 {
		c.inodes.add(ino, inodeFacts{}) // reserved and empty: in use by definition
		return
	}
	if reserved && in.links() == 0 && ino != rootIno {
		if ino == journalIno && !c.sb.hasCompat(compatHasJournal) {
			c.inodes.add(ino, inodeFacts{})
			return
		}
		if ino == resizeIno && in.mode() == 0 {
			c.inodes.add(ino, inodeFacts{})
			return
		}
	}
	f := c.inodes.add(ino, inodeFacts{mode: in.mode(), links: in.links(), gen: in.generation(), eaInode: in.flags()&flagEAInode != 0, encrypted: in.flags()&flagEncrypt != 0, casefold: in.flags()&flagCasefold != 0})
	c.rep.Inodes++
	c.eaValueRefs = false
	if c.sb.metadataCsum() && img.storedInodeCsum(in) != img.inodeCsum(in) {
		c.problem(KindInodeChecksum, inodeName(ino), "", "checksum 0x%08x, computed 0x%08x", img.storedInodeCsum(in), img.inodeCsum(in))
	}
	if len(in.b) > goodOldInodeSize {
		if x := in.extraIsize(); x > uint32(len(in.b))-goodOldInodeSize || x%4 != 0 {
			c.problem(KindInodeExtra, inodeName(ino), "", "i_extra_isize %d (inode size %d)", x, len(in.b))
		}
	}
	if len(in.b) > goodOldInodeSize {
		c.inodeXattrs(in)
	}
	if in.links() > 0 && le32(in.b, iDtime) != 0 && le32(c.sb.b, sbLastOrphan) == 0 && !reserved {
		c.problem(KindInodeDtime, inodeName(ino), "", "in use (links %d) but deleted at %d", in.links(), le32(in.b, iDtime))
	}
	typ := in.mode() & sIFMT
	switch typ {
	case sIFREG, sIFDIR, sIFLNK, sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
	default:
		if ino == resizeIno && in.mode() == 0 {
			break
		}
		c.problem(KindInodeMode, inodeName(ino), "", "mode 0%o is no file type", in.mode())
		return
	}
	switch {
	case typ == sIFDIR:
		c.rep.Directories++
	case typ == sIFREG:
		c.rep.Files++
	}
	fl := in.flags()
	if fl&flagExtents != 0 && !c.sb.hasIncompat(incompatExtents) {
		c.problem(KindInodeFlags, inodeName(ino), "", "extent-mapped without the extent feature")
		return
	}
	if fl&flagInlineData != 0 && !c.sb.hasIncompat(incompatInlineData) {
		c.problem(KindInodeFlags, inodeName(ino), "", "inline data without the inline_data feature")
		return
	}
	if fl&flagIndex != 0 && typ != sIFDIR {
		c.problem(KindInodeFlags, inodeName(ino), "", "hash-indexed flag on a non-directory")
	}
	var blocks uint64 // fs blocks this inode owns, attribute block included
	if acl := in.fileACL(); acl != 0 && !c.sb.hasCompat(compatExtAttr) {
		c.problem(KindXattrBlock, inodeName(ino), "", "i_file_acl is %d without the ext_attr feature", acl)
	} else if acl != 0 {
		blocks += c.xattrBlock(in, acl)
	}
	var m blockMap
	switch {
	case ino == resizeIno:
		// The reserved descriptor blocks are metadata already; the double
		// indirect block is the inode's own.
		if dind := uint64(le32(in.b, iBlock+13*4)); dind != 0 {
			c.claim(ino, dind, "")
		}
		return
	case fl&flagInlineData != 0, typ == sIFCHR, typ == sIFBLK, typ == sIFIFO, typ == sIFSOCK:
		// No blocks: i_block holds inline data or device numbers.
	case typ == sIFLNK && in.size() < iBlockLen && fl&flagExtents == 0 && in.blocks512(img) == blocks*uint64(img.bs/512):
		// A fast symlink: the target lives in i_block.
	case fl&flagExtents != 0:
		m = c.walkExtents(in)
	default:
		m = c.walkBlockMap(in)
	}
	blocks += m.blocks
	if typ == sIFLNK && fl&flagInlineData == 0 {
		if in.size() == 0 || in.size() >= uint64(img.bs) {
			c.problem(KindSymlink, inodeName(ino), "", "symlink of %d bytes", in.size())
		} else if m.blocks == 0 && in.size() >= iBlockLen {
			c.problem(KindSymlink, inodeName(ino), "", "slow symlink of %d bytes has no block", in.size())
		} else if !m.bad && fl&flagEncrypt == 0 {
			c.symlinkTarget(in, m.blocks == 0)
		}
	}
	if !c.eaValueRefs {
		// (An inode whose attribute values live in EA inodes is charged
		// their blocks too, as e2fsck counts them: not checked.)
		want := blocks * uint64(img.bs/512)
		if got := in.blocks512(img); got != want && !m.bad {
			c.problem(KindInodeBlocks, inodeName(ino), "", "i_blocks is %d, counted %d", got, want)
		}
	}
	if !m.bad && fl&flagInlineData == 0 {
		size, bs := in.size(), uint64(img.bs)
		switch typ {
		case sIFDIR:
			if m.blocks > 0 && (size%bs != 0 || size/bs != uint64(m.last)+1) {
				c.problem(KindInodeSize, inodeName(ino), "", "directory size %d for %d blocks through block %d", size, m.blocks, m.last)
			}
		case sIFREG:
			// fs-verity keeps its Merkle tree in blocks past i_size.
			if m.lastInit >= 0 && size < uint64(m.lastInit)*bs && fl&flagVerity == 0 {
				c.problem(KindInodeSize, inodeName(ino), "", "size %d ends before block %d", size, m.lastInit)
			}
		}
	}
	switch {
	case typ == sIFDIR && fl&flagInlineData != 0:
		f.dir = &dirBlocks{inline: append([]byte(nil), in.b...)}
		c.dirs = append(c.dirs, ino)
	case typ == sIFDIR:
		f.dir = &dirBlocks{lblks: m.lblks, pblks: m.pblks, index: fl&flagIndex != 0}
		c.dirs = append(c.dirs, ino)
	}
}

// blockMap is what walking an inode's blocks found.
type blockMap struct {
	blocks   uint64 // blocks owned: data and tree or indirect blocks
	last     uint32 // last logical block mapped
	lastInit int64  // last initialised logical block, -1 if none
	bad      bool   // the walk met a structural problem (reported)
	// The logical-to-physical map, kept for directories only.
	lblks []uint32
	pblks []uint64
}

// checkMaxExtentDepth bounds the walk of a tree deeper than the kernel's
// maxExtentDepth, which e2fsck still reads.
const checkMaxExtentDepth = 32

func (c *checker) walkExtents(in *inode) blockMap {
	m := blockMap{lastInit: -1}
	keep := in.isDir()
	root := in.iblock()
	c.extentNode(in, root, true, -1, 0, 1<<32, &m, keep)
	return m
}

// extentNode checks one node (the root in i_block, or a block) whose
// entries must lie in [lo, hi) logical blocks; depth -1 takes the
// header's.
func (c *checker) extentNode(in *inode, b []byte, root bool, depth int, lo, hi uint64, m *blockMap, keep bool) {
	if le16(b, ehMagic) != extentMagic {
		c.problem(KindExtentTree, inodeName(in.ino), "", "bad extent header magic 0x%04x", le16(b, ehMagic))
		m.bad = true
		return
	}
	n, mx, d := int(le16(b, ehEntries)), int(le16(b, ehMax)), int(le16(b, ehDepth))
	wantMax := (len(b) - ehSize) / entrySize
	if !root {
		wantMax = (int(c.img.bs) - ehSize) / entrySize
	}
	if d > checkMaxExtentDepth || (depth >= 0 && d != depth) {
		c.problem(KindExtentTree, inodeName(in.ino), "", "extent node depth %d (expected %d)", d, depth)
		m.bad = true
		return
	}
	if root && d > maxExtentDepth {
		// e2fsck walks it and only offers to make it shallower (not an
		// error to e2fsck -n); the kernel refuses such a tree.
		c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("inode %d: extent tree %d levels deep, more than the kernel's %d (e2fsck offers to rebuild it shallower; not counted as a problem)", in.ino, d, maxExtentDepth))
	}
	if mx == 0 || mx > wantMax || n > mx {
		c.problem(KindExtentTree, inodeName(in.ino), "", "extent node holds %d entries of at most %d (room for %d)", n, mx, wantMax)
		m.bad = true
		return
	}
	prevEnd := lo
	for i := 0; i < n; i++ {
		e := b[ehSize+i*entrySize : ehSize+(i+1)*entrySize]
		start := uint64(le32(e, eeBlock))
		if start < prevEnd || start >= hi {
			c.problem(KindExtentTree, inodeName(in.ino), "", "extent entry %d at logical block %d out of order or range [%d, %d)", i, start, prevEnd, hi)
			m.bad = true
			return
		}
		if d > 0 {
			next := hi
			if i+1 < n {
				next = uint64(le32(b[ehSize+(i+1)*entrySize:], eiBlock))
			}
			child := indexPblk(e)
			if !c.claim(in.ino, child, "") {
				m.bad = true
				return
			}
			m.blocks++
			cb := make([]byte, c.img.bs)
			if err := c.img.readBlock(child, cb); err != nil {
				c.problem(KindExtentTree, inodeName(in.ino), "", "extent node %d: %v", child, err)
				m.bad = true
				return
			}
			if c.sb.metadataCsum() && le16(cb, ehMagic) == extentMagic {
				off := ehSize + entrySize*int(le16(cb, ehMax))
				if off+4 <= len(cb) && le32(cb, off) != crc32cRaw(c.img.inodeCsumSeed(in), cb[:off]) {
					c.problem(KindExtentChecksum, inodeName(in.ino), "", "extent block %d checksum mismatch", child)
				}
			}
			if le16(cb, ehMagic) == extentMagic && le16(cb, ehEntries) > 0 {
				// The index names the first logical block its child
				// maps (e2fsck: "logical start does not match").
				if first := uint64(le32(cb[ehSize:], eeBlock)); first != start {
					c.problem(KindExtentTree, inodeName(in.ino), "", "extent index at logical block %d, its node %d starts at %d", start, child, first)
				}
			}
			c.extentNode(in, cb, false, d-1, start, next, m, keep)
			if m.bad {
				return
			}
			prevEnd = start
			continue
		}
		l := uint64(le16(e, eeLen))
		unwritten := l > maxInitLen
		if unwritten {
			l -= maxInitLen
		}
		if l == 0 || start+l > hi {
			c.problem(KindExtentTree, inodeName(in.ino), "", "extent at logical block %d of %d blocks out of range", start, l)
			m.bad = true
			return
		}
		p := extentPblk(e)
		if p+l < p || p < uint64(c.img.firstDataBlock) || p+l > c.img.blocksCount {
			c.problem(KindBlockRange, inodeName(in.ino), "", "extent of blocks %d-%d outside the filesystem", p, p+l-1)
			m.bad = true
			return
		}
		for k := uint64(0); k < l; k++ {
			if !c.claim(in.ino, p+k, "") {
				m.bad = true
				return
			}
		}
		m.blocks += l
		m.last = uint32(start + l - 1)
		if !unwritten {
			m.lastInit = int64(start + l - 1)
		}
		if keep && len(m.lblks) < 1<<20 {
			for k := uint64(0); k < l; k++ {
				m.lblks = append(m.lblks, uint32(start+k))
				m.pblks = append(m.pblks, p+k)
			}
		}
		prevEnd = start + l
	}
}

// walkBlockMap walks i_block's direct, indirect, double and triple
// indirect pointers.
func (c *checker) walkBlockMap(in *inode) blockMap {
	m := blockMap{lastInit: -1}
	keep := in.isDir()
	apb := uint64(c.img.bs / 4)
	ib := in.iblock()
	for i := uint64(0); i < 12; i++ {
		if p := uint64(le32(ib, int(i*4))); p != 0 {
			c.mapLeaf(in, i, p, &m, keep)
		}
	}
	base := uint64(12)
	for level := 1; level <= 3 && !m.bad; level++ {
		p := uint64(le32(ib, (11+level)*4))
		if p != 0 {
			c.indirect(in, p, level, base, &m, keep)
		}
		span := uint64(1)
		for range level {
			span *= apb
		}
		base += span
	}
	return m
}

func (c *checker) mapLeaf(in *inode, lblk, p uint64, m *blockMap, keep bool) {
	if !c.claim(in.ino, p, "") {
		m.bad = true
		return
	}
	m.blocks++
	m.last, m.lastInit = uint32(lblk), int64(lblk)
	if keep && len(m.lblks) < 1<<20 {
		m.lblks = append(m.lblks, uint32(lblk))
		m.pblks = append(m.pblks, p)
	}
}

func (c *checker) indirect(in *inode, p uint64, level int, base uint64, m *blockMap, keep bool) {
	if !c.claim(in.ino, p, "") {
		m.bad = true
		return
	}
	m.blocks++
	b := make([]byte, c.img.bs)
	if err := c.img.readBlock(p, b); err != nil {
		c.problem(KindBlockMap, inodeName(in.ino), "", "indirect block %d: %v", p, err)
		m.bad = true
		return
	}
	apb := uint64(c.img.bs / 4)
	span := uint64(1)
	for range level - 1 {
		span *= apb
	}
	for i := uint64(0); i < apb && !m.bad; i++ {
		q := uint64(le32(b, int(i*4)))
		if q == 0 {
			continue
		}
		if level == 1 {
			c.mapLeaf(in, base+i, q, m, keep)
		} else {
			c.indirect(in, q, level-1, base+i*span, m, keep)
		}
	}
}

// xattrBlock checks in's attribute block (once per block; its users are
// counted for the refcount check) and returns the blocks it adds to in.
func (c *checker) xattrBlock(in *inode, blk uint64) uint64 {
	if x, ok := c.xattr[blk]; ok {
		x.users++
		return 1
	}
	if blk < uint64(c.img.firstDataBlock) || blk >= c.img.blocksCount {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d outside the filesystem", blk)
		return 0
	}
	b := make([]byte, c.img.bs)
	if err := c.img.readBlock(blk, b); err != nil {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d: %v", blk, err)
		return 0
	}
	if le32(b, 0) != 0xEA020000 {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d: bad magic 0x%08x", blk, le32(b, 0))
		return 0
	}
	if !c.claim(in.ino, blk, "") {
		return 0
	}
	x := &xattrFacts{refcount: le32(b, 4), users: 1}
	c.xattr[blk] = x
	if n := le32(b, 8); n != 1 {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d: h_blocks %d", blk, n)
	}
	if c.sb.metadataCsum() && le32(b, xattrHdrChecksum) != c.img.xattrBlockCsum(blk, b) {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d: checksum mismatch", blk)
	}
	if entries, _, err := decodeXattrBlock(b); err != nil {
		c.problem(KindXattrBlock, inodeName(in.ino), "", "attribute block %d: %v", blk, err)
	} else {
		c.xattrEntries(in.ino, fmt.Sprintf("attribute block %d", blk), entries, false)
	}
	return 1
}

// inodeXattrs checks the attributes stored in the inode, after
// i_extra_isize: the entry list, the values' places, the entry hashes.
func (c *checker) inodeXattrs(in *inode) {
	x := in.extraIsize()
	if x > uint32(len(in.b))-goodOldInodeSize || x%4 != 0 {
		return // reported as KindInodeExtra
	}
	entries, err := decodeInodeXattrs(in.b[goodOldInodeSize+x:])
	if err != nil {
		c.problem(KindXattrInode, inodeName(in.ino), "", "%v", err)
		return
	}
	c.xattrEntries(in.ino, "in-inode attribute", entries, true)
}

// xattrEntries checks entry hashes (e2fsck allows 0 in the inode, for
// old kernels) and value inodes without ea_inode.
func (c *checker) xattrEntries(ino uint32, where string, entries []xattrEntry, inInode bool) {
	for _, e := range entries {
		if e.ValueInum != 0 {
			c.eaValueRefs = true
		}
		if e.ValueInum != 0 && !c.sb.hasIncompat(incompatEAInode) {
			c.problem(KindXattrInode, inodeName(ino), "", "%s %q: value in inode %d without ea_inode", where, e.Name, e.ValueInum)
			continue
		}
		if inInode && e.Hash == 0 {
			continue
		}
		if h := xattrEntryHash(e); e.Hash != h && e.Hash != xattrEntryHashSigned(e) {
			c.problem(KindXattrInode, inodeName(ino), "", "%s %q: hash 0x%08x, computed 0x%08x", where, e.Name, e.Hash, h)
		}
	}
}

func (c *checker) checkXattrRefcounts() {
	for blk, x := range c.xattr {
		if x.refcount != x.users {
			c.problem(KindXattrBlock, fmt.Sprintf("block %d", blk), "", "attribute block refcount %d, used by %d inodes", x.refcount, x.users)
		}
	}
}

// symlinkTarget: the target runs exactly to i_size, with no NUL before
// it (e2fsck's "symlink is invalid": it measures the target with
// strnlen over i_block or the data block).
func (c *checker) symlinkTarget(in *inode, fast bool) {
	var buf []byte
	if fast {
		buf = in.iblock()[:iBlockLen]
	} else {
		p, err := c.img.mapBlock(in, 0)
		if err != nil || p == 0 {
			c.problem(KindSymlink, inodeName(in.ino), "", "slow symlink: no readable first block")
			return
		}
		buf = c.blockBuf
		if err := c.img.readBlock(p, buf); err != nil {
			c.problem(KindUnreadable, inodeName(in.ino), "", "symlink block %d: %v", p, err)
			return
		}
	}
	n := bytes.IndexByte(buf, 0)
	if n < 0 {
		n = len(buf)
	}
	if n == len(buf) || uint64(n) != in.size() {
		c.problem(KindSymlink, inodeName(in.ino), "", "target of %d bytes (to the first NUL), i_size %d", n, in.size())
	}
}
