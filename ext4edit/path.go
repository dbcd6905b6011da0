package ext4edit

import (
	"fmt"
	"io/fs"
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
	orig := comps
	// origLeft counts the given components not yet walked; comps is the
	// components of symlink targets still to walk, then those.
	origLeft := len(comps)
	var root, cur *inode
	if len(comps) > 1 {
		if ino, ok := img.dirPaths[string(img.dirPathKey(comps[:len(comps)-1]))]; ok {
			if d, err := img.readInode(ino); err == nil && d.isDir() {
				cur, comps, origLeft = d, comps[len(comps)-1:], 1
			}
		}
	}
	if cur == nil {
		if root, err = img.readInode(rootIno); err != nil {
			return nil, err
		}
		if !root.isDir() {
			return nil, corruptf("root inode is not a directory")
		}
		cur = root
	}
	follows := 0
	if len(comps) == 0 {
		return &resolved{in: root}, nil
	}
	for len(comps) > 0 {
		if len(comps) == origLeft && origLeft < len(orig) && cur.isDir() {
			// cur is where the given path's first components lead.
			img.rememberDirPath(orig[:len(orig)-origLeft], cur.ino)
		}
		if len(comps) == origLeft {
			origLeft--
		}
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
				if root == nil {
					if root, err = img.readInode(rootIno); err != nil {
						return nil, err
					}
					if !root.isDir() {
						return nil, corruptf("root inode is not a directory")
					}
				}
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

// maxDirPaths bounds the directory path cache (dirPaths): past it the
// cache starts over.
const maxDirPaths = 1 << 16

// dirPathKey is the cache key of a path's components, in a buffer reused
// from call to call (a map index by string(key) does not copy it).
func (img *Image) dirPathKey(comps []string) []byte {
	b := img.dirKeyBuf[:0]
	for i, c := range comps {
		if i > 0 {
			b = append(b, '/')
		}
		b = append(b, c...)
	}
	img.dirKeyBuf = b
	return b
}

// rememberDirPath records that the path of comps leads to directory ino.
// Each entry holds while no directory entry is removed (a removal or a
// rename may cut or reroute any path) and no operation is rolled back
// (a directory it made is gone): those empty the cache (forgetDirPaths).
// Adding entries never changes where an existing path leads.
func (img *Image) rememberDirPath(comps []string, ino uint32) {
	k := img.dirPathKey(comps)
	if _, ok := img.dirPaths[string(k)]; ok {
		return
	}
	if img.dirPaths == nil || len(img.dirPaths) >= maxDirPaths {
		img.dirPaths = map[string]uint32{}
	}
	img.dirPaths[string(k)] = ino
}

// forgetDirPaths empties the directory path cache.
func (img *Image) forgetDirPaths() {
	if len(img.dirPaths) > 0 {
		clear(img.dirPaths)
	}
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

// lookupNew resolves name for creating it: the parent directory, which
// must be writable, and no entry of that name yet (fs.ErrExist).
func (img *Image) lookupNew(name string) (*resolved, error) {
	r, err := img.lookupParent(name)
	if err != nil {
		return nil, err
	}
	if r.in != nil {
		return nil, fs.ErrExist
	}
	if err := img.checkDirWritable(r.parent); err != nil {
		return nil, err
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
