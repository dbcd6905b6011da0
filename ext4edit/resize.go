package ext4edit

import (
	"fmt"
	"io/fs"
	"math/bits"
)

// Resize changes the filesystem in the image file at path to size bytes
// (whole blocks: the rest is dropped) and the file with it, and returns
// the filesystem's old and new size in bytes. See [Image.Resize].
func Resize(path string, size int64, opts *Options) (oldSize, newSize int64, err error) {
	img, err := Open(path, opts)
	if err != nil {
		return 0, 0, err
	}
	oldSize = img.Size()
	if err := img.Resize(size); err != nil {
		_ = img.Discard()
		return oldSize, oldSize, err
	}
	newSize = img.Size()
	return oldSize, newSize, img.Close()
}

// Size is the filesystem's size in bytes.
func (img *Image) Size() int64 {
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.bytes()
}

// Resize grows or shrinks the filesystem to size bytes, rounded down to
// whole blocks, and extends or cuts the image file to match.
//
// Growing fills the last group and adds groups, as resize2fs does: the
// descriptor table grows into the blocks resize_inode reserved for it,
// and past them (or without them) the filesystem switches to meta_bg;
// the new groups' bitmaps and inode tables are placed by flex group like
// mke2fs places them, and with group checksums the new groups are left
// uninitialised, so growing to terabytes writes a few megabytes and the
// file stays sparse. Like resize2fs, a last group too small to hold its
// own metadata and 50 blocks is left out, so the new size may be a little
// below size. A filesystem without 64bit stops at 2^32 - 1 blocks.
//
// Shrinking moves what lives past the new end into free space before it,
// as resize2fs does: file, directory and symlink data, extent and
// indirect blocks, attribute blocks, the journal; inodes of removed
// groups get free numbers in the kept ones, with every directory entry
// naming them rewritten. Content that does not fit, or a change too
// large for one journal transaction, is refused with ErrNoSpace;
// [Image.MinSize] is the smallest size that fits. Moving a
// kept group's bitmaps or inode table (which flex_bg may place after it)
// is not implemented: such a size is refused with ErrUnsupportedFeature.
//
// The change is one journal transaction where the filesystem has a
// journal (the blocks past the old end, or a shrink's moved data, are
// written and made durable before it, in blocks the old filesystem does
// not use): a crash leaves the old filesystem or the new one. A
// filesystem without a journal borrows one for the resize (1024 blocks
// or what the transaction needs, removed again after it;
// resize_tempjournal.go): a crash leaves the old or the new filesystem,
// after e2fsck -p at most (it reclaims the journal's blocks), or with
// the journal still in place if the crash hit the transaction itself.
// A shrink must leave room for that journal (MinSize counts it); a grow
// of a filesystem too full to hold one goes the ordered way, and a crash
// midway can then need e2fsck -fy. Scratch images (Options.Scratch)
// make no crash promise and borrow nothing. Pending edits are committed
// first; Files open for writing must be closed.
// Every check happens before the first write: a refused resize leaves
// the image as it was. The filesystem must start at the file's first
// byte (no Options.Offset or Partition), so that the file's size can
// follow it.
func (img *Image) Resize(size int64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	err := img.resize(size)
	return pathErr("resize", img.path, err)
}

func (img *Image) resize(size int64) error {
	if err := img.writable(); err != nil {
		return err
	}
	if img.off != 0 || img.opts.Partition > 0 {
		return unsupportedf("resizing a filesystem that does not start at the image file's first byte (offset or partition)")
	}
	if len(img.files.open) > 0 {
		return fmt.Errorf("%w: %d files open for writing: close them before resizing", fs.ErrInvalid, len(img.files.open))
	}
	if size < 0 {
		return fmt.Errorf("%w: size %d", fs.ErrInvalid, size)
	}
	want := uint64(size) / uint64(img.bs)
	if !img.sb.hasIncompat(incompat64bit) {
		const max32 = 1<<32 - 1
		switch {
		case want == max32+1:
			want = max32
		case want > max32:
			return unsupportedf("growing to %d blocks: without the 64bit feature a filesystem ends at 2^32 - 1 blocks (%d bytes)", want, uint64(max32)*uint64(img.bs))
		}
	}
	if want == img.blocksCount {
		return nil
	}
	if err := img.commit(); err != nil {
		return err
	}
	if want < img.blocksCount {
		return img.shrink(want, false)
	}
	if img.needsTempJournal() {
		return img.growBorrowing(want)
	}
	return img.grow(want)
}

// resizedSuperblock is the superblock of this filesystem at blocks blocks
// (grown or shrunk), and its geometry: counts, the descriptor table's
// reservation, meta_bg, sparse_super2's backup groups. Like resize2fs's
// adjust_fs_info, a last group that cannot hold its own metadata plus 50
// blocks is dropped, and so are groups whose inodes would not fit 32 bits.
func (img *Image) resizedSuperblock(blocks uint64) (superblock, geometry, error) {
	old := img.geometry
	for {
		sb := superblock{b: append([]byte(nil), img.sb.b...)}
		groups := groupsFor(blocks, old.firstDataBlock, old.bpg)
		if groups*uint64(old.ipg) > 1<<32-1 {
			groups = (1<<32 - 1) / uint64(old.ipg)
			blocks = uint64(old.firstDataBlock) + groups*uint64(old.bpg)
			continue
		}
		put32(sb.b, sbBlocksCountLo, uint32(blocks))
		put32(sb.b, sbBlocksCountHi, 0)
		if sb.hasIncompat(incompat64bit) {
			put32(sb.b, sbBlocksCountHi, uint32(blocks>>32))
		}
		put32(sb.b, sbInodesCount, uint32(groups)*old.ipg)
		// The reserved blocks keep their share of the filesystem.
		r := mulDiv(sb.rBlocksCount(), blocks, old.blocksCount)
		put32(sb.b, sbRBlocksCountLo, uint32(r))
		if sb.hasIncompat(incompat64bit) {
			put32(sb.b, sbRBlocksCountHi, uint32(r>>32))
		}
		put32(sb.b, sbOverheadClusters, 0)
		descBlocks := gdtBlocksFor(uint32(groups), old.descSize, old.bs)
		if descBlocks < old.gdtBlocks && old.compat.has(compatResizeInode) {
			// Shrinking, like resize2fs's adjust_reserved_gdt_blocks:
			// the table's freed blocks join the reservation, which stays
			// within one indirect block of the resize inode.
			put16(sb.b, sbReservedGdtBlocks, uint16(min(old.gdtBlocks+old.reservedGdt-descBlocks, old.bs/4)))
		}
		if old.incompat.has(incompatMetaBG) && le32(sb.b, sbFirstMetaBg) > descBlocks {
			// Every descriptor block left is a classic one: e2fsck
			// refuses s_first_meta_bg past the table, so meta_bg goes,
			// as resize2fs's adjust_fs_info turns it off.
			put32(sb.b, sbFirstMetaBg, 0)
			sb.setIncompat(sb.incompat() &^ incompatMetaBG)
		}
		if !old.incompat.has(incompatMetaBG) && descBlocks > old.gdtBlocks {
			if descBlocks <= old.gdtBlocks+old.reservedGdt {
				put16(sb.b, sbReservedGdtBlocks, uint16(old.gdtBlocks+old.reservedGdt-descBlocks))
			} else {
				// The table outgrows its reservation: like the kernel's
				// online resize (ext4_convert_meta_bg), the reserved blocks
				// join the table, which stops there, and every later
				// descriptor block lives in its own meta group.
				put16(sb.b, sbReservedGdtBlocks, 0)
				put32(sb.b, sbFirstMetaBg, old.gdtBlocks+old.reservedGdt)
				sb.setIncompat(sb.incompat() | incompatMetaBG)
				sb.setCompat(sb.compat() &^ compatResizeInode)
			}
		}
		if sb.hasCompat(compatSparseSuper2) {
			// resize2fs: the second backup follows the last group.
			last := uint32(groups - 1)
			switch {
			case uint64(old.groupCount) < groups:
				if old.groupCount == 1 {
					put32(sb.b, sbBackupBgs, 1)
				}
				if (old.groupCount < 3 && groups > 2) || le32(sb.b, sbBackupBgs+4) != 0 {
					put32(sb.b, sbBackupBgs+4, last)
				}
			case uint64(old.groupCount) > groups:
				for i := 0; i < 2; i++ {
					if le32(sb.b, sbBackupBgs+4*i) > last {
						put32(sb.b, sbBackupBgs+4*i, 0)
					}
				}
				if last > 1 && old.backupBgs[1] == old.groupCount-1 {
					put32(sb.b, sbBackupBgs+4, last)
				}
			}
		}
		geo, err := newGeometry(sb)
		if err != nil {
			return sb, geo, err
		}
		last := geo.groupCount - 1
		rem := uint64(geo.groupBlocks(last))
		need := geo.metaEnd(last) - geo.groupFirstBlock(last) + 2 + uint64(geo.itableBlocks)
		if geo.groupCount > 1 && rem < uint64(geo.bpg) && rem < need+50 {
			blocks -= rem
			continue
		}
		if rem < need {
			return sb, geo, fmt.Errorf("%w: %d blocks hold no group", fs.ErrInvalid, blocks)
		}
		return sb, geo, nil
	}
}

// mulDiv is a*b/c without overflow (c > 0, result fits: a <= c here).
func mulDiv(a, b, c uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= c {
		return b
	}
	q, _ := bits.Div64(hi, lo, c)
	return q
}
