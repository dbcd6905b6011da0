package ext4edit

import (
	"bytes"
	"sort"
	"unicode/utf8"
)

// passDirs is e2fsck's pass 2: every block of every directory in use,
// parsed as entries (or, in a hash-indexed directory, as dx nodes where
// the index says so); the names each inode has are counted, and each
// directory's parent and '..' noted for pass 3.
func (c *checker) passDirs() {
	img := c.img
	// The leaves of every directory, read in block order: runs of
	// adjacent blocks in one read each, as e2fsck reads them.
	type leafRef struct {
		pblk   uint64
		ino    uint32
		lblk   uint32
		first  bool
		hashed bool // an htree leaf: its names' hashes lie in rng
		ver    uint8
		rng    hashRange
	}
	var leaves []leafRef
	for _, ino := range c.dirs {
		f := c.inodes.get(ino)
		if f.dir == nil {
			continue
		}
		if f.dir.inline != nil {
			c.inlineDir(ino, f.dir.inline)
			f.dir = nil
			continue
		}
		nodes := map[uint32]bool{}
		var ranges map[uint32]hashRange
		var ver uint8
		if f.dir.index && c.sb.hasCompat(compatDirIndex) {
			ranges, ver = c.htree(ino, f.dir, nodes)
		}
		for i, lblk := range f.dir.lblks {
			if !nodes[lblk] {
				r, hashed := ranges[lblk]
				leaves = append(leaves, leafRef{f.dir.pblks[i], ino, lblk, lblk == 0 && !nodes[0], hashed, ver, r})
			}
		}
		f.dir = nil
	}
	sort.Slice(leaves, func(i, j int) bool { return leaves[i].pblk < leaves[j].pblk })
	const maxRun = 256
	bs := int(img.bs)
	buf := make([]byte, maxRun*bs)
	for i := 0; i < len(leaves); {
		j := i + 1
		for j < len(leaves) && j-i < maxRun && leaves[j].pblk == leaves[j-1].pblk+1 {
			j++
		}
		if err := c.readBlocks(leaves[i].pblk, buf[:(j-i)*bs]); err != nil {
			for k := i; k < j; k++ {
				c.problem(KindDirEntry, inodeName(leaves[k].ino), "", "directory block %d: %v", leaves[k].lblk, err)
			}
			i = j
			continue
		}
		for k := i; k < j; k++ {
			l := leaves[k]
			var rng *hashRange
			if l.hashed {
				rng = &l.rng
			}
			c.dirLeaf(l.ino, l.lblk, buf[(k-i)*bs:(k-i+1)*bs], l.first, rng, l.ver)
		}
		i = j
	}
}

// inlineDir counts the entries of an inline-data directory: '..' in
// i_block's first word, then entries in the rest of i_block and in the
// system.data attribute.
func (c *checker) inlineDir(ino uint32, raw []byte) {
	filetype := c.sb.hasIncompat(incompatFiletype) && !c.sb.hurd()
	err := c.img.inlineDirIter(&inode{ino: ino, b: raw}, func(name []byte, target uint32, ft uint8) bool {
		dots := string(name) == "." || string(name) == ".."
		c.entry(ino, target, name, ft, filetype, dots)
		return true
	})
	if err != nil {
		c.problem(KindDirEntry, inodeName(ino), "", "inline directory: %v", err)
	}
}

// dirLeaf checks one block of entries; first: it is block 0, which
// starts with '.' and '..'.
//
// In an htree leaf (rng not nil) every name must hash into the range the
// index gives the leaf, with the directory's hash version and the
// superblock's seed.
func (c *checker) dirLeaf(ino uint32, lblk uint32, b []byte, first bool, rng *hashRange, ver uint8) {
	img := c.img
	end := len(b)
	if c.sb.metadataCsum() {
		if !img.hasDirTail(b) {
			c.problem(KindDirChecksum, inodeName(ino), "", "directory block %d has no checksum tail", lblk)
		} else {
			end -= dirTailSize
			if got, want := le32(b, end+8), crc32cRaw(c.seed(ino), b[:end]); got != want {
				c.problem(KindDirChecksum, inodeName(ino), "", "directory block %d checksum 0x%08x, computed 0x%08x", lblk, got, want)
			}
		}
	}
	filetype := c.sb.hasIncompat(incompatFiletype) && !c.sb.hurd()
	facts := c.inodes.get(ino)
	encrypted := facts != nil && facts.encrypted
	// Names in a casefolded directory must be valid UTF-8 where the
	// encoding is strict (e2fsck checks them only then).
	strictNames := facts != nil && facts.casefold && c.sb.hasIncompat(incompatCasefold) &&
		le16(c.sb.b, sbEncodingFlags)&1 != 0
	misplaced := false // one hash problem per block
	idx := 0
	// Names seen in this block: e2fsck's pass 2 finds a name twice in
	// one block (and '.' or '..' anywhere but their places).
	clear(c.blockNames)
	if c.blockNames == nil {
		c.blockNames = map[string]bool{}
	}
	for off := 0; off < end; idx++ {
		if off+deName > end {
			c.problem(KindDirEntry, inodeName(ino), "", "block %d: entry at offset %d runs past the block", lblk, off)
			return
		}
		rl := int(le16(b, off+deRecLen))
		if img.bs >= 65536 && (rl == 65535 || rl == 0) {
			rl = int(img.bs)
		}
		nl := int(b[off+deNameLen])
		if rl < deName || rl%4 != 0 || off+rl > end || deName+nl > rl {
			c.problem(KindDirEntry, inodeName(ino), "", "block %d: entry at offset %d has rec_len %d, name_len %d", lblk, off, rl, nl)
			return
		}
		target := le32(b, off+deInode)
		nm := b[off+deName : off+deName+nl]
		if first && idx < 2 {
			want := []byte(".")
			if idx == 1 {
				want = []byte("..")
			}
			if !bytes.Equal(nm, want) || target == 0 {
				c.problem(KindDirDots, inodeName(ino), "", "entry %d of block 0 is %q (inode %d), not %q", idx, nm, target, want)
			} else if idx == 0 && target != ino {
				c.problem(KindDirDots, inodeName(ino), "", "'.' names inode %d", target)
			}
		}
		if target != 0 && rng != nil && !misplaced {
			if h, _, err := dxHash(nm, ver, c.sb.hashSeed()); err == nil && (uint64(h) < rng.lo || uint64(h) >= rng.hi) {
				c.problem(KindHtree, inodeName(ino), "", "block %d: entry %q hashes to 0x%08x, outside the leaf's range [0x%x, 0x%x)", lblk, nm, h, rng.lo, rng.hi)
				misplaced = true
			}
		}
		if target != 0 {
			if nl == 0 || bytes.IndexByte(nm, '/') >= 0 || bytes.IndexByte(nm, 0) >= 0 {
				c.problem(KindDirEntry, inodeName(ino), "", "block %d: bad name %q", lblk, nm)
			}
			dotName := string(nm) == "." || string(nm) == ".."
			switch {
			case dotName && !(first && idx < 2):
				c.problem(KindDirEntry, inodeName(ino), "", "block %d: a second %q entry", lblk, nm)
			case c.blockNames[string(nm)]:
				c.problem(KindDirEntry, inodeName(ino), "", "block %d: duplicate entry %q", lblk, nm)
			default:
				c.blockNames[string(nm)] = true
			}
			switch {
			case dotName:
			case encrypted:
				c.encryptedEntry(ino, target, nm)
			case strictNames && !utf8.Valid(nm):
				c.problem(KindDirEntry, inodeName(ino), "", "entry %q has illegal UTF-8 characters in its name (strict casefold encoding)", nm)
			}
			c.entry(ino, target, nm, b[off+deFileType], filetype, first && idx < 2)
		}
		off += rl
	}
}

// encryptedEntry judges a name in an encrypted directory as e2fsck's
// pass 2 does: an fscrypt name is at least one 16-byte cipher block, and
// it names an encrypted file, directory or symlink (devices, fifos and
// sockets are not encrypted). Whether the policies match (the
// encryption context attributes) is not compared.
func (c *checker) encryptedEntry(dir, target uint32, nm []byte) {
	if len(nm) < 16 {
		c.problem(KindDirEntry, inodeName(dir), "", "encrypted entry %q is too short (%d bytes; fscrypt names take 16 or more)", nm, len(nm))
		return
	}
	t := c.inodes.get(target)
	if t == nil || t.encrypted {
		return
	}
	switch t.mode & sIFMT {
	case sIFREG, sIFDIR, sIFLNK:
		c.problem(KindDirEntry, inodeName(dir), "", "encrypted entry %q names unencrypted inode %d", nm, target)
	}
}

// entry records one name: dir names target.
func (c *checker) entry(dir, target uint32, nm []byte, ft uint8, filetype, dots bool) {
	if target > c.img.inodesCount {
		c.problem(KindDirEntryInode, inodeName(dir), "", "entry %q names inode %d beyond the %d inodes", nm, target, c.img.inodesCount)
		return
	}
	t := c.inodes.get(target)
	ok := t != nil
	if !ok || (t.links == 0 && target >= c.sb.firstIno()) {
		c.problem(KindDirEntryInode, inodeName(dir), "", "entry %q names unused inode %d", nm, target)
		return
	}
	if filetype && !dots {
		if want := fileTypeOf(t.mode); ft != want {
			c.problem(KindDirFileType, inodeName(dir), "", "entry %q has file type %d, inode %d is type %d", nm, ft, target, want)
		}
	}
	t.refs++
	if !dots && t.name == "" {
		t.name, t.nameDir = string(nm), dir
	}
	if dots {
		if string(nm) == ".." {
			c.inodes.get(dir).dotdot = target
		}
		return
	}
	if t.mode&sIFMT == sIFDIR {
		if t.parent != 0 {
			c.problem(KindDirHardlink, inodeName(target), "", "directory named by inode %d and inode %d", t.parent, dir)
			return
		}
		t.parent = dir
	}
	if dir == rootIno && string(nm) == "lost+found" {
		c.lostFound = target
	}
}

// seed is what inode ino's checksums (its directory and tree blocks)
// start from.
func (c *checker) seed(ino uint32) uint32 {
	var gen uint32
	if f := c.inodes.get(ino); f != nil {
		gen = f.gen
	}
	return crc32cU32(crc32cU32(c.img.csumSeed, ino), gen)
}

// inodeRaw reads inode ino's bytes (for checksums seeded by the inode).
func (c *checker) inodeRaw(ino uint32) []byte {
	if c.rawCache != nil && c.rawIno == ino {
		return c.rawCache
	}
	blk, off, err := c.img.inodeLoc(ino)
	if err != nil {
		return make([]byte, c.img.inodeSize)
	}
	b := make([]byte, c.img.bs)
	if err := c.img.readBlock(blk, b); err != nil {
		return make([]byte, c.img.inodeSize)
	}
	c.rawIno, c.rawCache = ino, append([]byte(nil), b[off:off+c.img.inodeSize]...)
	return c.rawCache
}

// htree checks a hash-indexed directory's dx root and nodes and marks
// the node blocks (not leaves).
func (c *checker) htree(ino uint32, d *dirBlocks, nodes map[uint32]bool) (ranges map[uint32]hashRange, version uint8) {
	img := c.img
	pblk := map[uint32]uint64{}
	for i, l := range d.lblks {
		pblk[l] = d.pblks[i]
	}
	root := make([]byte, img.bs)
	p, ok := pblk[0]
	if !ok {
		c.problem(KindHtree, inodeName(ino), "", "indexed directory without block 0")
		return
	}
	if err := img.readBlock(p, root); err != nil {
		c.problem(KindHtree, inodeName(ino), "", "dx root: %v", err)
		return
	}
	if root[dxRootInfoLen] != 8 || le32(root, dxRootInfo) != 0 {
		c.problem(KindHtree, inodeName(ino), "", "dx root info length %d, reserved 0x%x", root[dxRootInfoLen], le32(root, dxRootInfo))
		return
	}
	levels := int(root[dxRootLevels])
	maxLevels := 2
	if c.sb.hasIncompat(incompatLargedir) {
		maxLevels = 3
	}
	if levels >= maxLevels {
		c.problem(KindHtree, inodeName(ino), "", "dx root says %d index levels", levels)
		return
	}
	if hv := root[dxRootHashVer]; hv > 5 {
		c.problem(KindHtree, inodeName(ino), "", "dx root hash version %d", hv)
	}
	// The root is block 0; its entries point at nodes (levels > 0) or
	// leaves. It is also the block with '.' and '..', checked here.
	nodes[0] = true
	c.dirRootDots(ino, root)
	ranges = map[uint32]hashRange{}
	c.dxNode(ino, root, dxRootCountOff, levels, pblk, nodes, 0, 0, 1<<32, ranges)
	// Every block of an indexed directory is the root, an index node or
	// a leaf the index points at (e2fsck: "block not referenced").
	for _, l := range d.lblks {
		if _, leaf := ranges[l]; !leaf && !nodes[l] {
			c.problem(KindHtree, inodeName(ino), "", "directory block %d not referenced by the index", l)
		}
	}
	version = root[dxRootHashVer]
	if version <= hashTea && le32(c.sb.b, sbFlags)&sbFlagUnsignedHash != 0 {
		version += 3
	}
	return ranges, version
}

// dirRootDots counts the '.' and '..' of a dx root block.
func (c *checker) dirRootDots(ino uint32, b []byte) {
	if le16(b, deRecLen) != 12 || b[deNameLen] != 1 || b[deName] != '.' || le32(b, deInode) != ino {
		c.problem(KindDirDots, inodeName(ino), "", "dx root's first entry is not '.'")
	} else {
		c.entry(ino, ino, []byte("."), b[deFileType], false, true)
	}
	o := 12
	if int(le16(b, o+deRecLen)) != int(c.img.bs)-12 || b[o+deNameLen] != 2 || string(b[o+deName:o+deName+2]) != ".." {
		c.problem(KindDirDots, inodeName(ino), "", "dx root's second entry is not '..' covering the block")
		return
	}
	c.entry(ino, le32(b, o+deInode), []byte(".."), b[o+deFileType], false, true)
}

// hashRange is the hashes a leaf's names may have: [lo, hi).
type hashRange struct{ lo, hi uint64 }

// dxNode checks one index block whose entries cover hashes [lo, hi) and
// notes the range of every leaf it points at in ranges.
func (c *checker) dxNode(ino uint32, b []byte, countOff, levels int, pblk map[uint32]uint64, nodes map[uint32]bool, depth int, lo, hi uint64, ranges map[uint32]hashRange) {
	img := c.img
	tail := 0
	if c.sb.metadataCsum() {
		tail = dxTailSize
	}
	lim, cnt := int(le16(b, countOff+dxCountLimitLim)), dxCount(b, countOff)
	if want := (int(img.bs) - countOff - tail) / dxEntrySize; lim != want || cnt == 0 || cnt > lim {
		c.problem(KindHtree, inodeName(ino), "", "dx node count %d, limit %d (expected limit %d)", cnt, lim, want)
		return
	}
	if c.sb.metadataCsum() {
		t := countOff + lim*dxEntrySize
		want := crc32cRaw(c.seed(ino), b[:countOff+cnt*dxEntrySize])
		want = crc32cRaw(want, b[t:t+4])
		want = crc32cRaw(want, []byte{0, 0, 0, 0})
		if got := le32(b, t+4); got != want {
			c.problem(KindHtree, inodeName(ino), "", "dx node checksum 0x%08x, computed 0x%08x", got, want)
		}
	}
	prev := uint32(0)
	for i := 0; i < cnt; i++ {
		h, blk := dxHashAt(b, countOff, i), dxBlockAt(b, countOff, i)
		if i > 0 && h < prev {
			c.problem(KindHtree, inodeName(ino), "", "dx entries out of hash order")
			return
		}
		prev = h
		// Entry i covers [its hash, the next one's); a next hash with the
		// collision bit set continues this range's last hash into it.
		elo, ehi := lo, hi
		if i > 0 {
			elo = uint64(h &^ 1)
		}
		if i+1 < cnt {
			nh := dxHashAt(b, countOff, i+1)
			ehi = uint64(nh &^ 1)
			if nh&1 != 0 {
				ehi++
			}
		}
		p, ok := pblk[blk]
		if !ok {
			c.problem(KindHtree, inodeName(ino), "", "dx entry points at block %d the directory does not have", blk)
			continue
		}
		if depth < levels {
			if nodes[blk] {
				c.problem(KindHtree, inodeName(ino), "", "dx node block %d referenced twice", blk)
				continue
			}
			nodes[blk] = true
			nb := make([]byte, img.bs)
			if err := img.readBlock(p, nb); err != nil {
				c.problem(KindHtree, inodeName(ino), "", "dx node %d: %v", blk, err)
				continue
			}
			if le32(nb, deInode) != 0 || int(le16(nb, deRecLen)) != int(img.bs) && !(img.bs >= 65536 && le16(nb, deRecLen) == 0) {
				c.problem(KindHtree, inodeName(ino), "", "dx node %d does not start with an empty entry covering the block", blk)
				continue
			}
			c.dxNode(ino, nb, dxNodeCountOff, levels, pblk, nodes, depth+1, elo, ehi, ranges)
		} else {
			if _, dup := ranges[blk]; dup || nodes[blk] {
				c.problem(KindHtree, inodeName(ino), "", "dx leaf block %d referenced twice", blk)
				continue
			}
			ranges[blk] = hashRange{elo, ehi}
		}
	}
}

// passConnectivity is e2fsck's pass 3: the root is a directory, every
// directory in use is reachable from it, and '..' names the parent.
func (c *checker) passConnectivity() {
	root := c.inodes.get(rootIno)
	ok := root != nil
	if !ok || root.mode&sIFMT != sIFDIR {
		c.problem(KindRoot, "inode 2", "/", "the root inode is not a directory in use")
		return
	}
	state := map[uint32]uint8{} // 1 reachable, 2 being followed
	state[rootIno] = 1
	var reach func(ino uint32, depth int) bool
	reach = func(ino uint32, depth int) bool {
		switch state[ino] {
		case 1:
			return true
		case 2:
			return false // a loop
		}
		f := c.inodes.get(ino)
		if f == nil || f.parent == 0 || depth > 1<<16 {
			return false
		}
		state[ino] = 2
		ok := reach(f.parent, depth+1)
		if ok {
			state[ino] = 1
		} else {
			state[ino] = 3
		}
		return ok
	}
	for _, ino := range c.dirs {
		f := c.inodes.get(ino)
		if ino != rootIno && !reach(ino, 0) {
			c.problem(KindUnconnected, inodeName(ino), "", "directory not reachable from /")
			continue
		}
		want := f.parent
		if ino == rootIno {
			want = rootIno
		}
		if f.dir != nil && f.dotdot != want && f.dotdot != 0 {
			c.problem(KindDirDots, inodeName(ino), "", "'..' names inode %d, the parent is %d", f.dotdot, want)
		}
	}
	// A missing /lost+found is not an error to e2fsck -n (it offers to
	// create one, and declining leaves the filesystem consistent): a note.
	if lf := c.inodes.get(c.lostFound); lf == nil || lf.mode&sIFMT != sIFDIR {
		c.rep.Notes = append(c.rep.Notes, "/lost+found is missing or not a directory (e2fsck would offer to create it; not a problem)")
	}
}

// passLinkCounts is e2fsck's pass 4: every inode in use is named as many
// times as i_links_count says (a directory with dir_nlink and more than
// 65,000 names may say 1), and none is in use without a name.
func (c *checker) passLinkCounts() {
	first := c.sb.firstIno()
	// Inodes the superblock names rather than a directory: the journal's
	// and the orphan file's (both may be past s_first_ino).
	special := map[uint32]bool{le32(c.sb.b, sbJournalInum): true}
	if c.sb.hasCompat(compatOrphanFile) {
		special[le32(c.sb.b, sbOrphanFileInum)] = true
	}
	for i := range c.inodes.all {
		f := &c.inodes.all[i]
		ino := f.ino
		if (ino < first && ino != rootIno) || special[ino] || f.eaInode {
			continue
		}
		if f.refs == 0 {
			c.problem(KindUnattached, inodeName(ino), "", "in use (links %d) but named by no directory", f.links)
			continue
		}
		if uint32(f.links) == f.refs {
			continue
		}
		if f.mode&sIFMT == sIFDIR && f.links == 1 && f.refs >= 65000 && c.sb.hasRoCompat(roCompatDirNlink) {
			continue
		}
		c.problem(KindLinkCount, inodeName(ino), "", "i_links_count is %d, counted %d", f.links, f.refs)
	}
}
