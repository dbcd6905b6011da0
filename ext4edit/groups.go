package ext4edit

// checksum computes bg_checksum for group number group: crc32c & 0xFFFF
// under metadata_csum, crc16 under gdt_csum (uninit_bg). scratch, when it
// holds at least 4 + the descriptor's bytes, spares an allocation: open
// checksums every descriptor (8192 of them in 1 TiB), and the crc is then
// one call over the group number and the descriptor with bg_checksum
// zeroed instead of several small ones.
func (g groupDesc) checksum(sb superblock, seed uint32, group uint32, scratch []byte) uint16 {
	if len(scratch) < 4+len(g.b) {
		scratch = make([]byte, 4+len(g.b))
	}
	buf := scratch[:4+len(g.b)]
	put32(buf, 0, group)
	copy(buf[4:], g.b)
	put16(buf, 4+bgChecksum, 0)
	if sb.metadataCsum() {
		return uint16(crc32cRaw(seed, buf))
	}
	// gdt_csum skips bg_checksum where metadata_csum zeroes it.
	c := crc16(^uint16(0), sb.uuid())
	c = crc16(c, buf[:4+bgChecksum])
	return crc16(c, buf[4+bgChecksum+2:])
}

// groupMetadata calls fn for every block of group g that holds a
// superblock copy, descriptor blocks or reserved GDT blocks
// (superAndDescBlocks), plus every group's bitmaps and inode table that
// lie inside g (with flex_bg they may belong to other groups).
func (img *Image) groupMetadata(g uint32, fn func(blk uint64)) {
	img.superAndDescBlocks(g, fn)
	first := img.groupFirstBlock(g)
	end := first + uint64(img.groupBlocks(g))
	if first == 0 && img.bs == 1024 {
		first = 1
	}
	for i := uint32(0); i < img.groupCount; i++ {
		d := img.gd(i)
		for _, b := range []uint64{d.blockBitmap(), d.inodeBitmap()} {
			if b >= first && b < end {
				fn(b)
			}
		}
		it := d.inodeTable()
		for b := max(it, first); b < min(it+uint64(img.itableBlocks), end); b++ {
			fn(b)
		}
	}
}

// gd returns a read-only view of group g's descriptor.
func (img *Image) gd(g uint32) groupDesc {
	off := uint64(g) * uint64(img.descSize)
	return groupDesc{b: img.gdt[off : off+uint64(img.descSize)], big: img.descSize >= 64}
}

// gdW returns a writable view of group g's descriptor; the old bytes are
// kept for rollback of the current operation and the group is marked dirty.
func (img *Image) gdW(g uint32) groupDesc {
	d := img.gd(g)
	img.undo.touched = true
	if img.undo.active {
		if _, ok := img.undo.gd[g]; !ok {
			img.undo.gd[g] = gdUndoRec{old: append([]byte(nil), d.b...), dirty: img.dirty.gdt[g]}
		}
	}
	img.dirty.gdt[g] = true
	return d
}
