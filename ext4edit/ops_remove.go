package ext4edit

import (
	"fmt"
	"io/fs"
)

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
	img.pending.inodes = append(img.pending.inodes, in.ino)
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
