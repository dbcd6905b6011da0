package ext4edit

import "fmt"

// Symlinks: a target shorter than i_block (60 bytes) is stored in i_block
// itself (a "fast" symlink, no blocks, no EXTENTS_FL); a longer one in one
// data block. e2fsprogs decides fast vs slow by size alone.
const maxSymlinkLen = 4095 // PATH_MAX - 1; also bounded by the block size

func (img *Image) isFastSymlink(in *inode) bool {
	return in.isSymlink() && !in.hasInlineData() && in.size() > 0 && in.size() < iBlockLen
}

// readlink returns the target of symlink in.
func (img *Image) readlink(in *inode) (string, error) {
	if !in.isSymlink() {
		return "", fmt.Errorf("%w: inode %d is not a symlink", ErrInvalidPath, in.ino)
	}
	n := in.size()
	if n == 0 || n > maxSymlinkLen || n > uint64(img.bs) {
		return "", corruptf("symlink inode %d size %d", in.ino, n)
	}
	if img.isFastSymlink(in) {
		return string(in.iblock()[:n]), nil
	}
	if in.hasInlineData() {
		data, err := img.readInline(in)
		if err != nil {
			return "", err
		}
		if uint64(len(data)) < n {
			return "", corruptf("symlink inode %d inline data shorter than its size", in.ino)
		}
		return string(data[:n]), nil
	}
	p, err := img.mapBlock(in, 0)
	if err != nil {
		return "", err
	}
	if p == 0 {
		return "", corruptf("symlink inode %d has no data block", in.ino)
	}
	buf := make([]byte, img.bs)
	if err := img.readBlock(p, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// writeSymlinkTarget stores target into a fresh symlink inode.
func (img *Image) writeSymlinkTarget(in *inode, target string) error {
	if len(target) == 0 || len(target) > maxSymlinkLen || len(target) >= int(img.bs) {
		return fmt.Errorf("%w: symlink target of %d bytes", ErrNameTooLong, len(target))
	}
	in.setSize(uint64(len(target)))
	if len(target) < iBlockLen {
		in.setFlags(in.flags() &^ flagExtents)
		clear(in.iblock())
		copy(in.iblock(), target)
		return nil
	}
	goal := img.groupFirstBlock(img.groupOfInode(in.ino))
	need := 1 + img.mapOverhead([]fileExtent{{len: 1}}, img.newFileUsesExtents())
	if img.freeBlocksTotal() < need {
		return fmt.Errorf("%w: symlink needs %d blocks", ErrNoSpace, need)
	}
	runs, err := img.allocBlocks(goal, 1)
	if err != nil {
		return err
	}
	buf := make([]byte, img.bs)
	copy(buf, target)
	if err := img.writeData(runs[0].start, buf); err != nil {
		return err
	}
	return img.mapNew(in, []fileExtent{{lblk: 0, pblk: runs[0].start, len: 1}}, runs[0].start)
}
