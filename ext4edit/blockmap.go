package ext4edit

import "fmt"

// Block-mapped files (ext2/ext3, and ext4 inodes without EXTENTS_FL):
// i_block[0..11] point at data blocks, i_block[12] at a block of pointers,
// i_block[13] at a block of pointers to pointer blocks, i_block[14] one
// level more. Pointers are __le32; 0 is a hole.
const (
	directBlocks = 12
	indSlot      = 12
	dindSlot     = 13
	tindSlot     = 14
)

func (img *Image) apb() uint64 { return uint64(img.bs / 4) }

// indirectPath returns the i_block slot and the offsets inside each
// pointer block on the way to logical block lblk.
func (img *Image) indirectPath(lblk uint64) (slot int, offs []uint64, err error) {
	a := img.apb()
	if lblk < directBlocks {
		return int(lblk), nil, nil
	}
	lblk -= directBlocks
	if lblk < a {
		return indSlot, []uint64{lblk}, nil
	}
	lblk -= a
	if lblk < a*a {
		return dindSlot, []uint64{lblk / a, lblk % a}, nil
	}
	lblk -= a * a
	if lblk < a*a*a {
		return tindSlot, []uint64{lblk / (a * a), (lblk / a) % a, lblk % a}, nil
	}
	return 0, nil, fmt.Errorf("%w: block %d beyond the reach of a block-mapped file", ErrFileTooLarge, lblk+directBlocks+a+a*a)
}

func (img *Image) checkPtr(in *inode, p uint64) error {
	if !img.inFS(p) {
		return corruptf("inode %d block pointer %d outside the filesystem", in.ino, p)
	}
	return nil
}

// indirectMap finds logical block lblk (0 = hole).
func (img *Image) indirectMap(in *inode, lblk uint64) (uint64, error) {
	slot, offs, err := img.indirectPath(lblk)
	if err != nil {
		return 0, nil
	}
	p := uint64(le32(in.iblock(), slot*4))
	for _, o := range offs {
		if p == 0 {
			return 0, nil
		}
		if err := img.checkPtr(in, p); err != nil {
			return 0, err
		}
		b, err := img.cache.get(p)
		if err != nil {
			return 0, err
		}
		p = uint64(le32(b, int(o*4)))
	}
	if p != 0 {
		if err := img.checkPtr(in, p); err != nil {
			return 0, err
		}
	}
	return p, nil
}

// indirectWalk visits every mapped data run in logical order and every
// pointer block.
func (img *Image) indirectWalk(in *inode, leaf func(fileExtent) error, node func(blk uint64)) error {
	var cur fileExtent
	budget := img.blocksCount // a corrupt tree cannot make us loop forever
	emit := func(lblk, pblk uint64) error {
		if cur.len > 0 && cur.lblk+cur.len == lblk && cur.pblk+cur.len == pblk {
			cur.len++
			return nil
		}
		if cur.len > 0 {
			if err := leaf(cur); err != nil {
				return err
			}
		}
		cur = fileExtent{lblk: lblk, pblk: pblk, len: 1}
		return nil
	}
	a := img.apb()
	var walk func(p uint64, level int, base uint64) error
	walk = func(p uint64, level int, base uint64) error {
		if budget == 0 {
			return corruptf("inode %d block map loops", in.ino)
		}
		budget--
		if err := img.checkPtr(in, p); err != nil {
			return err
		}
		if level == 0 {
			return emit(base, p)
		}
		if node != nil {
			node(p)
		}
		b, err := img.cache.get(p)
		if err != nil {
			return err
		}
		ptrs := append([]byte(nil), b...)
		span := uint64(1)
		for i := 1; i < level; i++ {
			span *= a
		}
		for i := uint64(0); i < a; i++ {
			if q := uint64(le32(ptrs, int(i*4))); q != 0 {
				if err := walk(q, level-1, base+i*span); err != nil {
					return err
				}
			}
		}
		return nil
	}
	ib := in.iblock()
	for i := 0; i < directBlocks; i++ {
		if p := uint64(le32(ib, i*4)); p != 0 {
			if err := walk(p, 0, uint64(i)); err != nil {
				return err
			}
		}
	}
	bases := []uint64{directBlocks, directBlocks + a, directBlocks + a + a*a}
	for lvl := 1; lvl <= 3; lvl++ {
		if p := uint64(le32(ib, (indSlot+lvl-1)*4)); p != 0 {
			if err := walk(p, lvl, bases[lvl-1]); err != nil {
				return err
			}
		}
	}
	if cur.len > 0 {
		return leaf(cur)
	}
	return nil
}

// indirectOverhead counts the pointer blocks that mapping exactly the
// logical blocks of exts (in increasing order, not overlapping) needs:
// the single indirect block, the double indirect block and its children,
// the triple indirect block, its children and grandchildren, each only
// when some mapped block lies beneath it. A hole needs none, so a file
// that is mostly hole costs a few blocks, not the full tree of a dense
// file of its size. mapNew allocates exactly this many.
func (img *Image) indirectOverhead(exts []fileExtent) uint64 {
	t := img.newIndirectTally()
	for _, e := range exts {
		t.add(e)
	}
	return t.blocks()
}

// indirectTally is indirectOverhead kept run by run: one spanCount per
// level of pointer blocks under i_block[12], [13] and [14].
type indirectTally [6]spanCount

func (img *Image) newIndirectTally() indirectTally {
	a := img.apb()
	ind := uint64(directBlocks) // first block under i_block[12]
	dind := ind + a             // first under i_block[13]
	tind := dind + a*a          // first under i_block[14]
	end := tind + a*a*a
	return indirectTally{
		{base: ind, limit: dind, span: a},
		{base: dind, limit: tind, span: a * a}, {base: dind, limit: tind, span: a},
		{base: tind, limit: end, span: a * a * a}, {base: tind, limit: end, span: a * a}, {base: tind, limit: end, span: a},
	}
}

func (t *indirectTally) add(e fileExtent) {
	for i := range t {
		t[i].add(e)
	}
}

func (t *indirectTally) blocks() uint64 {
	var n uint64
	for i := range t {
		n += t[i].n
	}
	return n
}

// spanCount counts the distinct spans [base+k*span, base+(k+1)*span)
// inside [base, limit) that hold a mapped block, as runs are added in
// increasing logical order: the pointer blocks of one level, each
// covering span logical blocks. A run that continues the previous one
// counts as the two would merged.
type spanCount struct {
	base, limit, span uint64
	n                 uint64
	prev              uint64 // the last span counted
	seen              bool
}

func (c *spanCount) add(e fileExtent) {
	s, t := max(e.lblk, c.base), min(e.lblk+e.len, c.limit)
	if s >= t {
		return
	}
	first, last := (s-c.base)/c.span, (t-1-c.base)/c.span
	if c.seen && first == c.prev {
		first++ // shared with the previous run
	}
	if first <= last {
		c.n += last - first + 1
	}
	c.prev, c.seen = last, true
}

// indirectSet points logical block lblk at pblk, creating pointer blocks
// with alloc as needed. It returns how many pointer blocks it created.
func (img *Image) indirectSet(in *inode, lblk, pblk uint64, alloc func() (uint64, error)) (int, error) {
	if pblk > 0xFFFFFFFF {
		return 0, fmt.Errorf("internal error: block %d does not fit a 32-bit pointer", pblk)
	}
	slot, offs, err := img.indirectPath(lblk)
	if err != nil {
		return 0, err
	}
	created := 0
	ib := in.iblock()
	if len(offs) == 0 {
		put32(ib, slot*4, uint32(pblk))
		return 0, nil
	}
	// parent is where the pointer to the next level lives.
	parent, pOff := ib, slot*4
	for i, o := range offs {
		p := uint64(le32(parent, pOff))
		var b []byte
		if p == 0 {
			np, err := alloc()
			if err != nil {
				return created, err
			}
			b = img.cache.fresh(np, kindMeta)
			put32(parent, pOff, uint32(np))
			created++
			p = np
		} else {
			if err := img.checkPtr(in, p); err != nil {
				return created, err
			}
			if b, err = img.cache.getW(p, kindMeta); err != nil {
				return created, err
			}
		}
		parent, pOff = b, int(o*4)
		if i == len(offs)-1 {
			put32(b, pOff, uint32(pblk))
		}
	}
	return created, nil
}

// poolAlloc hands out blocks from runs allocated in advance.
type poolAlloc struct{ runs []blockRun }

func (p *poolAlloc) next() (uint64, error) {
	if len(p.runs) == 0 {
		return 0, fmt.Errorf("internal error: pointer-block pool exhausted")
	}
	b := p.runs[0].start
	p.runs[0].start++
	p.runs[0].len--
	if p.runs[0].len == 0 {
		p.runs = p.runs[1:]
	}
	return b, nil
}
