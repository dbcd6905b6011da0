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
//
// The cost is linear in the path's length: each component is walked once
// and the cache keys of its prefixes are built incrementally (dirKeys).
func (img *Image) resolve(name string, followLast bool) (*resolved, error) {
	comps, err := splitPath(name)
	if err != nil {
		return nil, err
	}
	w := walker{img: img}
	if len(comps) == 0 {
		root, err := w.rootDir()
		if err != nil {
			return nil, err
		}
		return &resolved{in: root}, nil
	}
	keys := img.dirKeys(comps)
	var cur *inode
	i := 0 // components of comps walked
	if len(comps) > 1 {
		// Files created one after another in the same directory find
		// their parent in one map hit.
		if d := img.cachedDir(keys.key(len(comps) - 1)); d != nil {
			cur, i = d, len(comps)-1
		}
	}
	if cur == nil {
		if cur, err = w.rootDir(); err != nil {
			return nil, err
		}
	}
	for start := i; ; i++ {
		c := comps[i : i+1]
		last := i == len(comps)-1
		if !cur.isDir() {
			return nil, ErrNotDir
		}
		if i > start {
			// cur is where the given path's first i components lead.
			img.rememberDirPath(keys.key(i), cur.ino)
		}
		// An intermediate component is followed like a final one with
		// followLast; only a missing one is an error there.
		r, err := w.walk(cur, c, !last || followLast)
		if err != nil || last {
			return r, err
		}
		if r.in == nil {
			return nil, errNotFound
		}
		cur = r.in
	}
}

// walker walks paths inside the image with one symlink budget for the
// whole walk (the kernel's MAXSYMLINKS per lookup).
type walker struct {
	img     *Image
	follows int
}

// rootDir reads the root directory. It is read again at each use, never
// kept: an edit between two uses (MkdirAll) may have rewritten it.
func (w *walker) rootDir() (*inode, error) {
	root, err := w.img.readInode(rootIno)
	if err != nil {
		return nil, err
	}
	if !root.isDir() {
		return nil, corruptf("root inode is not a directory")
	}
	return root, nil
}

// lookup finds the entry c of directory dir and reads its inode;
// errNotFound when dir has no such entry.
func (w *walker) lookup(dir *inode, c string) (*inode, error) {
	ino, _, err := w.img.dirLookup(dir, []byte(c))
	if err == errNotFound {
		if c == ".." {
			return nil, corruptf("directory inode %d has no \"..\"", dir.ino)
		}
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	child, err := w.img.readInode(ino)
	if err != nil {
		return nil, err
	}
	if child.mode() == 0 || child.links() == 0 {
		return nil, corruptf("directory inode %d entry %q names unused inode %d", dir.ino, c, ino)
	}
	return child, nil
}

// walk looks comps up from directory cur, expanding symlinks in place:
// those of intermediate components always, the last one's with
// followLast. A missing last component gives its would-be parent and
// name with in nil; a missing intermediate one, errNotFound.
func (w *walker) walk(cur *inode, comps []string, followLast bool) (*resolved, error) {
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		last := len(comps) == 0
		if !cur.isDir() {
			return nil, ErrNotDir
		}
		child, err := w.lookup(cur, c)
		if err == errNotFound && last {
			return &resolved{parent: cur, name: c}, nil
		}
		if err != nil {
			return nil, err
		}
		if child.isSymlink() && (!last || followLast) {
			tc, abs, err := w.target(child)
			if err != nil {
				return nil, err
			}
			comps = append(tc, comps...)
			if abs {
				if cur, err = w.rootDir(); err != nil {
					return nil, err
				}
			}
			if len(comps) == 0 {
				// "link -> /" or "link -> ." : the directory itself.
				return w.img.resolvedDir(cur)
			}
			continue
		}
		if last {
			if c == ".." {
				return w.img.resolvedDir(child)
			}
			return &resolved{parent: cur, name: c, in: child}, nil
		}
		cur = child
	}
	return nil, fmt.Errorf("internal error: empty lookup")
}

// target reads the symlink in for following it: its target's components
// and whether it is absolute. Each call spends one of the walk's follows.
func (w *walker) target(in *inode) ([]string, bool, error) {
	w.follows++
	if w.follows > maxSymlinkFollows {
		return nil, false, ErrLoop
	}
	target, err := w.img.readlink(in)
	if err != nil {
		return nil, false, err
	}
	tc, err := splitPath(target)
	if err != nil {
		return nil, false, err
	}
	return tc, strings.HasPrefix(target, "/"), nil
}

// followLink resolves the symlink in, found in directory dir, to what its
// target names (a final symlink of the target followed too).
func (w *walker) followLink(dir, in *inode) (*resolved, error) {
	tc, abs, err := w.target(in)
	if err != nil {
		return nil, err
	}
	if abs {
		if dir, err = w.rootDir(); err != nil {
			return nil, err
		}
	}
	if len(tc) == 0 {
		return w.img.resolvedDir(dir)
	}
	return w.walk(dir, tc, true)
}

// maxDirPaths bounds the number of entries of the directory path cache
// (dirPaths): past it the cache starts over.
const maxDirPaths = 1 << 16

// maxDirPathKey bounds the length of a cached intermediate prefix, and
// maxParentKey that of the path a lookup ends in or below (the directory
// whose entries the next calls name: a builder creating files one after
// another in a deep directory finds it in one map hit). A walk remembers
// every short prefix but only the one long one, so its cache keys cost
// its path's length once, whatever the depth. maxDirPathBytes bounds the
// bytes the cache holds, whatever paths a hostile layer names.
const (
	maxDirPathKey   = 512
	maxParentKey    = 8192
	maxDirPathBytes = 16 << 20
)

// dirKeys builds the cache keys of the leading components of a path
// (components joined by "/") one component at a time, in a buffer reused
// from call to call: the keys of all the prefixes a walk remembers cost
// the path's length once, not once per prefix. The buffer is the
// image's: one walk uses it at a time (walks do not nest).
type dirKeys struct {
	img   *Image
	comps []string
	built int // components written to img.paths.keyBuf
	n     int // components of the last key asked for
	size  int // its length in bytes
}

func (img *Image) dirKeys(comps []string) dirKeys {
	img.paths.keyBuf = img.paths.keyBuf[:0]
	return dirKeys{img: img, comps: comps}
}

// key returns the key of comps[:n], or nil when it is longer than
// maxDirPathKey. It is valid until the next call (a map index by
// string(key) does not copy it). Asking for increasing n costs the
// path's length in all; a shorter prefix than the last one asked for (a
// walk after its lookup of the parent) counts again from the start.
func (k *dirKeys) key(n int) []byte {
	if n < k.n {
		k.n, k.size = 0, 0
	}
	for ; k.n < n; k.n++ {
		if k.n > 0 {
			k.size++
		}
		k.size += len(k.comps[k.n])
	}
	limit := maxDirPathKey
	if n >= len(k.comps)-1 {
		limit = maxParentKey
	}
	if n == 0 || k.size > limit {
		return nil
	}
	b := k.img.paths.keyBuf
	for ; k.built < n; k.built++ {
		if k.built > 0 {
			b = append(b, '/')
		}
		b = append(b, k.comps[k.built]...)
	}
	k.img.paths.keyBuf = b
	return b[:k.size]
}

// cachedDir returns the directory the cache says key leads to, or nil.
func (img *Image) cachedDir(key []byte) *inode {
	if key == nil {
		return nil
	}
	ino, ok := img.paths.dirs[string(key)]
	if !ok {
		return nil
	}
	d, err := img.readInode(ino)
	if err != nil || !d.isDir() {
		return nil
	}
	return d
}

// rememberDirPath records that the path of key leads to directory ino.
// Each entry holds while no directory entry is removed (a removal or a
// rename may cut or reroute any path) and no operation is rolled back
// (a directory it made is gone): those empty the cache (forgetDirPaths).
// Adding entries never changes where an existing path leads. A nil key
// (too long to cache) is not recorded.
func (img *Image) rememberDirPath(key []byte, ino uint32) {
	if key == nil {
		return
	}
	if _, ok := img.paths.dirs[string(key)]; ok {
		return
	}
	if img.paths.dirs == nil || len(img.paths.dirs) >= maxDirPaths || img.paths.bytes+len(key) > maxDirPathBytes {
		img.paths.dirs = map[string]uint32{}
		img.paths.bytes = 0
	}
	img.paths.dirs[string(key)] = ino
	img.paths.bytes += len(key)
}

// forgetDirPaths empties the directory path cache.
func (img *Image) forgetDirPaths() {
	if len(img.paths.dirs) > 0 {
		clear(img.paths.dirs)
	}
	img.paths.bytes = 0
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
