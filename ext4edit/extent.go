package ext4edit

import "fmt"

// fileExtent maps len logical blocks from lblk to pblk.
type fileExtent struct {
	lblk   uint64
	pblk   uint64
	len    uint64
	uninit bool // unwritten: reads as zeros
}

// eeLen is e's ee_len: unwritten extents count from EXT_INIT_MAX_LEN up.
func (e fileExtent) eeLen() uint16 {
	if e.uninit {
		return uint16(e.len + maxInitLen)
	}
	return uint16(e.len)
}

func (img *Image) extentBlockMax() int { return (int(img.bs) - ehSize) / entrySize }

// extentWhere names an extent tree node in messages, formatted only when
// an error needs it: inode ino's root, or its block blk.
type extentWhere struct {
	ino  uint32
	blk  uint64
	root bool
}

func (w extentWhere) String() string {
	if w.root {
		return fmt.Sprintf("inode %d extent root", w.ino)
	}
	return fmt.Sprintf("inode %d extent block %d", w.ino, w.blk)
}

// checkHeader validates a node header; capacity is how many entries the
// node can physically hold.
func checkExtentHeader(b []byte, capacity int, depth int, where extentWhere) error {
	if le16(b, ehMagic) != extentMagic {
		return corruptf("%s: bad extent header magic 0x%04x", where, le16(b, ehMagic))
	}
	n, m := int(le16(b, ehEntries)), int(le16(b, ehMax))
	if m > capacity || n > m {
		return corruptf("%s: extent header entries %d max %d (room for %d)", where, n, m, capacity)
	}
	if depth >= 0 && int(le16(b, ehDepth)) != depth {
		return corruptf("%s: extent depth %d, expected %d", where, le16(b, ehDepth), depth)
	}
	if le16(b, ehDepth) > maxExtentDepth {
		return corruptf("%s: extent depth %d too deep", where, le16(b, ehDepth))
	}
	return nil
}

// extentCsumOK / setExtentCsum handle the tail after eh_max entries.
func (img *Image) extentTailOff(b []byte) int { return ehSize + entrySize*int(le16(b, ehMax)) }

func (img *Image) setExtentCsum(in *inode, b []byte) {
	if !img.sb.metadataCsum() {
		return
	}
	off := img.extentTailOff(b)
	put32(b, off, crc32cRaw(img.inodeCsumSeed(in), b[:off]))
}

// readExtentNode reads a non-root tree block and validates it.
func (img *Image) readExtentNode(in *inode, blk uint64, depth int) ([]byte, error) {
	if !img.inFS(blk) {
		return nil, corruptf("inode %d extent node at block %d outside the filesystem", in.ino, blk)
	}
	b, err := img.cache.get(blk)
	if err != nil {
		return nil, err
	}
	where := extentWhere{ino: in.ino, blk: blk}
	if err := checkExtentHeader(b, img.extentBlockMax(), depth, where); err != nil {
		return nil, err
	}
	if img.sb.metadataCsum() {
		off := img.extentTailOff(b)
		if off+4 > len(b) {
			return nil, corruptf("%s: no room for the checksum tail", where)
		}
		if le32(b, off) != crc32cRaw(img.inodeCsumSeed(in), b[:off]) {
			return nil, corruptf("%s: checksum mismatch", where)
		}
	}
	return b, nil
}

// extentWalk visits every leaf extent in logical order and every tree
// block (for freeing). Logical order and ranges are checked.
func (img *Image) extentWalk(in *inode, leaf func(fileExtent) error, node func(blk uint64)) error {
	root := in.iblock()
	if err := checkExtentHeader(root, rootEntries, -1, extentWhere{ino: in.ino, root: true}); err != nil {
		return err
	}
	var next uint64 // logical blocks must increase
	var walk func(b []byte, depth int, visited *int) error
	walk = func(b []byte, depth int, visited *int) error {
		n := int(le16(b, ehEntries))
		for i := 0; i < n; i++ {
			e := b[ehSize+i*entrySize:]
			if depth == 0 {
				l := uint64(le16(e, eeLen))
				un := false
				if l > maxInitLen {
					l -= maxInitLen
					un = true
				}
				fe := fileExtent{lblk: uint64(le32(e, eeBlock)), pblk: extentPblk(e), len: l, uninit: un}
				if l == 0 || fe.lblk < next || fe.pblk < uint64(img.firstDataBlock) ||
					fe.pblk+l > img.blocksCount || fe.lblk+l > 1<<32 {
					return corruptf("inode %d extent %d+%d->%d out of order or range", in.ino, fe.lblk, l, fe.pblk)
				}
				next = fe.lblk + l
				if err := leaf(fe); err != nil {
					return err
				}
				continue
			}
			*visited++
			if *visited > int(img.blocksCount) {
				return corruptf("inode %d extent tree loops", in.ino)
			}
			child := indexPblk(e)
			cb, err := img.readExtentNode(in, child, depth-1)
			if err != nil {
				return err
			}
			if node != nil {
				node(child)
			}
			// The cache may evict cb while we recurse; keep our own copy.
			if err := walk(append([]byte(nil), cb...), depth-1, visited); err != nil {
				return err
			}
		}
		return nil
	}
	visited := 0
	return walk(root, int(le16(root, ehDepth)), &visited)
}

// extentMap finds logical block lblk (0 = hole).
func (img *Image) extentMap(in *inode, lblk uint64) (uint64, error) {
	b := in.iblock()
	if err := checkExtentHeader(b, rootEntries, -1, extentWhere{ino: in.ino, root: true}); err != nil {
		return 0, err
	}
	for depth := int(le16(b, ehDepth)); ; depth-- {
		n := int(le16(b, ehEntries))
		if depth == 0 {
			for i := 0; i < n; i++ {
				e := b[ehSize+i*entrySize:]
				start := uint64(le32(e, eeBlock))
				l := uint64(le16(e, eeLen))
				if l > maxInitLen {
					if lblk >= start && lblk < start+l-maxInitLen {
						return 0, nil // unwritten reads as a hole
					}
					continue
				}
				if lblk >= start && lblk < start+l {
					p := extentPblk(e) + lblk - start
					if p >= img.blocksCount {
						return 0, corruptf("inode %d maps block %d past the end", in.ino, p)
					}
					return p, nil
				}
			}
			return 0, nil
		}
		// Last index entry whose ei_block <= lblk.
		idx := -1
		for i := 0; i < n; i++ {
			if uint64(le32(b[ehSize+i*entrySize:], eiBlock)) <= lblk {
				idx = i
			} else {
				break
			}
		}
		if idx < 0 {
			return 0, nil
		}
		nb, err := img.readExtentNode(in, indexPblk(b[ehSize+idx*entrySize:]), depth-1)
		if err != nil {
			return 0, err
		}
		b = nb
	}
}

// extentTreeBlocks is how many tree blocks a fresh tree of n extents needs.
func (img *Image) extentTreeBlocks(n uint64) uint64 {
	if n <= rootEntries {
		return 0
	}
	per := uint64(img.extentBlockMax())
	var total uint64
	for n > rootEntries {
		n = (n + per - 1) / per
		total += n
	}
	return total
}

// splitExtents cuts runs into extents no longer than EXT_INIT_MAX_LEN
// (EXT_UNINIT_MAX_LEN, one less, for unwritten ones).
func splitExtents(runs []fileExtent) []fileExtent {
	var out []fileExtent
	for _, r := range runs {
		limit := uint64(maxInitLen)
		if r.uninit {
			limit--
		}
		for r.len > 0 {
			n := min(r.len, limit)
			out = append(out, fileExtent{lblk: r.lblk, pblk: r.pblk, len: n, uninit: r.uninit})
			r.lblk += n
			r.pblk += n
			r.len -= n
		}
	}
	return out
}

// extentBuild writes a fresh tree for exts into an inode that maps
// nothing yet, allocating the tree blocks near goal.
func (img *Image) extentBuild(in *inode, exts []fileExtent, goal uint64) error {
	exts = splitExtents(exts)
	root := in.iblock()
	clear(root)
	put16(root, ehMagic, extentMagic)
	put16(root, ehMax, rootEntries)
	in.setFlags(in.flags() | flagExtents)
	if len(exts) <= rootEntries {
		for i, e := range exts {
			setExtent(root[ehSize+i*entrySize:], uint32(e.lblk), e.eeLen(), e.pblk)
		}
		put16(root, ehEntries, uint16(len(exts)))
		return nil
	}
	need := img.extentTreeBlocks(uint64(len(exts)))
	runs, err := img.allocBlocks(goal, need)
	if err != nil {
		return err
	}
	var blocks []uint64
	for _, r := range runs {
		for b := r.start; b < r.start+r.len; b++ {
			blocks = append(blocks, b)
		}
	}
	per := img.extentBlockMax()
	// level holds (first lblk, block) of the nodes just built.
	type child struct {
		lblk uint64
		blk  uint64
	}
	var level []child
	depth := 0
	for i := 0; i < len(exts); i += per {
		blk := blocks[0]
		blocks = blocks[1:]
		b := img.cache.fresh(blk, kindMeta)
		chunk := exts[i:min(i+per, len(exts))]
		put16(b, ehMagic, extentMagic)
		put16(b, ehEntries, uint16(len(chunk)))
		put16(b, ehMax, uint16(per))
		for j, e := range chunk {
			setExtent(b[ehSize+j*entrySize:], uint32(e.lblk), e.eeLen(), e.pblk)
		}
		img.setExtentCsum(in, b)
		level = append(level, child{chunk[0].lblk, blk})
	}
	depth = 1
	for len(level) > rootEntries {
		var up []child
		for i := 0; i < len(level); i += per {
			blk := blocks[0]
			blocks = blocks[1:]
			b := img.cache.fresh(blk, kindMeta)
			chunk := level[i:min(i+per, len(level))]
			put16(b, ehMagic, extentMagic)
			put16(b, ehEntries, uint16(len(chunk)))
			put16(b, ehMax, uint16(per))
			put16(b, ehDepth, uint16(depth))
			for j, c := range chunk {
				setIndex(b[ehSize+j*entrySize:], uint32(c.lblk), c.blk)
			}
			img.setExtentCsum(in, b)
			up = append(up, child{chunk[0].lblk, blk})
		}
		level = up
		depth++
	}
	for i, c := range level {
		setIndex(root[ehSize+i*entrySize:], uint32(c.lblk), c.blk)
	}
	put16(root, ehEntries, uint16(len(level)))
	put16(root, ehDepth, uint16(depth))
	return in.addBlocks(img, int64(need))
}

// extentAppend maps n blocks at lblk -> pblk after every existing extent
// (directory growth). It extends the last extent when contiguous, adds a
// leaf entry when there is room, else adds a new rightmost path, growing
// the tree's depth when the root is full.
func (img *Image) extentAppend(in *inode, lblk, pblk, n uint64) error {
	if lblk+n > 1<<32 {
		return fmt.Errorf("%w: logical block %d beyond the extent format", ErrNoSpace, lblk+n)
	}
	for tries := 0; tries < maxExtentDepth+2; tries++ {
		// path[i] is the node at depth-from-root i; blk 0 means the root.
		type node struct {
			b   []byte
			blk uint64
		}
		root := in.iblock()
		if err := checkExtentHeader(root, rootEntries, -1, extentWhere{ino: in.ino, root: true}); err != nil {
			return err
		}
		path := []node{{root, 0}}
		for d := int(le16(root, ehDepth)); d > 0; d-- {
			cur := path[len(path)-1].b
			cnt := int(le16(cur, ehEntries))
			if cnt == 0 {
				return corruptf("inode %d empty extent index node", in.ino)
			}
			child := indexPblk(cur[ehSize+(cnt-1)*entrySize:])
			if _, err := img.readExtentNode(in, child, d-1); err != nil {
				return err
			}
			b, err := img.cache.getW(child, kindMeta)
			if err != nil {
				return err
			}
			path = append(path, node{b, child})
		}
		leaf := path[len(path)-1]
		cnt := int(le16(leaf.b, ehEntries))
		if cnt > 0 {
			last := leaf.b[ehSize+(cnt-1)*entrySize:]
			ll := uint64(le16(last, eeLen))
			if ll <= maxInitLen && uint64(le32(last, eeBlock))+ll == lblk &&
				extentPblk(last)+ll == pblk && ll+n <= maxInitLen {
				put16(last, eeLen, uint16(ll+n))
				if leaf.blk != 0 {
					img.setExtentCsum(in, leaf.b)
				}
				return nil
			}
			if ll > maxInitLen {
				ll -= maxInitLen
			}
			if uint64(le32(last, eeBlock))+ll > lblk {
				return fmt.Errorf("internal error: extent append at %d inside the mapped range", lblk)
			}
		}
		if n > maxInitLen {
			return fmt.Errorf("internal error: extent append of %d blocks", n)
		}
		if cnt < int(le16(leaf.b, ehMax)) {
			setExtent(leaf.b[ehSize+cnt*entrySize:], uint32(lblk), uint16(n), pblk)
			put16(leaf.b, ehEntries, uint16(cnt+1))
			if leaf.blk != 0 {
				img.setExtentCsum(in, leaf.b)
			}
			return nil
		}
		// Find the deepest ancestor with room for one more index entry.
		k := len(path) - 2
		for k >= 0 && le16(path[k].b, ehEntries) >= le16(path[k].b, ehMax) {
			k--
		}
		if k < 0 {
			if err := img.extentGrowDepth(in, pblk); err != nil {
				return err
			}
			continue
		}
		// New chain: one block per level below k, the last a leaf.
		levels := len(path) - 1 - k
		runs, err := img.allocBlocks(pblk, uint64(levels))
		if err != nil {
			return err
		}
		var blks []uint64
		for _, r := range runs {
			for b := r.start; b < r.start+r.len; b++ {
				blks = append(blks, b)
			}
		}
		per := img.extentBlockMax()
		for i, blk := range blks {
			depth := levels - 1 - i
			b := img.cache.fresh(blk, kindMeta)
			put16(b, ehMagic, extentMagic)
			put16(b, ehEntries, 1)
			put16(b, ehMax, uint16(per))
			put16(b, ehDepth, uint16(depth))
			if depth == 0 {
				setExtent(b[ehSize:], uint32(lblk), uint16(n), pblk)
			} else {
				setIndex(b[ehSize:], uint32(lblk), blks[i+1])
			}
			img.setExtentCsum(in, b)
		}
		parent := path[k]
		pc := int(le16(parent.b, ehEntries))
		setIndex(parent.b[ehSize+pc*entrySize:], uint32(lblk), blks[0])
		put16(parent.b, ehEntries, uint16(pc+1))
		if parent.blk != 0 {
			img.setExtentCsum(in, parent.b)
		}
		return in.addBlocks(img, int64(levels))
	}
	return fmt.Errorf("internal error: extent tree did not grow")
}

// extentGrowDepth moves the root's entries into a new block and makes the
// root a one-entry index above it.
func (img *Image) extentGrowDepth(in *inode, goal uint64) error {
	root := in.iblock()
	depth := le16(root, ehDepth)
	if depth >= maxExtentDepth {
		return fmt.Errorf("%w: extent tree too deep", ErrNoSpace)
	}
	runs, err := img.allocBlocks(goal, 1)
	if err != nil {
		return err
	}
	blk := runs[0].start
	b := img.cache.fresh(blk, kindMeta)
	cnt := le16(root, ehEntries)
	copy(b[ehSize:], root[ehSize:ehSize+int(cnt)*entrySize])
	put16(b, ehMagic, extentMagic)
	put16(b, ehEntries, cnt)
	put16(b, ehMax, uint16(img.extentBlockMax()))
	put16(b, ehDepth, depth)
	img.setExtentCsum(in, b)
	first := uint32(0)
	if cnt > 0 {
		first = le32(root[ehSize:], eeBlock)
	}
	clear(root[ehSize:])
	setIndex(root[ehSize:], first, blk)
	put16(root, ehEntries, 1)
	put16(root, ehDepth, depth+1)
	return in.addBlocks(img, 1)
}
