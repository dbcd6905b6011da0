package ext4edit

import "fmt"

// checkJournal checks the internal journal's inode and superblock; the
// replay itself is the editor's read-only overlay (the report says when it
// was needed).
func (c *checker) checkJournal() {
	if !c.sb.hasCompat(compatHasJournal) {
		if c.sb.hasIncompat(incompatRecover) {
			c.problem(KindJournal, "superblock", "", "needs_recovery set without a journal")
		}
		return
	}
	jino := le32(c.sb.b, sbJournalInum)
	if jino == 0 {
		c.rep.NotChecked = append(c.rep.NotChecked, "external journal")
		return
	}
	f := c.inodes.get(jino)
	ok := f != nil
	if !ok || f.mode&sIFMT != sIFREG {
		c.problem(KindJournal, inodeName(jino), "", "the journal inode is not a regular file in use")
		return
	}
	raw := c.inodeRaw(jino)
	in := &inode{ino: jino, b: raw}
	var first uint64
	if in.hasExtents() {
		ib := in.iblock()
		if le16(ib, ehMagic) == extentMagic && le16(ib, ehEntries) > 0 && le16(ib, ehDepth) == 0 {
			first = extentPblk(ib[ehSize:])
		}
	} else {
		first = uint64(le32(in.iblock(), 0))
	}
	if first == 0 || first >= c.img.blocksCount {
		if first == 0 && le16(in.iblock(), ehDepth) > 0 {
			c.rep.NotChecked = append(c.rep.NotChecked, "the journal superblock (journal with a deep extent tree)")
			return
		}
		c.problem(KindJournal, inodeName(jino), "", "the journal has no first block")
		return
	}
	b := make([]byte, c.img.bs)
	if err := c.img.readBlock(first, b); err != nil {
		c.problem(KindJournal, "journal", "", "journal superblock: %v", err)
		return
	}
	if be.Uint32(b[0:]) != jMagic {
		c.problem(KindJournal, "journal", "", "journal superblock magic 0x%08x", be.Uint32(b[0:]))
		return
	}
	if t := be.Uint32(b[4:]); t != 3 && t != 4 {
		c.problem(KindJournal, "journal", "", "journal superblock block type %d", t)
	}
	if bs := be.Uint32(b[12:]); bs != c.img.bs {
		c.problem(KindJournal, "journal", "", "journal block size %d, filesystem %d", bs, c.img.bs)
	}
	if ml := be.Uint32(b[16:]); uint64(ml)*uint64(c.img.bs) > in.size() {
		c.problem(KindJournal, "journal", "", "journal length %d blocks exceeds its inode (%d bytes)", ml, in.size())
	}
	c.checkJournalFeatures(b)
}

// checkJournalFeatures judges the journal superblock's version fields as
// e2fsck_journal_load does: an internal V2 journal has one user, the
// features are ones e2fsck knows, and the checksum features are not mixed.
func (c *checker) checkJournalFeatures(b []byte) {
	compat, incompat, rocompat := be.Uint32(b[jsCompat:]), be.Uint32(b[jsIncompat:]), be.Uint32(b[jsRoCompat:])
	users := be.Uint32(b[jsNrUsers:])
	switch be.Uint32(b[jhBlocktype:]) {
	case jbtSuperV1:
		// e2fsck offers to clear V2 fields a V1 superblock carries;
		// under -n it does not, and the journal reads as V1: clean.
		return
	case jbtSuperV2:
		if users > 1 {
			c.problem(KindJournal, "journal", "", "internal journal superblock names %d users", users)
			return
		}
	default:
		return
	}
	const knownIncompat = jKnownIncompat | jIncompatFastCommt
	switch {
	case incompat&^knownIncompat != 0:
		c.problem(KindJournal, "journal", "", "journal superblock has unknown incompatible features 0x%x", incompat&^knownIncompat)
	case rocompat != 0:
		c.problem(KindJournal, "journal", "", "journal superblock has unknown read-only features 0x%x", rocompat)
	case incompat&jIncompatCsumV2 != 0 && incompat&jIncompatCsumV3 != 0:
		c.problem(KindJournal, "journal", "", "journal superblock has both checksum v2 and v3")
	case incompat&(jIncompatCsumV2|jIncompatCsumV3) != 0 && compat&jCompatChecksum != 0:
		c.problem(KindJournal, "journal", "", "journal superblock has checksum v1 and v2 or v3")
	}
}

// noteNotChecked lists what this image has that the checker does not
// verify.
func (c *checker) noteNotChecked() {
	add := func(s string) { c.rep.NotChecked = append(c.rep.NotChecked, s) }
	add("backup superblocks and descriptor tables")
	if c.sb.hasIncompat(incompatInlineData) {
		add("inline data contents (inline_data)")
	}
	if le32(c.sb.b, sbLastOrphan) != 0 {
		c.checkOrphanList()
	}
	if c.sb.hasCompat(compatOrphanFile) {
		add("the orphan file's contents (orphan_file)")
	}
	if c.sb.hasIncompat(incompatMMP) {
		add("multi-mount protection (mmp)")
	}
	if c.sb.hasIncompat(incompatEAInode) {
		add("extended attribute inodes (ea_inode)")
	}
	if c.sb.hasRoCompat(roCompatQuota) || c.sb.hasRoCompat(roCompatProject) {
		add("quota usage (quota, project)")
	}
}

// checkOrphanList walks the orphan list (s_last_orphan, then each
// inode's i_dtime): every inode on it in range, and no loop. Like
// e2fsck -n, the checker does not release orphans: their inodes stay in
// the bitmap with no links, which pass 5 reports.
func (c *checker) checkOrphanList() {
	img := c.img
	seen := map[uint32]bool{}
	for ino := le32(c.sb.b, sbLastOrphan); ino != 0; {
		if ino < c.sb.firstIno() || ino > img.inodesCount {
			c.problem(KindOrphan, "superblock", "", "the orphan list names inode %d, out of range", ino)
			return
		}
		if seen[ino] || len(seen) > int(img.inodesCount) {
			c.problem(KindOrphan, "superblock", "", "the orphan list loops at inode %d", ino)
			return
		}
		seen[ino] = true
		raw := c.inodeRaw(ino)
		ino = le32(raw, iDtime)
	}
	c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("%d inodes on the orphan list (a mount, or e2fsck without -n, releases them)", len(seen)))
}
