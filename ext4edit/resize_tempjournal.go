package ext4edit

import "fmt"

// A resize of a filesystem without a journal borrows one.
//
// Growing and shrinking each end in one commit that changes blocks all
// over the filesystem: the superblock, descriptors, bitmaps and the resize
// inode's reserved blocks, and for a shrink every inode and directory
// entry that moves. With a journal that commit is one jbd2 transaction.
// Without one no order of plain writes makes it atomic: a crash midway
// left states only `e2fsck -fy` repairs ("Resize inode not valid",
// unconnected directories; e2fsck -p stops on them).
//
// So the resize first gives the filesystem a journal (inode 8, as
// `tune2fs -j` would), committed in the ordered way: a crash there leaves
// the old filesystem, at worst with the journal's blocks marked used and
// inode 8 filled in, which e2fsck -p reclaims without asking. The journal
// lies where both the old and the new filesystem have it (a shrink keeps
// it before the new end), so the resize's transaction is an ordinary one:
// after a crash e2fsck, the kernel and our own open replay it. Then the
// journal goes again: first the superblock stops naming it, alone behind
// a barrier, then inode 8 is put back and the blocks released in the
// ordered way; a crash between leaves inode 8 set up as a journal nobody
// names, which e2fsck -p clears, then leaked blocks. (The superblock goes
// first because the kernel refuses to mount a filesystem whose superblock
// names a journal inode that is gone, and stops a replay that drops
// has_journal.) A crash during the resize itself leaves the journal in
// place: the old or the new filesystem, with a journal.
//
// A grow of a filesystem with too little free space for a journal (1024
// blocks, jbd2's minimum) goes the ordered way, where a crash midway can
// need e2fsck -fy; a shrink that leaves no room for one is refused
// (ErrNoSpace), as MinSize reckons.

// tempJournal is a journal a resize added, and what it replaced.
type tempJournal struct {
	j    *journal
	ino8 []byte // inode 8 before the journal
	// The superblock's journal fields before the journal.
	inum, dev  uint32
	jnlBlocks  []byte
	backupType byte
}

// errNoTempJournal: the free space cannot hold a temporary journal.
var errNoTempJournal = fmt.Errorf("%w: no room for the temporary journal a resize of a filesystem without one borrows", ErrNoSpace)

// needsTempJournal reports whether a resize must borrow a journal: the
// filesystem has none and the image is not a scratch image (which makes
// no crash promise).
func (img *Image) needsTempJournal() bool {
	return !img.sb.hasCompat(compatHasJournal) && !img.opts.Scratch
}

// tempJournalBlocks is the size of a temporary journal whose one
// transaction holds n blocks: 1024 blocks (jbd2's minimum) or more.
func (img *Image) tempJournalBlocks(n int) uint32 {
	j := &journal{img: img, sb: make([]byte, jsSize), first: 1}
	if img.sb.hasIncompat(incompat64bit) {
		be.PutUint32(j.sb[jsIncompat:], jIncompat64bit)
	}
	for size := uint32(1024); size < 1<<30; size += max(size/8, 64) {
		j.maxlen = size
		if j.maxTransaction() >= n {
			return size
		}
	}
	return 1 << 30
}

// saveState returns a function that puts the image's in-memory state
// back as it is now (geometry, superblock, descriptors; the cache and
// pending frees dropped): the undo of a dry run.
func (img *Image) saveState() func() {
	geo, sb, gdt := img.geometry, append([]byte(nil), img.sb.b...), append([]byte(nil), img.gdt...)
	return func() {
		img.geometry = geo
		img.sb = superblock{b: append([]byte(nil), sb...)}
		img.gdt = append([]byte(nil), gdt...)
		img.resetState()
		img.pending = pendingFrees{}
		img.undo.touched = false
	}
}

// addTempJournal makes inode 8 a journal of n blocks allocated from goal
// on, all below block below. dry: in memory only (the caller's dry run
// undoes it). Otherwise it is committed in the ordered way (see the top
// of the file). errNoTempJournal when the free space cannot hold it;
// nothing is written then.
func (img *Image) addTempJournal(n uint32, goal, below uint64, dry bool) (t *tempJournal, err error) {
	if uint64(n)+64 > img.freeBlocksTotal() {
		return nil, fmt.Errorf("%w (%d blocks, %d free)", errNoTempJournal, n, img.freeBlocksTotal())
	}
	restore := img.saveState()
	defer func() {
		if err != nil && !dry {
			restore()
		}
	}()
	t = &tempJournal{
		inum:       le32(img.sb.b, sbJournalInum),
		dev:        le32(img.sb.b, sbJournalDev),
		jnlBlocks:  append([]byte(nil), img.sb.b[sbJnlBlocks:sbJnlBlocks+17*4]...),
		backupType: img.sb.b[sbJnlBackupType],
	}
	in8, err := img.readInode(journalIno)
	if err != nil {
		return nil, err
	}
	t.ino8 = append([]byte(nil), in8.b...)
	var uuid [16]byte
	copy(uuid[:], img.sb.uuid())
	jsb, err := img.mkJournalAt(n, uuid, goal, true)
	if err != nil {
		return nil, err
	}
	// As the kernel does at mount: 64-bit block numbers in the tags.
	if img.sb.hasIncompat(incompat64bit) {
		be.PutUint32(jsb[jsIncompat:], jIncompat64bit)
	}
	in, err := img.readInode(journalIno)
	if err != nil {
		return nil, err
	}
	if t.j, err = img.parseJournal(in, jsb); err != nil {
		return nil, err
	}
	blocks, err := img.fileBlocks(in)
	if err != nil {
		return nil, err
	}
	for _, r := range blocks {
		if r.start+r.len > below {
			return nil, fmt.Errorf("%w (%d blocks, below block %d)", errNoTempJournal, n, below)
		}
	}
	put32(img.sb.b, sbJournalDev, 0)
	img.sb.setCompat(img.sb.compat() | compatHasJournal)
	if dry {
		return t, nil
	}
	if err := img.writeData(t.j.sbBlk, jsb); err != nil {
		return nil, err
	}
	img.dirty.ordered = true
	err = img.commit()
	img.dirty.ordered = false
	if err != nil {
		img.undo.partial = fmt.Errorf("%w: resize (adding a temporary journal): %w", ErrPartialEdit, err)
	}
	return t, err
}

// fileBlocks lists the blocks an inode holds: its data and its tree.
func (img *Image) fileBlocks(in *inode) ([]blockRun, error) {
	var runs []blockRun
	err := img.walkFile(in, func(e fileExtent) error {
		runs = append(runs, blockRun{e.pblk, e.len})
		return nil
	}, func(blk uint64) {
		runs = append(runs, blockRun{blk, 1})
	})
	return runs, err
}

// remove takes the journal out once the resize committed (which emptied
// it): the superblock stops naming it, then inode 8 goes back and its
// blocks are released (see the top of the file). The backup superblocks
// follow.
func (t *tempJournal) remove(img *Image) error {
	err := t.removeJournal(img)
	if err != nil && img.undo.partial == nil {
		img.undo.partial = fmt.Errorf("%w: resize (removing the temporary journal): %w", ErrPartialEdit, err)
	}
	return err
}

// giveBack removes the journal after the resize failed (err) before its
// commit, the image back in its old geometry: the resize's checks run
// before the journal is added, but a read error or a corruption found
// midway must not leave the filesystem with a journal it did not have.
// Past the commit (a partial edit) the journal stays.
func (t *tempJournal) giveBack(img *Image, err error) error {
	if img.undo.partial != nil {
		return err
	}
	if rerr := t.remove(img); rerr != nil {
		return fmt.Errorf("%w (and removing the temporary journal: %w)", err, rerr)
	}
	return err
}

func (t *tempJournal) removeJournal(img *Image) error {
	in, err := img.readInode(journalIno)
	if err != nil {
		return err
	}
	blocks, err := img.fileBlocks(in)
	if err != nil {
		return err
	}
	put32(img.sb.b, sbJournalInum, t.inum)
	put32(img.sb.b, sbJournalDev, t.dev)
	copy(img.sb.b[sbJnlBlocks:], t.jnlBlocks)
	img.sb.b[sbJnlBackupType] = t.backupType
	img.sb.setCompat(img.sb.compat() &^ compatHasJournal)
	img.sb.setIncompat(img.sb.incompat() &^ incompatRecover)
	img.sb.updateChecksum()
	if _, err := img.dev.WriteAt(img.sb.b, img.off+superblockOffset); err != nil {
		return err
	}
	if err := img.dev.Sync(); err != nil {
		return err
	}
	if err := img.writeInode(&inode{ino: journalIno, b: append([]byte(nil), t.ino8...)}); err != nil {
		return err
	}
	for _, r := range blocks {
		img.freeBlocks(r.start, r.len)
	}
	if err := img.commit(); err != nil { // ordered: the inode, then the bitmaps
		return err
	}
	// The backup superblocks forget the journal too (the backup
	// descriptors' free counts may lag, as they do after any edit).
	if err := img.writeBackupCopies(false); err != nil {
		return err
	}
	return img.dev.Sync()
}
