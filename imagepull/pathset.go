package imagepull

import "hash/maphash"

// pathSet is a set of absolute, clean image paths held as 64-bit hashes,
// each path with all its ancestors (but "/"). A layer of many deep paths
// then costs a few words per path, not the path's bytes, and inserting a
// path costs time linear in its length: the hashes of all its prefixes
// come from one pass over it. The seed is random per set, so a layer
// cannot aim for a collision; one (odds about n^2/2^65 for n paths) would
// make a path look present that is not.
type pathSet struct {
	seed maphash.Seed
	m    map[uint64]struct{}
	ends []int // scratch for insert
	hs   []uint64
}

// newPathSet returns a set holding "/".
func newPathSet() *pathSet {
	s := &pathSet{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}}
	s.m[maphash.String(s.seed, "/")] = struct{}{}
	return s
}

// has reports whether p was inserted, itself or as an ancestor.
func (s *pathSet) has(p string) bool {
	_, ok := s.m[maphash.String(s.seed, p)]
	return ok
}

// insert adds p and its ancestors and returns the end offsets in p of
// those that were new, shallowest first ("/a/b" of "/a/b/c" is p[:4]).
// The result is valid until the next insert.
func (s *pathSet) insert(p string) []int {
	s.ends, s.hs = s.ends[:0], s.hs[:0]
	var h maphash.Hash
	h.SetSeed(s.seed)
	start := 0
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		// Hash writes concatenate: after p[:i] is written, Sum64 is
		// maphash.String(seed, p[:i]).
		h.WriteString(p[start:i])
		start = i
		s.ends = append(s.ends, i)
		s.hs = append(s.hs, h.Sum64())
	}
	// Every present path has its ancestors present: the new ones are
	// those below the deepest present one.
	k := len(s.hs)
	for k > 0 {
		if _, ok := s.m[s.hs[k-1]]; ok {
			break
		}
		k--
	}
	for _, x := range s.hs[k:] {
		s.m[x] = struct{}{}
	}
	return s.ends[k:]
}
