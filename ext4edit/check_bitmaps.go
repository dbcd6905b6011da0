package ext4edit

import (
	"fmt"
	"strings"
)

// passBitmaps is e2fsck's pass 5: each group's block and inode bitmaps
// (as the kernel initialises them where the group is flagged
// uninitialised) against what passes 1 to 4 found, their checksums and
// padding, and the group's free counts.
func (c *checker) passBitmaps() {
	img := c.img
	csums := c.sb.groupCsums()
	bb := make([]byte, img.bs)
	ib := make([]byte, img.bs)
	for g := uint32(0); g < img.groupCount; g++ {
		d := img.gd(g)
		where := fmt.Sprintf("group %d", g)
		first, n := img.groupFirstBlock(g), uint64(img.groupBlocks(g))
		// Blocks.
		blockUninit := csums && d.flags()&bgBlockUninit != 0
		if blockUninit {
			clear(bb)
			img.superAndDescBlocks(g, func(blk uint64) {
				if blk >= first && blk < first+n {
					setBit(bb, blk-first)
				}
			})
			for _, m := range []uint64{d.blockBitmap(), d.inodeBitmap()} {
				if m >= first && m < first+n {
					setBit(bb, m-first)
				}
			}
			for t := d.inodeTable(); t < d.inodeTable()+uint64(img.itableBlocks); t++ {
				if t >= first && t < first+n {
					setBit(bb, t-first)
				}
			}
		} else if err := img.readBlock(d.blockBitmap(), bb); err != nil {
			c.problem(KindUnreadable, where, "", "block bitmap: %v", err)
			continue
		} else if c.sb.metadataCsum() && !bitmapCsumMatches(d, bb[:img.bpg/8], loHi{bgBlockBitmapCsumLo, bgBlockBitmapCsumHi}, img.csumSeed) {
			c.problem(KindBitmapChecksum, where, "", "block bitmap checksum mismatch")
		}
		var inUseFree, freeInUse []uint64
		usedHere := uint64(0)
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

		// Inodes.
		inodeUninit := csums && d.flags()&bgInodeUninit != 0
		if inodeUninit {
			clear(ib)
		} else if err := img.readBlock(d.inodeBitmap(), ib); err != nil {
			c.problem(KindUnreadable, where, "", "inode bitmap: %v", err)
			continue
		} else if c.sb.metadataCsum() && !bitmapCsumMatches(d, ib[:img.ipg/8], loHi{bgInodeBitmapCsumLo, bgInodeBitmapCsumHi}, img.csumSeed) {
			c.problem(KindBitmapChecksum, where, "", "inode bitmap checksum mismatch")
		}
		var iUseFree, iFreeUse []uint64
		usedInodes, dirs := uint32(0), uint32(0)
		for i := uint32(0); i < img.ipg; i++ {
			ino := g*img.ipg + i + 1
			f, u := c.inodes[ino]
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
		if !inodeUninit {
			for i := uint64(img.ipg); i < uint64(img.bs)*8; i++ {
				if !testBit(ib, i) {
					c.problem(KindBitmapPadding, where, "", "inode bitmap padding past inode %d is not set", (g+1)*img.ipg)
					break
				}
			}
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
