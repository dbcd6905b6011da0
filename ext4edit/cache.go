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
	// it yet; a journal-less commit writes such blocks first.
	fresh bool
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
}

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
	c.blocks[blk] = &cblock{data: buf}
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
	b, ok := c.blocks[blk]
	c.saveUndo(blk, b)
	if !ok {
		b = &cblock{data: make([]byte, c.img.bs)}
		c.blocks[blk] = b
	} else {
		clear(b.data)
		if !b.dirty {
			c.clean--
		}
	}
	b.dirty = true
	b.kind = kind
	b.fresh = true
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
	if !c.img.opActive {
		return
	}
	if _, ok := c.undo[blk]; ok {
		return
	}
	if b == nil {
		c.undo[blk] = undoRec{}
		return
	}
	c.undo[blk] = undoRec{present: true, data: append([]byte(nil), b.data...), dirty: b.dirty, kind: b.kind, fresh: b.fresh}
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
		if !b.dirty {
			c.clean++
		}
	}
	clear(c.undo)
}

func (c *blockCache) endOp() { clear(c.undo) }

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
		b.dirty, b.fresh = false, false
		c.clean++
	}
}
