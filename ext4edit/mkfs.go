package ext4edit

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"time"

	"github.com/banger/ext4kit/internal/filelock"
)

// MkfsOptions shape a new filesystem. The zero value gives what current
// mkfs.ext4 makes by default: 4 KiB blocks, 256-byte inodes, one inode per
// 16 KiB, extents, 64bit, flex_bg (16 groups), metadata_csum, dir_index,
// huge_file, dir_nlink, extra_isize, sparse_super, a journal sized like
// mke2fs sizes it, and lost+found. Groups with nothing in them are left
// uninitialised (BLOCK_UNINIT/INODE_UNINIT), so a 1 TiB sparse image is
// made by writing a few megabytes.
type MkfsOptions struct {
	BlockSize  uint32 // 1024, 2048, 4096 (default) or 65536
	InodeRatio uint64 // bytes per inode, default 16384
	InodeSize  uint32 // default 256
	Label      string // volume name, at most 16 bytes
	// UUID and HashSeed default to values derived from Seed and the
	// geometry, so equal inputs give byte-identical images.
	UUID     [16]byte
	HashSeed [16]byte
	// Seed feeds the derived UUID and hash seed (for example an OCI image
	// digest).
	Seed []byte
	// Time stamps the superblock and the first inodes; zero means the Unix
	// epoch plus one second (reproducible, and never "unset").
	Time          time.Time
	NoJournal     bool
	JournalBlocks uint32 // default: mke2fs's ext2fs_default_journal_size
	// GroupsPerFlex is how many groups share one flex group's packed
	// bitmaps and inode tables (mke2fs -G): a power of two, 0 meaning
	// mke2fs's 16. 1 keeps every group's metadata in the group itself,
	// so that cutting the filesystem down frees its removed groups'
	// metadata whole (an image built to be shrunk to its content).
	GroupsPerFlex   uint32
	ReservedPercent uint32 // root-reserved blocks, default 5; 100 means 0%
	// Open carries the options of the returned Image (UID, GID, Now ...).
	Open Options
}

// Mkfs makes a new ext4 filesystem of size bytes in a fresh file at path
// (opened with O_CREATE|O_TRUNC, following a symlink, so any existing
// file is truncated) and returns it open for editing. It is MkfsFile on
// that file; the Image closes it. A caller that made the file itself
// (os.CreateTemp) uses MkfsFile instead, so the path is never reopened.
func Mkfs(path string, size int64, opts *MkfsOptions) (*Image, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, pathErr("create", path, err)
	}
	img, err := createFile(f, path, size, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return img, nil
}

// MkfsFile makes a new ext4 filesystem of size bytes in the open file
// f, which must be open for reading and writing (not O_APPEND): f is
// truncated to nothing and extended to size, and gets the same bytes
// Mkfs would write for the same options. The path f was opened by is
// never reopened, so a file made securely (os.CreateTemp, O_EXCL) is the
// one formatted, whatever happens to its name meanwhile.
//
// The returned Image uses f: it takes f's lock (unless opts.Open.NoLock)
// before formatting, exactly as Open would, reads and writes through f,
// and its Close (or Discard) closes f. The caller must not use f after
// MkfsFile succeeds. On error f is left open, unlocked, for the caller
// to close and remove.
func MkfsFile(f *os.File, size int64, opts *MkfsOptions) (*Image, error) {
	if f == nil {
		return nil, pathErr("create", "", fmt.Errorf("%w: nil file", fs.ErrInvalid))
	}
	return createFile(f, f.Name(), size, opts)
}

// createFile formats f and opens the Image on it; path names it in
// errors and for the device hook.
func createFile(f *os.File, path string, size int64, opts *MkfsOptions) (*Image, error) {
	var o MkfsOptions
	if opts != nil {
		o = *opts
	}
	oo := o.Open
	oo.ReadOnly, oo.Partition, oo.Offset = false, 0, 0
	// The lock comes first, as Open takes it, so no other session sees
	// the file half formatted.
	locked := false
	if !oo.NoLock {
		if err := lockWithin(f, true, oo.LockTimeout); err != nil {
			return nil, pathErr("create", path, fmt.Errorf("%s: %w", path, err))
		}
		locked = true
	}
	if err := mkfs(f, path, size, &o); err != nil {
		if locked {
			_ = filelock.Unlock(f)
		}
		return nil, pathErr("create", path, err)
	}
	if oo.Now == nil {
		t := o.createTime()
		oo.Now = func() time.Time { return t }
	}
	img, err := openOn(f, path, oo, locked)
	if err != nil {
		if locked {
			_ = filelock.Unlock(f)
		}
		return nil, pathErr("open", path, err)
	}
	if o.Open.Now == nil {
		img.now = time.Now
		if opts != nil && !opts.Time.IsZero() {
			t := opts.Time
			img.now = func() time.Time { return t }
		}
	}
	return img, nil
}

// createTime is the time Create stamps, clamped (once the geometry
// decides the inode size) to what the inodes hold.
func (o *MkfsOptions) createTime() time.Time {
	if o.Time.IsZero() {
		return time.Unix(1, 0)
	}
	return o.Time
}

// mkfsShape is what mkfs decides before writing: the numbers the
// superblock is filled from. Everything derived from them (group count,
// descriptor and inode table sizes, backups) comes from the geometry of
// that superblock, the same the editor reads back.
type mkfsShape struct {
	bs, bpg, ipg, inodeSize uint32
	firstData               uint32
	blocks                  uint64
	flex                    uint32 // groups per flex group
}

func (o *MkfsOptions) shape(size int64) (*mkfsShape, error) {
	g := &mkfsShape{bs: o.BlockSize, inodeSize: o.InodeSize, flex: 16}
	if o.GroupsPerFlex != 0 {
		if o.GroupsPerFlex&(o.GroupsPerFlex-1) != 0 || o.GroupsPerFlex > 1<<30 {
			return nil, fmt.Errorf("%w: %d groups per flex group (a power of two)", fs.ErrInvalid, o.GroupsPerFlex)
		}
		g.flex = o.GroupsPerFlex
	}
	if g.bs == 0 {
		g.bs = 4096
	}
	switch g.bs {
	case 1024, 2048, 4096, 65536:
	default:
		return nil, fmt.Errorf("%w: block size %d (1024, 2048, 4096 or 65536)", fs.ErrInvalid, g.bs)
	}
	if g.inodeSize == 0 {
		g.inodeSize = 256
	}
	if g.inodeSize < 128 || g.inodeSize > g.bs || g.inodeSize&(g.inodeSize-1) != 0 {
		return nil, fmt.Errorf("%w: inode size %d", fs.ErrInvalid, g.inodeSize)
	}
	ratio := o.InodeRatio
	if ratio == 0 {
		ratio = 16384
	}
	if ratio < uint64(g.bs) {
		ratio = uint64(g.bs)
	}
	if size < 0 || size/int64(g.bs) < 64 {
		return nil, fmt.Errorf("%w: %d bytes is too small for a filesystem of %d-byte blocks", fs.ErrInvalid, size, g.bs)
	}
	g.blocks = uint64(size) / uint64(g.bs)
	if g.blocks > 1<<48 {
		return nil, fmt.Errorf("%w: %d blocks exceed the 64bit limit", fs.ErrInvalid, g.blocks)
	}
	if g.bs == 1024 {
		g.firstData = 1
	}
	g.bpg = min(8*g.bs, 65528)
	var groups uint32
	var gdtBlocks, itBlocks uint32
	for {
		groups = uint32(groupsFor(g.blocks, g.firstData, g.bpg))
		inodes := uint64(g.blocks) * uint64(g.bs) / ratio
		ipg := (inodes + uint64(groups) - 1) / uint64(groups)
		perBlock := uint64(g.bs / g.inodeSize)
		ipg = max(ipg, 16)
		ipg = (ipg + perBlock - 1) / perBlock * perBlock
		ipg = (ipg + 7) / 8 * 8
		ipg = min(ipg, uint64(8*g.bs))
		if ipg*uint64(groups) >= 1<<32 {
			ipg = (1<<32 - 1) / uint64(groups) / perBlock * perBlock / 8 * 8
		}
		g.ipg = uint32(ipg)
		itBlocks = itableBlocksFor(g.ipg, g.inodeSize, g.bs)
		gdtBlocks = gdtBlocksFor(groups, mkfsDescSize, g.bs)
		// A last group too small for its own metadata is dropped, as
		// mke2fs does.
		last := g.blocks - uint64(g.firstData) - uint64(groups-1)*uint64(g.bpg)
		if groups > 1 && last < uint64(gdtBlocks)+uint64(itBlocks)+2+50 {
			g.blocks -= last
			continue
		}
		break
	}
	if groups == 1 && g.blocks-uint64(g.firstData) < uint64(gdtBlocks+itBlocks)+64 {
		return nil, fmt.Errorf("%w: %d bytes is too small", fs.ErrInvalid, size)
	}
	return g, nil
}

// mkfsDescSize is the descriptor size mkfs writes (64bit).
const mkfsDescSize = 64

// DefaultJournalBlocks is the journal size, in blocks, that mke2fs (and
// Create) give a filesystem of blocks blocks: ext2fs_default_journal_size.
func DefaultJournalBlocks(blocks uint64) uint32 {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// mkfs formats f (path names it for the device hook) with a filesystem
// of size bytes. f is left open.
func mkfs(f *os.File, path string, size int64, o *MkfsOptions) error {
	if len(o.Label) > 16 {
		return fmt.Errorf("%w: label longer than 16 bytes", fs.ErrInvalid)
	}
	g, err := o.shape(size)
	if err != nil {
		return err
	}
	// Every time stamped below is one the inodes can hold: a year-9999
	// Time would otherwise wrap in the 32-bit fields.
	t := time.Unix(clampTime(o.createTime(), g.inodeSize >= goodOldInodeSize+extraIsizeDefault))
	uuid, seed := o.UUID, o.HashSeed
	derive := func(tag string) [16]byte {
		h := sha256.New()
		fmt.Fprintf(h, "ext4edit %s %d %d %d %d %d %q %d|", tag, g.bs, g.blocks, g.ipg, g.inodeSize, t.Unix(), o.Label, len(o.Seed))
		h.Write(o.Seed)
		var out [16]byte
		copy(out[:], h.Sum(nil))
		return out
	}
	if uuid == ([16]byte{}) {
		uuid = derive("uuid")
		uuid[6] = uuid[6]&0x0f | 0x40 // RFC 4122 version 4 layout
		uuid[8] = uuid[8]&0x3f | 0x80
	}
	if seed == ([16]byte{}) {
		seed = derive("hash")
	}

	// Empty first: the layout relies on every block it does not write
	// reading as zeros (inode tables flagged ITABLE_ZEROED), whatever the
	// file held.
	if err := f.Truncate(0); err != nil {
		return err
	}
	if err := f.Truncate(int64(g.blocks) * int64(g.bs)); err != nil {
		return err
	}

	sb := superblock{b: make([]byte, superblockSize)}
	put32(sb.b, sbInodesCount, g.ipg*uint32(groupsFor(g.blocks, g.firstData, g.bpg)))
	put32(sb.b, sbBlocksCountLo, uint32(g.blocks))
	put32(sb.b, sbBlocksCountHi, uint32(g.blocks>>32))
	rp := uint64(o.ReservedPercent)
	if rp == 0 {
		rp = 5
	} else if rp >= 100 {
		rp = 0
	}
	r := g.blocks * rp / 100
	put32(sb.b, sbRBlocksCountLo, uint32(r))
	put32(sb.b, sbRBlocksCountHi, uint32(r>>32))
	put32(sb.b, sbFirstDataBlock, g.firstData)
	logBS := uint32(0)
	for 1024<<logBS != g.bs {
		logBS++
	}
	put32(sb.b, sbLogBlockSize, logBS)
	put32(sb.b, sbLogClusterSize, logBS)
	put32(sb.b, sbBlocksPerGroup, g.bpg)
	put32(sb.b, sbClustersPerGroup, g.bpg)
	put32(sb.b, sbInodesPerGroup, g.ipg)
	setSbTime(sb.b, sbWtime, sbWtimeHi, t)
	put16(sb.b, sbMaxMntCount, 0xFFFF) // -1: no forced checks
	put16(sb.b, sbMagic, ext4Magic)
	put16(sb.b, sbState, 1)  // cleanly unmounted
	put16(sb.b, sbErrors, 1) // continue
	setSbTime(sb.b, sbLastcheck, sbLastcheckHi, t)
	put32(sb.b, sbRevLevel, 1) // dynamic inode sizes
	put32(sb.b, sbFirstIno, 11)
	put16(sb.b, sbInodeSize, uint16(g.inodeSize))
	compat := compatExtAttr | compatDirIndex
	if !o.NoJournal {
		compat |= compatHasJournal
	}
	sb.setCompat(compat)
	sb.setIncompat(incompatFiletype | incompatExtents | incompat64bit | incompatFlexBG)
	sb.setRoCompat(roCompatSparseSuper | roCompatLargeFile | roCompatHugeFile |
		roCompatDirNlink | roCompatExtraIsize | roCompatMetadataCsum)
	copy(sb.b[sbUUID:], uuid[:])
	copy(sb.b[sbVolumeName:], o.Label)
	for i := 0; i < 4; i++ {
		put32(sb.b, sbHashSeed+4*i, binary.LittleEndian.Uint32(seed[4*i:]))
	}
	sb.b[sbDefHashVersion] = hashHalfMD4
	put16(sb.b, sbDescSize, mkfsDescSize)
	put32(sb.b, sbDefaultMountOpts, 0x000C) // user_xattr, acl
	setSbTime(sb.b, sbMkfsTime, sbMkfsTimeHi, t)
	put16(sb.b, sbMinExtraIsize, extraIsizeDefault)
	put16(sb.b, sbWantExtraIsize, extraIsizeDefault)
	put32(sb.b, sbFlags, sbFlagSignedHash) // what mke2fs sets on x86
	sb.b[sbLogGroupsPerFlex] = byte(bits.TrailingZeros32(g.flex))
	sb.b[sbChecksumType] = 1
	if g.inodeSize < 256 {
		put16(sb.b, sbMinExtraIsize, 0)
		put16(sb.b, sbWantExtraIsize, 0)
		sb.setRoCompat(sb.roCompat() &^ roCompatExtraIsize)
	}
	// The layout goes through the geometry the superblock describes:
	// the one the editor derives when it opens the result.
	geo, err := newGeometry(sb)
	if err != nil {
		return fmt.Errorf("internal error: mkfs geometry: %w", err)
	}
	// A scratch Image over that geometry lets the editor's own code
	// write the root directory, lost+found and the journal.
	img := &Image{geometry: geo, sb: sb}
	groups, flex := geo.groupCount, g.flex

	// Lay out each flex group's bitmaps and inode tables contiguously from
	// the start of its first group, stepping over superblock backups.
	img.gdt = make([]byte, uint64(groups)*uint64(geo.descSize))
	type run struct{ start, n uint64 }
	// owned is a run of group owner's metadata.
	type owned struct {
		run
		owner uint32
	}
	var meta []owned
	locs, err := geo.layoutGroupMeta(0, groups, flex)
	if err != nil {
		return err
	}
	for grp, l := range locs {
		d := img.gd(uint32(grp))
		d.setBlockBitmap(l.blockBitmap)
		d.setInodeBitmap(l.inodeBitmap)
		d.setInodeTable(l.inodeTable)
		g := uint32(grp)
		meta = append(meta, owned{run{l.blockBitmap, 1}, g}, owned{run{l.inodeBitmap, 1}, g}, owned{run{l.inodeTable, uint64(geo.itableBlocks)}, g})
	}
	for grp := uint32(0); grp < groups; grp++ {
		if geo.hasSuper(grp) {
			meta = append(meta, owned{run{geo.groupFirstBlock(grp), 1 + uint64(geo.gdtBlocks)}, grp})
		}
	}

	// Per group: which blocks are used, and how many of them hold other
	// groups' metadata. A group holding only its own (its superblock
	// backup, and its bitmaps and inode table where flex_bg does not pack
	// them elsewhere) stays BLOCK_UNINIT, as mke2fs leaves it: the kernel
	// and e2fsck rebuild that bitmap, and an auto-sized build's ceiling
	// image does not write a bitmap into each of its hundreds of groups
	// that the cut then removes.
	perGroup := make([][]run, groups)
	foreign := make([]uint64, groups)
	for _, m := range meta {
		for b := m.start; b < m.start+m.n; {
			grp := geo.blockGroup(b)
			end := min(m.start+m.n, geo.groupFirstBlock(grp)+uint64(geo.groupBlocks(grp)))
			perGroup[grp] = append(perGroup[grp], run{b, end - b})
			if grp != m.owner {
				foreign[grp] += end - b
			}
			b = end
		}
	}
	var totalFree uint64
	for grp := uint32(0); grp < groups; grp++ {
		first := geo.groupFirstBlock(grp)
		nblk := uint64(geo.groupBlocks(grp))
		var used uint64
		var bm []byte
		for _, m := range perGroup[grp] {
			used += m.n
		}
		d := img.gd(grp)
		flags := uint16(bgItableZeroed | bgInodeUninit)
		if grp == 0 {
			flags = bgItableZeroed
		}
		// e2fsck wants the last group initialised, as mke2fs leaves it.
		if foreign[grp] == 0 && grp != 0 && grp != groups-1 {
			flags |= bgBlockUninit
		} else {
			bm = make([]byte, geo.bs)
			for _, m := range perGroup[grp] {
				setBits(bm, m.start-first, m.start+m.n-first)
			}
			setBits(bm, nblk, uint64(geo.bs)*8)
			if _, err := f.WriteAt(bm, int64(d.blockBitmap())*int64(geo.bs)); err != nil {
				return err
			}
			d.setBlockBitmapCsum(crc32cRaw(geo.csumSeed, bm[:geo.bpg/8]))
		}
		d.setFlags(flags)
		d.setFreeBlocks(uint32(nblk - used))
		totalFree += nblk - used
		d.setFreeInodes(geo.ipg)
		d.setItableUnused(geo.ipg)
		if grp == 0 {
			// Inodes 1..10 are reserved; root (2) is written below.
			ib := make([]byte, geo.bs)
			for i := uint64(0); i < 10; i++ {
				setBit(ib, i)
			}
			for i := uint64(geo.ipg); i < uint64(geo.bs)*8; i++ {
				setBit(ib, i)
			}
			if _, err := f.WriteAt(ib, int64(d.inodeBitmap())*int64(geo.bs)); err != nil {
				return err
			}
			d.setInodeBitmapCsum(crc32cRaw(geo.csumSeed, ib[:geo.ipg/8]))
			d.setFreeInodes(geo.ipg - 10)
			d.setItableUnused(geo.ipg - 10)
			d.setUsedDirs(1)
		}
	}
	sb.setFreeBlocksCount(totalFree)
	sb.setFreeInodesCount(geo.ipg*groups - 10)

	// Root directory, inode 2: written through the editor's own code.
	img.f, img.dev = f, hookDevice(path, fileDevice{f})
	img.now = func() time.Time { return t }
	img.resetState()
	root := &inode{ino: rootIno, b: make([]byte, geo.inodeSize)}
	if geo.inodeSize > goodOldInodeSize {
		put16(root.b, iExtraIsize, extraIsizeDefault)
	}
	root.setMode(sIFDIR | 0o755)
	root.setAtime(t)
	root.setCtime(t)
	root.setMtime(t)
	root.setCrtime(t)
	if err := img.extentBuild(root, nil, 0); err != nil {
		return err
	}
	if err := img.dirInit(root, rootIno); err != nil {
		return err
	}
	root.setLinks(2)
	if err := img.writeInode(root); err != nil {
		return err
	}
	lf, err := img.mkdirIn(root, "lost+found", 0o700)
	if err != nil {
		return err
	}
	// lost+found gets 4 blocks (16 KiB at 4 KiB blocks) like mke2fs, so
	// e2fsck can reconnect files without allocating.
	for lf.size() < 16384 && lf.size() < 4*uint64(geo.bs) {
		b, _, _, err := img.dirAppendBlock(lf)
		if err != nil {
			return err
		}
		img.initLeaf(lf, b)
	}
	if err := img.writeInode(lf); err != nil {
		return err
	}
	if !o.NoJournal {
		if err := img.mkJournal(o.JournalBlocks, uuid); err != nil {
			return err
		}
	}
	for grp := uint32(0); grp < groups; grp++ {
		img.dirty.gdt[grp] = true // every descriptor gets its checksum
	}
	if err := img.commit(); err != nil {
		return err
	}
	// Backups: every group with a superblock copy gets it and the table.
	for grp := uint32(1); grp < groups; grp++ {
		if !geo.hasSuper(grp) {
			continue
		}
		cp := append([]byte(nil), img.sb.b...)
		put16(cp, sbBlockGroupNr, uint16(grp))
		superblock{cp}.updateChecksum()
		// A backup sits at the very start of its group's first block,
		// the table right after it.
		first := int64(geo.groupFirstBlock(grp)) * int64(geo.bs)
		if _, err := f.WriteAt(cp, first); err != nil {
			return err
		}
		if _, err := f.WriteAt(img.gdt, int64(geo.backupDescBlock(grp))*int64(geo.bs)); err != nil {
			return err
		}
	}
	return f.Sync()
}

// mkJournal creates the journal inode (8): contiguous blocks near the
// middle of the filesystem and a jbd2 v2 superblock, as mke2fs writes it.
func (img *Image) mkJournal(n uint32, uuid [16]byte) error {
	if n == 0 {
		n = DefaultJournalBlocks(img.blocksCount)
		if n == 0 {
			// Too small for a journal, as mke2fs decides: none at all.
			img.sb.setCompat(img.sb.compat() &^ compatHasJournal)
			return nil
		}
	}
	_, err := img.mkJournalAt(n, uuid, img.groupFirstBlock(img.groupCount/2), false)
	return err
}

// mkJournalAt makes inode 8 a journal of n blocks allocated from goal on
// (contiguous where the free space allows) and returns the journal
// superblock, which it writes to the journal's first block unless dry (a
// resize's dry run only needs the allocation). Nothing is written but
// that block: the inode, bitmaps and superblock fields are the caller's
// to commit.
func (img *Image) mkJournalAt(n uint32, uuid [16]byte, goal uint64, dry bool) ([]byte, error) {
	if n == 0 {
		return nil, fmt.Errorf("%w: a journal of 0 blocks", fs.ErrInvalid)
	}
	if n < 1024 || uint64(n)+64 > img.freeBlocksTotal() {
		return nil, fmt.Errorf("%w: a journal of %d blocks does not fit (%d free, 1024 at least)", fs.ErrInvalid, n, img.freeBlocksTotal())
	}
	runs, err := img.allocBlocks(goal, uint64(n))
	if err != nil {
		return nil, err
	}
	jsb := make([]byte, img.bs)
	be.PutUint32(jsb[jhMagic:], jMagic)
	be.PutUint32(jsb[jhBlocktype:], jbtSuperV2)
	be.PutUint32(jsb[jhSequence:], 0)
	be.PutUint32(jsb[jsBlocksize:], img.bs)
	be.PutUint32(jsb[jsMaxlen:], n)
	be.PutUint32(jsb[jsFirst:], 1)
	be.PutUint32(jsb[jsSequence:], 1)
	be.PutUint32(jsb[jsStart:], 0) // empty
	copy(jsb[jsUUID:], uuid[:])
	be.PutUint32(jsb[jsNrUsers:], 1)
	copy(jsb[jsUsers:], uuid[:]) // s_users[0]
	if !dry {
		if err := img.writeData(runs[0].start, jsb); err != nil {
			return nil, err
		}
	}
	in := &inode{ino: journalIno, b: make([]byte, img.inodeSize)}
	if img.inodeSize > goodOldInodeSize {
		put16(in.b, iExtraIsize, extraIsizeDefault)
	}
	in.setMode(sIFREG | 0o600)
	t := img.now()
	in.setAtime(t)
	in.setCtime(t)
	in.setMtime(t)
	in.setCrtime(t)
	in.setLinks(1)
	var exts []fileExtent
	var l uint64
	for _, r := range runs {
		exts = append(exts, fileExtent{lblk: l, pblk: r.start, len: r.len})
		l += r.len
	}
	if err := img.mapNew(in, exts, goal); err != nil {
		return nil, err
	}
	in.setSize(uint64(n) * uint64(img.bs))
	if err := img.writeInode(in); err != nil {
		return nil, err
	}
	put32(img.sb.b, sbJournalInum, journalIno)
	setJournalBackup(img.sb, in)
	return jsb, nil
}

// setJournalBackup stores s_jnl_blocks, the backup of the journal inode's
// i_block and size that e2fsck falls back on.
func setJournalBackup(sb superblock, in *inode) {
	for i := 0; i < 15; i++ {
		put32(sb.b, sbJnlBlocks+4*i, le32(in.iblock(), 4*i))
	}
	put32(sb.b, sbJnlBlocks+4*15, uint32(in.size()>>32))
	put32(sb.b, sbJnlBlocks+4*16, uint32(in.size()))
	sb.b[sbJnlBackupType] = 1 // EXT3_JNL_BACKUP_BLOCKS
}

// setSbTime stores t in a superblock time field (lo at off, hi byte at
// hiOff: the superblock's times are unsigned 32-bit seconds with a high
// byte each, ext4_update_tstamp): unsigned, so a time before 1970 is stored as the epoch.
func setSbTime(b []byte, off, hiOff int, t time.Time) {
	sec := uint64(max(t.Unix(), 0))
	put32(b, off, uint32(sec))
	b[hiOff] = byte(sec >> 32)
}
