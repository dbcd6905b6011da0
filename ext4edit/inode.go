package ext4edit

import (
	"time"
)

type inode struct {
	ino uint32
	b   []byte // s_inode_size bytes
}

func (in *inode) mode() uint16        { return le16(in.b, iMode) }
func (in *inode) setMode(m uint16)    { put16(in.b, iMode, m) }
func (in *inode) isDir() bool         { return in.mode()&sIFMT == sIFDIR }
func (in *inode) isReg() bool         { return in.mode()&sIFMT == sIFREG }
func (in *inode) isSymlink() bool     { return in.mode()&sIFMT == sIFLNK }
func (in *inode) flags() uint32       { return le32(in.b, iFlags) }
func (in *inode) setFlags(f uint32)   { put32(in.b, iFlags, f) }
func (in *inode) links() uint16       { return le16(in.b, iLinksCount) }
func (in *inode) setLinks(n uint16)   { put16(in.b, iLinksCount, n) }
func (in *inode) generation() uint32  { return le32(in.b, iGeneration) }
func (in *inode) iblock() []byte      { return in.b[iBlock : iBlock+iBlockLen] }
func (in *inode) hasExtents() bool    { return in.flags()&flagExtents != 0 }
func (in *inode) hasInlineData() bool { return in.flags()&flagInlineData != 0 }

func (in *inode) uid() uint32 {
	return uint32(le16(in.b, iUIDLo)) | uint32(le16(in.b, iUIDHigh))<<16
}
func (in *inode) gid() uint32 {
	return uint32(le16(in.b, iGIDLo)) | uint32(le16(in.b, iGIDHigh))<<16
}
func (in *inode) setUID(v uint32) {
	put16(in.b, iUIDLo, uint16(v))
	put16(in.b, iUIDHigh, uint16(v>>16))
}
func (in *inode) setGID(v uint32) {
	put16(in.b, iGIDLo, uint16(v))
	put16(in.b, iGIDHigh, uint16(v>>16))
}

func (in *inode) size() uint64 {
	return uint64(le32(in.b, iSizeLo)) | uint64(le32(in.b, iSizeHigh))<<32
}
func (in *inode) setSize(v uint64) {
	put32(in.b, iSizeLo, uint32(v))
	put32(in.b, iSizeHigh, uint32(v>>32))
}

func (in *inode) fileACL() uint64 {
	return uint64(le32(in.b, iFileACLLo)) | uint64(le16(in.b, iFileACLHigh))<<32
}
func (in *inode) setFileACL(v uint64) {
	put32(in.b, iFileACLLo, uint32(v))
	put16(in.b, iFileACLHigh, uint16(v>>32))
}

// extraIsize is i_extra_isize, 0 for 128-byte inodes.
func (in *inode) extraIsize() uint32 {
	if len(in.b) <= goodOldInodeSize {
		return 0
	}
	return uint32(le16(in.b, iExtraIsize))
}

// fits reports whether the extension field at off (4 bytes) is present.
func (in *inode) fits(off int) bool {
	return uint32(off+4) <= goodOldInodeSize+in.extraIsize()
}

// blocks512 returns i_blocks in 512-byte units.
func (in *inode) blocks512(img *Image) uint64 {
	v := uint64(le32(in.b, iBlocksLo))
	if img.sb.hasRoCompat(roCompatHugeFile) {
		v |= uint64(le16(in.b, iBlocksHigh)) << 32
		if in.flags()&flagHugeFile != 0 {
			v *= uint64(img.bs / 512)
		}
	}
	return v
}

// setBlocks512 stores i_blocks; without huge_file the count must fit 32 bits.
func (in *inode) setBlocks512(img *Image, v uint64) error {
	if !img.sb.hasRoCompat(roCompatHugeFile) {
		if v > 0xFFFFFFFF {
			return unsupportedf("file of %d sectors needs huge_file", v)
		}
		put32(in.b, iBlocksLo, uint32(v))
		return nil
	}
	f := in.flags() &^ flagHugeFile
	if v > 1<<48-1 {
		v /= uint64(img.bs / 512)
		f |= flagHugeFile
	}
	in.setFlags(f)
	put32(in.b, iBlocksLo, uint32(v))
	put16(in.b, iBlocksHigh, uint16(v>>32))
	return nil
}

// addBlocks adjusts i_blocks by n filesystem blocks (n may be negative).
func (in *inode) addBlocks(img *Image, n int64) error {
	cur := int64(in.blocks512(img))
	cur += n * int64(img.bs/512)
	if cur < 0 {
		cur = 0
	}
	return in.setBlocks512(img, uint64(cur))
}

// Timestamps: a signed 32-bit seconds field plus, in the extension, an
// extra word with 2 epoch bits (seconds bits 32-33) and 30 bits of
// nanoseconds.
//
// A time the fields cannot hold is clamped, never wrapped, to the range
// the kernel gives the superblock (s_time_min, s_time_max): with the extra
// word -2^31 .. 2^34-2^31-1 seconds (1901-12-13T20:45:52Z ..
// 2446-05-10T22:38:55Z), without it (128-byte inodes, or an i_extra_isize
// too short for that field's extra word) the signed 32-bit range, up to
// 2038-01-19T03:14:07Z. Like the kernel's timestamp_truncate, a time that
// lands on a bound loses its nanoseconds; every other time keeps them
// where the extra word exists. Wrapping would turn a hostile layer's
// year 2447 into 1902 and 1800 into 2344.
const (
	timeMinSec      = -1 << 31
	timeMax32Sec    = 1<<31 - 1
	timeMaxExtraSec = 1<<34 - 1<<31 - 1
)

// timeRange is the range an inode time can hold, with or without the
// extra word.
func timeRange(extra bool) (lo, hi time.Time) {
	if extra {
		return time.Unix(timeMinSec, 0).UTC(), time.Unix(timeMaxExtraSec, 0).UTC()
	}
	return time.Unix(timeMinSec, 0).UTC(), time.Unix(timeMax32Sec, 0).UTC()
}

// clampTime returns t's seconds and nanoseconds as a time field with
// (extra) or without the extra word stores them: clamped to the range,
// nanoseconds dropped at a bound (timestamp_truncate) and without the
// extra word.
func clampTime(t time.Time, extra bool) (sec, nsec int64) {
	hi := int64(timeMax32Sec)
	if extra {
		hi = timeMaxExtraSec
	}
	sec, nsec = t.Unix(), int64(t.Nanosecond())
	if sec <= timeMinSec {
		return timeMinSec, 0
	}
	if sec >= hi {
		return hi, 0
	}
	if !extra {
		nsec = 0
	}
	return sec, nsec
}

// TimeRange returns the earliest and latest times the inodes this Image
// creates can store, nanoseconds aside: 1901-12-13T20:45:52Z ..
// 2446-05-10T22:38:55Z where inodes have the extra time fields (inodes
// larger than 128 bytes), 1901-12-13T20:45:52Z .. 2038-01-19T03:14:07Z
// without them. Every time the editor stores (Chtimes, Lsetattr,
// File.SetAttr, the Options.Now clock, Create's times) is clamped into
// it, as the kernel clamps; callers compare against it to warn when that
// happens. An existing inode whose i_extra_isize lacks a field's extra
// word holds that field in the 32-bit range.
func (img *Image) TimeRange() (min, max time.Time) {
	return timeRange(img.newInodesHaveExtraTimes())
}

// newInodesHaveExtraTimes reports whether newInode gives inodes the
// *_extra time words: its i_extra_isize is at least extraIsizeDefault
// (every field through i_projid) whenever the inode has room.
func (img *Image) newInodesHaveExtraTimes() bool {
	return img.inodeSize >= goodOldInodeSize+extraIsizeDefault
}

func (in *inode) time(off, extraOff int) time.Time {
	sec := int64(int32(le32(in.b, off)))
	var nsec int64
	if extraOff != 0 && in.fits(extraOff) {
		extra := le32(in.b, extraOff)
		sec += int64(extra&3) << 32
		nsec = int64(extra >> 2)
	}
	return time.Unix(sec, nsec)
}

func (in *inode) setTime(off, extraOff int, t time.Time) {
	extra := extraOff != 0 && in.fits(extraOff)
	sec, nsec := clampTime(t, extra)
	put32(in.b, off, uint32(int32(sec)))
	if extra {
		// In range, sec - (s32)sec is 0 .. 3 << 32: the epoch bits.
		epoch := uint32((sec-int64(int32(sec)))>>32) & 3
		put32(in.b, extraOff, uint32(nsec)<<2|epoch)
	}
}

func (in *inode) atime() time.Time { return in.time(iAtime, iAtimeExtra) }
func (in *inode) mtime() time.Time { return in.time(iMtime, iMtimeExtra) }
func (in *inode) ctime() time.Time { return in.time(iCtime, iCtimeExtra) }
func (in *inode) crtime() time.Time {
	if !in.fits(iCrtime) {
		return time.Time{}
	}
	return in.time(iCrtime, iCrtimeExtra)
}
func (in *inode) setAtime(t time.Time) { in.setTime(iAtime, iAtimeExtra, t) }
func (in *inode) setMtime(t time.Time) { in.setTime(iMtime, iMtimeExtra, t) }
func (in *inode) setCtime(t time.Time) { in.setTime(iCtime, iCtimeExtra, t) }
func (in *inode) setCrtime(t time.Time) {
	if in.fits(iCrtime) {
		in.setTime(iCrtime, iCrtimeExtra, t)
	}
}

// inodeLoc returns the block and byte offset of inode ino.
func (img *Image) inodeLoc(ino uint32) (uint64, uint32, error) {
	if ino == 0 || ino > img.sb.inodesCount() {
		return 0, 0, corruptf("inode number %d out of range", ino)
	}
	g, idx := img.inodeGroup(ino)
	off := uint64(idx) * uint64(img.inodeSize)
	return img.gd(g).inodeTable() + off/uint64(img.bs), uint32(off % uint64(img.bs)), nil
}

// inodeInitialized reports whether the table slot holds real bytes: with
// group checksums, an INODE_UNINIT group or a slot beyond the high-water
// mark (bg_itable_unused) may hold garbage and reads as zero.
func (img *Image) inodeInitialized(ino uint32) bool {
	if !img.sb.groupCsums() {
		return true
	}
	g, idx := img.inodeGroup(ino)
	if img.inodeUninit(g) {
		return false
	}
	return idx < img.ipg-min(img.gd(g).itableUnused(), img.ipg)
}

// readInode returns a copy of inode ino.
func (img *Image) readInode(ino uint32) (*inode, error) {
	blk, off, err := img.inodeLoc(ino)
	if err != nil {
		return nil, err
	}
	in := &inode{ino: ino, b: make([]byte, img.inodeSize)}
	if !img.inodeInitialized(ino) {
		return in, nil
	}
	buf, err := img.cache.get(blk)
	if err != nil {
		return nil, err
	}
	copy(in.b, buf[off:off+img.inodeSize])
	if img.inodeSize > goodOldInodeSize {
		if e := in.extraIsize(); e > img.inodeSize-goodOldInodeSize || e%4 != 0 {
			return nil, corruptf("inode %d i_extra_isize %d", ino, e)
		}
	}
	if img.sb.metadataCsum() {
		cb, bit := img.inodeSlot(blk, off)
		if cb != nil && cb.inodesOK&bit != 0 {
			return in, nil
		}
		if !allZero(in.b) {
			if want, got := img.storedInodeCsum(in), img.inodeCsum(in); want != got {
				return nil, corruptf("inode %d checksum mismatch (stored 0x%x, computed 0x%x)", ino, want, got)
			}
		}
		if cb != nil {
			cb.inodesOK |= bit
		}
	}
	return in, nil
}

// inodeSlot returns the cached inode table block blk and the inodesOK bit
// of the slot at byte off, or nil where slots are not tracked.
func (img *Image) inodeSlot(blk uint64, off uint32) (*cblock, uint64) {
	if img.bs/img.inodeSize > 64 {
		return nil, 0
	}
	cb := img.cache.blocks[blk]
	if cb == nil {
		return nil, 0
	}
	return cb, 1 << (off / img.inodeSize)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// inodeCsumSeed seeds the checksums of everything owned by an inode
// (the inode, its directory blocks, extent blocks).
func (img *Image) inodeCsumSeed(in *inode) uint32 {
	return crc32cU32(crc32cU32(img.csumSeed, in.ino), in.generation())
}

// inodeCsum computes the inode checksum the kernel's ext4_inode_csum way:
// the checksum fields count as zero.
func (img *Image) inodeCsum(in *inode) uint32 {
	zero := []byte{0, 0}
	c := crc32cRaw(img.inodeCsumSeed(in), in.b[:iChecksumLo])
	c = crc32cRaw(c, zero)
	c = crc32cRaw(c, in.b[iChecksumLo+2:goodOldInodeSize])
	if len(in.b) > goodOldInodeSize {
		c = crc32cRaw(c, in.b[goodOldInodeSize:iChecksumHi])
		off := iChecksumHi
		if in.extraIsize() >= 4 {
			c = crc32cRaw(c, zero)
			off += 2
		}
		c = crc32cRaw(c, in.b[off:])
	}
	if len(in.b) <= goodOldInodeSize || in.extraIsize() < 4 {
		c &= 0xFFFF
	}
	return c
}

func (img *Image) storedInodeCsum(in *inode) uint32 {
	v := uint32(le16(in.b, iChecksumLo))
	if len(in.b) > goodOldInodeSize && in.extraIsize() >= 4 {
		v |= uint32(le16(in.b, iChecksumHi)) << 16
	}
	return v
}

// writeInode stores in into the inode table (dirty set).
func (img *Image) writeInode(in *inode) error {
	blk, off, err := img.inodeLoc(in.ino)
	if err != nil {
		return err
	}
	if img.sb.metadataCsum() {
		c := img.inodeCsum(in)
		put16(in.b, iChecksumLo, uint16(c))
		if len(in.b) > goodOldInodeSize && in.extraIsize() >= 4 {
			put16(in.b, iChecksumHi, uint16(c>>16))
		}
	}
	buf, err := img.cache.getW(blk, kindInode)
	if err != nil {
		return err
	}
	copy(buf[off:off+img.inodeSize], in.b)
	if cb, bit := img.inodeSlot(blk, off); cb != nil && img.sb.metadataCsum() {
		cb.inodesOK |= bit // its checksum was just computed
	}
	return nil
}

// zeroInodeSlot clears table slot idx of group g.
func (img *Image) zeroInodeSlot(g, idx uint32) error {
	blk, off, err := img.inodeLoc(g*img.ipg + idx + 1)
	if err != nil {
		return err
	}
	buf, err := img.cache.getW(blk, kindInode)
	if err != nil {
		return err
	}
	clear(buf[off : off+img.inodeSize])
	if cb, bit := img.inodeSlot(blk, off); cb != nil {
		cb.inodesOK &^= bit
	}
	return nil
}

// newInode allocates and initialises an inode of the given mode near the
// parent directory. It is not yet written.
func (img *Image) newInode(parent uint32, mode uint16) (*inode, error) {
	goal := uint32(0)
	if parent > 0 {
		goal = img.groupOfInode(parent)
	}
	ino, err := img.allocInode(goal, mode&sIFMT == sIFDIR)
	if err != nil {
		return nil, err
	}
	in := &inode{ino: ino, b: make([]byte, img.inodeSize)}
	if img.inodeSize > goodOldInodeSize {
		extra := uint32(le16(img.sb.b, sbWantExtraIsize))
		if extra < extraIsizeDefault {
			extra = extraIsizeDefault
		}
		if extra > img.inodeSize-goodOldInodeSize {
			extra = img.inodeSize - goodOldInodeSize
		}
		put16(in.b, iExtraIsize, uint16(extra))
	}
	in.setMode(mode)
	in.setUID(img.opts.UID)
	in.setGID(img.opts.GID)
	now := img.now()
	in.setAtime(now)
	in.setCtime(now)
	in.setMtime(now)
	in.setCrtime(now)
	// A fresh generation keeps checksums of a reused inode number apart.
	put32(in.b, iGeneration, img.nextGeneration(ino))
	return in, nil
}

// nextGeneration derives i_generation deterministically from the image
// (its checksum seed), the inode number and a per-session counter, so a
// fixed clock gives reproducible images and a reused inode number gets a
// new generation.
func (img *Image) nextGeneration(ino uint32) uint32 {
	img.genCounter++
	return crc32cU32(crc32cU32(crc32cU32(img.csumSeed, ino), img.genCounter), img.sb.freeInodesCount())
}
