package ext4edit

import (
	"fmt"
	"io/fs"
)

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
