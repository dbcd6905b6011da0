package fuzz

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/banger/ext4kit/ext4edit"
)

// The model FuzzEdits checks the editor against: a tree of nodes where a
// hard-linked file is one node under several names. Path lookup mirrors
// the editor's documented rules (ext4edit/path.go): intermediate symlinks
// are always followed, the last one only when the operation follows; an
// absolute target restarts at the root; ".." at the root stays there; at
// most 40 symlinks per lookup.

type mnode struct {
	id           int64 // identity across model clones (open File handles name nodes by it)
	kind         byte  // 'd' dir, 'f' file, 'l' symlink, 'p' fifo, 'c' char device
	perm         uint16
	uid, gid     uint32
	data         []byte
	target       string
	major, minor uint32
	xattrs       map[string][]byte
	entries      map[string]*mnode // directories
	parent       *mnode            // directories
}

type model struct {
	root *mnode
	// truncated lists the nodes the last operation truncated (O_TRUNC of
	// an existing file): open Files on them are orphaned.
	truncated []int64
}

var nodeIDs atomic.Int64

func newID() int64 { return nodeIDs.Add(1) }

// pathOf is one path of the node with id, "" if it is gone.
func (m *model) pathOf(id int64) string {
	for p, n := range m.paths() {
		if n.id == id {
			return p
		}
	}
	return ""
}

// nodeByID finds a node still in the tree.
func (m *model) nodeByID(id int64) *mnode {
	for _, n := range m.paths() {
		if n.id == id {
			return n
		}
	}
	return nil
}

func newDir(parent *mnode, perm uint16) *mnode {
	d := &mnode{id: newID(), kind: 'd', perm: perm, entries: map[string]*mnode{}, xattrs: map[string][]byte{}}
	d.parent = parent
	if parent == nil {
		d.parent = d
	}
	return d
}

// clone deep-copies the model, keeping hard links shared.
func (m *model) clone() *model {
	seen := map[*mnode]*mnode{}
	var cp func(n *mnode) *mnode
	cp = func(n *mnode) *mnode {
		if c, ok := seen[n]; ok {
			return c
		}
		c := &mnode{id: n.id, kind: n.kind, perm: n.perm, uid: n.uid, gid: n.gid, target: n.target,
			major: n.major, minor: n.minor, data: n.data, xattrs: map[string][]byte{}}
		seen[n] = c
		for k, v := range n.xattrs {
			c.xattrs[k] = v
		}
		if n.kind == 'd' {
			c.entries = map[string]*mnode{}
			for name, ch := range n.entries {
				cc := cp(ch)
				c.entries[name] = cc
				if cc.kind == 'd' {
					cc.parent = c
				}
			}
		}
		return c
	}
	r := cp(m.root)
	r.parent = r
	return &model{root: r}
}

var (
	errMNotExist = errors.New("model: not exist")
	errMNotDir   = errors.New("model: not a directory")
	errMExist    = errors.New("model: exists")
	errMIsDir    = errors.New("model: is a directory")
	errMLoop     = errors.New("model: symlink loop")
	errMInval    = errors.New("model: invalid")
	errMNotEmpty = errors.New("model: not empty")
)

type mres struct {
	parent *mnode
	name   string
	in     *mnode
}

func splitP(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func (m *model) lookup(d *mnode, c string) *mnode {
	if c == ".." {
		return d.parent
	}
	return d.entries[c]
}

func (m *model) resolve(p string, followLast bool) (*mres, error) {
	comps := splitP(p)
	cur := m.root
	if len(comps) == 0 {
		return &mres{in: cur}, nil
	}
	follows := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		last := len(comps) == 0
		if cur.kind != 'd' {
			return nil, errMNotDir
		}
		child := m.lookup(cur, c)
		if child == nil {
			if last {
				return &mres{parent: cur, name: c}, nil
			}
			return nil, errMNotExist
		}
		if child.kind == 'l' && (!last || followLast) {
			follows++
			if follows > 40 {
				return nil, errMLoop
			}
			comps = append(splitP(child.target), comps...)
			if strings.HasPrefix(child.target, "/") {
				cur = m.root
			}
			if len(comps) == 0 {
				return &mres{in: cur}, nil
			}
			continue
		}
		if last {
			if c == ".." {
				return &mres{in: child}, nil
			}
			return &mres{parent: cur, name: c, in: child}, nil
		}
		cur = child
	}
	return nil, errMInval
}

func (m *model) existing(p string, follow bool) (*mres, error) {
	r, err := m.resolve(p, follow)
	if err != nil {
		return nil, err
	}
	if r.in == nil {
		return nil, errMNotExist
	}
	return r, nil
}

func (m *model) mkdirIn(parent *mnode, name string, perm uint16) {
	parent.entries[name] = newDir(parent, perm)
}

func (m *model) mkdir(p string, perm uint16) error {
	r, err := m.resolve(p, false)
	if err != nil {
		return err
	}
	if r.in != nil {
		return errMExist
	}
	m.mkdirIn(r.parent, r.name, perm)
	return nil
}

func (m *model) mkdirAll(p string, perm uint16) error {
	pre := ""
	for _, c := range splitP(p) {
		pre += "/" + c
		r, err := m.resolve(pre, true)
		if err == nil && r.in != nil {
			if r.in.kind != 'd' {
				return errMNotDir
			}
			continue
		}
		// Like os.MkdirAll: a dangling symlink in the way is an existing
		// name, not a request to create its target.
		if l, lerr := m.resolve(pre, false); lerr == nil && l.in != nil {
			return errMExist
		}
		if err != nil {
			return err
		}
		m.mkdirIn(r.parent, r.name, perm)
	}
	return nil
}

func (m *model) writeFile(p string, data []byte, perm uint16) error {
	r, err := m.resolve(p, true)
	if err != nil {
		return err
	}
	if r.in == nil {
		r.parent.entries[r.name] = &mnode{id: newID(), kind: 'f', perm: perm, data: data, xattrs: map[string][]byte{}}
		return nil
	}
	if r.in.kind == 'd' {
		return errMIsDir
	}
	if r.in.kind != 'f' {
		return errMInval
	}
	r.in.data = data
	m.truncated = append(m.truncated, r.in.id)
	return nil
}

func (m *model) newNode(p string, n *mnode) error {
	r, err := m.resolve(p, false)
	if err != nil {
		return err
	}
	if r.in != nil {
		return errMExist
	}
	if n.id == 0 {
		n.id = newID()
	}
	r.parent.entries[r.name] = n
	return nil
}

func (m *model) remove(p string) error {
	r, err := m.existing(p, false)
	if err != nil {
		return err
	}
	return m.removeEntry(r)
}

func (m *model) removeEntry(r *mres) error {
	if r.parent == nil {
		return errMInval
	}
	if r.in.kind == 'd' && len(r.in.entries) > 0 {
		return errMNotEmpty
	}
	delete(r.parent.entries, r.name)
	return nil
}

func (m *model) removeAll(p string) error {
	r, err := m.resolve(p, false)
	if errors.Is(err, errMNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if r.in == nil {
		return nil
	}
	return m.removeTree(r)
}

func (m *model) removeTree(r *mres) error {
	if r.in.kind == 'd' {
		names := make([]string, 0, len(r.in.entries))
		for n := range r.in.entries {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := m.removeTree(&mres{parent: r.in, name: n, in: r.in.entries[n]}); err != nil {
				return err
			}
		}
	}
	return m.removeEntry(r)
}

func (m *model) rename(oldp, newp string) error {
	src, err := m.existing(oldp, false)
	if err != nil {
		return err
	}
	if src.parent == nil {
		return errMInval
	}
	dst, err := m.resolve(newp, false)
	if err != nil {
		return err
	}
	if dst.parent == nil {
		return errMInval
	}
	if dst.in == src.in {
		return nil
	}
	in := src.in
	if in.kind == 'd' {
		for cur := dst.parent; ; cur = cur.parent {
			if cur == in {
				return errMInval
			}
			if cur == m.root {
				break
			}
		}
	}
	if dst.in != nil {
		if in.kind == 'd' && dst.in.kind != 'd' {
			return errMNotDir
		}
		if in.kind != 'd' && dst.in.kind == 'd' {
			return errMIsDir
		}
		if err := m.removeEntry(dst); err != nil {
			return err
		}
	}
	delete(src.parent.entries, src.name)
	dst.parent.entries[dst.name] = in
	if in.kind == 'd' {
		in.parent = dst.parent
	}
	return nil
}

func (m *model) link(oldp, newp string) error {
	src, err := m.existing(oldp, false)
	if err != nil {
		return err
	}
	if src.in.kind == 'd' {
		return errMIsDir
	}
	return m.newNode(newp, src.in)
}

// nodes lists every path of the model (lost+found included), sorted.
func (m *model) paths() map[string]*mnode {
	out := map[string]*mnode{}
	var walk func(d *mnode, p string)
	walk = func(d *mnode, p string) {
		for n, c := range d.entries {
			cp := path.Join(p, n)
			out[cp] = c
			if c.kind == 'd' {
				walk(c, cp)
			}
		}
	}
	walk(m.root, "/")
	return out
}

func kindOf(mode fs.FileMode) byte {
	switch {
	case mode.IsDir():
		return 'd'
	case mode&fs.ModeSymlink != 0:
		return 'l'
	case mode&fs.ModeNamedPipe != 0:
		return 'p'
	case mode&fs.ModeCharDevice != 0:
		return 'c'
	case mode.IsRegular():
		return 'f'
	}
	return '?'
}

// modelFromImage builds the model of an existing image (the base images
// hold lost+found and little else).
func modelFromImage(img *ext4edit.Image) (*model, error) {
	byIno := map[uint32]*mnode{}
	info := func(p string) (*ext4edit.InodeInfo, fs.FileInfo, error) {
		fi, err := img.Lstat(p)
		if err != nil {
			return nil, nil, err
		}
		return fi.Sys().(*ext4edit.InodeInfo), fi, nil
	}
	ri, _, err := info("/")
	if err != nil {
		return nil, err
	}
	root := newDir(nil, ri.Mode&0o7777)
	root.uid, root.gid = ri.UID, ri.GID
	if root.xattrs, err = readXattrs(img, "/"); err != nil {
		return nil, err
	}
	var walk func(d *mnode, p string) error
	walk = func(d *mnode, p string) error {
		ents, err := img.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			cp := path.Join(p, e.Name())
			ii, fi, err := info(cp)
			if err != nil {
				return err
			}
			if n, ok := byIno[ii.Ino]; ok {
				d.entries[e.Name()] = n
				continue
			}
			n := &mnode{id: newID(), kind: kindOf(fi.Mode()), perm: ii.Mode & 0o7777, uid: ii.UID, gid: ii.GID, major: ii.Major, minor: ii.Minor}
			if n.xattrs, err = readXattrs(img, cp); err != nil {
				return err
			}
			switch n.kind {
			case 'd':
				n.entries, n.parent = map[string]*mnode{}, d
				if err := walk(n, cp); err != nil {
					return err
				}
			case 'f':
				if n.data, err = img.ReadFile(cp); err != nil {
					return err
				}
			case 'l':
				if n.target, err = img.Readlink(cp); err != nil {
					return err
				}
			}
			byIno[ii.Ino] = n
			d.entries[e.Name()] = n
		}
		return nil
	}
	if err := walk(root, "/"); err != nil {
		return nil, err
	}
	return &model{root: root}, nil
}

func readXattrs(img *ext4edit.Image, p string) (map[string][]byte, error) {
	names, err := img.ListXattr(p)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, n := range names {
		if n == "system.data" {
			continue // inline data, not a user attribute
		}
		v, err := img.GetXattr(p, n)
		if err != nil {
			return nil, err
		}
		out[n] = v
	}
	return out, nil
}

// compareImage checks that img holds exactly the model's tree: names,
// types, permissions, owners, contents, link targets, device numbers,
// xattrs, hard-link identity and link counts.
func compareImage(img *ext4edit.Image, m *model) error {
	want := m.paths()
	var errs []string
	bad := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	nlink := map[*mnode]int{}
	for _, n := range want {
		nlink[n]++
	}
	inoOf := map[*mnode]uint32{}
	nodeOf := map[uint32]*mnode{}
	check := func(p string, n *mnode) {
		fi, err := img.Lstat(p)
		if err != nil {
			bad("%s: lstat: %v", p, err)
			return
		}
		ii := fi.Sys().(*ext4edit.InodeInfo)
		if k := kindOf(fi.Mode()); k != n.kind {
			bad("%s: type %c, want %c", p, k, n.kind)
			return
		}
		if ii.Mode&0o7777 != n.perm {
			bad("%s: mode %o, want %o", p, ii.Mode&0o7777, n.perm)
		}
		if ii.UID != n.uid || ii.GID != n.gid {
			bad("%s: owner %d:%d, want %d:%d", p, ii.UID, ii.GID, n.uid, n.gid)
		}
		if old, ok := inoOf[n]; ok && old != ii.Ino {
			bad("%s: inode %d, but the same file elsewhere is inode %d", p, ii.Ino, old)
		}
		if other, ok := nodeOf[ii.Ino]; ok && other != n {
			bad("%s: inode %d is shared with a different file", p, ii.Ino)
		}
		inoOf[n], nodeOf[ii.Ino] = ii.Ino, n
		switch n.kind {
		case 'f':
			if int(ii.LinksCount) != nlink[n] {
				bad("%s: %d links, want %d", p, ii.LinksCount, nlink[n])
			}
			b, err := img.ReadFile(p)
			if err != nil {
				bad("%s: read: %v", p, err)
			} else if !bytes.Equal(b, n.data) {
				bad("%s: content differs (%d bytes, want %d)", p, len(b), len(n.data))
			}
		case 'l':
			tg, err := img.Readlink(p)
			if err != nil || tg != n.target {
				bad("%s: readlink %q %v, want %q", p, tg, err, n.target)
			}
		case 'c':
			if ii.Major != n.major || ii.Minor != n.minor {
				bad("%s: device %d:%d, want %d:%d", p, ii.Major, ii.Minor, n.major, n.minor)
			}
		case 'd':
			ents, err := img.ReadDir(p)
			if err != nil {
				bad("%s: readdir: %v", p, err)
				break
			}
			if len(ents) != len(n.entries) {
				var got []string
				for _, e := range ents {
					got = append(got, e.Name())
				}
				bad("%s: entries %v, want %d", p, got, len(n.entries))
			}
			subdirs := 0
			for _, c := range n.entries {
				if c.kind == 'd' {
					subdirs++
				}
			}
			if int(ii.LinksCount) != 2+subdirs {
				bad("%s: %d links, want %d", p, ii.LinksCount, 2+subdirs)
			}
		}
		x, err := readXattrs(img, p)
		if err != nil {
			bad("%s: xattrs: %v", p, err)
		} else if len(x) != len(n.xattrs) {
			bad("%s: xattrs %d, want %d", p, len(x), len(n.xattrs))
		} else {
			for k, v := range n.xattrs {
				if !bytes.Equal(x[k], v) {
					bad("%s: xattr %s = %q, want %q", p, k, x[k], v)
				}
			}
		}
	}
	rents, err := img.ReadDir("/")
	if err != nil {
		return fmt.Errorf("readdir /: %v", err)
	}
	if len(rents) != len(m.root.entries) {
		bad("/: %d entries, want %d", len(rents), len(m.root.entries))
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		check(p, want[p])
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}
