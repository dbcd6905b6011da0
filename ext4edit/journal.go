package ext4edit

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// journal is an open internal journal.
type journal struct {
	img    *Image
	ino    *inode
	exts   []fileExtent
	sb     []byte // journal superblock block
	sbBlk  uint64 // its physical block
	maxlen uint32
	first  uint32
	seed   uint32 // crc32c of s_uuid, for v2/v3 checksums
}

func (j *journal) incompat() uint32 { return be.Uint32(j.sb[jsIncompat:]) }
func (j *journal) csumV23() bool    { return j.incompat()&(jIncompatCsumV2|jIncompatCsumV3) != 0 }
func (j *journal) is64() bool       { return j.incompat()&jIncompat64bit != 0 }

// tagBytes is journal_tag_bytes().
func (j *journal) tagBytes() int {
	if j.incompat()&jIncompatCsumV3 != 0 {
		return 16
	}
	sz := 12
	if j.incompat()&jIncompatCsumV2 != 0 {
		sz += 2
	}
	if j.is64() {
		return sz
	}
	return sz - 4
}

// openJournal loads the journal inode's map and superblock.
func (img *Image) openJournal() (*journal, error) {
	jino := le32(img.sb.b, sbJournalInum)
	if jino == 0 {
		return nil, unsupportedf("external journal")
	}
	in, err := img.readInode(jino)
	if err != nil {
		return nil, fmt.Errorf("journal inode: %w", err)
	}
	if !in.isReg() || in.hasInlineData() {
		return nil, corruptf("journal inode %d is not a regular block-mapped file (mode 0%o, flags 0x%x)", jino, in.mode(), in.flags())
	}
	return img.parseJournal(in, nil)
}

// parseJournal reads the journal inode in's map and checks its superblock:
// jsb, or with jsb nil the one on disk.
func (img *Image) parseJournal(in *inode, jsb []byte) (*journal, error) {
	j := &journal{img: img, ino: in}
	err := img.walkFile(in, func(e fileExtent) error {
		j.exts = append(j.exts, e)
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("journal inode: %w", err)
	}
	if j.sbBlk, err = j.phys(0); err != nil {
		return nil, err
	}
	j.sb = make([]byte, img.bs)
	if jsb != nil {
		copy(j.sb, jsb)
	} else if err := img.readBlock(j.sbBlk, j.sb); err != nil {
		return nil, err
	}
	if be.Uint32(j.sb[jhMagic:]) != jMagic {
		return nil, corruptf("journal superblock magic 0x%08x", be.Uint32(j.sb[jhMagic:]))
	}
	switch be.Uint32(j.sb[jhBlocktype:]) {
	case jbtSuperV1:
		// v1 has no feature words.
		for i := jsCompat; i < jsCompat+12; i++ {
			j.sb[i] = 0
		}
	case jbtSuperV2:
	default:
		return nil, corruptf("journal superblock type %d", be.Uint32(j.sb[jhBlocktype:]))
	}
	if be.Uint32(j.sb[jsBlocksize:]) != img.bs {
		return nil, corruptf("journal block size %d differs from the filesystem's %d", be.Uint32(j.sb[jsBlocksize:]), img.bs)
	}
	j.maxlen = be.Uint32(j.sb[jsMaxlen:])
	j.first = be.Uint32(j.sb[jsFirst:])
	if uint64(j.maxlen) > img.fileBlockCount(in.size()) || j.first == 0 || j.first >= j.maxlen || j.maxlen < 16 {
		return nil, corruptf("journal geometry: s_first %d s_maxlen %d for a %d-byte inode", j.first, j.maxlen, in.size())
	}
	if unk := j.incompat() &^ jKnownIncompat; unk != 0 {
		if unk&jIncompatFastCommt != 0 {
			return nil, unsupportedf("journal fast_commit")
		}
		return nil, unsupportedf("journal incompat features 0x%x", unk)
	}
	if j.csumV23() {
		if j.sb[jsChecksumTyp] != 4 {
			return nil, unsupportedf("journal checksum type %d", j.sb[jsChecksumTyp])
		}
		if be.Uint32(j.sb[jsChecksum:]) != j.sbCsum() {
			return nil, corruptf("journal superblock checksum mismatch")
		}
	}
	j.seed = crc32cRaw(^uint32(0), j.sb[jsUUID:jsUUID+16])
	return j, nil
}

func (j *journal) sbCsum() uint32 {
	c := crc32cRaw(^uint32(0), j.sb[:jsChecksum])
	c = crc32cRaw(c, []byte{0, 0, 0, 0})
	return crc32cRaw(c, j.sb[jsChecksum+4:jsSize])
}

// phys maps journal block i to a filesystem block.
func (j *journal) phys(i uint32) (uint64, error) {
	l := uint64(i)
	k := sort.Search(len(j.exts), func(k int) bool { return j.exts[k].lblk+j.exts[k].len > l })
	if k == len(j.exts) || j.exts[k].lblk > l || j.exts[k].uninit {
		return 0, corruptf("journal block %d is not mapped", i)
	}
	return j.exts[k].pblk + l - j.exts[k].lblk, nil
}

// next advances a log position, wrapping from s_maxlen to s_first.
func (j *journal) next(i uint32) uint32 {
	i++
	if i >= j.maxlen {
		i = j.first
	}
	return i
}

func (j *journal) writeSB() error {
	if j.csumV23() {
		be.PutUint32(j.sb[jsChecksum:], j.sbCsum())
	}
	return j.img.writeRaw(j.sbBlk, j.sb)
}

// blockTail sets the jbd2_journal_block_tail checksum of a descriptor or
// revoke block.
func (j *journal) setBlockTail(b []byte) {
	if !j.csumV23() {
		return
	}
	t := len(b) - 4
	be.PutUint32(b[t:], 0)
	be.PutUint32(b[t:], crc32cRaw(j.seed, b))
}

func (j *journal) blockTailOK(b []byte) bool {
	if !j.csumV23() {
		return true
	}
	t := len(b) - 4
	want := be.Uint32(b[t:])
	be.PutUint32(b[t:], 0)
	got := crc32cRaw(j.seed, b)
	be.PutUint32(b[t:], want)
	return got == want
}

// commitCsum is the v2/v3 commit block checksum (h_chksum[0]).
func (j *journal) commitCsum(b []byte) uint32 {
	c := make([]byte, len(b))
	copy(c, b)
	be.PutUint32(c[jcChksum:], 0)
	return crc32cRaw(j.seed, c)
}

// tagCsum is the v2/v3 checksum of a logged data block.
func (j *journal) tagCsum(seq uint32, data []byte) uint32 {
	var s [4]byte
	be.PutUint32(s[:], seq)
	return crc32cRaw(crc32cRaw(j.seed, s[:]), data)
}

// writeRaw writes one whole block at its home location.
func (img *Image) writeRaw(blk uint64, b []byte) error {
	if blk >= img.blocksCount {
		return fmt.Errorf("internal error: write to block %d beyond the end", blk)
	}
	_, err := img.dev.WriteAt(b, img.off+int64(blk)*int64(img.bs))
	return err
}

// loggedBlock is one metadata block of a transaction, as it goes home.
type loggedBlock struct {
	blk  uint64
	data []byte
}

// journalCommit writes blocks as jbd2 transactions, makes them durable,
// writes them home, and empties the journal: a crash at any point leaves
// the old tree, or a log that replays (by us, the kernel or e2fsck) to the
// new one. A set too large for one transaction is split; each part is
// atomic on its own.
func (img *Image) journalCommit(j *journal, blocks []loggedBlock) error {
	if be.Uint32(j.sb[jsStart:]) != 0 {
		return fmt.Errorf("%w: journal not empty at commit", ErrNeedsRecovery)
	}
	for len(blocks) > 0 {
		n := min(len(blocks), j.maxTransaction())
		if n <= 0 {
			return corruptf("journal of %d blocks too small for a transaction", j.maxlen)
		}
		if err := img.journalOne(j, blocks[:n]); err != nil {
			return err
		}
		blocks = blocks[n:]
	}
	return nil
}

// maxTransaction is how many blocks one transaction can log: n data
// blocks need ceil(n/perDesc) descriptor blocks and a commit block, in a
// quarter less than the log (jbd2 leaves that much free).
func (j *journal) maxTransaction() int {
	capacity := int(j.maxlen-j.first) * 3 / 4
	perDesc := (int(j.img.bs) - jhSize - 16 - 4) / j.tagBytes()
	return capacity - capacity/perDesc - 2
}

// fitsOneTransaction reports whether n blocks can be logged atomically.
func (j *journal) fitsOneTransaction(n int) bool { return n <= j.maxTransaction() }

func (img *Image) journalOne(j *journal, blocks []loggedBlock) error {
	seq := be.Uint32(j.sb[jsSequence:])
	pos := j.first
	bs := int(img.bs)
	tb := j.tagBytes()
	// 1. The log: descriptor blocks each followed by their data blocks,
	// gathered so that a contiguous log goes out in a few large writes.
	logw := newRunWriter(img)
	for i := 0; i < len(blocks); {
		desc := make([]byte, bs)
		be.PutUint32(desc[jhMagic:], jMagic)
		be.PutUint32(desc[jhBlocktype:], jbtDescriptor)
		be.PutUint32(desc[jhSequence:], seq)
		descPos := pos
		pos = j.next(pos)
		off := jhSize
		limit := bs
		if j.csumV23() {
			limit -= 4
		}
		firstTag := true
		var batch []loggedBlock
		for i < len(blocks) {
			need := tb
			if firstTag {
				need += 16
			}
			if off+need > limit {
				break
			}
			lb := blocks[i]
			data := lb.data
			flags := uint32(0)
			if be.Uint32(data[0:]) == jMagic {
				data = append([]byte(nil), data...)
				be.PutUint32(data[0:], 0)
				flags |= jFlagEscape
			}
			if !firstTag {
				flags |= jFlagSameUUID
			}
			if i == len(blocks)-1 || off+need+tb > limit {
				flags |= jFlagLastTag
			}
			t := desc[off:]
			be.PutUint32(t[0:], uint32(lb.blk))
			if j.incompat()&jIncompatCsumV3 != 0 {
				be.PutUint32(t[4:], flags)
				be.PutUint32(t[8:], uint32(lb.blk>>32))
				be.PutUint32(t[12:], j.tagCsum(seq, lb.data))
			} else {
				var cs uint16
				if j.incompat()&jIncompatCsumV2 != 0 {
					cs = uint16(j.tagCsum(seq, lb.data))
				}
				binary.BigEndian.PutUint16(t[4:], cs)
				binary.BigEndian.PutUint16(t[6:], uint16(flags))
				if j.is64() {
					be.PutUint32(t[8:], uint32(lb.blk>>32))
				}
			}
			off += tb
			if firstTag {
				copy(desc[off:], j.sb[jsUUID:jsUUID+16])
				off += 16
				firstTag = false
			}
			batch = append(batch, loggedBlock{lb.blk, data})
			i++
		}
		j.setBlockTail(desc)
		p, err := j.phys(descPos)
		if err != nil {
			return err
		}
		if err := logw.add(p, desc); err != nil {
			return err
		}
		for _, lb := range batch {
			p, err := j.phys(pos)
			if err != nil {
				return err
			}
			if err := logw.add(p, lb.data); err != nil {
				return err
			}
			pos = j.next(pos)
		}
	}
	// The commit block's slot is written now, as zeros: a zero block ends
	// the log like whatever was there, and on a sparse image file the
	// commit's own barrier then overwrites an allocated block instead of
	// waiting for the host filesystem to commit an allocation.
	if p, err := j.phys(pos); err != nil {
		return err
	} else if err := logw.add(p, make([]byte, bs)); err != nil {
		return err
	}
	if err := logw.flush(); err != nil {
		return err
	}
	// The recovery flag goes out with the log: a flag over an empty or
	// uncommitted journal replays nothing (and e2fsck -p clears it), while
	// a journal start without the flag would make the kernel discard the
	// log but e2fsck replay it.
	if err := img.setRecoverFlag(true); err != nil {
		return err
	}
	// One barrier covers the file data (ordered mode), the log and the
	// flag: all must be durable before a commit block can make them count.
	if err := img.dev.Sync(); err != nil {
		return err
	}
	// 2. The commit block makes the transaction count.
	cb := make([]byte, bs)
	be.PutUint32(cb[jhMagic:], jMagic)
	be.PutUint32(cb[jhBlocktype:], jbtCommit)
	be.PutUint32(cb[jhSequence:], seq)
	now := img.now()
	be.PutUint64(cb[jcCommitSec:], uint64(now.Unix()))
	be.PutUint32(cb[jcCommitNsec:], uint32(now.Nanosecond()))
	if j.csumV23() {
		cb[jcChksumType] = 4
		cb[jcChksumSize] = 4
		be.PutUint32(cb[jcChksum:], j.commitCsum(cb))
	}
	p, err := j.phys(pos)
	if err != nil {
		return err
	}
	if err := img.writeRaw(p, cb); err != nil {
		return err
	}
	// 3. Point the journal at the log. This shares a barrier with the
	// commit block: whichever lands first, the log is either not pointed
	// at, uncommitted, or complete.
	be.PutUint32(j.sb[jsStart:], j.first)
	if err := j.writeSB(); err != nil {
		return err
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	// 4. Checkpoint: every block to its home. The superblock keeps the
	// recovery flag until the journal is empty.
	// A transaction that resizes the filesystem sends its superblock home
	// only once every other block is durable there: until the journal is
	// replayed, readers (the kernel's descriptor checks at mount, our
	// open) judge the descriptors on disk by the superblock on disk, and
	// a new superblock over a half-written table would fail them.
	sbBlk, sbOff := img.superblockBlock()
	if first := img.dirty.checkpointFirst; first != 0 {
		for _, lb := range blocks {
			if lb.blk != first {
				continue
			}
			if err := img.writeRaw(lb.blk, lb.data); err != nil {
				return err
			}
			if err := img.dev.Sync(); err != nil {
				return err
			}
		}
	}
	var sbLast *loggedBlock
	homew := newRunWriter(img)
	for _, lb := range blocks {
		data := lb.data
		if lb.blk == sbBlk {
			data = append([]byte(nil), data...)
			sb := superblock{data[sbOff : sbOff+superblockSize]}
			sb.setIncompat(sb.incompat() | incompatRecover)
			sb.updateChecksum()
			if img.dirty.resized {
				sbLast = &loggedBlock{lb.blk, data}
				continue
			}
		}
		if err := homew.add(lb.blk, data); err != nil {
			return err
		}
	}
	if err := homew.flush(); err != nil {
		return err
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	if sbLast != nil {
		if err := img.writeRaw(sbLast.blk, sbLast.data); err != nil {
			return err
		}
		if err := img.dev.Sync(); err != nil {
			return err
		}
	}
	// 5. Empty the journal.
	return img.emptyJournal(j, seq+1)
}

// emptyJournal marks the log empty (the next transaction numbered next),
// then, a barrier later, drops the recovery flag: the flag must never be
// clear while the journal still points at a log (e2fsck -p stops on it).
// Every block the log held must be durable at home already.
func (img *Image) emptyJournal(j *journal, next uint32) error {
	be.PutUint32(j.sb[jsStart:], 0)
	be.PutUint32(j.sb[jsSequence:], next)
	if err := j.writeSB(); err != nil {
		return err
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	if err := img.setRecoverFlag(false); err != nil {
		return err
	}
	return img.dev.Sync()
}

// setRecoverFlag sets or clears needs_recovery in the on-disk primary
// superblock, leaving every other byte as it is on disk.
func (img *Image) setRecoverFlag(on bool) error {
	b := make([]byte, superblockSize)
	if _, err := img.dev.ReadAt(b, img.off+superblockOffset); err != nil {
		return err
	}
	sb := superblock{b}
	f := sb.incompat() &^ incompatRecover
	if on {
		f |= incompatRecover
	}
	sb.setIncompat(f)
	sb.updateChecksum()
	_, err := img.dev.WriteAt(b, img.off+superblockOffset)
	return err
}
