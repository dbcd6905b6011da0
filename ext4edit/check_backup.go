package ext4edit

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Like e2fsck, the checker falls back to the first backup superblock
// (group 1) and the descriptor table after it when the primary
// superblock is unusable or the primary table places a bitmap or inode
// table where it cannot be (ext2fs_check_desc). e2fsck -n then checks the
// filesystem those describe and, when it is consistent, exits 0: the
// damaged primary is something a repair would simply overwrite. The
// report says so in a note.

// backupCandidate says whether a failure to open the primary should be
// retried with a backup: a superblock or geometry problem. A descriptor
// checksum mismatch is not (e2fsck reports it).
func backupCandidate(err error) bool {
	return errors.Is(err, ErrCorrupt) && !strings.Contains(err.Error(), "descriptor checksum")
}

// openBackup opens the filesystem in path read-only as its group 1
// backup superblock and descriptor table describe it: those are laid over
// the primary's blocks in the image's read overlay, so every read sees
// them where the primary would be.
func openBackup(path string, opts *CheckOptions) (*Image, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	off := opts.Offset
	limit := int64(-1)
	if opts.Partition > 0 {
		poff, psize, err := partitionOffset(f, opts.Partition)
		if err != nil {
			return nil, 0, err
		}
		off, limit = poff, psize
	}
	// mke2fs's geometry: a group has 8 x block size blocks, so group 1
	// starts at block 8193 (1 KiB blocks) or 8 x block size.
	for _, bs := range []uint32{1024, 2048, 4096, 8192, 16384, 32768, 65536} {
		first := uint64(8 * bs)
		if bs == 1024 {
			first++
		}
		sbb := make([]byte, superblockSize)
		if _, err := f.ReadAt(sbb, off+int64(first)*int64(bs)); err != nil {
			continue
		}
		sb := superblock{b: sbb}
		if le16(sbb, sbMagic) != ext4Magic || 1024<<le32(sbb, sbLogBlockSize) != bs || sb.blocksPerGroup() != 8*bs || !sb.checksumOK() {
			continue
		}
		g, err := newGeometry(sb)
		if err != nil || g.groupCount < 2 {
			continue
		}
		img := &Image{f: f, dev: fileDevice{f}, path: path, ro: true, opts: Options{ReadOnly: true, NoLock: true}, off: off, now: time.Now}
		img.geometry = g
		img.bs = bs
		img.overlay = map[uint64][]byte{}
		// The superblock, in the primary's block.
		pblk, poff := g.superblockBlock()
		blk := make([]byte, bs)
		if _, err := f.ReadAt(blk, off+int64(pblk)*int64(bs)); err != nil {
			continue
		}
		copy(blk[poff:], sbb)
		img.overlay[pblk] = blk
		// The backup table follows the backup superblock (outside meta_bg).
		if g.incompat.has(incompatMetaBG) {
			continue
		}
		for i := uint32(0); i < g.gdtBlocks; i++ {
			b := make([]byte, bs)
			if _, err := f.ReadAt(b, off+int64(first+1+uint64(i))*int64(bs)); err != nil {
				break
			}
			img.overlay[g.descBlock(i)] = b
		}
		if err := img.load(limit); err != nil {
			continue
		}
		img.resetState()
		// e2fsck trusts no lazy-init flag of a backup table (it may be
		// older than the groups it describes): every bitmap and inode is
		// read. So does the checker, in memory only.
		for gi := uint32(0); gi < g.groupCount; gi++ {
			d := img.gd(gi)
			d.setFlags(d.flags() &^ (bgBlockUninit | bgInodeUninit))
			d.setItableUnused(0)
		}
		ok = true
		return img, first, nil
	}
	return nil, 0, fmt.Errorf("%w: no usable backup superblock", ErrCorrupt)
}

// descLocationsOK is ext2fs_check_desc's test: every group's bitmaps and
// inode table inside its group (the whole filesystem with flex_bg), clear
// of the superblocks and descriptor tables and of each other. It sorts
// the groups' metadata ranges rather than marking a bitmap of the
// filesystem: a few words per group.
func descLocationsOK(img *Image) bool {
	ranges := make([][2]uint64, 0, 4*uint64(img.groupCount))
	for g := uint32(0); g < img.groupCount; g++ {
		if first, end := img.groupFirstBlock(g), img.metaEnd(g); end > first {
			if first == 0 && img.bs == 1024 {
				first = 1
			}
			ranges = append(ranges, [2]uint64{first, end})
		}
	}
	flex := img.incompat.has(incompatFlexBG)
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		lo, hi := uint64(img.firstDataBlock), img.blocksCount
		if !flex {
			lo, hi = img.groupFirstBlock(g), img.groupFirstBlock(g)+uint64(img.groupBlocks(g))
		}
		for _, r := range [][2]uint64{{d.blockBitmap(), 1}, {d.inodeBitmap(), 1}, {d.inodeTable(), uint64(img.itableBlocks)}} {
			if r[0] < lo || r[0]+r[1] > hi || r[0]+r[1] < r[0] {
				return false
			}
			ranges = append(ranges, [2]uint64{r[0], r[0] + r[1]})
		}
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i][0] < ranges[j][0] })
	for i := 1; i < len(ranges); i++ {
		if ranges[i][0] < ranges[i-1][1] {
			return false
		}
	}
	return true
}
