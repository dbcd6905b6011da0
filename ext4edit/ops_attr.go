package ext4edit

import (
	"fmt"
	"io/fs"
	"sort"
	"time"
)

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
