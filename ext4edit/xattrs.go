package ext4edit

import (
	"encoding/binary"
	"fmt"
)

// Extended attributes of an inode: the in-inode area after i_extra_isize
// and at most one attribute block (i_file_acl), possibly shared between
// inodes (h_refcount).

// xattrArea returns the in-inode attribute area, nil when there is none.
func (img *Image) xattrArea(in *inode) []byte {
	if len(in.b) <= goodOldInodeSize {
		return nil
	}
	start := goodOldInodeSize + in.extraIsize()
	if start+xattrIbodyHdrSize >= uint32(len(in.b)) {
		return nil
	}
	return in.b[start:]
}

// xattrBlockCsum is ext4_xattr_block_csum: seeded with the block number.
func (img *Image) xattrBlockCsum(blk uint64, b []byte) uint32 {
	var nr [8]byte
	binary.LittleEndian.PutUint64(nr[:], blk)
	c := crc32cRaw(img.csumSeed, nr[:])
	c = crc32cRaw(c, b[:xattrHdrChecksum])
	c = crc32cRaw(c, []byte{0, 0, 0, 0})
	return crc32cRaw(c, b[xattrHdrChecksum+4:])
}

// readXattrBlock reads and checks in's attribute block.
func (img *Image) readXattrBlock(in *inode) ([]xattrEntry, uint32, error) {
	blk := in.fileACL()
	if blk == 0 {
		return nil, 0, nil
	}
	if !img.inFS(blk) {
		return nil, 0, corruptf("inode %d xattr block %d outside the filesystem", in.ino, blk)
	}
	b, err := img.cache.get(blk)
	if err != nil {
		return nil, 0, err
	}
	if img.sb.metadataCsum() && le32(b, xattrHdrChecksum) != img.xattrBlockCsum(blk, b) {
		return nil, 0, corruptf("inode %d xattr block %d checksum mismatch", in.ino, blk)
	}
	ents, ref, err := decodeXattrBlock(b)
	if err != nil {
		return nil, 0, fmt.Errorf("inode %d xattr block %d: %w", in.ino, blk, err)
	}
	return ents, ref, nil
}

// xattrs returns the in-inode and block attributes of in.
func (img *Image) xattrs(in *inode) (inInode, inBlock []xattrEntry, err error) {
	if area := img.xattrArea(in); area != nil {
		if inInode, err = decodeInodeXattrs(area); err != nil {
			return nil, nil, fmt.Errorf("inode %d: %w", in.ino, err)
		}
	}
	inBlock, _, err = img.readXattrBlock(in)
	return inInode, inBlock, err
}

func (img *Image) getXattr(in *inode, name string) ([]byte, bool, error) {
	a, b, err := img.xattrs(in)
	if err != nil {
		return nil, false, err
	}
	for _, e := range append(a, b...) {
		if e.Name == name {
			if e.ValueInum != 0 {
				return nil, true, unsupportedf("xattr %q stored in EA inode %d", name, e.ValueInum)
			}
			return e.Value, true, nil
		}
	}
	return nil, false, nil
}

// setXattr sets (value != nil) or removes (value == nil) attribute name,
// preferring the inode's own area like the kernel. in is written by the
// caller. Attributes that cannot fit fail with ErrXattrTooLarge before
// anything changes.
func (img *Image) setXattr(in *inode, name string, value []byte) error {
	st, err := img.xattrState(in)
	if err != nil {
		return err
	}
	blockChanged, err := img.placeXattr(in, st, name, value)
	if err != nil || !blockChanged {
		return err
	}
	return img.writeXattrBlock(in, st.inBlock)
}

// xattrSet is the attributes of one inode while they are being changed.
type xattrSet struct{ inInode, inBlock []xattrEntry }

func (img *Image) xattrState(in *inode) (*xattrSet, error) {
	if !img.sb.hasCompat(compatExtAttr) {
		return nil, unsupportedf("extended attributes on a filesystem without ext_attr")
	}
	a, b, err := img.xattrs(in)
	if err != nil {
		return nil, err
	}
	return &xattrSet{a, b}, nil
}

// placeXattr sets or removes name in st and in in's attribute area (in
// memory, nothing allocated) and reports whether the block's list
// changed; the caller writes the block. A File checks every attribute it
// will set at Close this way, on a copy of the inode, before its
// operation changes anything.
func (img *Image) placeXattr(in *inode, st *xattrSet, name string, value []byte) (bool, error) {
	if len(name) == 0 || len(name) > 255+len("system.posix_acl_default") {
		return false, fmt.Errorf("%w: xattr name %q", ErrInvalidPath, name)
	}
	drop := func(es []xattrEntry) ([]xattrEntry, bool) {
		var out []xattrEntry
		found := false
		for _, e := range es {
			if e.Name == name {
				found = true
				continue
			}
			out = append(out, e)
		}
		return out, found
	}
	inInode, foundI := drop(st.inInode)
	inBlock, foundB := drop(st.inBlock)
	if value == nil && !foundI && !foundB {
		return false, errNotFound
	}
	area := img.xattrArea(in)
	blockChanged := foundB
	if value != nil {
		ne := xattrEntry{Name: name, Value: value}
		placed := false
		if area != nil {
			withNew := append(append([]xattrEntry(nil), inInode...), ne)
			if enc, err := encodeInodeXattrs(withNew, len(area)); err == nil {
				copy(area, enc)
				inInode, placed = withNew, true
			}
		}
		if !placed {
			if err := img.checkXattrBlockRoom(name, value, inInode, inBlock, len(area)); err != nil {
				return false, err
			}
			inBlock = append(inBlock, ne)
			blockChanged = true
		}
		if !placed && foundI {
			enc, err := encodeInodeXattrs(inInode, len(area))
			if err != nil {
				return false, err
			}
			copy(area, enc)
		}
	} else if foundI {
		enc, err := encodeInodeXattrs(inInode, len(area))
		if err != nil {
			return false, err
		}
		copy(area, enc)
	}
	st.inInode, st.inBlock = inInode, inBlock
	return blockChanged, nil
}

// checkXattrBlockRoom fails with ErrXattrTooLarge when attribute name,
// which does not fit the inode's area (areaSize bytes, holding inInode),
// does not fit the attribute block beside the others there (inBlock)
// either: without ea_inode there is no third place, so a bigger image
// cannot help and ErrNoSpace would mislead.
func (img *Image) checkXattrBlockRoom(name string, value []byte, inInode, inBlock []xattrEntry, areaSize int) error {
	// Only the names and values count; invalid entries fail later with
	// their own error.
	one, _, _, err := prepareXattrEntries([]xattrEntry{{Name: name, Value: value}})
	if err != nil {
		return err
	}
	need := xattrEntryLen(len(one[0].suffix)) + xattrValueLen(len(value))
	_, blockList, blockVals, err := prepareXattrEntries(inBlock)
	if err != nil {
		return err
	}
	blockFree := int(img.bs) - xattrHdrSize - blockList - blockVals
	if need <= blockFree {
		return nil
	}
	bodyFree := 0
	if areaSize > 0 {
		// An area holds its magic and the end marker besides entries.
		_, l, v, err := prepareXattrEntries(inInode)
		if err != nil {
			return err
		}
		bodyFree = max(areaSize-xattrIbodyHdrSize-l-v, 0)
	}
	return fmt.Errorf("%w: %q needs %d bytes (%d-byte entry and name, %d-byte value, padded) but at most %d are free: %d of %d in the inode body, %d of the one %d-byte attribute block",
		ErrXattrTooLarge, name, need, xattrEntryLen(len(one[0].suffix)), len(value), max(bodyFree, blockFree),
		bodyFree, max(areaSize-xattrIbodyHdrSize-4, 0), max(blockFree, 0), img.bs)
}

// writeXattrBlock replaces in's attribute block with ents: a shared block
// is left to its other users (copy on write), an empty set frees it.
func (img *Image) writeXattrBlock(in *inode, ents []xattrEntry) error {
	old := in.fileACL()
	var oldRef uint32
	if old != 0 {
		_, ref, err := img.readXattrBlock(in)
		if err != nil {
			return err
		}
		oldRef = ref
	}
	if len(ents) == 0 {
		if old != 0 {
			if err := img.dropXattrBlockRef(old, oldRef); err != nil {
				return err
			}
			in.setFileACL(0)
			return in.addBlocks(img, -1)
		}
		return nil
	}
	enc, err := encodeXattrBlock(ents, 1, int(img.bs))
	if err != nil {
		return fmt.Errorf("xattrs of inode %d: %w", in.ino, err)
	}
	blk := old
	if old == 0 || oldRef > 1 {
		runs, err := img.allocBlocks(img.groupFirstBlock((in.ino-1)/img.ipg), 1)
		if err != nil {
			return err
		}
		blk = runs[0].start
		if old != 0 {
			if err := img.dropXattrBlockRef(old, oldRef); err != nil {
				return err
			}
		} else if err := in.addBlocks(img, 1); err != nil {
			return err
		}
		in.setFileACL(blk)
	}
	var b []byte
	if blk == old {
		// Rewritten in place: the committed tree points at it already.
		if b, err = img.cache.getW(blk, kindMeta); err != nil {
			return err
		}
		clear(b)
	} else {
		b = img.cache.fresh(blk, kindMeta)
	}
	copy(b, enc)
	if img.sb.metadataCsum() {
		put32(b, xattrHdrChecksum, img.xattrBlockCsum(blk, b))
	}
	return nil
}

// dropXattrBlockRef releases one reference to a shared attribute block.
func (img *Image) dropXattrBlockRef(blk uint64, ref uint32) error {
	if ref <= 1 {
		img.freeBlocks(blk, 1)
		return nil
	}
	b, err := img.cache.getW(blk, kindMeta)
	if err != nil {
		return err
	}
	put32(b, xattrHdrRefcount, ref-1)
	if img.sb.metadataCsum() {
		put32(b, xattrHdrChecksum, img.xattrBlockCsum(blk, b))
	}
	return nil
}
