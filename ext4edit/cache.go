package ext4edit

import (
	"fmt"
	"slices"
)

// blockKind orders a non-journaled commit: blocks that make space used are
// written before the structures that point at them.
type blockKind uint8

const (
	kindBitmap blockKind = iota // block and inode bitmaps
	kindMeta                    // extent index/leaf blocks, indirect blocks, xattr blocks
	kindInode                   // inode table blocks
	kindDir                     // directory blocks (leaf and htree index)
	numKinds
)

// cblock is one cached metadata block.
type cblock struct {
	data  []byte
	dirty bool
	kind  blockKind
	// fresh: allocated since the last commit, so nothing on disk points at
	// it yet; commits write such blocks first.
	fresh bool
	// zeroOnDisk: the block read as zeros (often a hole of a sparse image
	// file, such as a lazily initialised inode table).
	zeroOnDisk bool
	// checkedAs and checkedIno: the block's checksum and structure were
	// verified as a directory leaf or htree node of inode checkedIno. Our
	// edits keep a checked block valid, so lookups need not verify it
	// again; new contents (a read, a rollback, a reallocation) clear it.
	checkedAs  checkKind
	checkedIno uint32
	// inodesOK has bit i set when inode slot i of an inode table block
	// passed its checksum (or was written by us): readInode checks each
	// inode once. Only blocks of at most 64 slots track it.
	inodesOK uint64
}

// checkKind is what a cached block was verified as.
type checkKind uint8

const (
	checkedNone checkKind = iota
	checkedLeaf
	checkedDxNode
)

// uncheck forgets what b was verified as (its contents are new).
func (b *cblock) uncheck() { b.checkedAs, b.checkedIno, b.inodesOK = checkedNone, 0, 0 }

// uncheckAll forgets what every cached block was verified as.
func (c *blockCache) uncheckAll() {
	for _, b := range c.blocks {
		b.uncheck()
	}
}

// undoRec remembers a block's state before the current operation first
// changed it, so a failed operation leaves the in-memory image exactly as
// it was (and therefore the committed image byte-identical).
type undoRec struct {
	present bool
	data    []byte
	dirty   bool
	kind    blockKind
	fresh   bool
}

// maxCleanBlocks bounds the clean part of the cache; dirty blocks stay
// until commit.
const maxCleanBlocks = 8192

// blockCache holds metadata blocks read from the image and the dirty set.
type blockCache struct {
	img    *Image
	blocks map[uint64]*cblock
	undo   map[uint64]undoRec
	clean  int
	// spare holds block buffers of finished operations' undo records for
	// the next operation's: a short-lived process (one CLI request script)
	// never runs the GC, so without reuse every snapshot faults in fresh
	// pages.
	spare [][]byte
}

// maxSpare bounds the recycled undo buffers.
const maxSpare = 64

func newBlockCache(img *Image) *blockCache {
	return &blockCache{img: img, blocks: map[uint64]*cblock{}, undo: map[uint64]undoRec{}}
}

// get returns the cached block, reading it on first use. The buffer must
// not be modified: use getW.
func (c *blockCache) get(blk uint64) ([]byte, error) {
	if b, ok := c.blocks[blk]; ok {
		return b.data, nil
	}
	buf := make([]byte, c.img.bs)
	if err := c.img.readBlock(blk, buf); err != nil {
		return nil, err
	}
	c.evict()
	c.blocks[blk] = &cblock{data: buf, zeroOnDisk: allZero(buf)}
	c.clean++
	return buf, nil
}

// getW returns the block for modification and puts it in the dirty set.
func (c *blockCache) getW(blk uint64, kind blockKind) ([]byte, error) {
	if _, err := c.get(blk); err != nil {
		return nil, err
	}
	b := c.blocks[blk]
	c.saveUndo(blk, b)
	if !b.dirty {
		b.dirty = true
		c.clean--
	}
	b.kind = kind
	return b.data, nil
}

// fresh returns a zeroed dirty buffer for a block just allocated: its old
// contents do not matter and are not read.
func (c *blockCache) fresh(blk uint64, kind blockKind) []byte {
	return c.zeroed(blk, kind, true, nil)
}

// rewrite returns a zeroed dirty buffer for a block in use that the caller
// fills whole (the resize inode's reserved descriptor blocks): reading its
// old contents first would be wasted. A block not cached takes buf (one
// block of zeros, carved by the caller from one larger buffer) as its
// data, so many blocks cost one allocation; nil allocates.
func (c *blockCache) rewrite(blk uint64, kind blockKind, buf []byte) []byte {
	return c.zeroed(blk, kind, false, buf)
}

func (c *blockCache) zeroed(blk uint64, kind blockKind, fresh bool, buf []byte) []byte {
	b, ok := c.blocks[blk]
	c.saveUndo(blk, b)
	if !ok {
		if buf == nil {
			buf = make([]byte, c.img.bs)
		}
		b = &cblock{data: buf}
		c.blocks[blk] = b
	} else {
		clear(b.data)
		b.uncheck()
		if !b.dirty {
			c.clean--
		}
	}
	b.dirty = true
	b.kind = kind
	b.fresh = b.fresh || fresh
	return b.data
}

// forget drops a clean block (its disk copy is about to be overwritten by
// file data). A dirty block here would be a bug: data only goes into
// blocks that are free on disk and unused in memory.
func (c *blockCache) forget(blk uint64) error {
	b, ok := c.blocks[blk]
	if !ok {
		return nil
	}
	if b.dirty {
		return fmt.Errorf("internal error: data write over dirty metadata block %d", blk)
	}
	c.saveUndo(blk, b)
	delete(c.blocks, blk)
	c.clean--
	return nil
}

func (c *blockCache) saveUndo(blk uint64, b *cblock) {
	c.img.undo.touched = true
	if !c.img.undo.active {
		return
	}
	if _, ok := c.undo[blk]; ok {
		return
	}
	if b == nil {
		c.undo[blk] = undoRec{}
		return
	}
	var data []byte
	if n := len(c.spare); n > 0 && len(b.data) == int(c.img.bs) {
		data = c.spare[n-1][:copy(c.spare[n-1], b.data)]
		c.spare = c.spare[:n-1]
	} else {
		data = append([]byte(nil), b.data...)
	}
	c.undo[blk] = undoRec{present: true, data: data, dirty: b.dirty, kind: b.kind, fresh: b.fresh}
}

// rollback restores every block the failed operation touched.
func (c *blockCache) rollback() {
	for blk, u := range c.undo {
		b, ok := c.blocks[blk]
		if ok && !b.dirty {
			c.clean--
		}
		if !u.present {
			delete(c.blocks, blk)
			continue
		}
		if !ok {
			b = &cblock{}
			c.blocks[blk] = b
		}
		b.data, b.dirty, b.kind, b.fresh = u.data, u.dirty, u.kind, u.fresh
		b.uncheck()
		if !b.dirty {
			c.clean++
		}
	}
	clear(c.undo)
}

func (c *blockCache) endOp() {
	for _, u := range c.undo {
		if u.present && len(c.spare) < maxSpare && len(u.data) == int(c.img.bs) {
			c.spare = append(c.spare, u.data)
		}
	}
	clear(c.undo)
}

// evict drops clean blocks when the cache is over its bound.
func (c *blockCache) evict() {
	if c.clean < maxCleanBlocks {
		return
	}
	for blk, b := range c.blocks {
		if b.dirty {
			continue
		}
		if _, ok := c.undo[blk]; ok {
			continue
		}
		delete(c.blocks, blk)
		c.clean--
		if c.clean < maxCleanBlocks/2 {
			return
		}
	}
}

// dirtyByKind lists the dirty blocks of one kind.
func (c *blockCache) dirtyByKind(k blockKind) []uint64 {
	return c.dirtyWhere(func(b *cblock) bool { return b.kind == k })
}

// hasDirty reports whether any block waits for a commit.
func (c *blockCache) hasDirty() bool {
	for _, b := range c.blocks {
		if b.dirty {
			return true
		}
	}
	return false
}

// dirtyWhere lists the dirty blocks for which keep is true, sorted.
func (c *blockCache) dirtyWhere(keep func(*cblock) bool) []uint64 {
	var out []uint64
	for blk, b := range c.blocks {
		if b.dirty && keep(b) {
			out = append(out, blk)
		}
	}
	slices.Sort(out)
	return out
}

// markClean records that blk's buffer is now on disk.
func (c *blockCache) markClean(blk uint64) {
	if b, ok := c.blocks[blk]; ok && b.dirty {
		b.dirty, b.fresh, b.zeroOnDisk = false, false, false
		c.clean++
	}
}
