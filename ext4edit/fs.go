package ext4edit

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
)

// FS returns a read-only io/fs view of the image. Names are unrooted,
// slash-separated paths as fs.ValidPath defines them ("." is the root
// directory); name maps to the image path "/"+name. Open, Stat and ReadFile
// follow symbolic links, which the image resolves inside the image root;
// Lstat and ReadLink do not. Errors are *fs.PathError values naming the
// fs.FS operation and name, wrapping the image's errors (test them with
// errors.Is: fs.ErrNotExist, fs.ErrInvalid, ErrNotDir, ErrCorrupt, ...).
//
// The returned value implements fs.FS, fs.StatFS, fs.ReadDirFS,
// fs.ReadFileFS and fs.ReadLinkFS. Open returns an fs.ReadDirFile for a
// directory and, for a regular file, an fs.File that also implements
// io.Seeker and io.ReaderAt. The view reads the image live: edits made
// through img are visible to names opened after them.
func (img *Image) FS() fs.FS { return &imageFS{img: img} }

type imageFS struct {
	img *Image
}

var (
	_ fs.FS         = (*imageFS)(nil)
	_ fs.StatFS     = (*imageFS)(nil)
	_ fs.ReadDirFS  = (*imageFS)(nil)
	_ fs.ReadFileFS = (*imageFS)(nil)
	_ fs.ReadLinkFS = (*imageFS)(nil)

	_ fs.ReadDirFile = (*fsDir)(nil)
	_ io.Seeker      = (*fsFile)(nil)
	_ io.ReaderAt    = (*fsFile)(nil)
)

// imagePath validates an fs.FS name and returns the image path it names.
func imagePath(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return "/", nil
	}
	return "/" + name, nil
}

// baseName is the FileInfo name of an fs.FS name: its last element, "."
// for the root.
func baseName(name string) string {
	if name == "." {
		return "."
	}
	return path.Base(name)
}

// fsErr reports err, which the image returned for the image path of name,
// as a PathError for the fs.FS operation op on name. A PathError from the
// image is replaced (its Err kept), so callers see the name they used.
func fsErr(op, name string, err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

// named returns fi with Name() reporting name: the name looked up, not the
// target of a followed symlink nor the image's name for the root.
func named(fi fs.FileInfo, name string) fs.FileInfo {
	if fi.Name() == name {
		return fi
	}
	return renamedInfo{FileInfo: fi, name: name}
}

type renamedInfo struct {
	fs.FileInfo
	name string
}

func (r renamedInfo) Name() string   { return r.name }
func (r renamedInfo) String() string { return fs.FormatFileInfo(r) }

// Open opens name, following symlinks.
func (fsys *imageFS) Open(name string) (fs.File, error) {
	p, err := imagePath("open", name)
	if err != nil {
		return nil, err
	}
	base := baseName(name)
	r, fi, rerr := fsys.img.openReader(p)
	if rerr == nil && fi.Mode().IsRegular() {
		return &fsFile{name: name, fi: named(fi, base), r: r}, nil
	}
	// Not a regular file, or no such file: let Stat say which.
	fi, err = fsys.img.Stat(p)
	if err != nil {
		return nil, fsErr("open", name, err)
	}
	fi = named(fi, base)
	switch {
	case fi.IsDir():
		return &fsDir{fsys: fsys, name: name, path: p, fi: fi}, nil
	case fi.Mode().IsRegular():
		if rerr == nil { // changed type between the two lookups
			rerr = fs.ErrInvalid
		}
		return nil, fsErr("open", name, rerr)
	default:
		return &fsSpecial{name: name, fi: fi}, nil
	}
}

// Stat describes name, following symlinks. Sys() is *InodeInfo.
func (fsys *imageFS) Stat(name string) (fs.FileInfo, error) {
	p, err := imagePath("stat", name)
	if err != nil {
		return nil, err
	}
	fi, err := fsys.img.Stat(p)
	if err != nil {
		return nil, fsErr("stat", name, err)
	}
	return named(fi, baseName(name)), nil
}

// Lstat describes name without following a final symlink.
func (fsys *imageFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := imagePath("lstat", name)
	if err != nil {
		return nil, err
	}
	fi, err := fsys.img.Lstat(p)
	if err != nil {
		return nil, fsErr("lstat", name, err)
	}
	return named(fi, baseName(name)), nil
}

// ReadDir lists the directory name, sorted by file name.
func (fsys *imageFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := imagePath("readdir", name)
	if err != nil {
		return nil, err
	}
	list, err := fsys.img.ReadDir(p)
	if err != nil {
		return nil, fsErr("readdir", name, err)
	}
	return list, nil
}

// ReadFile returns the contents of the regular file name, following
// symlinks.
func (fsys *imageFS) ReadFile(name string) ([]byte, error) {
	p, err := imagePath("read", name)
	if err != nil {
		return nil, err
	}
	data, err := fsys.img.ReadFile(p)
	if err != nil {
		return nil, fsErr("read", name, err)
	}
	return data, nil
}

// ReadLink returns the target of the symbolic link name, unchanged.
func (fsys *imageFS) ReadLink(name string) (string, error) {
	p, err := imagePath("readlink", name)
	if err != nil {
		return "", err
	}
	target, err := fsys.img.Readlink(p)
	if err != nil {
		return "", fsErr("readlink", name, err)
	}
	return target, nil
}

// fsFile is an open regular file.
type fsFile struct {
	name string
	fi   fs.FileInfo
	r    *fileReader // nil once closed
}

func (f *fsFile) Stat() (fs.FileInfo, error) {
	if f.r == nil {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: fs.ErrClosed}
	}
	return f.fi, nil
}

func (f *fsFile) Read(p []byte) (int, error) {
	if f.r == nil {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = fsErr("read", f.name, err)
	}
	return n, err
}

func (f *fsFile) ReadAt(p []byte, off int64) (int, error) {
	if f.r == nil {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: fs.ErrClosed}
	}
	n, err := f.r.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = fsErr("read", f.name, err)
	}
	return n, err
}

func (f *fsFile) Seek(offset int64, whence int) (int64, error) {
	if f.r == nil {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: fs.ErrClosed}
	}
	pos, err := f.r.Seek(offset, whence)
	if err != nil {
		err = fsErr("seek", f.name, err)
	}
	return pos, err
}

func (f *fsFile) Close() error {
	if f.r == nil {
		return &fs.PathError{Op: "close", Path: f.name, Err: fs.ErrClosed}
	}
	f.r = nil
	return nil
}

// fsDir is an open directory. Its entries are read from the image on the
// first ReadDir call.
type fsDir struct {
	fsys    *imageFS
	name    string // fs.FS name
	path    string // image path
	fi      fs.FileInfo
	entries []fs.DirEntry
	loaded  bool
	off     int
	closed  bool
}

func (d *fsDir) Stat() (fs.FileInfo, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "stat", Path: d.name, Err: fs.ErrClosed}
	}
	return d.fi, nil
}

func (d *fsDir) Read([]byte) (int, error) {
	if d.closed {
		return 0, &fs.PathError{Op: "read", Path: d.name, Err: fs.ErrClosed}
	}
	return 0, &fs.PathError{Op: "read", Path: d.name, Err: ErrIsDir}
}

// ReadDir returns the next n entries (n > 0; io.EOF once none are left) or
// all remaining entries (n <= 0; an empty list and nil at the end).
func (d *fsDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.name, Err: fs.ErrClosed}
	}
	if !d.loaded {
		list, err := d.fsys.img.ReadDir(d.path)
		if err != nil {
			return nil, fsErr("readdir", d.name, err)
		}
		d.entries, d.loaded = list, true
	}
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return slices.Clone(rest[:n]), nil
}

func (d *fsDir) Close() error {
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.name, Err: fs.ErrClosed}
	}
	d.closed, d.entries = true, nil
	return nil
}

// errNotRegular is the read error of a device node, FIFO or socket.
var errNotRegular = fmt.Errorf("%w: not a regular file", fs.ErrInvalid)

// fsSpecial is an open device node, FIFO or socket: it can be Stat'ed but
// has no contents to read.
type fsSpecial struct {
	name   string
	fi     fs.FileInfo
	closed bool
}

func (s *fsSpecial) Stat() (fs.FileInfo, error) {
	if s.closed {
		return nil, &fs.PathError{Op: "stat", Path: s.name, Err: fs.ErrClosed}
	}
	return s.fi, nil
}

func (s *fsSpecial) Read([]byte) (int, error) {
	if s.closed {
		return 0, &fs.PathError{Op: "read", Path: s.name, Err: fs.ErrClosed}
	}
	return 0, &fs.PathError{Op: "read", Path: s.name, Err: errNotRegular}
}

func (s *fsSpecial) Close() error {
	if s.closed {
		return &fs.PathError{Op: "close", Path: s.name, Err: fs.ErrClosed}
	}
	s.closed = true
	return nil
}
