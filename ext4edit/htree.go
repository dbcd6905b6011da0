package ext4edit

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
)

// errDxFallback: the index cannot be used (for example a hash we do not
// compute); readers fall back to a linear scan, writers refuse.
var errDxFallback = errors.New("htree index not usable")

// dxFrame is one level of the path from the root to a leaf.
type dxFrame struct {
	lblk     uint64 // directory block holding this node
	countOff int
	at       int // index of the entry followed
}

func (img *Image) dxLimit(countOff int) int {
	n := int(img.bs) - countOff
	if img.sb.metadataCsum() {
		n -= dxTailSize
	}
	return n / dxEntrySize
}

// dxHashInfo returns the hash version (with the superblock's unsigned
// flag applied, as the kernel does) and the seed.
func (img *Image) dxHashInfo(root []byte) (uint8, [4]uint32) {
	v := root[dxRootHashVer]
	if v <= hashTea && le32(img.sb.b, sbFlags)&sbFlagUnsignedHash != 0 {
		v += 3
	}
	return v, img.sb.hashSeed()
}

func (img *Image) maxDxLevels() int {
	if img.sb.hasIncompat(incompatLargedir) {
		return 3
	}
	return 2
}

// parseDxRootDots returns "." and ".." of a dx root block.
func (img *Image) parseDxRootDots(dir *inode, b []byte) ([]dirent, error) {
	if img.nameLen(b, 0) != 1 || b[deName] != '.' || img.recLen(b, 0) != 12 ||
		img.nameLen(b, 12) != 2 || !bytes.Equal(b[12+deName:12+deName+2], []byte("..")) {
		return nil, corruptf("directory inode %d: htree root lacks \".\" and \"..\"", dir.ino)
	}
	return []dirent{
		{off: 0, ino: le32(b, 0), name: b[deName : deName+1], ft: img.fileType(b, 0)},
		{off: 12, ino: le32(b, 12), name: b[12+deName : 12+deName+2], ft: img.fileType(b, 12)},
	}, nil
}

// checkDxNode validates a node's count/limit and checksum. The checksum
// of a cached block (physical block p) is verified once per owner, like a
// leaf's (leafEntries).
func (img *Image) checkDxNode(dir *inode, lblk, p uint64, b []byte, countOff int) error {
	lim := int(le16(b, countOff+dxCountLimitLim))
	cnt := dxCount(b, countOff)
	if lim != img.dxLimit(countOff) || cnt == 0 || cnt > lim {
		return corruptf("directory inode %d htree block %d: count %d limit %d (expected limit %d)", dir.ino, lblk, cnt, lim, img.dxLimit(countOff))
	}
	if !img.sb.metadataCsum() {
		return nil
	}
	cb := img.cache.blocks[p]
	same := cb != nil && len(cb.data) > 0 && &cb.data[0] == &b[0]
	if same && cb.checkedAs == checkedDxNode && cb.checkedIno == dir.ino {
		return nil
	}
	t := countOff + lim*dxEntrySize
	if le32(b, t+4) != img.dxCsum(dir, b, countOff) {
		return corruptf("directory inode %d htree block %d checksum mismatch", dir.ino, lblk)
	}
	if same {
		cb.checkedAs, cb.checkedIno = checkedDxNode, dir.ino
	}
	return nil
}

// dxCsum is ext4_dx_csum: the used entries, the tail's reserved word and
// a zero checksum word.
func (img *Image) dxCsum(dir *inode, b []byte, countOff int) uint32 {
	lim := int(le16(b, countOff+dxCountLimitLim))
	cnt := dxCount(b, countOff)
	t := countOff + lim*dxEntrySize
	c := crc32cRaw(img.inodeCsumSeed(dir), b[:countOff+cnt*dxEntrySize])
	c = crc32cRaw(c, b[t:t+4])
	return crc32cRaw(c, []byte{0, 0, 0, 0})
}

// setDxCsum updates the dx tail of a root (lblk 0) or node block.
func (img *Image) setDxCsum(dir *inode, b []byte) {
	if !img.sb.metadataCsum() {
		return
	}
	countOff := dxNodeCountOff
	if img.nameLen(b, 0) == 1 && b[deName] == '.' {
		countOff = dxRootCountOff
	}
	lim := int(le16(b, countOff+dxCountLimitLim))
	t := countOff + lim*dxEntrySize
	if t+dxTailSize > len(b) {
		return
	}
	put32(b, t+4, img.dxCsum(dir, b, countOff))
}

// dxProbe walks from the root to the leaf that covers hash. The returned
// frames are root first.
func (img *Image) dxProbe(dir *inode, hash uint32) ([]dxFrame, uint64, error) {
	nblocks, err := img.dirBlockCount(dir)
	if err != nil {
		return nil, 0, err
	}
	root, rootP, err := img.dirBlock(dir, 0)
	if err != nil {
		return nil, 0, err
	}
	if _, err := img.parseDxRootDots(dir, root); err != nil {
		return nil, 0, err
	}
	if le32(root, dxRootInfo) != 0 || root[dxRootInfoLen] != 8 {
		return nil, 0, errDxFallback
	}
	levels := int(root[dxRootLevels])
	if levels >= img.maxDxLevels() {
		return nil, 0, corruptf("directory inode %d htree has %d levels", dir.ino, levels)
	}
	if err := img.checkDxNode(dir, 0, rootP, root, dxRootCountOff); err != nil {
		return nil, 0, err
	}
	var frames []dxFrame
	b, lblk, countOff := root, uint64(0), dxRootCountOff
	for level := 0; ; level++ {
		cnt := dxCount(b, countOff)
		// Last entry whose hash <= target (entry 0 covers from 0).
		at := sort.Search(cnt, func(i int) bool { return i > 0 && dxHashAt(b, countOff, i) > hash }) - 1
		frames = append(frames, dxFrame{lblk: lblk, countOff: countOff, at: at})
		next := uint64(dxBlockAt(b, countOff, at))
		if next == 0 || next >= nblocks {
			return nil, 0, corruptf("directory inode %d htree points at block %d of %d", dir.ino, next, nblocks)
		}
		if level == levels {
			return frames, next, nil
		}
		nb, np, err := img.dirBlock(dir, next)
		if err != nil {
			return nil, 0, err
		}
		if !img.isDxNodeBlock(nb) {
			return nil, 0, corruptf("directory inode %d htree block %d is not an index node", dir.ino, next)
		}
		if err := img.checkDxNode(dir, next, np, nb, dxNodeCountOff); err != nil {
			return nil, 0, err
		}
		b, lblk, countOff = nb, next, dxNodeCountOff
	}
}

// dxNameHash hashes name with the directory's hash.
func (img *Image) dxNameHash(dir *inode, name []byte) (uint32, error) {
	root, _, err := img.dirBlock(dir, 0)
	if err != nil {
		return 0, err
	}
	v, seed := img.dxHashInfo(root)
	h, _, err := dxHash(name, v, seed)
	if err != nil {
		return 0, errDxFallback
	}
	return h, nil
}

// dxCandidateLeaves lists the leaves that may hold name: the one the
// index points at and, while the next index entry carries the collision
// bit for the same hash, the following ones.
func (img *Image) dxCandidateLeaves(dir *inode, name []byte) ([]uint64, error) {
	h, err := img.dxNameHash(dir, name)
	if err != nil {
		return nil, err
	}
	frames, leaf, err := img.dxProbe(dir, h)
	if err != nil {
		return nil, err
	}
	out := []uint64{leaf}
	for len(out) < 64 {
		next, ok, err := img.dxNextLeaf(dir, frames, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		out = append(out, next)
	}
	return out, nil
}

// dxNextLeaf advances frames to the next leaf when that leaf continues
// hash h (its index hash is h|1).
func (img *Image) dxNextLeaf(dir *inode, frames []dxFrame, h uint32) (uint64, bool, error) {
	// Find the deepest frame with a next entry.
	k := len(frames) - 1
	var b []byte
	for ; k >= 0; k-- {
		nb, _, err := img.dirBlock(dir, frames[k].lblk)
		if err != nil {
			return 0, false, err
		}
		if frames[k].at+1 < dxCount(nb, frames[k].countOff) {
			b = nb
			break
		}
	}
	if k < 0 {
		return 0, false, nil
	}
	frames[k].at++
	nh := dxHashAt(b, frames[k].countOff, frames[k].at)
	if nh&1 == 0 || nh&^1 != h {
		return 0, false, nil
	}
	next := uint64(dxBlockAt(b, frames[k].countOff, frames[k].at))
	for j := k + 1; j < len(frames); j++ {
		nb, _, err := img.dirBlock(dir, next)
		if err != nil {
			return 0, false, err
		}
		frames[j] = dxFrame{lblk: next, countOff: dxNodeCountOff, at: 0}
		next = uint64(dxBlockAt(nb, dxNodeCountOff, 0))
	}
	return next, true, nil
}

// dxLookup finds name through the index.
func (img *Image) dxLookup(dir *inode, name []byte) (uint32, uint8, error) {
	leaves, err := img.dxCandidateLeaves(dir, name)
	if err != nil {
		return 0, 0, err
	}
	for _, l := range leaves {
		b, p, err := img.dirBlock(dir, l)
		if err != nil {
			return 0, 0, err
		}
		r, err := img.leafEntries(dir, l, p, b)
		if err != nil {
			return 0, 0, err
		}
		if _, ino, ft, ok := img.findInLeaf(r, name); ok {
			return ino, ft, nil
		}
	}
	if string(name) == "." || string(name) == ".." {
		return 0, 0, errDxFallback
	}
	return 0, 0, errNotFound
}

// dxAdd inserts into an indexed directory: into the leaf the hash selects,
// splitting the leaf (and index nodes, and adding a level) when full.
func (img *Image) dxAdd(dir *inode, name []byte, ino uint32, ft uint8) error {
	h, err := img.dxNameHash(dir, name)
	if err != nil {
		if err == errDxFallback {
			return unsupportedf("directory inode %d uses an htree hash we do not write", dir.ino)
		}
		return err
	}
	frames, leaf, err := img.dxProbe(dir, h)
	if err == errDxFallback {
		return corruptf("directory inode %d has an htree root we cannot update", dir.ino)
	}
	if err != nil {
		return err
	}
	wb, wp, err := img.dirBlockW(dir, leaf)
	if err != nil {
		return err
	}
	ok, err := img.tryInsert(dir, leaf, wp, wb, name, ino, ft)
	if err != nil {
		return err
	}
	if ok {
		img.setDirTail(dir, wb)
		return img.writeInode(dir)
	}
	// Split: the upper half by hash moves to a new block.
	ents, err := img.parseDirBlock(dir, leaf, wb)
	if err != nil {
		return err
	}
	root, _, err := img.dirBlock(dir, 0)
	if err != nil {
		return err
	}
	v, seed := img.dxHashInfo(root)
	type mapEnt struct {
		hash uint32
		e    dirent
		size int
	}
	var m []mapEnt
	for _, e := range ents {
		if e.ino == 0 {
			continue
		}
		eh, _, err := dxHash(e.name, v, seed)
		if err != nil {
			return err
		}
		m = append(m, mapEnt{eh, dirent{ino: e.ino, name: append([]byte(nil), e.name...), ft: e.ft}, direntSize(len(e.name))})
	}
	sort.SliceStable(m, func(i, j int) bool { return m[i].hash < m[j].hash })
	// Move entries from the top until about half the block moved (the
	// kernel's do_split rule).
	size, move := 0, 0
	for i := len(m) - 1; i > 0; i-- {
		if size+m[i].size/2 > int(img.bs)/2 {
			break
		}
		size += m[i].size
		move++
	}
	split := len(m) - move
	if split <= 0 || split >= len(m) {
		return fmt.Errorf("internal error: htree leaf split of %d entries", len(m))
	}
	hash2 := m[split].hash
	if hash2 == m[split-1].hash {
		hash2 |= 1 // the new block continues the same hash
	}
	nb, nlblk, np, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	// The old block may have been evicted/reloaded: get it again.
	wb, wp, err = img.dirBlockW(dir, leaf)
	if err != nil {
		return err
	}
	fill := func(b []byte, es []mapEnt) {
		clear(b)
		off := 0
		for i, me := range es {
			img.setEntry(b, off, me.e.ino, me.e.name, me.e.ft)
			rec := me.size
			if i == len(es)-1 {
				rec = img.dirEntriesEnd() - off
			}
			img.setRecLen(b, off, rec)
			off += rec
		}
		img.setDirTail(dir, b)
	}
	fill(wb, m[:split])
	fill(nb, m[split:])
	if err := img.dxInsertIndex(dir, frames, len(frames)-1, hash2, uint32(nlblk)); err != nil {
		return err
	}
	// Like the kernel: entries hashing at or above hash2 (continuation bit
	// included) go to the new block.
	target, tlblk, tp := wb, leaf, wp
	if h >= hash2 {
		target, tlblk, tp = nb, nlblk, np
	}
	ok, err = img.tryInsert(dir, tlblk, tp, target, name, ino, ft)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("internal error: entry does not fit a freshly split htree leaf")
	}
	img.setDirTail(dir, target)
	return img.writeInode(dir)
}

// dxInsertIndex adds (hash -> blk) after frames[k].at, splitting index
// nodes or adding a level when full.
func (img *Image) dxInsertIndex(dir *inode, frames []dxFrame, k int, hash, blk uint32) error {
	f := frames[k]
	b, _, err := img.dirBlockW(dir, f.lblk)
	if err != nil {
		return err
	}
	cnt := dxCount(b, f.countOff)
	lim := int(le16(b, f.countOff+dxCountLimitLim))
	if cnt < lim {
		pos := f.at + 1
		start := f.countOff + pos*dxEntrySize
		end := f.countOff + cnt*dxEntrySize
		copy(b[start+dxEntrySize:end+dxEntrySize], b[start:end])
		put32(b, start, hash)
		put32(b, start+4, blk)
		put16(b, f.countOff+dxCountLimitCnt, uint16(cnt+1))
		img.setDxCsum(dir, b)
		return nil
	}
	if k == 0 {
		// Root full: push its entries down into a new node, one level more.
		if int(b[dxRootLevels])+1 >= img.maxDxLevels() {
			return fmt.Errorf("%w: directory index of inode %d is full", ErrNoSpace, dir.ino)
		}
		nb, nlblk, _, err := img.dirAppendBlock(dir)
		if err != nil {
			return err
		}
		b, _, err = img.dirBlockW(dir, 0)
		if err != nil {
			return err
		}
		img.setRecLen(nb, 0, int(img.bs))
		nlim := img.dxLimit(dxNodeCountOff)
		copy(nb[dxNodeCountOff:], b[dxRootCountOff:dxRootCountOff+cnt*dxEntrySize])
		put16(nb, dxNodeCountOff+dxCountLimitLim, uint16(nlim))
		put16(nb, dxNodeCountOff+dxCountLimitCnt, uint16(cnt))
		img.setDxCsum(dir, nb)
		put16(b, dxRootCountOff+dxCountLimitCnt, 1)
		put32(b, dxRootCountOff+4, uint32(nlblk))
		clear(b[dxRootCountOff+dxEntrySize : dxRootCountOff+cnt*dxEntrySize])
		b[dxRootLevels]++
		img.setDxCsum(dir, b)
		nf := append([]dxFrame{{lblk: 0, countOff: dxRootCountOff, at: 0}, {lblk: nlblk, countOff: dxNodeCountOff, at: f.at}}, frames[1:]...)
		return img.dxInsertIndex(dir, nf, 1, hash, blk)
	}
	// Interior node full: move its upper half to a new node.
	nb, nlblk, _, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	b, _, err = img.dirBlockW(dir, f.lblk)
	if err != nil {
		return err
	}
	keep := cnt / 2
	moved := cnt - keep
	img.setRecLen(nb, 0, int(img.bs))
	copy(nb[dxNodeCountOff:], b[f.countOff+keep*dxEntrySize:f.countOff+cnt*dxEntrySize])
	put16(nb, dxNodeCountOff+dxCountLimitLim, uint16(img.dxLimit(dxNodeCountOff)))
	put16(nb, dxNodeCountOff+dxCountLimitCnt, uint16(moved))
	splitHash := le32(b, f.countOff+keep*dxEntrySize)
	clear(b[f.countOff+keep*dxEntrySize : f.countOff+cnt*dxEntrySize])
	put16(b, f.countOff+dxCountLimitCnt, uint16(keep))
	img.setDxCsum(dir, b)
	img.setDxCsum(dir, nb)
	if err := img.dxInsertIndex(dir, frames, k-1, splitHash, uint32(nlblk)); err != nil {
		return err
	}
	if f.at >= keep {
		frames[k] = dxFrame{lblk: nlblk, countOff: dxNodeCountOff, at: f.at - keep}
	}
	return img.dxInsertIndex(dir, frames, k, hash, blk)
}

// makeIndexed turns a full one-block directory into an htree: its entries
// move to a new leaf (block 1) and block 0 becomes the root.
func (img *Image) makeIndexed(dir *inode) error {
	b0, _, err := img.dirBlockW(dir, 0)
	if err != nil {
		return err
	}
	ents, err := img.parseDirBlock(dir, 0, b0)
	if err != nil {
		return err
	}
	if len(ents) < 2 || string(ents[0].name) != "." || string(ents[1].name) != ".." {
		return corruptf("directory inode %d first block lacks \".\" and \"..\"", dir.ino)
	}
	type kept struct {
		ino  uint32
		name []byte
		ft   uint8
	}
	var rest []kept
	for _, e := range ents[2:] {
		if e.ino != 0 {
			rest = append(rest, kept{e.ino, append([]byte(nil), e.name...), e.ft})
		}
	}
	dot, dotdot := ents[0], ents[1]
	nb, nlblk, _, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	off := 0
	clear(nb)
	for i, k := range rest {
		img.setEntry(nb, off, k.ino, k.name, k.ft)
		rec := direntSize(len(k.name))
		if i == len(rest)-1 {
			rec = img.dirEntriesEnd() - off
		}
		img.setRecLen(nb, off, rec)
		off += rec
	}
	if len(rest) == 0 {
		img.setRecLen(nb, 0, img.dirEntriesEnd())
	}
	img.setDirTail(dir, nb)

	b0, _, err = img.dirBlockW(dir, 0)
	if err != nil {
		return err
	}
	clear(b0)
	img.setEntry(b0, 0, dot.ino, []byte("."), ftDir)
	img.setRecLen(b0, 0, 12)
	img.setEntry(b0, 12, dotdot.ino, []byte(".."), ftDir)
	img.setRecLen(b0, 12, int(img.bs)-12)
	hv := img.sb.b[sbDefHashVersion]
	b0[dxRootHashVer] = hv
	b0[dxRootInfoLen] = 8
	put16(b0, dxRootCountOff+dxCountLimitLim, uint16(img.dxLimit(dxRootCountOff)))
	put16(b0, dxRootCountOff+dxCountLimitCnt, 1)
	put32(b0, dxRootCountOff+4, uint32(nlblk))
	img.setDxCsum(dir, b0)
	dir.setFlags(dir.flags() | flagIndex)
	return nil
}
