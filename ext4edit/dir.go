package ext4edit

import (
	"bytes"
	"fmt"
)

// recLen decodes rec_len (65536-byte blocks store 65535 or 0 for a whole block).
func (img *Image) recLen(b []byte, off int) int {
	v := int(le16(b, off+deRecLen))
	if img.bs < 65536 {
		return v
	}
	if v == 65535 || v == 0 {
		return int(img.bs)
	}
	return v&65532 | (v&3)<<16
}

func (img *Image) setRecLen(b []byte, off, n int) {
	if n >= 65536 {
		if n == int(img.bs) {
			put16(b, off+deRecLen, 65535)
		} else {
			put16(b, off+deRecLen, uint16(n&65532|(n>>16)&3))
		}
		return
	}
	put16(b, off+deRecLen, uint16(n))
}

func (img *Image) nameLen(b []byte, off int) int {
	if img.sb.hasIncompat(incompatFiletype) {
		return int(b[off+deNameLen])
	}
	return int(le16(b, off+deNameLen))
}

func (img *Image) setEntry(b []byte, off int, ino uint32, name []byte, ft uint8) {
	put32(b, off+deInode, ino)
	if img.sb.hasIncompat(incompatFiletype) {
		b[off+deNameLen] = byte(len(name))
		b[off+deFileType] = ft
	} else {
		put16(b, off+deNameLen, uint16(len(name)))
	}
	copy(b[off+deName:], name)
	// Zero the padding so identical trees give identical bytes.
	for i := off + deName + len(name); i < off+direntSize(len(name)); i++ {
		b[i] = 0
	}
}

func (img *Image) fileType(b []byte, off int) uint8 {
	if img.sb.hasIncompat(incompatFiletype) {
		return b[off+deFileType]
	}
	return ftUnknown
}

// hasDirTail reports whether the block ends with a checksum tail.
func (img *Image) hasDirTail(b []byte) bool {
	t := len(b) - dirTailSize
	return le32(b, t) == 0 && le16(b, t+deRecLen) == dirTailSize && b[t+deNameLen] == 0 && b[t+deFileType] == dirTailFT
}

// dirEntriesEnd is where entries stop in a leaf block.
func (img *Image) dirEntriesEnd() int {
	if img.sb.metadataCsum() {
		return int(img.bs) - dirTailSize
	}
	return int(img.bs)
}

func (img *Image) setDirTail(dir *inode, b []byte) {
	if !img.sb.metadataCsum() {
		return
	}
	t := len(b) - dirTailSize
	clear(b[t:])
	put16(b, t+deRecLen, dirTailSize)
	b[t+deFileType] = dirTailFT
	put32(b, t+8, crc32cRaw(img.inodeCsumSeed(dir), b[:t]))
}

// dirent is one decoded entry.
type dirent struct {
	off  int // offset in the block
	rec  int
	ino  uint32
	name []byte
	ft   uint8
}

// parseDirBlock decodes and validates a leaf block's entries the way
// ext4_check_dir_entry does. Unused entries (ino 0) are included. Edits
// that rebuild a block use it; lookups scan in place (leafEntries).
func (img *Image) parseDirBlock(dir *inode, lblk uint64, b []byte) ([]dirent, error) {
	end := len(b)
	if img.sb.metadataCsum() && img.hasDirTail(b) {
		end -= dirTailSize
		if le32(b, end+8) != crc32cRaw(img.inodeCsumSeed(dir), b[:end]) {
			return nil, corruptf("directory inode %d block %d checksum mismatch", dir.ino, lblk)
		}
	}
	return img.parseEntries(dir, dirWhere{n: lblk}, b[:end])
}

// dirWhere names a region of entries in messages, formatted only when an
// error needs it.
type dirWhere struct {
	inline bool // an inline-data area (n is its index), else block n
	n      uint64
}

func (w dirWhere) String() string {
	if w.inline {
		return fmt.Sprintf("inline area %d", w.n)
	}
	return fmt.Sprintf("block %d", w.n)
}

// parseEntries decodes the entries packed in region (a leaf block without
// its tail, or an inline-data area).
func (img *Image) parseEntries(dir *inode, where dirWhere, b []byte) ([]dirent, error) {
	if err := img.checkEntries(dir, where, b); err != nil {
		return nil, err
	}
	var out []dirent
	for off := 0; off < len(b); {
		rec, ino, name, ft := img.entryAt(b, off)
		out = append(out, dirent{off: off, rec: rec, ino: ino, name: name, ft: ft})
		off += rec
	}
	return out, nil
}

// checkEntries validates every entry of region the way
// ext4_check_dir_entry does.
func (img *Image) checkEntries(dir *inode, where dirWhere, b []byte) error {
	end := len(b)
	for off := 0; off < end; {
		if off+deName > end {
			return corruptf("directory inode %d %s: entry at %d runs past the end", dir.ino, where, off)
		}
		rec := img.recLen(b, off)
		nl := img.nameLen(b, off)
		if rec < deName+4 || rec%4 != 0 || off+rec > end || nl > maxNameLen || direntSize(nl) > rec {
			return corruptf("directory inode %d %s: bad entry at %d (rec_len %d, name_len %d)", dir.ino, where, off, rec, nl)
		}
		if ino := le32(b, off+deInode); ino > img.sb.inodesCount() {
			return corruptf("directory inode %d %s: entry at %d names inode %d", dir.ino, where, off, ino)
		}
		off += rec
	}
	return nil
}

// entryAt decodes the entry at off of a region checkEntries accepted. A
// region that changed without being checked again (a bug) still cannot
// make it loop or read out of range.
func (img *Image) entryAt(b []byte, off int) (rec int, ino uint32, name []byte, ft uint8) {
	rec = img.recLen(b, off)
	if rec < deName+4 || off+rec > len(b) {
		rec = len(b) - off
	}
	nl := min(img.nameLen(b, off), rec-deName)
	return rec, le32(b, off+deInode), b[off+deName : off+deName+nl], img.fileType(b, off)
}

// leafEntries returns the region of leaf block b (physical block p, as
// the cache holds it) where dir's entries are, after checking its
// checksum tail and entries. A cached block is checked once per owner:
// every edit of ours keeps it valid and its tail current, and a rollback
// or a reread starts over.
func (img *Image) leafEntries(dir *inode, lblk, p uint64, b []byte) ([]byte, error) {
	end := len(b)
	tail := img.sb.metadataCsum() && img.hasDirTail(b)
	if tail {
		end -= dirTailSize
	}
	cb := img.cache.blocks[p]
	if cb != nil && cb.checkedAs == checkedLeaf && cb.checkedIno == dir.ino && len(cb.data) > 0 && &cb.data[0] == &b[0] {
		return b[:end], nil
	}
	if tail && le32(b, end+8) != crc32cRaw(img.inodeCsumSeed(dir), b[:end]) {
		return nil, corruptf("directory inode %d block %d checksum mismatch", dir.ino, lblk)
	}
	if err := img.checkEntries(dir, dirWhere{n: lblk}, b[:end]); err != nil {
		return nil, err
	}
	if cb != nil && len(cb.data) > 0 && &cb.data[0] == &b[0] {
		cb.checkedAs, cb.checkedIno = checkedLeaf, dir.ino
	}
	return b[:end], nil
}

// findInLeaf looks name up in a checked leaf region.
func (img *Image) findInLeaf(r []byte, name []byte) (off int, ino uint32, ft uint8, ok bool) {
	for off := 0; off < len(r); {
		rec, ino, n, ft := img.entryAt(r, off)
		if ino != 0 && len(n) == len(name) && bytes.Equal(n, name) {
			return off, ino, ft, true
		}
		off += rec
	}
	return 0, 0, 0, false
}

// dirBlockCount is the number of blocks of a directory.
func (img *Image) dirBlockCount(dir *inode) (uint64, error) {
	if dir.size()%uint64(img.bs) != 0 {
		return 0, corruptf("directory inode %d size %d is not a multiple of the block size", dir.ino, dir.size())
	}
	n := dir.size() / uint64(img.bs)
	if n > img.blocksCount {
		return 0, corruptf("directory inode %d size %d larger than the filesystem", dir.ino, dir.size())
	}
	return n, nil
}

// dirBlock reads logical block lblk of a directory (read-only view).
func (img *Image) dirBlock(dir *inode, lblk uint64) ([]byte, uint64, error) {
	p, err := img.mapBlock(dir, lblk)
	if err != nil {
		return nil, 0, err
	}
	if p == 0 {
		return nil, 0, corruptf("directory inode %d has a hole at block %d", dir.ino, lblk)
	}
	b, err := img.cache.get(p)
	return b, p, err
}

// isDxNodeBlock recognises an htree interior block: one empty entry
// spanning the whole block.
func (img *Image) isDxNodeBlock(b []byte) bool {
	return le32(b, 0) == 0 && img.recLen(b, 0) == int(img.bs) && img.nameLen(b, 0) == 0
}

// dirIter calls fn for every live entry, block by block, including "."
// and "..". fn returns false to stop.
func (img *Image) dirIter(dir *inode, fn func(name []byte, ino uint32, ft uint8) bool) error {
	if dir.hasInlineData() {
		return img.inlineDirIter(dir, fn)
	}
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return err
	}
	indexed := dir.flags()&flagIndex != 0
	for lblk := uint64(0); lblk < n; lblk++ {
		b, p, err := img.dirBlock(dir, lblk)
		if err != nil {
			return err
		}
		if indexed && lblk == 0 {
			// dx root: "." and ".." then the index hidden in ".."'s space.
			ents, err := img.parseDxRootDots(dir, b)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if !fn(e.name, e.ino, e.ft) {
					return nil
				}
			}
			continue
		}
		if indexed && img.isDxNodeBlock(b) {
			continue
		}
		r, err := img.leafEntries(dir, lblk, p, b)
		if err != nil {
			return err
		}
		for off := 0; off < len(r); {
			rec, ino, name, ft := img.entryAt(r, off)
			if ino != 0 && !fn(name, ino, ft) {
				return nil
			}
			off += rec
		}
	}
	return nil
}

// dirLookup finds name in dir; errNotFound when absent.
func (img *Image) dirLookup(dir *inode, name []byte) (uint32, uint8, error) {
	if dir.flags()&flagIndex != 0 && !dir.hasInlineData() {
		if ino, ft, err := img.dxLookup(dir, name); err != errDxFallback {
			return ino, ft, err
		}
	}
	var ino uint32
	var ft uint8
	err := img.dirIter(dir, func(n []byte, i uint32, t uint8) bool {
		if bytes.Equal(n, name) {
			ino, ft = i, t
			return false
		}
		return true
	})
	if err != nil {
		return 0, 0, err
	}
	if ino == 0 {
		return 0, 0, errNotFound
	}
	return ino, ft, nil
}

// tryInsert puts an entry into leaf block b (physical block p) if there
// is room, returning whether it did.
func (img *Image) tryInsert(dir *inode, lblk, p uint64, b []byte, name []byte, ino uint32, ft uint8) (bool, error) {
	if err := img.checkLeafTail(dir, lblk, b); err != nil {
		return false, err
	}
	r, err := img.leafEntries(dir, lblk, p, b)
	if err != nil {
		return false, err
	}
	off, used, rec, ok := img.roomIn(r, len(name))
	if !ok {
		return false, nil
	}
	if used == 0 {
		img.setEntry(b, off, ino, name, ft)
		return true, nil
	}
	img.setRecLen(b, off, used)
	no := off + used
	img.setEntry(b, no, ino, name, ft)
	img.setRecLen(b, no, rec-used)
	return true, nil
}

// roomIn finds the first entry of a checked leaf region with room for a
// name of nameLen bytes after its own: its offset, the bytes it uses (0
// for an unused entry) and its rec_len.
func (img *Image) roomIn(r []byte, nameLen int) (off, used, rec int, ok bool) {
	need := direntSize(nameLen)
	for off := 0; off < len(r); {
		rec, ino, name, _ := img.entryAt(r, off)
		used := 0
		if ino != 0 {
			used = direntSize(len(name))
		}
		if rec-used >= need {
			return off, used, rec, true
		}
		off += rec
	}
	return 0, 0, 0, false
}

// checkLeafTail refuses to edit a leaf of a checksummed filesystem that
// lacks its checksum tail: writing the tail would overwrite entries.
func (img *Image) checkLeafTail(dir *inode, lblk uint64, b []byte) error {
	if img.sb.metadataCsum() && !img.hasDirTail(b) {
		return corruptf("directory inode %d block %d has no checksum tail (run e2fsck -fD)", dir.ino, lblk)
	}
	return nil
}

// dirBlockW returns logical block lblk of dir for modification, and its
// physical block.
func (img *Image) dirBlockW(dir *inode, lblk uint64) ([]byte, uint64, error) {
	_, p, err := img.dirBlock(dir, lblk)
	if err != nil {
		return nil, 0, err
	}
	b, err := img.cache.getW(p, kindDir)
	return b, p, err
}

// dirAppendBlock adds an empty block at the end of dir and returns it
// (zeroed, dirty) with its logical and physical numbers. The caller fills
// it.
func (img *Image) dirAppendBlock(dir *inode) ([]byte, uint64, uint64, error) {
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return nil, 0, 0, err
	}
	goal := uint64(0)
	if n > 0 {
		if last, err := img.mapBlock(dir, n-1); err == nil && last != 0 {
			goal = last + 1
		}
	}
	if goal == 0 {
		goal = img.groupFirstBlock(img.groupOfInode(dir.ino))
	}
	runs, err := img.allocBlocks(goal, 1)
	if err != nil {
		return nil, 0, 0, err
	}
	p := runs[0].start
	if err := img.mapAppend(dir, n, p, 1); err != nil {
		return nil, 0, 0, err
	}
	dir.setSize(dir.size() + uint64(img.bs))
	return img.cache.fresh(p, kindDir), n, p, nil
}

// initLeaf makes b an empty leaf: one unused entry and the tail.
func (img *Image) initLeaf(dir *inode, b []byte) {
	clear(b)
	img.setRecLen(b, 0, img.dirEntriesEnd())
	img.setDirTail(dir, b)
}

// dirAdd links name -> ino into dir. The caller has checked name is absent.
func (img *Image) dirAdd(dir *inode, name []byte, ino uint32, ft uint8) error {
	if len(name) == 0 || len(name) > maxNameLen {
		return ErrNameTooLong
	}
	if dir.hasInlineData() {
		return unsupportedf("inline_data directory (inode %d) cannot be written", dir.ino)
	}
	if err := img.checkDirWritable(dir); err != nil {
		return err
	}
	if dir.flags()&flagIndex != 0 {
		return img.dxAdd(dir, name, ino, ft)
	}
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return err
	}
	for lblk := uint64(0); lblk < n; lblk++ {
		b, p, err := img.dirBlock(dir, lblk)
		if err != nil {
			return err
		}
		if !img.blockHasRoom(dir, lblk, p, b, len(name)) {
			continue
		}
		wb, p, err := img.dirBlockW(dir, lblk)
		if err != nil {
			return err
		}
		ok, err := img.tryInsert(dir, lblk, p, wb, name, ino, ft)
		if err != nil {
			return err
		}
		if ok {
			img.setDirTail(dir, wb)
			return img.writeInode(dir)
		}
	}
	// A full one-block directory becomes hash-indexed, as the kernel's
	// make_indexed_dir does.
	if n == 1 && img.sb.hasCompat(compatDirIndex) {
		if err := img.makeIndexed(dir); err != nil {
			return err
		}
		return img.dxAdd(dir, name, ino, ft)
	}
	b, lblk, p, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	img.initLeaf(dir, b)
	if ok, err := img.tryInsert(dir, lblk, p, b, name, ino, ft); err != nil || !ok {
		return fmt.Errorf("internal error: entry does not fit an empty block: %v", err)
	}
	img.setDirTail(dir, b)
	return img.writeInode(dir)
}

// blockHasRoom checks quickly, without dirtying, whether an entry fits.
func (img *Image) blockHasRoom(dir *inode, lblk, p uint64, b []byte, nameLen int) bool {
	r, err := img.leafEntries(dir, lblk, p, b)
	if err != nil {
		return true // let the write path report the corruption
	}
	_, _, _, ok := img.roomIn(r, nameLen)
	return ok
}

// checkDirWritable refuses directories whose layout we do not write.
func (img *Image) checkDirWritable(dir *inode) error {
	switch {
	case dir.flags()&flagEncrypt != 0:
		return unsupportedf("encrypted directory (inode %d)", dir.ino)
	case dir.flags()&flagCasefold != 0:
		return unsupportedf("casefold directory (inode %d)", dir.ino)
	case dir.hasInlineData():
		return unsupportedf("inline_data directory (inode %d) cannot be written", dir.ino)
	}
	return nil
}

// removeFromLeaf unlinks the entry at off in block b (r is its checked
// entry region): the previous entry absorbs it, or, first in the block,
// it becomes unused.
func (img *Image) removeFromLeaf(dir *inode, b, r []byte, off int) {
	prev := -1
	for o := 0; o < off; {
		rec, _, _, _ := img.entryAt(r, o)
		prev = o
		o += rec
	}
	rec, _, name, _ := img.entryAt(r, off)
	if prev >= 0 {
		prec, _, _, _ := img.entryAt(r, prev)
		img.setRecLen(b, prev, prec+rec)
		clear(b[off : off+deName+len(name)])
	} else {
		put32(b, off+deInode, 0)
	}
	img.setDirTail(dir, b)
}

// dirRemove unlinks name from dir and returns the inode it named.
func (img *Image) dirRemove(dir *inode, name []byte) (uint32, error) {
	if err := img.checkDirWritable(dir); err != nil {
		return 0, err
	}
	// Paths through the name may now lead elsewhere or nowhere.
	img.forgetDirPaths()
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return 0, err
	}
	indexed := dir.flags()&flagIndex != 0
	try := func(lblk uint64) (uint32, error) {
		b, p, err := img.dirBlock(dir, lblk)
		if err != nil {
			return 0, err
		}
		if indexed && (lblk == 0 || img.isDxNodeBlock(b)) {
			return 0, nil
		}
		r, err := img.leafEntries(dir, lblk, p, b)
		if err != nil {
			return 0, err
		}
		off, ino, _, ok := img.findInLeaf(r, name)
		if !ok {
			return 0, nil
		}
		if err := img.checkLeafTail(dir, lblk, b); err != nil {
			return 0, err
		}
		wb, p, err := img.dirBlockW(dir, lblk)
		if err != nil {
			return 0, err
		}
		if r, err = img.leafEntries(dir, lblk, p, wb); err != nil {
			return 0, err
		}
		img.removeFromLeaf(dir, wb, r, off)
		return ino, nil
	}
	if indexed {
		leaves, err := img.dxCandidateLeaves(dir, name)
		if err == nil {
			for _, l := range leaves {
				ino, err := try(l)
				if err != nil || ino != 0 {
					return ino, err
				}
			}
			return 0, errNotFound
		}
		if err != errDxFallback {
			return 0, err
		}
	}
	for lblk := uint64(0); lblk < n; lblk++ {
		ino, err := try(lblk)
		if err != nil || ino != 0 {
			return ino, err
		}
	}
	return 0, errNotFound
}

// dirInit writes the first block of a new directory: "." and "..".
func (img *Image) dirInit(dir *inode, parent uint32) error {
	b, _, _, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	img.setEntry(b, 0, dir.ino, []byte("."), ftDir)
	img.setRecLen(b, 0, 12)
	img.setEntry(b, 12, parent, []byte(".."), ftDir)
	img.setRecLen(b, 12, img.dirEntriesEnd()-12)
	img.setDirTail(dir, b)
	return nil
}

// dirSetParent rewrites ".." of dir (a directory moved by Rename).
func (img *Image) dirSetParent(dir *inode, parent uint32) error {
	if dir.hasInlineData() {
		return unsupportedf("inline_data directory (inode %d) cannot be written", dir.ino)
	}
	b, _, err := img.dirBlockW(dir, 0)
	if err != nil {
		return err
	}
	if img.nameLen(b, 12) != 2 || !bytes.Equal(b[12+deName:12+deName+2], []byte("..")) {
		return corruptf("directory inode %d has no \"..\" entry in its first block", dir.ino)
	}
	put32(b, 12+deInode, parent)
	if dir.flags()&flagIndex != 0 {
		img.setDxCsum(dir, b)
	} else {
		img.setDirTail(dir, b)
	}
	return nil
}

// dirIsEmpty reports whether dir holds only "." and "..".
func (img *Image) dirIsEmpty(dir *inode) (bool, error) {
	empty := true
	err := img.dirIter(dir, func(n []byte, _ uint32, _ uint8) bool {
		if string(n) != "." && string(n) != ".." {
			empty = false
			return false
		}
		return true
	})
	return empty, err
}
