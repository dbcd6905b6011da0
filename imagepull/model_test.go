package imagepull

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"sort"
	"strings"
	"testing"
	"time"
)

// An independent model of what applying layers must give: a map from
// canonical path to node, built with plain Go maps, to compare the
// kernel's view of a built image against.

type mnode struct {
	typ          byte // tar.TypeReg, TypeDir, TypeSymlink, TypeChar, TypeBlock, TypeFifo
	mode         int64
	uid, gid     int
	data         []byte
	target       string
	major, minor int64
	atime, mtime time.Time
	xattrs       map[string][]byte
	implicit     bool // a parent no layer listed
}

type model struct {
	nodes map[string]*mnode // hard links share a node
	now   time.Time         // times of implicit directories
}

func newModel(now time.Time) *model {
	return &model{nodes: map[string]*mnode{"/": {typ: tar.TypeDir, mode: 0o755, mtime: now, atime: now}}, now: now}
}

// resolve returns the canonical path of p, following symlinks inside the
// root (the last component only with followLast).
func (m *model) resolve(p string, followLast bool) string {
	comps := strings.Split(strings.Trim(p, "/"), "/")
	if p == "/" {
		comps = nil
	}
	cur := "/"
	for hops := 0; len(comps) > 0; {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		n := m.nodes[next]
		if n != nil && n.typ == tar.TypeSymlink && (len(comps) > 0 || followLast) && hops < 40 {
			hops++
			tc := strings.Split(n.target, "/")
			if strings.HasPrefix(n.target, "/") {
				cur = "/"
			}
			comps = append(tc, comps...)
			continue
		}
		cur = next
	}
	return cur
}

func (m *model) removeTree(p string) {
	delete(m.nodes, p)
	for q := range m.nodes {
		if strings.HasPrefix(q, p+"/") {
			delete(m.nodes, q)
		}
	}
}

func (m *model) mkdirAll(p string) {
	if p == "/" {
		return
	}
	m.mkdirAll(path.Dir(p))
	if m.nodes[p] == nil {
		m.nodes[p] = &mnode{typ: tar.TypeDir, mode: 0o755, mtime: m.now, atime: m.now, implicit: true}
	}
}

func (m *model) apply(t testing.TB, layer []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	mine := map[string]bool{"/": true}
	markMine := func(p string) {
		for !mine[p] {
			mine[p] = true
			p = path.Dir(p)
		}
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := path.Clean("/" + h.Name)
		dir, base := path.Dir(p), path.Base(p)
		if base == ".wh..wh..opq" {
			markMine(dir)
			cd := m.resolve(dir, false)
			var prune func(real, named string)
			prune = func(real, named string) {
				for q := range m.nodes {
					if path.Dir(q) != real || q == "/" {
						continue
					}
					nq := path.Join(named, path.Base(q))
					if q == "/lost+found" {
						continue
					}
					if !mine[nq] {
						m.removeTree(q)
					} else if m.nodes[q] != nil && m.nodes[q].typ == tar.TypeDir {
						prune(q, nq)
					}
				}
			}
			prune(cd, dir)
			continue
		}
		if strings.HasPrefix(base, ".wh.") {
			victim := path.Join(dir, base[4:])
			if !mine[victim] {
				m.removeTree(m.resolve(victim, false))
			}
			continue
		}
		if p == "/" {
			r := m.nodes["/"]
			r.mode, r.uid, r.gid, r.mtime, r.atime = h.Mode&0o7777, h.Uid, h.Gid, h.ModTime, orTime(h.AccessTime, h.ModTime)
			continue
		}
		markMine(p)
		real := path.Join(m.resolve(dir, true), base)
		m.mkdirAll(path.Dir(real))
		old := m.nodes[real]
		if h.Typeflag == tar.TypeLink {
			tgt := m.resolve(path.Clean("/"+h.Linkname), false)
			if tgt == real {
				continue
			}
			m.removeTree(real)
			m.nodes[real] = m.nodes[tgt]
			continue
		}
		n := &mnode{typ: h.Typeflag, mode: h.Mode & 0o7777, uid: h.Uid, gid: h.Gid, target: h.Linkname,
			major: h.Devmajor, minor: h.Devminor, mtime: h.ModTime, atime: orTime(h.AccessTime, h.ModTime)}
		switch h.Typeflag {
		case tar.TypeGNUSparse: // archive/tar reports the old TypeRegA as TypeReg
			n.typ = tar.TypeReg
		case tar.TypeSymlink:
			n.mode = 0o777
		}
		for k, v := range h.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "security.") || strings.HasPrefix(name, "system.posix_acl_") {
					if n.xattrs == nil {
						n.xattrs = map[string][]byte{}
					}
					n.xattrs[name] = []byte(v)
				}
			}
		}
		if n.typ == tar.TypeReg {
			n.data, _ = io.ReadAll(tr)
		}
		if old != nil && old.typ == tar.TypeDir && n.typ == tar.TypeDir {
			old.mode, old.uid, old.gid, old.mtime, old.atime, old.implicit = n.mode, n.uid, n.gid, n.mtime, n.atime, false
			for k, v := range n.xattrs {
				if old.xattrs == nil {
					old.xattrs = map[string][]byte{}
				}
				old.xattrs[k] = v
			}
			continue
		}
		m.removeTree(real)
		m.nodes[real] = n
	}
}

func orTime(a, b time.Time) time.Time {
	if a.IsZero() {
		return b
	}
	return a
}

// paths lists the model's paths, sorted.
func (m *model) paths() []string {
	out := make([]string, 0, len(m.nodes))
	for p := range m.nodes {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
