package ext4edit

import (
	"fmt"
	"strings"
)

// maxSymlinkFollows bounds symlink expansion during one lookup (the
// kernel's MAXSYMLINKS).
const maxSymlinkFollows = 40

// resolved is the outcome of a lookup: the directory holding the last
// component, its name, and the inode it names (nil when absent).
type resolved struct {
	parent *inode
	name   string
	in     *inode
}

// splitPath turns an image path into components. Paths are taken from the
// image root whether or not they start with "/".
func splitPath(name string) ([]string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("%w: NUL in path", ErrInvalidPath)
	}
	var out []string
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." {
			continue
		}
		if len(c) > maxNameLen {
			return nil, ErrNameTooLong
		}
		out = append(out, c)
	}
	return out, nil
}

// resolve looks name up from the root. Intermediate symlinks are always
// followed, the last one only with followLast. Symlink targets resolve
// inside the image: an absolute target restarts at the image root and
// ".." at the root stays there.
func (img *Image) resolve(name string, followLast bool) (*resolved, error) {
	comps, err := splitPath(name)
	if err != nil {
		return nil, err
	}
	root, err := img.readInode(rootIno)
	if err != nil {
		return nil, err
	}
	if !root.isDir() {
		return nil, corruptf("root inode is not a directory")
	}
	cur := root
	follows := 0
	if len(comps) == 0 {
		return &resolved{in: root}, nil
	}
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		last := len(comps) == 0
		if !cur.isDir() {
			return nil, ErrNotDir
		}
		ino, _, err := img.dirLookup(cur, []byte(c))
		if err == errNotFound {
			if c == ".." {
				return nil, corruptf("directory inode %d has no \"..\"", cur.ino)
			}
			if last {
				return &resolved{parent: cur, name: c}, nil
			}
			return nil, errNotFound
		}
		if err != nil {
			return nil, err
		}
		child, err := img.readInode(ino)
		if err != nil {
			return nil, err
		}
		if child.mode() == 0 || child.links() == 0 {
			return nil, corruptf("directory inode %d entry %q names unused inode %d", cur.ino, c, ino)
		}
		if child.isSymlink() && (!last || followLast) {
			follows++
			if follows > maxSymlinkFollows {
				return nil, ErrLoop
			}
			target, err := img.readlink(child)
			if err != nil {
				return nil, err
			}
			tc, err := splitPath(target)
			if err != nil {
				return nil, err
			}
			comps = append(tc, comps...)
			if strings.HasPrefix(target, "/") {
				cur = root
			}
			if len(comps) == 0 {
				// "link -> /" or "link -> ." : the directory itself.
				return img.resolvedDir(cur)
			}
			continue
		}
		if last {
			if c == ".." {
				return img.resolvedDir(child)
			}
			return &resolved{parent: cur, name: c, in: child}, nil
		}
		cur = child
	}
	return nil, fmt.Errorf("internal error: empty lookup")
}

// resolvedDir describes directory d with its parent and own name unknown
// (callers that need an entry name treat it as the directory itself).
func (img *Image) resolvedDir(d *inode) (*resolved, error) {
	return &resolved{in: d}, nil
}

// lookupExisting resolves name and requires it to exist.
func (img *Image) lookupExisting(name string, follow bool) (*resolved, error) {
	r, err := img.resolve(name, follow)
	if err != nil {
		return nil, mapNotFound(err)
	}
	if r.in == nil {
		return nil, errNotExist
	}
	return r, nil
}

// lookupParent resolves name for creation: the parent must be a directory.
func (img *Image) lookupParent(name string) (*resolved, error) {
	r, err := img.resolve(name, false)
	if err != nil {
		return nil, mapNotFound(err)
	}
	if r.parent == nil && r.in != nil {
		return r, nil // the root or a symlink-to-dir target: exists
	}
	return r, nil
}

var errNotExist = errNotFound

func mapNotFound(err error) error { return err }
