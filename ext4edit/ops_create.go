package ext4edit

import (
	"fmt"
	"io/fs"
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
