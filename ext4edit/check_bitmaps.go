package ext4edit

import (
	"bytes"
	"fmt"
	"strings"
)

// passBitmaps is e2fsck's pass 5: each group's block and inode bitmaps
// (as the kernel initialises them where the group is flagged
// uninitialised) against what passes 1 to 4 found, their checksums and
// padding, and the group's free counts.
func (c *checker) passBitmaps() {
	img := c.img
	bb := make([]byte, img.bs)
	ib := make([]byte, img.bs)
	for g := uint32(0); g < img.groupCount; g++ {
		c.groupBlockBitmap(g, bb)
		c.groupInodeBitmap(g, ib)
	}
}

// groupBlockBitmap checks group g's block bitmap (read into bb, or made
// as the kernel would for an uninitialised group) and free blocks count.
func (c *checker) groupBlockBitmap(g uint32, bb []byte) {
	img := c.img
	csums := c.sb.groupCsums()
	d := img.gd(g)
	where := fmt.Sprintf("group %d", g)
	first, n := img.groupFirstBlock(g), uint64(img.groupBlocks(g))
	blockUninit := csums && d.flags()&bgBlockUninit != 0
	if blockUninit {
		// The kernel's bitmap for the group: its superblock and
		// descriptor copies, and its own bitmaps and table where they
		// lie inside it. Every one of those is in used already, so equal
		// counts mean equal sets: the common case (the empty groups of
		// a large image) needs no comparison bit by bit.
		var own uint64
		img.superAndDescBlocks(g, func(blk uint64) {
			if blk >= first && blk < first+n {
				own++
			}
		})
		for _, r := range [][2]uint64{{d.blockBitmap(), 1}, {d.inodeBitmap(), 1}, {d.inodeTable(), uint64(img.itableBlocks)}} {
			for b := r[0]; b < r[0]+r[1]; b++ {
				if b >= first && b < first+n {
					own++
				}
			}
		}
		if uint64(c.groupUsed[g]) == own {
			if free := n - own; uint64(d.freeBlocks()) != free {
				c.problem(KindFreeCount, where, "", "free blocks count %d, counted %d", d.freeBlocks(), free)
			}
			return
		}
		clear(bb)
		img.superAndDescBlocks(g, func(blk uint64) {
			if blk >= first && blk < first+n {
				setBit(bb, blk-first)
			}
		})
		for _, r := range [][2]uint64{{d.blockBitmap(), 1}, {d.inodeBitmap(), 1}, {d.inodeTable(), uint64(img.itableBlocks)}} {
			for b := r[0]; b < r[0]+r[1]; b++ {
				if b >= first && b < first+n {
					setBit(bb, b-first)
				}
			}
		}
	} else if err := img.readBlock(d.blockBitmap(), bb); err != nil {
		c.problem(KindUnreadable, where, "", "block bitmap: %v", err)
		return
	} else if c.sb.metadataCsum() && !bitmapCsumMatches(d, bb[:img.bpg/8], loHi{bgBlockBitmapCsumLo, bgBlockBitmapCsumHi}, img.csumSeed) {
		c.problem(KindBitmapChecksum, where, "", "block bitmap checksum mismatch")
	}
	var inUseFree, freeInUse []uint64
	var usedHere uint64
	if first%8 == 0 && n%8 == 0 && bytes.Equal(c.used[first/8:(first+n)/8], bb[:n/8]) {
		// The common case, a byte at a time: the group's bits agree.
		usedHere = onesCount(bb[:n/8])
	} else {
		for i := uint64(0); i < n; i++ {
			u := testBit(c.used, first+i)
			if u {
				usedHere++
			}
			if on := testBit(bb, i); u && !on {
				inUseFree = append(inUseFree, first+i)
			} else if !u && on {
				freeInUse = append(freeInUse, first+i)
			}
		}
	}
	if len(inUseFree)+len(freeInUse) > 0 {
		c.problem(KindBlockBitmap, where, "", "%s", bitmapDiff("block", inUseFree, freeInUse))
	}
	if !blockUninit && g == img.groupCount-1 {
		for i := n; i < uint64(img.bpg); i++ {
			if !testBit(bb, i) {
				c.problem(KindBitmapPadding, where, "", "block bitmap padding past block %d is not set", first+n-1)
				break
			}
		}
	}
	if free := n - usedHere; uint64(d.freeBlocks()) != free {
		c.problem(KindFreeCount, where, "", "free blocks count %d, counted %d", d.freeBlocks(), free)
	}

}

// groupInodeBitmap checks group g's inode bitmap (read into ib), its free
// inodes and directories counts, and itable_unused.
func (c *checker) groupInodeBitmap(g uint32, ib []byte) {
	img := c.img
	csums := c.sb.groupCsums()
	d := img.gd(g)
	where := fmt.Sprintf("group %d", g)
	inodeUninit := csums && d.flags()&bgInodeUninit != 0
	if inodeUninit {
		clear(ib)
	} else if err := img.readBlock(d.inodeBitmap(), ib); err != nil {
		c.problem(KindUnreadable, where, "", "inode bitmap: %v", err)
		return
	} else if c.sb.metadataCsum() && !bitmapCsumMatches(d, ib[:img.ipg/8], loHi{bgInodeBitmapCsumLo, bgInodeBitmapCsumHi}, img.csumSeed) {
		c.problem(KindBitmapChecksum, where, "", "inode bitmap checksum mismatch")
	}
	var iUseFree, iFreeUse []uint64
	usedInodes, dirs := uint32(0), uint32(0)
	for i := uint32(0); i < img.ipg; i++ {
		ino := g*img.ipg + i + 1
		f := c.inodes.get(ino)
		u := f != nil
		if u {
			usedInodes++
			if f.mode&sIFMT == sIFDIR && (ino >= c.sb.firstIno() || ino == rootIno) {
				dirs++
			}
		}
		if on := testBit(ib, uint64(i)); u && !on {
			iUseFree = append(iUseFree, uint64(ino))
		} else if !u && on {
			iFreeUse = append(iFreeUse, uint64(ino))
		}
	}
	if len(iUseFree)+len(iFreeUse) > 0 {
		c.problem(KindInodeBitmap, where, "", "%s", bitmapDiff("inode", iUseFree, iFreeUse))
	}
	if !inodeUninit && !allOnes(ib[img.ipg/8:]) {
		c.problem(KindBitmapPadding, fmt.Sprintf("group %d", g), "", "inode bitmap padding past inode %d is not set", (g+1)*img.ipg)
	}
	if free := img.ipg - usedInodes; d.freeInodes() != free {
		c.problem(KindFreeCount, where, "", "free inodes count %d, counted %d", d.freeInodes(), free)
	}
	if d.usedDirs() != dirs {
		c.problem(KindFreeCount, where, "", "directories count %d, counted %d", d.usedDirs(), dirs)
	}
	if csums && !inodeUninit {
		// Inodes past itable_unused were not scanned; the bitmap must
		// not claim them.
		for i := img.ipg - min(d.itableUnused(), img.ipg); i < img.ipg; i++ {
			if testBit(ib, uint64(i)) {
				c.problem(KindGroupDesc, where, "", "inode %d is marked in use inside the unused tail (itable_unused %d)", g*img.ipg+i+1, d.itableUnused())
				break
			}
		}
	}
}

type loHi struct{ lo, hi int }

func bitmapCsumMatches(d groupDesc, bits []byte, off loHi, seed uint32) bool {
	want := uint32(le16(d.b, off.lo))
	got := crc32cRaw(seed, bits)
	if d.big {
		want |= uint32(le16(d.b, off.hi)) << 16
	} else {
		got &= 0xFFFF
	}
	return got == want
}

// bitmapDiff says which items are in use but free on disk (+) and the
// reverse (-), the first few of each, as e2fsck's differences line.
func bitmapDiff(what string, inUseFree, freeInUse []uint64) string {
	var parts []string
	list := func(sign string, v []uint64) {
		if len(v) == 0 {
			return
		}
		s := make([]string, 0, 8)
		for i, x := range v {
			if i == 8 {
				s = append(s, fmt.Sprintf("... (%d in all)", len(v)))
				break
			}
			s = append(s, fmt.Sprintf("%s%d", sign, x))
		}
		parts = append(parts, strings.Join(s, " "))
	}
	list("+", inUseFree)
	list("-", freeInUse)
	return fmt.Sprintf("%s bitmap differences (+ in use but marked free, - marked in use but free): %s", what, strings.Join(parts, " "))
}

func allOnes(b []byte) bool {
	for _, x := range b {
		if x != 0xFF {
			return false
		}
	}
	return true
}
