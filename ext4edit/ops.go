package ext4edit

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"time"
)

// maxLinks is EXT4_LINK_MAX.
const maxLinks = 65000

// Mkdir creates a directory. It fails with fs.ErrExist if name exists.
func (img *Image) Mkdir(name string, perm fs.FileMode) error {
	return img.mutate("mkdir", name, func() error {
		r, err := img.lookupParent(name)
		if err != nil {
			return err
		}
		if r.in != nil {
			return fs.ErrExist
		}
		_, err = img.mkdirIn(r.parent, r.name, perm)
		return err
	})
}

func (img *Image) mkdirIn(parent *inode, name string, perm fs.FileMode) (*inode, error) {
	if err := img.checkDirWritable(parent); err != nil {
		return nil, err
	}
	dirNlink := img.sb.hasRoCompat(roCompatDirNlink)
	if parent.links() >= maxLinks-1 && !dirNlink {
		return nil, ErrTooManyLinks
	}
	in, err := img.newInode(parent.ino, sIFDIR|unixMode(perm)&0o7777)
	if err != nil {
		return nil, err
	}
	if img.newFileUsesExtents() {
		if err := img.extentBuild(in, nil, 0); err != nil {
			return nil, err
		}
	}
	if err := img.dirAdd(parent, []byte(name), in.ino, ftDir); err != nil {
		return nil, err
	}
	if err := img.dirInit(in, parent.ino); err != nil {
		return nil, err
	}
	in.setLinks(2)
	if err := img.writeInode(in); err != nil {
		return nil, err
	}
	switch l := parent.links(); {
	case l == 1 && dirNlink:
		// Already "many": stays 1.
	case l+1 >= maxLinks && dirNlink:
		parent.setLinks(1)
	default:
		parent.setLinks(l + 1)
	}
	img.touch(parent)
	return in, img.writeInode(parent)
}

// touch sets mtime and ctime to now: on a directory whose entries
// changed (unless Options.KeepDirTimes), or on a file truncated.
func (img *Image) touch(in *inode) {
	if img.opts.KeepDirTimes && in.isDir() {
		return
	}
	now := img.now()
	in.setMtime(now)
	in.setCtime(now)
}

// MkdirAll creates name and every missing parent, shallow first; existing
// directories (or symlinks to directories inside the image) are tolerated.
//
// One walk down the path does it all, each component looked up once and
// the directories made going down from the deepest existing one: the cost
// is linear in the path's length, whatever its depth. A symlink on the way
// is followed from the directory holding it, the symlink budget shared by
// the whole walk as it is by one lookup of the path.
func (img *Image) MkdirAll(name string, perm fs.FileMode) error {
	comps, err := splitPath(name)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	return img.mutate("mkdir", name, func() error {
		if len(comps) == 0 {
			return nil // the root
		}
		w := walker{img: img}
		keys := img.dirKeys(comps)
		var cur *inode
		i := 0 // components of comps walked
		if len(comps) > 1 {
			if d := img.cachedDir(keys.key(len(comps) - 1)); d != nil {
				cur, i = d, len(comps)-1
			}
		}
		// An image build makes each file's directory before writing it:
		// most calls name a directory already there, one map hit.
		if cur != nil && img.cachedDir(keys.key(len(comps))) != nil {
			return nil
		}
		if cur == nil {
			if cur, err = w.rootDir(); err != nil {
				return err
			}
		}
		for start := i; i < len(comps); i++ {
			if i > start {
				img.rememberDirPath(keys.key(i), cur.ino)
			}
			c := comps[i]
			child, err := w.lookup(cur, c)
			if err == errNotFound {
				if child, err = img.mkdirIn(cur, c, perm); err != nil {
					return err
				}
				cur = child
				continue
			}
			if err != nil {
				return err
			}
			if child.isSymlink() {
				// Like os.MkdirAll: a dangling symlink in the way (or one
				// that cannot be followed) is an existing name, not a
				// request to create its target.
				r, err := w.followLink(cur, child)
				if err != nil || r.in == nil {
					return fs.ErrExist
				}
				child = r.in
			}
			if !child.isDir() {
				return ErrNotDir
			}
			cur = child
		}
		img.rememberDirPath(keys.key(len(comps)), cur.ino)
		return nil
	})
}

// openForWrite finds or creates the regular file name and empties it.
// Like open(2) with O_CREAT|O_TRUNC, a final symlink is followed.
func (img *Image) openForWrite(name string, perm fs.FileMode, dataBlocks uint64) (*inode, error) {
	r, err := img.resolve(name, true)
	if err != nil {
		return nil, err
	}
	in := r.in
	if in == nil {
		if r.parent == nil {
			return nil, ErrIsDir
		}
		if err := img.checkDirWritable(r.parent); err != nil {
			return nil, err
		}
		if dataBlocks > 0 {
			if err := img.needBlocks(dataBlocks + img.mapOverhead([]fileExtent{{len: dataBlocks}}, img.newFileUsesExtents())); err != nil {
				return nil, err
			}
		}
		in, err = img.newInode(r.parent.ino, sIFREG|unixMode(perm)&0o7777)
		if err != nil {
			return nil, err
		}
		in.setLinks(1)
		if err := img.dirAdd(r.parent, []byte(r.name), in.ino, ftReg); err != nil {
			return nil, err
		}
		img.touch(r.parent)
		if err := img.writeInode(r.parent); err != nil {
			return nil, err
		}
	} else {
		if in.isDir() {
			return nil, ErrIsDir
		}
		if !in.isReg() {
			return nil, fmt.Errorf("%w: not a regular file", fs.ErrInvalid)
		}
		if err := img.checkFileWritable(in); err != nil {
			return nil, err
		}
	}
	if err := img.truncate(in); err != nil {
		return nil, err
	}
	img.touch(in)
	return in, img.writeInode(in)
}

// needBlocks fails with ErrNoSpace unless n blocks are free.
func (img *Image) needBlocks(n uint64) error {
	if free := img.freeBlocksTotal(); free < n {
		return fmt.Errorf("%w: %d blocks needed, %d free", ErrNoSpace, n, free)
	}
	return nil
}

func (img *Image) checkFileWritable(in *inode) error {
	switch {
	case in.flags()&flagEncrypt != 0:
		return unsupportedf("encrypted file (inode %d)", in.ino)
	case in.flags()&flagVerity != 0:
		return unsupportedf("verity file (inode %d)", in.ino)
	}
	return nil
}

// truncate releases every block of a regular file (O_TRUNC).
func (img *Image) truncate(in *inode) error {
	img.orphanOpenFiles(in.ino)
	if in.hasInlineData() {
		if err := img.setXattr(in, inlineXattr, nil); err != nil && err != errNotFound {
			return err
		}
		in.setFlags(in.flags() &^ flagInlineData)
		clear(in.iblock())
	} else if err := img.freeMapping(in); err != nil {
		return err
	}
	if img.newFileUsesExtents() && !in.hasExtents() {
		in.setFlags(in.flags() | flagExtents)
		clear(in.iblock())
		put16(in.iblock(), ehMagic, extentMagic)
		put16(in.iblock(), ehMax, rootEntries)
	}
	in.setSize(0)
	return nil
}

// WriteFile creates or truncates name and writes data. An existing file
// keeps its mode and owner (like os.WriteFile). The space needed is
// checked before any byte changes: on ErrNoSpace the image is untouched.
func (img *Image) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return img.mutate("write", name, func() error {
		n := img.fileBlockCount(uint64(len(data)))
		in, err := img.openForWrite(name, perm, n)
		if err != nil {
			return err
		}
		if err := img.needBlocks(n + img.mapOverhead([]fileExtent{{len: n}}, img.newFileUsesExtents())); err != nil {
			return err
		}
		runs, err := img.allocBlocks(img.dataGoal(in), n)
		if err != nil {
			return err
		}
		var exts []fileExtent
		var lblk uint64
		for _, r := range runs {
			off := lblk * uint64(img.bs)
			end := min(off+r.len*uint64(img.bs), uint64(len(data)))
			if err := img.writeData(r.start, data[off:end]); err != nil {
				return err
			}
			exts = append(exts, fileExtent{lblk: lblk, pblk: r.start, len: r.len})
			lblk += r.len
		}
		if err := img.mapNew(in, exts, img.dataGoal(in)); err != nil {
			return err
		}
		in.setSize(uint64(len(data)))
		return img.writeInode(in)
	})
}

// dataGoal is where a file's data should go: its inode's group.
func (img *Image) dataGoal(in *inode) uint64 {
	return img.groupFirstBlock(img.groupOfInode(in.ino))
}

// Symlink creates newname as a symbolic link to target.
func (img *Image) Symlink(target, newname string) error {
	return img.mutate("symlink", newname, func() error {
		r, err := img.lookupNew(newname)
		if err != nil {
			return err
		}
		in, err := img.newInode(r.parent.ino, sIFLNK|0o777)
		if err != nil {
			return err
		}
		in.setLinks(1)
		if err := img.dirAdd(r.parent, []byte(r.name), in.ino, ftSymlink); err != nil {
			return err
		}
		if err := img.writeSymlinkTarget(in, target); err != nil {
			return err
		}
		img.touch(r.parent)
		if err := img.writeInode(r.parent); err != nil {
			return err
		}
		return img.writeInode(in)
	})
}

// Link creates newname as a hard link to the existing oldname (not a
// directory); the inode's link count is raised.
func (img *Image) Link(oldname, newname string) error {
	return img.mutate("link", newname, func() error {
		src, err := img.lookupExisting(oldname, false)
		if err != nil {
			return err
		}
		if src.in.isDir() {
			return fmt.Errorf("%w: hard link to a directory", ErrIsDir)
		}
		if src.in.links() >= maxLinks {
			return ErrTooManyLinks
		}
		r, err := img.lookupParent(newname)
		if err != nil {
			return err
		}
		if r.in != nil {
			return fs.ErrExist
		}
		in := src.in
		if r.parent.ino == in.ino {
			return ErrNotDir
		}
		if err := img.dirAdd(r.parent, []byte(r.name), in.ino, fileTypeOf(in.mode())); err != nil {
			return err
		}
		img.touch(r.parent)
		if err := img.writeInode(r.parent); err != nil {
			return err
		}
		// The parent write may have been the same inode table block; reread.
		in, err = img.readInode(in.ino)
		if err != nil {
			return err
		}
		in.setLinks(in.links() + 1)
		in.setCtime(img.now())
		return img.writeInode(in)
	})
}

// Mknod creates a device node, FIFO or socket. mode carries the type
// (fs.ModeDevice, fs.ModeDevice|fs.ModeCharDevice, fs.ModeNamedPipe,
// fs.ModeSocket) and the permission bits.
func (img *Image) Mknod(name string, mode fs.FileMode, major, minor uint32) error {
	return img.mutate("mknod", name, func() error {
		m := unixMode(mode)
		switch m & sIFMT {
		case sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
		default:
			return fmt.Errorf("%w: mknod of mode %v", fs.ErrInvalid, mode)
		}
		dev := m&sIFMT == sIFCHR || m&sIFMT == sIFBLK
		if dev {
			// Refused before anything changes: stored, the number would
			// name another device.
			if err := checkDevice(major, minor); err != nil {
				return err
			}
		}
		r, err := img.lookupNew(name)
		if err != nil {
			return err
		}
		in, err := img.newInode(r.parent.ino, m)
		if err != nil {
			return err
		}
		in.setLinks(1)
		if dev {
			if err := setDevice(in, major, minor); err != nil {
				return err
			}
		}
		if err := img.dirAdd(r.parent, []byte(r.name), in.ino, fileTypeOf(m)); err != nil {
			return err
		}
		img.touch(r.parent)
		if err := img.writeInode(r.parent); err != nil {
			return err
		}
		return img.writeInode(in)
	})
}

// The largest device numbers an inode holds: the kernel's new_encode_dev
// packs a 12-bit major and a 20-bit minor into i_block[1] (MAJOR and
// MINOR of its dev_t); old_encode_dev, in i_block[0], 8 bits of each.
const (
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
)

// checkDevice refuses a device number ext4 cannot store: its high bits
// would be dropped or land in the other field (4096:1048576 would read
// back as 0:256).
func checkDevice(major, minor uint32) error {
	if major > maxDevMajor || minor > maxDevMinor {
		return fmt.Errorf("%w: device %d:%d: ext4 stores majors up to %d and minors up to %d",
			fs.ErrInvalid, major, minor, maxDevMajor, maxDevMinor)
	}
	return nil
}

// setDevice stores a device number the kernel's way: the old 16-bit
// encoding in i_block[0] when it fits, else the new one in i_block[1].
func setDevice(in *inode, major, minor uint32) error {
	if err := checkDevice(major, minor); err != nil {
		return err
	}
	ib := in.iblock()
	clear(ib)
	if major < 256 && minor < 256 {
		put32(ib, 0, major<<8|minor)
		return nil
	}
	put32(ib, 4, minor&0xff|major<<8|(minor&^0xff)<<12)
	return nil
}

// getDevice decodes what setDevice stored (the kernel's ext4_iget): a
// non-zero i_block[0] is the old encoding, else i_block[1] the new one.
// Every number checkDevice accepts comes back unchanged.
func getDevice(in *inode) (major, minor uint32) {
	ib := in.iblock()
	if v := le32(ib, 0); v != 0 {
		return (v >> 8) & 0xff, v & 0xff
	}
	v := le32(ib, 4)
	return (v & 0xfff00) >> 8, v&0xff | (v>>12)&0xfff00
}

// Remove removes a file, symlink, node or empty directory.
func (img *Image) Remove(name string) error {
	return img.mutate("remove", name, func() error {
		r, err := img.lookupExisting(name, false)
		if err != nil {
			return err
		}
		return img.removeEntry(r)
	})
}

// removeEntry unlinks r.name from r.parent and drops the inode's link.
func (img *Image) removeEntry(r *resolved) error {
	if r.parent == nil {
		return fmt.Errorf("%w: cannot remove the root directory", fs.ErrInvalid)
	}
	in := r.in
	if in.isDir() {
		empty, err := img.dirIsEmpty(in)
		if err != nil {
			return err
		}
		if !empty {
			return ErrNotEmpty
		}
	}
	if _, err := img.dirRemove(r.parent, []byte(r.name)); err != nil {
		return err
	}
	if in.isDir() {
		if l := r.parent.links(); l > 2 && l < maxLinks {
			r.parent.setLinks(l - 1)
		}
	}
	img.touch(r.parent)
	if err := img.writeInode(r.parent); err != nil {
		return err
	}
	in, err := img.readInode(in.ino)
	if err != nil {
		return err
	}
	return img.dropLink(in)
}

// dropLink lowers the link count; at zero the inode is freed at commit
// (freeInode), after the directory entries that named it are gone from
// the disk.
func (img *Image) dropLink(in *inode) error {
	if !in.isDir() && in.links() > 1 {
		in.setLinks(in.links() - 1)
		in.setCtime(img.now())
		return img.writeInode(in)
	}
	img.orphanOpenFiles(in.ino)
	img.pendingInodeFrees = append(img.pendingInodeFrees, in.ino)
	return nil
}

// freeInode releases an unlinked inode: its blocks, its attribute block
// reference, and its bitmap bit; i_dtime marks it deleted for e2fsck.
func (img *Image) freeInode(ino uint32) error {
	in, err := img.readInode(ino)
	if err != nil {
		return err
	}
	if err := img.freeMapping(in); err != nil {
		return err
	}
	if in.fileACL() != 0 {
		_, ref, err := img.readXattrBlock(in)
		if err != nil {
			return err
		}
		if err := img.dropXattrBlockRef(in.fileACL(), ref); err != nil {
			return err
		}
		in.setFileACL(0)
	}
	dir := in.isDir()
	in.setLinks(0)
	in.setSize(0)
	if err := in.setBlocks512(img, 0); err != nil {
		return err
	}
	dt := img.now().Unix()
	if dt <= 0 {
		dt = 1 // a zero i_dtime would mean "in use" to e2fsck
	}
	put32(in.b, iDtime, uint32(dt))
	if err := img.releaseInode(in.ino, dir); err != nil {
		return err
	}
	return img.writeInode(in)
}

// RemoveAll removes name and everything below it. A missing name is not an
// error.
func (img *Image) RemoveAll(name string) error {
	return img.mutate("remove", name, func() error {
		r, err := img.resolve(name, false)
		if err == errNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		if r.in == nil {
			return nil
		}
		return img.removeTree(r)
	})
}

// removeTree removes r and, for a directory, everything below it. The
// walk keeps an explicit stack of the directories being taken apart (a
// cursor each, memory linear in the depth, no depth limit: a layer may
// build trees as deep as it likes). Within the tree only the links are
// dropped: the directories go whole, their blocks (and the entries in
// them) with them at commit, so the cost is linear in the entries removed
// rather than one lookup and one unlink per entry. A directory reached
// twice (a cycle or a directory hard link, in a corrupt image) or whose
// ".." does not name the directory it is found in is ErrCorrupt: taking
// it apart would loop, or free a directory still linked elsewhere.
func (img *Image) removeTree(r *resolved) error {
	if r.parent == nil {
		return fmt.Errorf("%w: cannot remove the root directory", fs.ErrInvalid)
	}
	if !r.in.isDir() {
		return img.removeEntry(r)
	}
	// seen holds the directories visited and the other inodes whose last
	// link went: meeting one again means the tree is not a tree.
	seen := map[uint32]bool{r.parent.ino: true, r.in.ino: true}
	top, err := img.newRmDir(r.in, r.parent.ino)
	if err != nil {
		return err
	}
	stack := []rmDir{top}
	for len(stack) > 0 {
		d := &stack[len(stack)-1]
		name, ino, ok, err := img.rmNext(d)
		if err != nil {
			return err
		}
		if !ok {
			if len(stack) > 1 {
				// Every entry below it is gone; the top one is unlinked
				// from its parent below.
				if err := img.dropLink(d.in); err != nil {
					return err
				}
			}
			stack = stack[:len(stack)-1]
			continue
		}
		if !d.nonEmpty {
			// As when its entries were unlinked one by one: a
			// directory we cannot write (inline data, encrypted,
			// casefold) keeps them.
			if err := img.checkDirWritable(d.in); err != nil {
				return err
			}
			d.nonEmpty = true
		}
		if seen[ino] {
			return corruptf("directory inode %d entry %q names inode %d, met before in the tree of %q (a directory cycle or hard link)", d.in.ino, name, ino, r.name)
		}
		child, err := img.readInode(ino)
		if err != nil {
			return err
		}
		if child.mode() == 0 || child.links() == 0 {
			return corruptf("directory inode %d entry %q names unused inode %d", d.in.ino, name, ino)
		}
		if child.isDir() {
			seen[ino] = true
			sub, err := img.newRmDir(child, d.in.ino)
			if err != nil {
				return err
			}
			d.r = nil // not held while below: read again on return
			stack = append(stack, sub)
			continue
		}
		if child.links() <= 1 {
			seen[ino] = true // its last link: freed at commit
		}
		if err := img.dropLink(child); err != nil {
			return err
		}
	}
	// Unlink the top directory as removeEntry would, less its emptiness
	// check: its entries are still in its blocks, freed with it.
	p, err := img.readInode(r.parent.ino)
	if err != nil {
		return err
	}
	if _, err := img.dirRemove(p, []byte(r.name)); err != nil {
		return err
	}
	if l := p.links(); l > 2 && l < maxLinks {
		p.setLinks(l - 1)
	}
	img.touch(p)
	if err := img.writeInode(p); err != nil {
		return err
	}
	in, err := img.readInode(r.in.ino)
	if err != nil {
		return err
	}
	return img.dropLink(in)
}

// rmDir is a directory removeTree is taking apart, with where its listing
// resumes once the subdirectory it is in is done.
type rmDir struct {
	in     *inode
	parent uint32 // the directory it was found in: what ".." must name
	nblk   uint64 // its blocks
	lblk   uint64 // the block being listed
	off    int    // offset in it of the next entry
	r      []byte // block lblk's checked entries; nil: read it again
	// nonEmpty: an entry other than "." and ".." was found.
	nonEmpty bool
}

// newRmDir starts taking directory in apart. An inline-data directory,
// which cannot be written, is done at once if it holds nothing; else it
// is refused as when its entries were unlinked one by one.
func (img *Image) newRmDir(in *inode, parent uint32) (rmDir, error) {
	d := rmDir{in: in, parent: parent}
	if in.hasInlineData() {
		var bad error
		nonEmpty := false
		err := img.dirIter(in, func(n []byte, ino uint32, _ uint8) bool {
			switch string(n) {
			case ".":
			case "..":
				if ino != parent {
					bad = corruptf("directory inode %d found in directory %d has \"..\" naming %d", in.ino, parent, ino)
					return false
				}
			default:
				nonEmpty = true
				return false
			}
			return true
		})
		if err == nil {
			err = bad
		}
		if err == nil && nonEmpty {
			err = img.checkDirWritable(in)
		}
		return d, err
	}
	n, err := img.dirBlockCount(in)
	d.nblk = n
	return d, err
}

// rmNext returns the next entry of d other than "." and "..", and false
// at its end. It follows dirIter's block layout.
func (img *Image) rmNext(d *rmDir) (name []byte, ino uint32, ok bool, err error) {
	indexed := d.in.flags()&flagIndex != 0
	for d.lblk < d.nblk {
		if d.r == nil {
			b, p, err := img.dirBlock(d.in, d.lblk)
			if err != nil {
				return nil, 0, false, err
			}
			if indexed && d.lblk == 0 {
				// dx root: "." and ".." then the index.
				dots, err := img.parseDxRootDots(d.in, b)
				if err != nil {
					return nil, 0, false, err
				}
				if dots[1].ino != d.parent {
					return nil, 0, false, corruptf("directory inode %d found in directory %d has \"..\" naming %d", d.in.ino, d.parent, dots[1].ino)
				}
				d.lblk++
				continue
			}
			if indexed && img.isDxNodeBlock(b) {
				d.lblk++
				continue
			}
			if d.r, err = img.leafEntries(d.in, d.lblk, p, b); err != nil {
				return nil, 0, false, err
			}
		}
		for d.off < len(d.r) {
			rec, ino, name, _ := img.entryAt(d.r, d.off)
			d.off += rec
			switch {
			case ino == 0 || string(name) == ".":
			case string(name) == "..":
				if ino != d.parent {
					return nil, 0, false, corruptf("directory inode %d found in directory %d has \"..\" naming %d", d.in.ino, d.parent, ino)
				}
			default:
				return name, ino, true, nil
			}
		}
		d.lblk, d.off, d.r = d.lblk+1, 0, nil
	}
	return nil, 0, false, nil
}

// Rename moves oldname to newname, replacing newname if it is a file or
// an empty directory.
func (img *Image) Rename(oldname, newname string) error {
	return img.mutate("rename", oldname, func() error {
		src, err := img.lookupExisting(oldname, false)
		if err != nil {
			return err
		}
		if src.parent == nil {
			return fmt.Errorf("%w: cannot rename the root directory", fs.ErrInvalid)
		}
		dst, err := img.lookupParent(newname)
		if err != nil {
			return err
		}
		if dst.parent == nil {
			return fmt.Errorf("%w: cannot replace the root directory", fs.ErrInvalid)
		}
		if dst.in != nil && dst.in.ino == src.in.ino {
			return nil
		}
		in := src.in
		if in.isDir() {
			// Refuse moving a directory under itself.
			for cur := dst.parent; ; {
				if cur.ino == in.ino {
					return fmt.Errorf("%w: cannot move a directory into itself", fs.ErrInvalid)
				}
				if cur.ino == rootIno {
					break
				}
				up, _, err := img.dirLookup(cur, []byte(".."))
				if err != nil {
					return err
				}
				if cur, err = img.readInode(up); err != nil {
					return err
				}
			}
		}
		if dst.in != nil {
			if in.isDir() && !dst.in.isDir() {
				return ErrNotDir
			}
			if !in.isDir() && dst.in.isDir() {
				return ErrIsDir
			}
			if err := img.removeEntry(dst); err != nil {
				return err
			}
		}
		// Reload both parents: earlier steps may have rewritten them.
		sp, err := img.readInode(src.parent.ino)
		if err != nil {
			return err
		}
		if _, err := img.dirRemove(sp, []byte(src.name)); err != nil {
			return err
		}
		img.touch(sp)
		if err := img.writeInode(sp); err != nil {
			return err
		}
		dp, err := img.readInode(dst.parent.ino)
		if err != nil {
			return err
		}
		if err := img.dirAdd(dp, []byte(dst.name), in.ino, fileTypeOf(in.mode())); err != nil {
			return err
		}
		img.touch(dp)
		if in.isDir() && dp.ino != sp.ino {
			in, err = img.readInode(in.ino)
			if err != nil {
				return err
			}
			if err := img.dirSetParent(in, dp.ino); err != nil {
				return err
			}
			if l := dp.links(); l != 1 {
				if l+1 >= maxLinks {
					if !img.sb.hasRoCompat(roCompatDirNlink) {
						return ErrTooManyLinks
					}
					dp.setLinks(1)
				} else {
					dp.setLinks(l + 1)
				}
			}
			if err := img.writeInode(dp); err != nil {
				return err
			}
			sp, err = img.readInode(sp.ino)
			if err != nil {
				return err
			}
			if l := sp.links(); l > 2 && l < maxLinks {
				sp.setLinks(l - 1)
			}
			if err := img.writeInode(sp); err != nil {
				return err
			}
		} else if err := img.writeInode(dp); err != nil {
			return err
		}
		in, err = img.readInode(in.ino)
		if err != nil {
			return err
		}
		in.setCtime(img.now())
		return img.writeInode(in)
	})
}

// changeInode resolves name and lets fn modify its inode.
func (img *Image) changeInode(op, name string, follow bool, fn func(in *inode) error) error {
	return img.mutate(op, name, func() error {
		r, err := img.lookupExisting(name, follow)
		if err != nil {
			return err
		}
		if err := fn(r.in); err != nil {
			return err
		}
		return img.writeInode(r.in)
	})
}

func (img *Image) chown(op, name string, follow bool, uid, gid int) error {
	return img.changeInode(op, name, follow, func(in *inode) error {
		if uid >= 0 {
			in.setUID(uint32(uid))
		}
		if gid >= 0 {
			in.setGID(uint32(gid))
		}
		in.setCtime(img.now())
		return nil
	})
}

// Chown sets the owner of name, following a final symlink. -1 leaves an
// id unchanged.
func (img *Image) Chown(name string, uid, gid int) error {
	return img.chown("chown", name, true, uid, gid)
}

// Lchown sets the owner of name itself, not following a final symlink.
func (img *Image) Lchown(name string, uid, gid int) error {
	return img.chown("lchown", name, false, uid, gid)
}

// Chmod sets the permission bits (and setuid/setgid/sticky) of name,
// following a final symlink.
func (img *Image) Chmod(name string, mode fs.FileMode) error {
	return img.changeInode("chmod", name, true, func(in *inode) error {
		in.setMode(in.mode()&sIFMT | unixMode(mode)&0o7777)
		in.setCtime(img.now())
		return nil
	})
}

// Chtimes sets the access and modification times of name.
func (img *Image) Chtimes(name string, atime, mtime time.Time) error {
	return img.changeInode("chtimes", name, true, func(in *inode) error {
		if !atime.IsZero() {
			in.setAtime(atime)
		}
		if !mtime.IsZero() {
			in.setMtime(mtime)
		}
		in.setCtime(img.now())
		return nil
	})
}

// Lsetattr sets raw inode fields of name (not following a final symlink).
func (img *Image) Lsetattr(name string, a Attr) error {
	return img.changeInode("setattr", name, false, func(in *inode) error {
		return img.setattr(in, a)
	})
}

// setattr sets the fields of a that are not nil on in (not written).
func (img *Image) setattr(in *inode, a Attr) error {
	if a.Flags != nil {
		const settable = 0x000380FF // user-settable FS_FL_USER_MODIFIABLE-style bits
		if (*a.Flags^in.flags())&^settable != 0 {
			return fmt.Errorf("%w: flags 0x%x change layout bits", fs.ErrInvalid, *a.Flags)
		}
	}
	if a.Mode != nil {
		if (*a.Mode^in.mode())&sIFMT != 0 {
			img.forgetDirPaths() // a directory may stop being one
		}
		in.setMode(*a.Mode)
	}
	if a.UID != nil {
		in.setUID(*a.UID)
	}
	if a.GID != nil {
		in.setGID(*a.GID)
	}
	if a.Atime != nil {
		in.setAtime(*a.Atime)
	}
	if a.Mtime != nil {
		in.setMtime(*a.Mtime)
	}
	if a.Ctime != nil {
		in.setCtime(*a.Ctime)
	}
	if a.Crtime != nil {
		in.setCrtime(*a.Crtime)
	}
	if a.LinksCount != nil {
		in.setLinks(*a.LinksCount)
	}
	if a.Generation != nil && *a.Generation != in.generation() {
		put32(in.b, iGeneration, *a.Generation)
		// The checksum seed of the inode's blocks changed: blocks verified
		// under the old one must be verified again.
		img.cache.uncheckAll()
	}
	if a.Flags != nil {
		in.setFlags(*a.Flags)
	}
	return nil
}

// SetXattr sets the extended attribute attr (full name such as
// "security.capability" or "user.foo") of name, not following a final
// symlink. The value goes into the inode when it fits, else into an
// attribute block.
func (img *Image) SetXattr(name, attr string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return img.changeInode("setxattr", name, false, func(in *inode) error {
		if err := img.setXattr(in, attr, value); err != nil {
			return err
		}
		in.setCtime(img.now())
		return nil
	})
}

// RemoveXattr removes the extended attribute attr of name.
func (img *Image) RemoveXattr(name, attr string) error {
	return img.changeInode("removexattr", name, false, func(in *inode) error {
		if err := img.setXattr(in, attr, nil); err != nil {
			return err
		}
		in.setCtime(img.now())
		return nil
	})
}

// GetXattr returns the value of the extended attribute attr of name.
func (img *Image) GetXattr(name, attr string) ([]byte, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("getxattr", name, false)
	if err != nil {
		return nil, err
	}
	v, ok, err := img.getXattr(r.in, attr)
	if err == nil && !ok {
		err = errNotFound
	}
	return v, pathErr("getxattr", name, err)
}

// ListXattr lists the extended attribute names of name, sorted.
func (img *Image) ListXattr(name string) ([]string, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("listxattr", name, false)
	if err != nil {
		return nil, err
	}
	a, b, err := img.xattrs(r.in)
	if err != nil {
		return nil, pathErr("listxattr", name, err)
	}
	var out []string
	for _, e := range append(a, b...) {
		out = append(out, e.Name)
	}
	sort.Strings(out)
	return out, nil
}

func (img *Image) readLookup(op, name string, follow bool) (*resolved, error) {
	if err := img.readable(); err != nil {
		return nil, pathErr(op, name, err)
	}
	r, err := img.lookupExisting(name, follow)
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	return r, nil
}

// Stat describes name, following a final symlink. Sys() is *InodeInfo.
func (img *Image) Stat(name string) (fs.FileInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("stat", name, true)
	if err != nil {
		return nil, err
	}
	return img.fileInfo(path.Base("/"+name), r.in), nil
}

// Lstat describes name itself. Sys() is *InodeInfo.
func (img *Image) Lstat(name string) (fs.FileInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return img.fileInfo(path.Base("/"+name), r.in), nil
}

// ReadDir lists a directory sorted by name, without "." and "..".
func (img *Image) ReadDir(name string) ([]fs.DirEntry, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !r.in.isDir() {
		return nil, pathErr("readdir", name, ErrNotDir)
	}
	var out []fs.DirEntry
	err = img.dirIter(r.in, func(n []byte, ino uint32, ft uint8) bool {
		if s := string(n); s != "." && s != ".." {
			out = append(out, &dirEntry{img: img, name: s, ino: ino, ft: ft})
		}
		return true
	})
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// maxReadFile is the largest file ReadFile returns whole (1 GiB): a file
// is read into one []byte, so an image must not be able to make the
// caller allocate without bound. Larger files are read with the streaming
// reader, FS().Open.
const maxReadFile = 1 << 30

// ReadFile returns the contents of a regular file (following symlinks).
// A file larger than 1 GiB is refused with ErrFileTooLarge (read it
// through FS().Open instead); an i_size no file on this filesystem can
// have is ErrCorrupt. Memory grows with the data actually read: a sparse
// file costs its size, a file whose i_size lies costs what its blocks hold
// before the lie is refused.
func (img *Image) ReadFile(name string) ([]byte, error) {
	fr, _, err := img.openReader(name)
	if err != nil {
		return nil, err
	}
	size := uint64(fr.Size())
	if size > fr.maxSize {
		return nil, pathErr("read", name, corruptf("i_size %d beyond the largest file this filesystem maps (%d)", size, fr.maxSize))
	}
	if size > maxReadFile {
		return nil, pathErr("read", name, fmt.Errorf("%w: %d bytes, more than ReadFile returns whole (%d); stream it with FS().Open", ErrFileTooLarge, size, maxReadFile))
	}
	// The blocks the file maps bound the first allocation; holes beyond
	// them grow the buffer as they are read.
	buf := make([]byte, 0, min(size, fr.mappedBytes()))
	for uint64(len(buf)) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(size-uint64(len(buf)), uint64(max(cap(buf), 64<<10)))))
		}
		chunk := buf[len(buf):min(uint64(cap(buf)), size)]
		n, err := fr.ReadAt(chunk, int64(len(buf)))
		buf = buf[:len(buf)+n]
		if err != nil && (err != io.EOF || uint64(len(buf)) < size) {
			return nil, pathErr("read", name, err)
		}
	}
	return buf, nil
}

// Readlink returns the target of a symbolic link.
func (img *Image) Readlink(name string) (string, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	t, err := img.readlink(r.in)
	return t, pathErr("readlink", name, err)
}
