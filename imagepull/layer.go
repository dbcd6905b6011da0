package imagepull

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// This file turns tar entries of OCI image layers into editor operations.
// A layer is applied as the container runtimes apply it to a directory
// (containerd's apply, overlayfs semantics), but into the image, never
// onto the host:
//
//   - every name is cleaned to an absolute path inside the image root
//     ("../../etc/x" and "/etc/x" both become /etc/x); intermediate
//     symlinks are followed by the editor inside the image;
//   - DIR/.wh.NAME removes NAME (and everything under it) that lower
//     layers put there; DIR/.wh..wh..opq removes everything lower layers
//     put under DIR, keeping DIR and what this layer adds;
//   - an entry replaces whatever the path held unless both are
//     directories (then only the attributes change). Replacing always
//     unlinks first and creates a new inode, so another hard link to the
//     old inode keeps the old content;
//   - owners, modes (setuid, setgid, sticky), atime and mtime come from the
//     header, directories' too: the image is edited with KeepDirTimes, so
//     adding entries later does not change them (and nothing is kept per
//     directory); xattrs come from PAX records.

// Whiteout markers of the OCI image layer format.
const (
	layerWhiteoutPrefix = ".wh."
	layerWhiteoutOpaque = ".wh..wh..opq"
	// layerWhiteoutMeta starts aufs metadata names (.wh..wh.plnk,
	// .wh..wh.aufs) that are never materialised.
	layerWhiteoutMeta = ".wh..wh."
)

// MaxPathBytes is the longest path a layer entry may name (cleaned and
// absolute, in bytes), and so the deepest (2,048 levels): the kernel's
// PATH_MAX, the longest path a process in the guest could open in one
// call. An entry naming a longer path (or a hard link to one) fails the
// build with an error naming the layer and the entry; the bound keeps the
// cost of one entry small whatever a layer says.
const MaxPathBytes = 4096

// Device numbers the kernel's encoding (new_encode_dev) holds: a 12-bit
// major and a 20-bit minor. A layer's device node beyond them fails the
// build rather than being stored as another device.
const (
	maxDevMajor = 1<<12 - 1
	maxDevMinor = 1<<20 - 1
)

// applier applies layers, in order, to one open image.
type applier struct {
	img   *ext4edit.Image
	warnf func(format string, args ...any)
	// layer is the 1-based number of the layer being applied and digest
	// its name, for messages.
	layer  int
	digest string
	// layerPaths holds every path the current layer created or declared,
	// with its ancestors: an opaque whiteout keeps these.
	layerPaths *pathSet
	// fresh is true while the image holds nothing but what Create made
	// and the current layer added (the first layer).
	fresh     bool
	buf       []byte
	sinceSync int
	stats     BuildStats
	// clock is what the image's Options.Now returns: the entry's mtime
	// while an entry is created (so a new inode is stamped with it and
	// most entries need no Lsetattr), base otherwise.
	clock *time.Time
	base  time.Time
	// ts reads the layer's tar entries (sparse.go); ctx is the build's.
	ts  *tarStream
	ctx context.Context
	// tmin and tmax are the times the image can store; warned counts the
	// clamping warnings given (the first few are shown, all are counted).
	tmin, tmax time.Time
	warned     int
}

// diagnosticDrain is how much of a layer stream past a tar error is read
// to see whether its digest explains the error.
const diagnosticDrain = 64 << 20

// ctxReader is a layer stream that fails with ctx's error once ctx is
// done, and counts what it yields; while tape is set, it records it there.
type ctxReader struct {
	ctx  context.Context
	r    io.Reader
	n    int64
	tape *tape
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.tape != nil {
		c.tape.add(p[:n])
	}
	return n, err
}

// newApplier applies layers to img, whose Options.Now returns *clock.
func newApplier(img *ext4edit.Image, warnf func(string, ...any), clock *time.Time, base time.Time) *applier {
	if warnf == nil {
		warnf = func(string, ...any) {}
	}
	*clock = base
	tmin, tmax := img.TimeRange()
	return &applier{
		tmin:  tmin,
		tmax:  tmax,
		img:   img,
		warnf: warnf,
		fresh: true,
		buf:   make([]byte, 1<<20),
		clock: clock,
		base:  base,
	}
}

// tarPerm is the permission part of a tar header's mode (setuid, setgid
// and sticky included), as archive/tar decodes it.
func tarPerm(hdr *tar.Header) fs.FileMode { return hdr.FileInfo().Mode() & modeBits }

// LayerError says which layer and which entry a build failed on.
type LayerError struct {
	Layer  int    // 1-based, lowest first
	Digest string // the layer's digest when known
	Entry  string // the tar entry name, "" when the stream itself failed
	Err    error
}

func (e *LayerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "layer %d", e.Layer)
	if e.Digest != "" {
		fmt.Fprintf(&b, " (%s)", e.Digest)
	}
	if e.Entry != "" {
		fmt.Fprintf(&b, ", entry %q", shortName(e.Entry))
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *LayerError) Unwrap() error { return e.Err }

// shortName keeps a hostile entry name readable in a message: a long one
// is shown by its ends and its length.
func shortName(n string) string {
	if len(n) <= 200 {
		return n
	}
	return fmt.Sprintf("%s...%s (%d bytes)", n[:100], n[len(n)-60:], len(n))
}

// applyLayer applies one uncompressed layer tar stream. The stream is read
// to its end (a verifying reader checks its digest there).
func (a *applier) applyLayer(ctx context.Context, n int, digest string, r io.Reader) error {
	a.layer, a.digest = n, digest
	a.layerPaths = newPathSet()
	// Every read of the stream checks ctx, so a cancelled build stops
	// inside a large entry too; the count tells file data read from the
	// stream from the zeros tar makes up for a sparse file's holes.
	raw := &ctxReader{ctx: ctx, r: r}
	a.ts = newTarStream(raw, a.buf)
	a.ctx = ctx
	r = raw
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := a.ts.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// A corrupted blob shows as a bad tar first; its digest, checked
			// at the end of the stream, names the real cause when that end
			// is near. Only so near: the rest of a stream that is not a tar
			// is not inflated in full (a few MiB of gzip that expand to
			// GiBs of garbage would cost seconds for a better message).
			if _, derr := io.CopyBuffer(io.Discard, io.LimitReader(r, diagnosticDrain), a.buf); errors.Is(derr, ErrDigestMismatch) {
				err = fmt.Errorf("%w (reading tar: %v)", derr, err)
			} else {
				err = fmt.Errorf("reading tar: %w", err)
			}
			return &LayerError{Layer: n, Digest: digest, Err: err}
		}
		// A sparse entry's data is read by its map, not through tr.
		if err := a.ts.readSparseMap(hdr); err != nil {
			return &LayerError{Layer: n, Digest: digest, Entry: hdr.Name, Err: err}
		}
		if err := a.entry(hdr, a.ts.tr); err != nil {
			return &LayerError{Layer: n, Digest: digest, Entry: hdr.Name, Err: err}
		}
		// Here, not in the next call to next: a sparse entry cut short is
		// this entry's error.
		if err := a.ts.finish(); err != nil {
			return &LayerError{Layer: n, Digest: digest, Entry: hdr.Name, Err: err}
		}
		w := 1
		if hdr.Typeflag == tar.TypeDir {
			w = dirSyncWeight
		}
		if a.sinceSync += w; a.sinceSync >= syncEvery {
			// Commit now and then so the dirty set stays small.
			if err := a.img.Sync(); err != nil {
				return err
			}
			a.sinceSync = 0
		}
	}
	// Past the end-of-archive marker: padding. Reading it to EOF lets a
	// verifying reader see the whole stream.
	if _, err := io.CopyBuffer(io.Discard, r, a.buf); err != nil {
		return &LayerError{Layer: n, Digest: digest, Err: err}
	}
	a.fresh = false
	a.stats.Layers++
	return nil
}

// cleanPath maps a tar name to an absolute path inside the image.
func cleanPath(name string) string {
	return path.Clean("/" + name)
}

// mark records p and its ancestors as belonging to the current layer.
func (a *applier) mark(p string) { a.layerPaths.insert(p) }

func (a *applier) entry(hdr *tar.Header, tr *tar.Reader) error {
	*a.clock = a.base
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		return nil // archive/tar folds these into the next header
	}
	p := cleanPath(hdr.Name)
	if len(p) > MaxPathBytes {
		return fmt.Errorf("path of %d bytes: longer than the %d bytes (PATH_MAX) a layer entry may name", len(p), MaxPathBytes)
	}
	dir, base := path.Split(p)
	dir = path.Clean(dir)
	if strings.HasPrefix(base, layerWhiteoutPrefix) {
		switch {
		case base == layerWhiteoutOpaque:
			a.stats.Whiteouts++
			return a.opaque(dir)
		case strings.HasPrefix(base, layerWhiteoutMeta):
			return nil
		}
		victim := base[len(layerWhiteoutPrefix):]
		if victim == "" || victim == "." || victim == ".." {
			// ".wh.." would remove the directory holding it, ".wh..." its
			// parent: containerd refuses these, and so do we.
			return fmt.Errorf("invalid whiteout name %q", base)
		}
		a.stats.Whiteouts++
		return a.whiteout(path.Join(dir, victim))
	}
	a.clampTimes(hdr)
	if p == "/" {
		if hdr.Typeflag != tar.TypeDir {
			a.warnf("layer %d: entry %q (type %q) names the image root; skipped", a.layer, hdr.Name, hdr.Typeflag)
			return nil
		}
		return a.dir(p, hdr, true)
	}
	a.mark(p)
	*a.clock = hdr.ModTime
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		return a.file(p, hdr, tr)
	case tar.TypeDir:
		return a.dir(p, hdr, false)
	case tar.TypeSymlink:
		return a.create(p, hdr, func() error { return a.img.Symlink(hdr.Linkname, p) })
	case tar.TypeLink:
		return a.link(p, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		var mode fs.FileMode
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = fs.ModeDevice | fs.ModeCharDevice
		case tar.TypeBlock:
			mode = fs.ModeDevice
		default:
			mode = fs.ModeNamedPipe
		}
		major, minor := hdr.Devmajor, hdr.Devminor
		if hdr.Typeflag == tar.TypeFifo {
			major, minor = 0, 0 // a FIFO has no device number
		}
		if major < 0 || minor < 0 || major > maxDevMajor || minor > maxDevMinor {
			return fmt.Errorf("device number %d:%d out of range: the kernel stores majors up to %d and minors up to %d", hdr.Devmajor, hdr.Devminor, maxDevMajor, maxDevMinor)
		}
		return a.create(p, hdr, func() error {
			return a.img.Mknod(p, mode|tarPerm(hdr), uint32(major), uint32(minor))
		})
	}
	a.warnf("layer %d: entry %q has unsupported tar type %q; skipped", a.layer, hdr.Name, hdr.Typeflag)
	a.stats.Skipped++
	return nil
}

// maxClampWarnings is how many clamped times a build reports one by one;
// BuildStats.TimesClamped counts them all.
const maxClampWarnings = 10

// clampTimes brings the header's times into the range the image can store
// (ext4 with 256-byte inodes: 1901-12-13 to 2446-05-10), as the kernel
// clamps them, instead of letting them wrap to another century.
func (a *applier) clampTimes(hdr *tar.Header) {
	for _, t := range []*time.Time{&hdr.ModTime, &hdr.AccessTime} {
		if t.IsZero() {
			continue
		}
		c := *t
		if c.Before(a.tmin) {
			c = a.tmin
		} else if c.After(a.tmax) {
			c = a.tmax
		}
		if c.Equal(*t) {
			continue
		}
		a.stats.TimesClamped++
		if a.warned++; a.warned <= maxClampWarnings {
			a.warnf("layer %d: entry %q: time %s is outside what ext4 stores; clamped to %s", a.layer, hdr.Name, t.UTC().Format(time.RFC3339), c.UTC().Format(time.RFC3339))
		} else if a.warned == maxClampWarnings+1 {
			a.warnf("layer %d: more times clamped; not reported one by one", a.layer)
		}
		*t = c
	}
}

// lostFound is the directory mkfs makes for e2fsck; layers did not put it
// there, so whiteouts leave it alone.
const lostFound = "/lost+found"

// whiteout removes p as lower layers left it.
func (a *applier) whiteout(p string) error {
	if p == "/" || p == lostFound {
		return nil
	}
	if a.layerPaths.has(p) {
		// A whiteout hides lower layers only; this layer's own entry stays.
		return nil
	}
	if err := a.img.RemoveAll(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ext4edit.ErrNotDir) {
		return err
	}
	return nil
}

// opaque removes what lower layers put under dir, keeping this layer's.
func (a *applier) opaque(dir string) error {
	a.mark(dir)
	fi, err := a.img.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ext4edit.ErrNotDir) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	return a.prune(dir)
}

// prune removes what lower layers put in the tree under dir, keeping the
// paths this layer marked. It walks with an explicit stack: a layer may
// build trees as deep as MaxPathBytes allows, and nothing here recurses.
func (a *applier) prune(dir string) error {
	stack := []string{dir}
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		ents, err := a.img.ReadDir(d)
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := path.Join(d, e.Name())
			if p == lostFound {
				continue
			}
			if !a.layerPaths.has(p) {
				if err := a.img.RemoveAll(p); err != nil {
					return err
				}
				continue
			}
			if e.Type().IsDir() {
				stack = append(stack, p)
			}
		}
	}
	return nil
}

// clear makes room for a new entry at p: whatever is there goes (a whole
// tree for a directory).
func (a *applier) clear(p string) error {
	err := a.img.RemoveAll(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// parents creates the missing parents of p (a layer need not list them).
func (a *applier) parents(p string) error {
	d := path.Dir(p)
	t := *a.clock
	*a.clock = a.base
	err := a.img.MkdirAll(d, 0o755)
	*a.clock = t
	if err != nil {
		return err
	}
	a.stats.ImplicitDirs++
	return nil
}

// create runs mk, which makes a new inode at p and fails with fs.ErrExist
// when p is taken. A taken p is cleared and mk retried; missing parents are
// made. Then the header's attributes are set.
func (a *applier) create(p string, hdr *tar.Header, mk func() error) error {
	err := mk()
	if errors.Is(err, fs.ErrExist) {
		if err = a.clear(p); err == nil {
			err = mk()
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err = a.parents(p); err == nil {
			err = mk()
		}
	}
	if err != nil {
		return err
	}
	a.count(hdr.Typeflag)
	return a.attrs(p, hdr, typeBits(hdr.Typeflag), true)
}

func (a *applier) count(t byte) {
	a.stats.Entries++
	switch t {
	case tar.TypeDir:
		a.stats.Dirs++
	case tar.TypeSymlink:
		a.stats.Symlinks++
	case tar.TypeLink:
		a.stats.Hardlinks++
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		a.stats.Nodes++
	default:
		a.stats.Files++
	}
}

func typeBits(t byte) uint16 {
	switch t {
	case tar.TypeDir:
		return ext4edit.IModeDir
	case tar.TypeSymlink:
		return ext4edit.IModeSymlink
	case tar.TypeChar:
		return ext4edit.IModeCharDev
	case tar.TypeBlock:
		return ext4edit.IModeBlockDev
	case tar.TypeFifo:
		return ext4edit.IModeFIFO
	}
	return ext4edit.IModeRegular
}

// attrs sets owner, mode, times and xattrs from hdr on p (not following a
// final symlink).
func (a *applier) attrs(p string, hdr *tar.Header, typ uint16, created bool) error {
	attr, err := a.attrOf(p, hdr, typ, created)
	if err != nil {
		return err
	}
	if attr != nil {
		if err := a.img.Lsetattr(p, *attr); err != nil {
			return err
		}
	}
	for _, x := range a.xattrsOf(p, hdr) {
		if err := a.img.SetXattr(p, x.name, x.value); err != nil {
			return fmt.Errorf("xattr %s: %w", x.name, err)
		}
	}
	return nil
}

// attrOf is what attrs sets on p besides xattrs, nil for nothing: an
// inode this entry created already has the mode and, through the clock,
// the mtime; root's and with atime equal to mtime it needs nothing more.
func (a *applier) attrOf(p string, hdr *tar.Header, typ uint16, created bool) (*ext4edit.Attr, error) {
	if hdr.Uid < 0 || hdr.Gid < 0 || hdr.Uid > 1<<32-1 || hdr.Gid > 1<<32-1 {
		return nil, fmt.Errorf("owner %d:%d out of range", hdr.Uid, hdr.Gid)
	}
	if created && hdr.Uid == 0 && hdr.Gid == 0 && (hdr.AccessTime.IsZero() || hdr.AccessTime.Equal(hdr.ModTime)) {
		a.stats.AttrsFromCreate++
		return nil, nil
	}
	mode := typ | uint16(hdr.Mode&0o7777)
	if typ == ext4edit.IModeSymlink {
		mode = typ | 0o777
	}
	uid, gid := uint32(hdr.Uid), uint32(hdr.Gid)
	attr := &ext4edit.Attr{Mode: &mode, UID: &uid, GID: &gid}
	mtime := hdr.ModTime
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	attr.Atime, attr.Mtime = &atime, &mtime
	return attr, nil
}

// tarXattr is one extended attribute to set.
type tarXattr struct {
	name  string
	value []byte
}

// xattrsOf returns the extended attributes recorded in hdr's PAX records
// that an image takes, sorted by name, counting them (and warning about
// and counting those it skips).
func (a *applier) xattrsOf(p string, hdr *tar.Header) []tarXattr {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	var names []string
	vals := map[string][]byte{}
	for k, v := range hdr.PAXRecords {
		switch {
		case strings.HasPrefix(k, "SCHILY.xattr."):
			n := strings.TrimPrefix(k, "SCHILY.xattr.")
			names = append(names, n)
			vals[n] = []byte(v)
		case strings.HasPrefix(k, "LIBARCHIVE.xattr."):
			// bsdtar: URL-encoded name, base64 value.
			n, err := url.QueryUnescape(strings.TrimPrefix(k, "LIBARCHIVE.xattr."))
			if err != nil {
				a.warnf("layer %d: %s: bad LIBARCHIVE.xattr name %q; skipped", a.layer, p, k)
				continue
			}
			val, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				if val, err = base64.RawStdEncoding.DecodeString(v); err != nil {
					a.warnf("layer %d: %s: bad LIBARCHIVE.xattr value for %q; skipped", a.layer, p, n)
					continue
				}
			}
			if _, dup := vals[n]; !dup {
				names = append(names, n)
			}
			vals[n] = val
		}
	}
	sort.Strings(names)
	var out []tarXattr
	for _, n := range names {
		v, ok, why := mapXattr(n, vals[n])
		if !ok {
			a.warnf("layer %d: %s: xattr %q %s; skipped", a.layer, p, n, why)
			a.stats.XattrsSkipped++
			continue
		}
		out = append(out, tarXattr{n, v})
		a.stats.Xattrs++
	}
	return out
}

// mapXattr decides how a tar xattr is stored: security.* and user.* as
// they are; POSIX ACLs converted from the kernel's xattr format to ext4's
// on-disk format; anything else is skipped (with the reason returned).
// trusted.* is skipped as containerd skips it: only CAP_SYS_ADMIN may set
// it, and overlayfs keeps its own metadata there (trusted.overlay.opaque,
// .redirect, .metacopy), which a layer must not be able to forge for a
// guest that mounts the image as an overlay layer.
func mapXattr(name string, v []byte) ([]byte, bool, string) {
	switch {
	case strings.HasPrefix(name, "trusted."):
		return nil, false, "is in the trusted. namespace, which layers may not set (only privileged processes and overlayfs do)"
	case strings.HasPrefix(name, "security."), strings.HasPrefix(name, "user."):
		if len(name) > 255+len("security.") || len(strings.SplitN(name, ".", 2)[1]) == 0 || len(strings.SplitN(name, ".", 2)[1]) > 255 {
			return nil, false, "has a bad name length"
		}
		return v, true, ""
	case name == "system.posix_acl_access", name == "system.posix_acl_default":
		acl, err := aclToDisk(v)
		if err != nil {
			return nil, false, err.Error()
		}
		return acl, true, ""
	}
	return nil, false, "is in a namespace ext4 images do not take from layers (only security., user. and POSIX ACLs)"
}

// POSIX ACL tags (linux/posix_acl.h).
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclToDisk converts a POSIX ACL from the xattr format user space and tar
// see (version 2, 8-byte entries) to ext4's on-disk format (version 1,
// 4-byte entries for the *_OBJ, MASK and OTHER tags).
func aclToDisk(v []byte) ([]byte, error) {
	if len(v) < 4 || (len(v)-4)%8 != 0 || binary.LittleEndian.Uint32(v) != 2 {
		return nil, errors.New("is not a version 2 POSIX ACL")
	}
	out := binary.LittleEndian.AppendUint32(nil, 1)
	for off := 4; off < len(v); off += 8 {
		tag := binary.LittleEndian.Uint16(v[off:])
		perm := binary.LittleEndian.Uint16(v[off+2:])
		id := binary.LittleEndian.Uint32(v[off+4:])
		out = binary.LittleEndian.AppendUint16(out, tag)
		out = binary.LittleEndian.AppendUint16(out, perm)
		switch tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
		case aclUser, aclGroup:
			out = binary.LittleEndian.AppendUint32(out, id)
		default:
			return nil, fmt.Errorf("has unknown ACL tag 0x%x", tag)
		}
	}
	return out, nil
}

// dir applies a directory entry: an existing directory keeps its contents
// and gets the header's attributes; anything else at p is replaced.
func (a *applier) dir(p string, hdr *tar.Header, root bool) error {
	created := false
	if !root {
		var err error
		if created, err = a.mkdir(p, tarPerm(hdr)); err != nil {
			return err
		}
	}
	a.count(tar.TypeDir)
	return a.attrs(p, hdr, ext4edit.IModeDir, created)
}

// mkdir makes sure p is a directory, reporting whether it made one: an
// existing one stays (with its contents), anything else is replaced.
// Later layers mostly re-list directories that exist, so there p is
// looked up first.
func (a *applier) mkdir(p string, perm fs.FileMode) (bool, error) {
	if !a.fresh {
		fi, err := a.img.Lstat(p)
		if err == nil && fi.IsDir() {
			return false, nil
		}
		if err == nil {
			if err := a.clear(p); err != nil {
				return false, err
			}
		}
	}
	err := a.img.Mkdir(p, perm)
	switch {
	case errors.Is(err, fs.ErrExist):
		fi, lerr := a.img.Lstat(p)
		if lerr != nil {
			return false, lerr
		}
		if fi.IsDir() {
			return false, nil
		}
		if err := a.clear(p); err != nil {
			return false, err
		}
		err = a.img.Mkdir(p, perm)
	case errors.Is(err, fs.ErrNotExist):
		if err := a.parents(p); err != nil {
			return false, err
		}
		err = a.img.Mkdir(p, perm)
	}
	return err == nil, err
}

// file writes a regular file from the tar stream into a new inode. An
// existing name is unlinked first (CreateExcl refuses it): writing into
// the old inode would change every hard link to it, or write through a
// final symlink. Owner, mode, times and xattrs are set when the file is
// closed, in the operation that maps its data.
func (a *applier) file(p string, hdr *tar.Header, tr *tar.Reader) error {
	attr, err := a.attrOf(p, hdr, ext4edit.IModeRegular, true)
	if err != nil {
		return err
	}
	perm := tarPerm(hdr)
	f, err := a.img.CreateExcl(p, perm)
	if errors.Is(err, fs.ErrExist) {
		if err = a.clear(p); err == nil {
			f, err = a.img.CreateExcl(p, perm)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err = a.parents(p); err == nil {
			f, err = a.img.CreateExcl(p, perm)
		}
	}
	if err != nil {
		return err
	}
	if attr != nil {
		err = f.SetAttr(*attr)
	}
	for _, x := range a.xattrsOf(p, hdr) {
		if err == nil {
			err = f.SetXattr(x.name, x.value)
		}
	}
	var n int64
	if err == nil {
		n, err = a.copyData(f, tr)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	a.stats.FileBytes += n
	a.count(tar.TypeReg)
	return nil
}

// copyData copies an entry's data into f, leaving holes where the data
// has them: a sparse entry's data is copied by its map, straight from the
// stream (copySparse: its holes cost nothing, where tar would fill them
// with zeros), and whole zero blocks among read data become holes too
// (File.SetSparse), as mke2fs -d makes them, so the image file stays as
// sparse as the layer. A chunk tar made up without reading the stream
// would be a sparse entry's hole; sparseKind takes every entry tar reads
// as sparse, so none should reach that path. ctx is checked between
// chunks.
func (a *applier) copyData(f *ext4edit.File, tr *tar.Reader) (int64, error) {
	if a.ts.sp != nil {
		return a.copySparse(f) // without tar's zero fill
	}
	f.SetSparse(true)
	var total int64
	for {
		if err := a.ctx.Err(); err != nil {
			return total, err
		}
		before := a.ts.raw.n
		n, err := tr.Read(a.buf)
		if n > 0 {
			var werr error
			if a.ts.raw.n == before {
				werr = f.Hole(int64(n))
			} else {
				_, werr = f.Write(a.buf[:n])
			}
			if werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// link makes p a hard link to the inode hdr.Linkname names in the image.
func (a *applier) link(p string, hdr *tar.Header) error {
	target := cleanPath(hdr.Linkname)
	if len(target) > MaxPathBytes {
		return fmt.Errorf("hard link target of %d bytes: longer than %d bytes (PATH_MAX)", len(target), MaxPathBytes)
	}
	if target == p {
		return nil
	}
	fi, err := a.img.Lstat(target)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hard link to %s: target not in the image", target)
		}
		return fmt.Errorf("hard link to %s: %w", target, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("hard link to %s: target is a directory", target)
	}
	err = a.img.Link(target, p)
	if errors.Is(err, fs.ErrExist) {
		if err = a.clear(p); err == nil {
			err = a.img.Link(target, p)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		if err = a.parents(p); err == nil {
			err = a.img.Link(target, p)
		}
	}
	if err != nil {
		return err
	}
	a.count(tar.TypeLink)
	return nil
}
