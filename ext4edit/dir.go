package ext4edit

import (
	"bytes"
	"fmt"
)

// Directory entries (struct ext4_dir_entry_2), packed in directory blocks:
const (
	deInode    = 0 // __le32 inode (0 = unused entry)
	deRecLen   = 4 // __le16 rec_len: distance to the next entry
	deNameLen  = 6 // __u8 name_len (a __le16 without the filetype feature)
	deFileType = 7 // __u8 file_type (filetype feature)
	deName     = 8 // name, not NUL-terminated, padded to 4 bytes

	// With metadata_csum every leaf block ends with struct
	// ext4_dir_entry_tail: a fake 12-byte entry {0, rec_len 12, 0, 0xDE}
	// whose last 4 bytes are the crc32c of the block before it.
	dirTailSize = 12
	dirTailFT   = 0xDE

	maxNameLen = 255
)

// File type codes of file_type.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

func fileTypeOf(mode uint16) uint8 {
	switch mode & sIFMT {
	case sIFREG:
		return ftReg
	case sIFDIR:
		return ftDir
	case sIFCHR:
		return ftChr
	case sIFBLK:
		return ftBlk
	case sIFIFO:
		return ftFifo
	case sIFSOCK:
		return ftSock
	case sIFLNK:
		return ftSymlink
	}
	return ftUnknown
}

// direntSize is the space an entry with an n-byte name needs.
func direntSize(n int) int { return (deName + n + 3) &^ 3 }

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
// ext4_check_dir_entry does. Unused entries (ino 0) are included.
func (img *Image) parseDirBlock(dir *inode, lblk uint64, b []byte) ([]dirent, error) {
	end := len(b)
	if img.sb.metadataCsum() && img.hasDirTail(b) {
		end -= dirTailSize
		if le32(b, end+8) != crc32cRaw(img.inodeCsumSeed(dir), b[:end]) {
			return nil, corruptf("directory inode %d block %d checksum mismatch", dir.ino, lblk)
		}
	}
	return img.parseEntries(dir, fmt.Sprintf("block %d", lblk), b[:end])
}

// parseEntries decodes the entries packed in region (a leaf block without
// its tail, or an inline-data area).
func (img *Image) parseEntries(dir *inode, where string, b []byte) ([]dirent, error) {
	end := len(b)
	var out []dirent
	for off := 0; off < end; {
		if off+deName > end {
			return nil, corruptf("directory inode %d %s: entry at %d runs past the end", dir.ino, where, off)
		}
		rec := img.recLen(b, off)
		nl := img.nameLen(b, off)
		if rec < deName+4 || rec%4 != 0 || off+rec > end || nl > maxNameLen || direntSize(nl) > rec {
			return nil, corruptf("directory inode %d %s: bad entry at %d (rec_len %d, name_len %d)", dir.ino, where, off, rec, nl)
		}
		ino := le32(b, off+deInode)
		if ino > img.sb.inodesCount() {
			return nil, corruptf("directory inode %d %s: entry at %d names inode %d", dir.ino, where, off, ino)
		}
		out = append(out, dirent{off: off, rec: rec, ino: ino, name: b[off+deName : off+deName+nl], ft: img.fileType(b, off)})
		off += rec
	}
	return out, nil
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
		b, _, err := img.dirBlock(dir, lblk)
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
		ents, err := img.parseDirBlock(dir, lblk, b)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if e.ino != 0 && !fn(e.name, e.ino, e.ft) {
				return nil
			}
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

// tryInsert puts an entry into leaf block b if there is room, returning
// whether it did.
func (img *Image) tryInsert(dir *inode, lblk uint64, b []byte, name []byte, ino uint32, ft uint8) (bool, error) {
	if err := img.checkLeafTail(dir, lblk, b); err != nil {
		return false, err
	}
	ents, err := img.parseDirBlock(dir, lblk, b)
	if err != nil {
		return false, err
	}
	need := direntSize(len(name))
	for _, e := range ents {
		used := 0
		if e.ino != 0 {
			used = direntSize(len(e.name))
		}
		if e.rec-used < need {
			continue
		}
		if e.ino == 0 {
			img.setEntry(b, e.off, ino, name, ft)
			return true, nil
		}
		img.setRecLen(b, e.off, used)
		no := e.off + used
		img.setEntry(b, no, ino, name, ft)
		img.setRecLen(b, no, e.rec-used)
		return true, nil
	}
	return false, nil
}

// checkLeafTail refuses to edit a leaf of a checksummed filesystem that
// lacks its checksum tail: writing the tail would overwrite entries.
func (img *Image) checkLeafTail(dir *inode, lblk uint64, b []byte) error {
	if img.sb.metadataCsum() && !img.hasDirTail(b) {
		return corruptf("directory inode %d block %d has no checksum tail (run e2fsck -fD)", dir.ino, lblk)
	}
	return nil
}

// dirBlockW returns logical block lblk of dir for modification.
func (img *Image) dirBlockW(dir *inode, lblk uint64) ([]byte, error) {
	_, p, err := img.dirBlock(dir, lblk)
	if err != nil {
		return nil, err
	}
	return img.cache.getW(p, kindDir)
}

// dirAppendBlock adds an empty block at the end of dir and returns it
// (zeroed, dirty) with its logical number. The caller fills it.
func (img *Image) dirAppendBlock(dir *inode) ([]byte, uint64, error) {
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return nil, 0, err
	}
	goal := uint64(0)
	if n > 0 {
		if last, err := img.mapBlock(dir, n-1); err == nil && last != 0 {
			goal = last + 1
		}
	}
	if goal == 0 {
		goal = img.groupFirstBlock((dir.ino - 1) / img.ipg)
	}
	runs, err := img.allocBlocks(goal, 1)
	if err != nil {
		return nil, 0, err
	}
	p := runs[0].start
	if err := img.mapAppend(dir, n, p, 1); err != nil {
		return nil, 0, err
	}
	dir.setSize(dir.size() + uint64(img.bs))
	return img.cache.fresh(p, kindDir), n, nil
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
		b, _, err := img.dirBlock(dir, lblk)
		if err != nil {
			return err
		}
		if !img.blockHasRoom(dir, lblk, b, len(name)) {
			continue
		}
		wb, err := img.dirBlockW(dir, lblk)
		if err != nil {
			return err
		}
		ok, err := img.tryInsert(dir, lblk, wb, name, ino, ft)
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
	b, lblk, err := img.dirAppendBlock(dir)
	if err != nil {
		return err
	}
	img.initLeaf(dir, b)
	if ok, err := img.tryInsert(dir, lblk, b, name, ino, ft); err != nil || !ok {
		return fmt.Errorf("internal error: entry does not fit an empty block: %v", err)
	}
	img.setDirTail(dir, b)
	return img.writeInode(dir)
}

// blockHasRoom checks quickly, without dirtying, whether an entry fits.
func (img *Image) blockHasRoom(dir *inode, lblk uint64, b []byte, nameLen int) bool {
	ents, err := img.parseDirBlock(dir, lblk, b)
	if err != nil {
		return true // let the write path report the corruption
	}
	need := direntSize(nameLen)
	for _, e := range ents {
		used := 0
		if e.ino != 0 {
			used = direntSize(len(e.name))
		}
		if e.rec-used >= need {
			return true
		}
	}
	return false
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

// removeFromLeaf unlinks the entry at off in block b.
func (img *Image) removeFromLeaf(dir *inode, b []byte, ents []dirent, i int) {
	e := ents[i]
	if i > 0 {
		p := ents[i-1]
		img.setRecLen(b, p.off, p.rec+e.rec)
		clear(b[e.off : e.off+deName+len(e.name)])
	} else {
		put32(b, e.off+deInode, 0)
	}
	img.setDirTail(dir, b)
}

// dirRemove unlinks name from dir and returns the inode it named.
func (img *Image) dirRemove(dir *inode, name []byte) (uint32, error) {
	if err := img.checkDirWritable(dir); err != nil {
		return 0, err
	}
	n, err := img.dirBlockCount(dir)
	if err != nil {
		return 0, err
	}
	indexed := dir.flags()&flagIndex != 0
	try := func(lblk uint64) (uint32, error) {
		b, _, err := img.dirBlock(dir, lblk)
		if err != nil {
			return 0, err
		}
		if indexed && (lblk == 0 || img.isDxNodeBlock(b)) {
			return 0, nil
		}
		ents, err := img.parseDirBlock(dir, lblk, b)
		if err != nil {
			return 0, err
		}
		for i, e := range ents {
			if e.ino != 0 && bytes.Equal(e.name, name) {
				if err := img.checkLeafTail(dir, lblk, b); err != nil {
					return 0, err
				}
				wb, err := img.dirBlockW(dir, lblk)
				if err != nil {
					return 0, err
				}
				ents, _ = img.parseDirBlock(dir, lblk, wb)
				img.removeFromLeaf(dir, wb, ents, i)
				return e.ino, nil
			}
		}
		return 0, nil
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
	b, _, err := img.dirAppendBlock(dir)
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
	b, err := img.dirBlockW(dir, 0)
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
