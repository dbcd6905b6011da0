package ext4edit

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"slices"
)

// Shrinking, the way resize2fs does it: what lives in the blocks and
// groups being cut off moves into the part that stays, then they go.
//
// The whole change is prepared in memory, in the old geometry, with the
// editor's own allocator fenced into the kept part: the removed groups
// show no free blocks or inodes, and the kept last group's blocks past the
// new end are marked used (they become its bitmap padding). Everything
// allocated then is free in the old filesystem, so writing it disturbs
// nothing the old filesystem uses, and blocks released (tree blocks of
// rebuilt maps, the removed groups' tables that flex_bg put in kept
// groups) return only at the commit, as in every edit.
//
//   - Inodes of removed groups get free numbers in kept groups: the inode
//     is copied (its checksum, seeded with the number, recomputed) and
//     every directory entry naming it is rewritten, "." and ".." too.
//   - Each file with a data or tree block in the removed part, or whose
//     extent blocks' checksums change with its number, has its map
//     rebuilt from scratch by the editor's writers (extents or a block
//     map, as it was): data blocks in the removed part get new blocks,
//     the rest stay.
//   - Directory blocks that move are copied through the cache (their
//     entries may change next); file data is copied with plain reads and
//     writes before the commit.
//   - Attribute blocks in the removed part move (their checksum is seeded
//     with the block number) and every inode pointing at one follows.
//   - Directories of renumbered inodes, and every directory block naming
//     one, get their entries and checksum tails (seeded with the
//     directory's number) rewritten.
//
// Then the geometry is swapped (descriptors of removed groups dropped,
// the reservation of resize_inode grows back), the resize inode rebuilt,
// and one commit (a single journal transaction, checked to fit before
// anything is written) makes the new filesystem; backups follow, and the
// file is cut last. A crash before the commit block leaves the old
// filesystem (the copies went to blocks it does not use), after it the
// new one.
//
// A shrink that does not fit (content, inodes, or a journal transaction)
// is refused before the first write, and the image is left as it was.

// shrinker is one shrink being prepared.
type shrinker struct {
	img    *Image
	old    geometry
	oldSB  []byte
	oldGdt []byte
	ng     geometry
	nsb    superblock
	end    uint64 // the new s_blocks_count
	keep   uint32 // the new group count

	files  []*shrinkFile     // inodes that change
	dirs   []uint32          // every directory, by old number
	renum  map[uint32]uint32 // old inode number -> new
	xattr  map[uint64]uint64 // moved attribute blocks: old -> new
	copies []blockRun2       // file data to copy before the commit
	moves  uint64            // blocks moved, for the caller's report

	// claims are the blocks of kept groups the new layout takes for
	// superblock copies and descriptors (sparse_super2's second backup
	// follows the last group): emptied like the removed part.
	claims []blockRun
	// claimedUsed counts the claimed blocks the scan found content in.
	claimedUsed map[uint64]bool

	// maxTrans is how many blocks one transaction of the journal holds
	// (0: no journal); journalMoves, that the journal itself moves.
	maxTrans     int
	journalMoves bool
	// temp is the journal borrowed for this shrink (nil: the filesystem's
	// own, or none), in the kept part; a dry run's is not on disk.
	temp *tempJournal
	// commitBlocks is how many blocks the commit writes through the
	// journal (checkCommitFits), which sizes a borrowed one.
	commitBlocks int
}

// shrinkFile is an inode the shrink changes.
type shrinkFile struct {
	in      *inode
	oldIno  uint32
	rebuild bool // its block map is rebuilt
	extents bool
	exts    []fileExtent // its map, read in the old numbering
	nodes   []uint64     // its tree blocks
}

// blockRun2 is a copy of n blocks from src to dst.
type blockRun2 struct{ src, dst, n uint64 }

// shrink takes the filesystem (committed, nothing pending) down to want
// blocks, or a little less (resizedSuperblock's trimming of a last group
// too small to be worth it). With dryRun nothing is written and the
// in-memory image is restored: it answers whether the shrink fits.
func (img *Image) shrink(want uint64, dryRun bool) error {
	_, err := img.shrinkTo(want, dryRun)
	return err
}

// shrinkTo is shrink, also returning the block count it leads to.
func (img *Image) shrinkTo(want uint64, dryRun bool) (uint64, error) {
	if img.needsTempJournal() {
		return img.shrinkBorrowing(want, dryRun)
	}
	end, _, err := img.shrinkWith(want, dryRun, nil)
	return end, err
}

// shrinkBorrowing shrinks a filesystem without a journal through a
// temporary one (resize_tempjournal.go) in the part that stays. It is
// sized by a dry run with a journal of jbd2's minimum in memory, and
// again if the transaction needs more; all checks pass before the
// journal is written. A shrink that leaves no room for the journal is
// refused with ErrNoSpace, like one the content does not fit: MinSize
// counts the journal's room in.
func (img *Image) shrinkBorrowing(want uint64, dryRun bool) (uint64, error) {
	_, ng, err := img.resizedSuperblock(want)
	if err != nil {
		return 0, err
	}
	if ng.blocksCount >= img.blocksCount {
		return img.blocksCount, nil
	}
	restore := img.saveState()
	size := uint32(1024)
	var end uint64
	for try := 0; ; try++ {
		t, err := img.addTempJournal(size, uint64(img.firstDataBlock), ng.blocksCount, true)
		if err != nil {
			restore()
			return 0, err
		}
		var n int
		end, n, err = img.shrinkWith(want, true, t)
		restore()
		if err != nil && try == 0 && n > 0 && !t.j.fitsOneTransaction(n) {
			size = img.tempJournalBlocks(n)
			continue
		}
		if err != nil {
			return 0, err
		}
		break
	}
	if dryRun {
		return end, nil
	}
	t, err := img.addTempJournal(size, uint64(img.firstDataBlock), ng.blocksCount, false)
	if err != nil {
		return 0, err
	}
	if end, _, err = img.shrinkWith(want, false, t); err != nil {
		return 0, t.giveBack(img, err)
	}
	return end, t.remove(img)
}

// shrinkWith prepares the shrink (with t, the journal it borrowed, or
// nil) and, unless dryRun, writes it. It returns the block count it leads
// to and the number of metadata blocks its commit writes.
func (img *Image) shrinkWith(want uint64, dryRun bool, t *tempJournal) (uint64, int, error) {
	nsb, ng, err := img.resizedSuperblock(want)
	if err != nil {
		return 0, 0, err
	}
	if ng.blocksCount >= img.blocksCount {
		return img.blocksCount, 0, nil
	}
	s := &shrinker{img: img, old: img.geometry, oldSB: append([]byte(nil), img.sb.b...),
		oldGdt: append([]byte(nil), img.gdt...), ng: ng, nsb: nsb, end: ng.blocksCount, keep: ng.groupCount,
		renum: map[uint32]uint32{}, xattr: map[uint64]uint64{}, temp: t}
	if err := s.prepare(); err != nil {
		s.restore()
		return 0, s.commitBlocks, err
	}
	if dryRun {
		s.restore()
		return ng.blocksCount, s.commitBlocks, nil
	}
	return ng.blocksCount, s.commitBlocks, s.write()
}

// MinSize is the smallest size in bytes [Image.Resize] can shrink the
// filesystem to: its content (file data, tree and attribute blocks, the
// journal) in as few groups as hold it and the inodes in use, each group
// with its own metadata. It is found by preparing shrinks in memory
// (nothing is written) and bisecting on the block count between the
// content's size and the current size, so the answer is one a shrink was
// seen to fit: the space the moved files' rebuilt maps take, and the
// tables of removed groups that cannot hold moved data before the commit
// frees them, are counted as the shrink counts them. Pending edits are
// committed first.
func (img *Image) MinSize() (int64, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	n, err := img.minBlocks()
	if err != nil {
		return 0, pathErr("minsize", img.path, err)
	}
	return int64(n) * int64(img.bs), nil
}

// ContentSize is a lower bound of [Image.MinSize] in bytes, from the
// group counters alone (no inode is read): the blocks in use that are not
// group metadata, plus the bitmaps and inode table of as many groups as
// hold them and the inodes in use. It leaves out what only a prepared
// shrink can count: superblock and descriptor copies, maps rebuilt for
// moved files, and the layout (tables that flex_bg packed at the front
// for many groups stay there, so on mkfs.ext4's default layout MinSize
// can be twice as large). On an image whose groups each hold their own
// metadata, filled from the front (imagepull's auto size), it comes
// within a few dozen blocks of MinSize: a caller that shrinks such an
// image to ContentSize plus some headroom saves MinSize's bisection,
// which reads every inode in use for each size it tries. Pending edits
// are committed first.
func (img *Image) ContentSize() (int64, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return 0, pathErr("contentsize", img.path, err)
	}
	if err := img.commit(); err != nil {
		return 0, pathErr("contentsize", img.path, err)
	}
	return int64(img.minBlocksBound()) * int64(img.bs), nil
}

func (img *Image) minBlocks() (uint64, error) {
	if err := img.writable(); err != nil {
		return 0, err
	}
	if len(img.files.open) > 0 {
		return 0, fmt.Errorf("%w: %d files open for writing: close them first", fs.ErrInvalid, len(img.files.open))
	}
	if err := img.commit(); err != nil {
		return 0, err
	}
	lo := img.minBlocksBound()
	best := img.blocksCount
	hi := img.blocksCount
	// Gallop up from the bound before bisecting: the minimum of an image
	// filled from the front (imagepull's auto size) lies a little above
	// the bound, and each probe of a size that needs moves reads every
	// inode, so a short range is worth a few more probes near the bound
	// than halving from the current size (a 64 GiB ceiling: 24 probes).
	for step := max(lo/256, 64); lo < hi; step *= 2 {
		probe := min(lo+step, hi)
		got, err := img.shrinkTo(probe, true)
		if err == nil {
			best, hi = min(best, got), probe
			break
		}
		if !errors.Is(err, ErrNoSpace) && !errors.Is(err, fs.ErrInvalid) && !errors.Is(err, ErrUnsupportedFeature) {
			return 0, err
		}
		lo = probe + 1
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		got, err := img.shrinkTo(mid, true)
		switch {
		case err == nil:
			best = min(best, got)
			hi = mid
		case errors.Is(err, ErrNoSpace), errors.Is(err, fs.ErrInvalid), errors.Is(err, ErrUnsupportedFeature):
			lo = mid + 1
		default:
			return 0, err
		}
	}
	return best, nil
}

// minBlocksBound is a block count no shrink can go below: the blocks in
// use that are not group metadata (file data, maps, directories, xattr
// blocks, the journal), which a shrink moves but never drops, plus the
// bitmaps and inode table of every group kept, in as many groups as
// hold those blocks and the inodes in use. Superblock and descriptor
// copies are left out (a smaller filesystem may need fewer), so the
// bound stays below the true minimum.
func (img *Image) minBlocksBound() uint64 {
	var meta uint64
	for g := uint32(0); g < img.groupCount; g++ {
		meta += img.metaEnd(g) - img.groupFirstBlock(g) + 2 + uint64(img.itableBlocks)
	}
	used := img.blocksCount - img.freeBlocksTotal()
	data := uint64(0)
	if used > meta {
		data = used - meta
	}
	first, bpg := uint64(img.firstDataBlock), uint64(img.bpg)
	inodeGroups := (uint64(img.inodesCount) - uint64(min(img.sb.freeInodesCount(), img.inodesCount)) + uint64(img.ipg) - 1) / uint64(img.ipg)
	perGroup := 2 + uint64(img.itableBlocks)
	lo := first + 1 + data
	// Each pass adds the tables of the groups the last bound spans; the
	// bound only grows and stays below the current size, so this ends.
	for lo < img.blocksCount {
		groups := max((lo-first+bpg-1)/bpg, inodeGroups, 1)
		next := min(first+data+groups*perGroup, img.blocksCount)
		if next <= lo {
			break
		}
		lo = next
	}
	return lo
}

// restore puts the image back as it was before the shrink was prepared.
func (s *shrinker) restore() {
	img := s.img
	img.geometry, img.sb, img.gdt = s.old, superblock{b: s.oldSB}, s.oldGdt
	img.resetState()
	img.pending = pendingFrees{}
	img.undo.touched = false
}

// prepare makes every change in memory and checks that the commit fits.
func (s *shrinker) prepare() error {
	img := s.img
	if err := s.checkKeptMetadata(); err != nil {
		return err
	}
	if img.sb.hasCompat(compatHasJournal) && !img.opts.Scratch {
		// Opened before its inode may change: a moved journal's blocks
		// hold nothing until the copy at write time.
		var j *journal
		if s.temp != nil {
			j = s.temp.j
		} else {
			var err error
			if j, err = img.openJournal(); err != nil {
				return err
			}
		}
		s.maxTrans = j.maxTransaction()
	}
	for g := uint32(0); g < s.keep; g++ {
		_, added, _ := superAndDescChange(&s.old, &s.ng, g)
		for _, b := range added {
			if k := len(s.claims); k > 0 && s.claims[k-1].start+s.claims[k-1].len == b {
				s.claims[k-1].len++
			} else {
				s.claims = append(s.claims, blockRun{b, 1})
			}
		}
	}
	s.claimedUsed = map[uint64]bool{}
	if err := s.scan(); err != nil {
		return err
	}
	freed, err := s.fence()
	if err != nil {
		return err
	}
	if err := s.renumber(); err != nil {
		return err
	}
	for _, f := range s.files {
		if err := s.fixFile(f); err != nil {
			return err
		}
	}
	if len(s.renum) > 0 {
		if err := s.fixDirs(); err != nil {
			return err
		}
		if lpf := le32(img.sb.b, sbLpfIno); s.renum[lpf] != 0 {
			put32(s.nsb.b, sbLpfIno, s.renum[lpf])
		}
	}
	if s.journalMoves && s.nsb.b[sbJnlBackupType] == 1 {
		in, err := img.readInode(le32(img.sb.b, sbJournalInum))
		if err != nil {
			return err
		}
		setJournalBackup(s.nsb, in)
	}
	if err := s.swap(); err != nil {
		return err
	}
	for _, r := range freed {
		img.freeBlocks(r.start, r.len)
	}
	if err := s.rebuildResizeInode(); err != nil {
		return err
	}
	img.sb.setFreeBlocksCount(img.countFreeBlocks())
	img.sb.setFreeInodesCount(uint32(img.countFreeInodes()))
	return s.checkCommitFits()
}

// checkKeptMetadata refuses a shrink that would cut off a kept group's
// bitmaps or inode table (flex_bg may place them after the group); moving
// them is not implemented.
func (s *shrinker) checkKeptMetadata() error {
	img := s.img
	for g := uint32(0); g < s.keep; g++ {
		d := img.gd(g)
		for _, b := range []uint64{d.blockBitmap(), d.inodeBitmap(), d.inodeTable() + uint64(img.itableBlocks) - 1} {
			if b >= s.end {
				return unsupportedf("shrinking to %d blocks: group %d's bitmaps or inode table lie at block %d, past the new end (moving them is not implemented)", s.end, g, b)
			}
		}
	}
	return nil
}

// scan reads every inode in use: it lists the directories and the inodes
// the shrink changes, and reads the maps of those it rebuilds.
func (s *shrinker) scan() error {
	img := s.img
	if ok, err := s.nothingPastEnd(); err != nil || ok {
		return err
	}
	first := img.sb.firstIno()
	orphanFile := uint32(0)
	if img.sb.hasCompat(compatOrphanFile) {
		orphanFile = le32(img.sb.b, sbOrphanFileInum)
	}
	for g := uint32(0); g < s.old.groupCount; g++ {
		if img.inodeUninit(g) {
			continue
		}
		bm, err := img.inodeBitmap(g)
		if err != nil {
			return err
		}
		limit := img.ipg
		if img.sb.groupCsums() {
			limit -= min(img.gd(g).itableUnused(), img.ipg)
		}
		for idx := uint32(0); idx < limit; idx++ {
			if !testBit(bm, uint64(idx)) {
				continue
			}
			ino := g*img.ipg + idx + 1
			if ino == resizeIno {
				continue // rebuilt for the new geometry (rebuildResizeInode)
			}
			in, err := img.readInode(ino)
			if err != nil {
				return err
			}
			if ino == badBlocksIno {
				if in.blocks512(img) != 0 {
					return unsupportedf("shrinking a filesystem with a bad blocks list")
				}
				continue
			}
			if ino < first && ino != rootIno && !img.usesMapping(in) && in.fileACL() == 0 {
				continue
			}
			if err := s.scanInode(in, g >= s.keep, ino == orphanFile); err != nil {
				return err
			}
		}
	}
	return nil
}

// nothingPastEnd reports whether nothing but group metadata lives past
// the new end and in the blocks the new layout claims: the removed groups
// have no inode in use and no block in use but bitmaps, inode tables and
// superblock and descriptor copies, and the kept last group's cut-off
// tail likewise. Then no inode points past the end (every block there is
// free or metadata), nothing moves or is renumbered, and the scan of
// every inode is not needed: an image built from the front and cut to
// its content (imagepull's auto size) shrinks in milliseconds.
func (s *shrinker) nothingPastEnd() (bool, error) {
	img := s.img
	old := &s.old
	last := s.keep - 1
	lastFirst := old.groupFirstBlock(last)
	lastEnd := lastFirst + uint64(old.groupBlocks(last))
	// Per group, the metadata blocks lying in it past the new end,
	// whoever they belong to; and those in the kept last group's tail.
	inGroup := make([]uint64, old.groupCount)
	tail := map[uint64]bool{}
	mark := func(start, n uint64) {
		for b := max(start, s.end); b < start+n && b < old.blocksCount; {
			g := old.blockGroup(b)
			end := min(start+n, old.groupFirstBlock(g)+uint64(old.groupBlocks(g)))
			inGroup[g] += end - b
			for t := b; t < end && t < lastEnd; t++ {
				tail[t] = true
			}
			b = end
		}
	}
	for g := uint32(0); g < old.groupCount; g++ {
		d := img.gd(g)
		mark(d.blockBitmap(), 1)
		mark(d.inodeBitmap(), 1)
		mark(d.inodeTable(), uint64(old.itableBlocks))
		if g >= last {
			old.superAndDescBlocks(g, func(b uint64) { mark(b, 1) })
		}
	}
	for g := s.keep; g < old.groupCount; g++ {
		d := img.gd(g)
		if d.freeInodes() != old.ipg || uint64(old.groupBlocks(g))-uint64(d.freeBlocks()) != inGroup[g] {
			return false, nil
		}
	}
	bm, err := img.blockBitmap(last)
	if err != nil {
		return false, err
	}
	for b := s.end; b < lastEnd; b++ {
		if testBit(bm, b-lastFirst) && !tail[b] {
			return false, nil
		}
	}
	for _, r := range s.claims {
		for b := r.start; b < r.start+r.len; b++ {
			g := old.blockGroup(b)
			gbm, err := img.blockBitmap(g)
			if err != nil {
				return false, err
			}
			if testBit(gbm, b-old.groupFirstBlock(g)) {
				return false, nil
			}
		}
	}
	return true, nil
}

func (s *shrinker) scanInode(in *inode, moves, orphanFile bool) error {
	img := s.img
	if in.isDir() {
		s.dirs = append(s.dirs, in.ino)
	}
	f := &shrinkFile{in: in, oldIno: in.ino, extents: in.hasExtents()}
	changed := moves
	if moves && (in.ino < img.sb.firstIno() || orphanFile) {
		return unsupportedf("shrinking: inode %d (reserved, or the orphan file) lies in a removed group", in.ino)
	}
	if acl := in.fileACL(); acl != 0 {
		if !img.inFS(acl) {
			return corruptf("inode %d xattr block %d outside the filesystem", in.ino, acl)
		}
		if s.evac(acl) {
			changed = true
			s.claimedUsed[acl] = true
		}
	}
	if img.usesMapping(in) {
		outside := false
		err := img.walkFile(in, func(e fileExtent) error {
			f.exts = append(f.exts, e)
			for _, p := range s.pieces(e) {
				if p.evac {
					outside = true
					s.noteClaimed(p.pblk, p.len)
				}
			}
			return nil
		}, func(blk uint64) {
			f.nodes = append(f.nodes, blk)
			if s.evac(blk) {
				outside = true
				s.noteClaimed(blk, 1)
			}
		})
		if err != nil {
			return err
		}
		f.rebuild = outside || (moves && f.extents && len(f.nodes) > 0)
		if f.rebuild && img.sb.hasCompat(compatHasJournal) && in.ino == le32(img.sb.b, sbJournalInum) {
			s.journalMoves = true
		}
		if !f.rebuild {
			f.exts, f.nodes = nil, nil
		}
		changed = changed || f.rebuild
	}
	if changed {
		s.files = append(s.files, f)
	}
	return nil
}

// fence confines allocation to the kept part (see the top of the file)
// and claims the blocks the new layout adds to kept groups. It returns
// the blocks to release at the commit: the removed groups' bitmaps and
// inode tables lying in kept groups, and kept groups' superblock copies
// and descriptor blocks the new layout drops. Their groups' bitmaps are
// made real now, in the old geometry, so that the release finds them set.
func (s *shrinker) fence() ([]blockRun, error) {
	img := s.img
	for g := s.keep; g < s.old.groupCount; g++ {
		d := img.gd(g)
		d.setFreeBlocks(0)
		d.setFreeInodes(0)
	}
	last := s.keep - 1
	first := img.groupFirstBlock(last)
	bm, err := img.blockBitmapW(last)
	if err != nil {
		return nil, err
	}
	var cut uint32
	for b := s.end - first; b < uint64(img.bs)*8; b++ {
		if !testBit(bm, b) {
			setBit(bm, b)
			if b < uint64(img.groupBlocks(last)) {
				cut++
			}
		}
	}
	d := img.gdW(last)
	if d.freeBlocks() < cut {
		return nil, corruptf("group %d free block count %d below what its bitmap shows free", last, d.freeBlocks())
	}
	d.setFreeBlocks(d.freeBlocks() - cut)

	var freed []blockRun
	release := func(start, n uint64) error {
		for b := start; b < start+n && b < s.end; b++ {
			if _, err := img.blockBitmapW(img.blockGroup(b)); err != nil {
				return err
			}
			if k := len(freed); k > 0 && freed[k-1].start+freed[k-1].len == b {
				freed[k-1].len++
			} else {
				freed = append(freed, blockRun{b, 1})
			}
		}
		return nil
	}
	for g := s.keep; g < s.old.groupCount; g++ {
		d := img.gd(g)
		for _, r := range []blockRun{{d.blockBitmap(), 1}, {d.inodeBitmap(), 1}, {d.inodeTable(), uint64(img.itableBlocks)}} {
			if err := release(r.start, r.len); err != nil {
				return nil, err
			}
		}
	}
	for g := uint32(0); g < s.keep; g++ {
		gone, added, _ := superAndDescChange(&s.old, &s.ng, g)
		for _, b := range gone {
			if err := release(b, 1); err != nil {
				return nil, err
			}
		}
		for _, b := range added {
			bm, err := img.blockBitmapW(g)
			if err != nil {
				return nil, err
			}
			i := b - img.groupFirstBlock(g)
			if testBit(bm, i) {
				// In use: by content that moves out (the scan found it),
				// or by metadata, which does not move.
				if !s.claimedUsed[b] {
					return nil, unsupportedf("shrinking: block %d, needed for group %d's superblock copy, holds metadata", b, g)
				}
				continue
			}
			setBit(bm, i)
			d := img.gdW(g)
			d.setFreeBlocks(d.freeBlocks() - 1)
		}
	}
	img.sb.setFreeBlocksCount(img.countFreeBlocks())
	img.sb.setFreeInodesCount(uint32(img.countFreeInodes()))
	return freed, nil
}

// renumber gives every inode of a removed group a free number in a kept
// group.
func (s *shrinker) renumber() error {
	img := s.img
	var n uint64
	for _, f := range s.files {
		if img.groupOfInode(f.oldIno) >= s.keep {
			n++
		}
	}
	if free := img.countFreeInodes(); n > free {
		return fmt.Errorf("%w: %d inodes must move into the kept groups, which have %d free", ErrNoSpace, n, free)
	}
	for _, f := range s.files {
		g := img.groupOfInode(f.oldIno)
		if g < s.keep {
			continue
		}
		ino, err := img.allocInode(g%s.keep, f.in.isDir())
		if err != nil {
			return err
		}
		s.renum[f.oldIno] = ino
		f.in.ino = ino
	}
	return nil
}

// fixFile moves f's attribute block and data, rebuilds its map and
// writes the inode under its (new) number.
func (s *shrinker) fixFile(f *shrinkFile) error {
	img := s.img
	in := f.in
	goal := img.groupFirstBlock(img.groupOfInode(in.ino))
	if acl := in.fileACL(); s.evac(acl) {
		nb, ok := s.xattr[acl]
		if !ok {
			var err error
			if nb, err = s.moveXattrBlock(f, acl, goal); err != nil {
				return err
			}
		}
		in.setFileACL(nb)
	}
	if f.rebuild {
		if err := s.remap(f, goal); err != nil {
			return err
		}
	}
	return img.writeInode(in)
}

// moveXattrBlock copies attribute block acl (checked against its old
// number) to a kept block, with the checksum its new number seeds.
func (s *shrinker) moveXattrBlock(f *shrinkFile, acl, goal uint64) (uint64, error) {
	img := s.img
	src, err := img.cache.get(acl)
	if err != nil {
		return 0, err
	}
	if img.sb.metadataCsum() && le32(src, xattrHdrChecksum) != img.xattrBlockCsum(acl, src) {
		return 0, corruptf("inode %d xattr block %d checksum mismatch", f.oldIno, acl)
	}
	data := append([]byte(nil), src...)
	runs, err := img.allocBlocks(goal, 1)
	if err != nil {
		return 0, err
	}
	nb := runs[0].start
	b := img.cache.fresh(nb, kindMeta)
	copy(b, data)
	if img.sb.metadataCsum() {
		put32(b, xattrHdrChecksum, img.xattrBlockCsum(nb, b))
	}
	s.xattr[acl] = nb
	s.moves++
	return nb, nil
}

// remap gives f's data blocks past the new end new homes and rebuilds its
// map from scratch, in the format it had.
func (s *shrinker) remap(f *shrinkFile, goal uint64) error {
	img := s.img
	in := f.in
	var out []fileExtent
	add := func(e fileExtent) {
		if k := len(out); k > 0 {
			p := &out[k-1]
			if p.lblk+p.len == e.lblk && p.pblk+p.len == e.pblk && p.uninit == e.uninit {
				p.len += e.len
				return
			}
		}
		out = append(out, e)
	}
	for _, p := range f.pieces(s) {
		e := p.fileExtent
		if !p.evac {
			add(e)
			goal = e.pblk + e.len
			continue
		}
		runs, err := img.allocBlocks(goal, e.len)
		if err != nil {
			return err
		}
		for _, r := range runs {
			add(fileExtent{lblk: e.lblk, pblk: r.start, len: r.len, uninit: e.uninit})
			if !e.uninit {
				if err := s.copyBlocks(in, e.pblk, r.start, r.len); err != nil {
					return err
				}
			}
			s.moves += r.len
			e.lblk, e.pblk = e.lblk+r.len, e.pblk+r.len
			goal = r.start + r.len
		}
	}
	for _, b := range f.nodes {
		if !s.evac(b) {
			img.freeBlocks(b, 1)
		}
	}
	var keep uint64
	if in.fileACL() != 0 {
		keep = uint64(img.bs / 512)
	}
	clear(in.iblock())
	if err := in.setBlocks512(img, keep); err != nil {
		return err
	}
	return img.mapNewAs(in, out, goal, f.extents)
}

// piece is part of an extent, wholly to evacuate or wholly to keep.
type piece struct {
	fileExtent
	evac bool
}

// evac reports whether block b must be emptied: past the new end, or
// claimed by the new layout.
func (s *shrinker) evac(b uint64) bool {
	if b >= s.end {
		return true
	}
	for _, c := range s.claims {
		if b >= c.start && b < c.start+c.len {
			return true
		}
	}
	return false
}

// pieces cuts e where evac changes.
func (s *shrinker) pieces(e fileExtent) []piece {
	var out []piece
	for e.len > 0 {
		ev := s.evac(e.pblk)
		n := e.len
		if !ev {
			n = min(n, s.end-e.pblk)
		}
		for _, c := range s.claims {
			switch {
			case ev && e.pblk >= c.start && e.pblk < c.start+c.len:
				n = min(n, c.start+c.len-e.pblk)
			case !ev && c.start > e.pblk:
				n = min(n, c.start-e.pblk)
			}
		}
		out = append(out, piece{fileExtent{lblk: e.lblk, pblk: e.pblk, len: n, uninit: e.uninit}, ev})
		e.lblk, e.pblk, e.len = e.lblk+n, e.pblk+n, e.len-n
	}
	return out
}

func (f *shrinkFile) pieces(s *shrinker) []piece {
	var out []piece
	for _, e := range f.exts {
		out = append(out, s.pieces(e)...)
	}
	return out
}

// noteClaimed records content found in claimed blocks.
func (s *shrinker) noteClaimed(start, n uint64) {
	for _, c := range s.claims {
		for b := max(start, c.start); b < min(start+n, c.start+c.len); b++ {
			s.claimedUsed[b] = true
		}
	}
}

// copyBlocks arranges for n blocks to be copied from src to dst: a
// directory's through the cache, where its entries may change next; other
// data at write time.
func (s *shrinker) copyBlocks(in *inode, src, dst, n uint64) error {
	img := s.img
	if !in.isDir() {
		if k := len(s.copies); k > 0 {
			if c := &s.copies[k-1]; c.src+c.n == src && c.dst+c.n == dst {
				c.n += n
				return nil
			}
		}
		s.copies = append(s.copies, blockRun2{src, dst, n})
		return nil
	}
	for i := uint64(0); i < n; i++ {
		b, err := img.cache.get(src + i)
		if err != nil {
			return err
		}
		data := append([]byte(nil), b...)
		copy(img.cache.fresh(dst+i, kindDir), data)
	}
	return nil
}

// fixDirs rewrites every directory entry naming a renumbered inode, and
// the checksum tails of renumbered directories.
func (s *shrinker) fixDirs() error {
	img := s.img
	for _, old := range s.dirs {
		ino := old
		if n, ok := s.renum[old]; ok {
			ino = n
		}
		in, err := img.readInode(ino)
		if err != nil {
			return err
		}
		if in.hasInlineData() {
			err = s.fixInlineDir(in)
		} else {
			err = s.fixDirBlocks(in, old)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// fixDirBlocks handles one block-mapped directory, in its new number
// (old is the one its blocks' checksums were made with).
func (s *shrinker) fixDirBlocks(in *inode, old uint32) error {
	img := s.img
	moved := old != in.ino
	oldIn := &inode{ino: old, b: in.b}
	n, err := img.dirBlockCount(in)
	if err != nil {
		return err
	}
	indexed := in.flags()&flagIndex != 0
	for lblk := uint64(0); lblk < n; lblk++ {
		b, p, err := img.dirBlock(in, lblk)
		if err != nil {
			return err
		}
		switch {
		case indexed && lblk == 0:
			dots, err := img.parseDxRootDots(oldIn, b)
			if err != nil {
				return err
			}
			change := moved
			for _, d := range dots {
				change = change || s.renum[d.ino] != 0
			}
			if !change {
				continue
			}
			w, err := img.cache.getW(p, kindDir)
			if err != nil {
				return err
			}
			for _, d := range dots {
				if nw := s.renum[d.ino]; nw != 0 {
					put32(w, d.off+deInode, nw)
				}
			}
			img.setDxCsum(in, w)
		case indexed && img.isDxNodeBlock(b):
			if moved {
				w, err := img.cache.getW(p, kindDir)
				if err != nil {
					return err
				}
				img.setDxCsum(in, w)
			}
		default:
			ents, err := img.parseDirBlock(oldIn, lblk, b)
			if err != nil {
				return err
			}
			change := moved
			for _, e := range ents {
				change = change || s.renum[e.ino] != 0
			}
			if !change {
				continue
			}
			tail := img.sb.metadataCsum() && img.hasDirTail(b)
			w, err := img.cache.getW(p, kindDir)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if nw := s.renum[e.ino]; nw != 0 {
					put32(w, e.off+deInode, nw)
				}
			}
			if tail {
				img.setDirTail(in, w)
			}
			if cb := img.cache.blocks[p]; cb != nil {
				cb.uncheck()
			}
		}
	}
	return nil
}

// fixInlineDir rewrites an inline directory's parent and entries in
// i_block; entries in its system.data attribute are not rewritten (inline
// writes are not implemented), so one naming a renumbered inode refuses.
func (s *shrinker) fixInlineDir(in *inode) error {
	img := s.img
	ib := in.iblock()
	change := false
	if nw := s.renum[le32(ib, 0)]; nw != 0 {
		put32(ib, 0, nw)
		change = true
	}
	ents, err := img.parseEntries(in, dirWhere{inline: true}, ib[4:])
	if err != nil {
		return err
	}
	for _, e := range ents {
		if nw := s.renum[e.ino]; nw != 0 {
			put32(ib[4:], e.off+deInode, nw)
			change = true
		}
	}
	v, ok, err := img.getXattr(in, inlineXattr)
	if err != nil {
		return err
	}
	if ok && len(v) > 0 {
		ents, err := img.parseEntries(in, dirWhere{inline: true, n: 1}, v)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if s.renum[e.ino] != 0 {
				return unsupportedf("shrinking: inline directory %d names inode %d, which moves, in its system.data attribute", in.ino, e.ino)
			}
		}
	}
	if !change {
		return nil
	}
	return img.writeInode(in)
}

// swap makes the new geometry the image's: the kept groups' descriptors,
// the new superblock with the counts of now.
func (s *shrinker) swap() error {
	img := s.img
	for blk, b := range img.cache.blocks {
		if blk >= s.end && b.dirty {
			return fmt.Errorf("internal error: shrink dirtied block %d past the new end %d", blk, s.end)
		}
	}
	gdt := append([]byte(nil), img.gdt[:uint64(s.keep)*uint64(img.descSize)]...)
	img.geometry, img.sb, img.gdt = s.ng, s.nsb, gdt
	// Clean blocks go: bitmaps of the old geometry built in memory for
	// uninitialised groups, and blocks past the end.
	for blk, b := range img.cache.blocks {
		if !b.dirty {
			delete(img.cache.blocks, blk)
			img.cache.clean--
		}
	}
	img.forgetAllocHints()
	for _, m := range []map[uint32]bool{img.dirty.gdt, img.dirty.blockBitmaps, img.dirty.inodeBitmaps} {
		for g := range m {
			if g >= s.keep {
				delete(m, g)
			}
		}
	}
	img.dirty.gdt[s.keep-1] = true
	img.paths.dirs = nil
	return nil
}

// rebuildResizeInode lays the resize inode out for the new geometry; its
// dind block moves if it lay in the removed part.
func (s *shrinker) rebuildResizeInode() error {
	img := s.img
	if !s.old.compat.has(compatResizeInode) || !img.compat.has(compatResizeInode) {
		return nil
	}
	in, err := img.readInode(resizeIno)
	if err != nil {
		return err
	}
	dind := resizeInodeDind(in)
	if dind < s.old.metaEnd(0) || dind >= s.old.blocksCount {
		return corruptf("resize inode's dind block %d", dind)
	}
	if dind >= s.end {
		runs, err := img.allocBlocks(img.metaEnd(0), 1)
		if err != nil {
			return err
		}
		dind = runs[0].start
		put32(in.iblock(), iBlockDind*iBlockPtrSize, uint32(dind))
	}
	if err := img.buildResizeInode(in, dind); err != nil {
		return err
	}
	in.setCtime(img.now())
	return img.writeInode(in)
}

// checkCommitFits refuses, before anything is written, a shrink whose
// metadata would not fit one journal transaction.
func (s *shrinker) checkCommitFits() error {
	img := s.img
	n := 1 + len(img.dirtyDescBlocks())
	for _, b := range img.cache.blocks {
		if b.dirty && !b.fresh {
			n++
		}
	}
	// Releases dirty the bitmaps of their groups at the commit.
	groups := map[uint32]bool{}
	for _, r := range img.pending.blocks {
		for g := img.blockGroup(r.start); g <= img.blockGroup(r.start+r.len-1); g++ {
			if !img.dirty.blockBitmaps[g] {
				groups[g] = true
			}
		}
	}
	n += len(groups)
	s.commitBlocks = n
	if s.maxTrans == 0 {
		return nil
	}
	if n > s.maxTrans {
		return fmt.Errorf("%w: one journal transaction holds %d blocks, the shrink's metadata is %d", ErrNoSpace, s.maxTrans, n)
	}
	return nil
}

// write copies the moved data, commits, writes the backups and cuts the
// file. Past the commit a failure leaves the image refusing edits.
func (s *shrinker) write() error {
	img := s.img
	if err := s.copyData(); err != nil {
		s.restore()
		return err
	}
	img.dirty.data = true // the copies share the commit's first barrier
	if s.journalMoves {
		// The transaction is logged in the journal's new home (a copy of
		// the old, empty one), which only the new journal inode names:
		// that inode's block goes home first, alone, so the on-disk tree
		// names the old, untouched journal until the rest can replay.
		blk, _, err := img.inodeLoc(le32(img.sb.b, sbJournalInum))
		if err != nil {
			s.restore()
			return err
		}
		img.dirty.checkpointFirst = blk
	}
	if err := img.commitResize(true); err != nil {
		return err
	}
	// The file is cut last: until then a crash leaves the new filesystem
	// in a file longer than it, which is fine.
	if err := img.f.Truncate(img.bytes()); err != nil {
		img.undo.partial = fmt.Errorf("%w: resize (cutting the file): %w", ErrPartialEdit, err)
		return err
	}
	img.resetState()
	return nil
}

// copyData copies the moved file data, in runs of up to copyChunk bytes,
// into blocks the old filesystem does not use.
func (s *shrinker) copyData() error {
	img := s.img
	bs := uint64(img.bs)
	slices.SortFunc(s.copies, func(a, b blockRun2) int { return cmp.Compare(a.src, b.src) })
	const copyChunk = 8 << 20
	buf := make([]byte, min(copyChunk, s.maxCopy()*bs))
	for _, c := range s.copies {
		if !s.old.runInFS(c.src, c.n) || !img.runInFS(c.dst, c.n) {
			return fmt.Errorf("internal error: shrink copy %d+%d -> %d outside the filesystem", c.src, c.n, c.dst)
		}
		for done := uint64(0); done < c.n; {
			k := min(c.n-done, uint64(len(buf))/bs)
			p := buf[:k*bs]
			if _, err := img.dev.ReadAt(p, img.off+int64((c.src+done)*bs)); err != nil {
				return err
			}
			if _, err := img.dev.WriteAt(p, img.off+int64((c.dst+done)*bs)); err != nil {
				return err
			}
			done += k
		}
		img.startWriteback(img.off+int64(c.dst*bs), int64(c.n*bs))
	}
	return nil
}

func (s *shrinker) maxCopy() uint64 {
	var m uint64 = 1
	for _, c := range s.copies {
		m = max(m, c.n)
	}
	return m
}
