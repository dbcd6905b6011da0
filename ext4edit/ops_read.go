package ext4edit

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
)

func (img *Image) readLookup(op, name string, follow bool) (*resolved, error) {
	if err := img.readable(); err != nil {
		return nil, pathErr(op, name, err)
	}
	r, err := img.lookupExisting(name, follow)
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	return r, nil
}

// Stat describes name, following a final symlink. Sys() is *InodeInfo.
func (img *Image) Stat(name string) (fs.FileInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("stat", name, true)
	if err != nil {
		return nil, err
	}
	return img.fileInfo(path.Base("/"+name), r.in), nil
}

// Lstat describes name itself. Sys() is *InodeInfo.
func (img *Image) Lstat(name string) (fs.FileInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return img.fileInfo(path.Base("/"+name), r.in), nil
}

// ReadDir lists a directory sorted by name, without "." and "..".
func (img *Image) ReadDir(name string) ([]fs.DirEntry, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !r.in.isDir() {
		return nil, pathErr("readdir", name, ErrNotDir)
	}
	var out []fs.DirEntry
	err = img.dirIter(r.in, func(n []byte, ino uint32, ft uint8) bool {
		if s := string(n); s != "." && s != ".." {
			out = append(out, &dirEntry{img: img, name: s, ino: ino, ft: ft})
		}
		return true
	})
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

// maxReadFile is the largest file ReadFile returns whole (1 GiB): a file
// is read into one []byte, so an image must not be able to make the
// caller allocate without bound. Larger files are read with the streaming
// reader, FS().Open.
const maxReadFile = 1 << 30

// ReadFile returns the contents of a regular file (following symlinks).
// A file larger than 1 GiB is refused with ErrFileTooLarge (read it
// through FS().Open instead); an i_size no file on this filesystem can
// have is ErrCorrupt. Memory grows with the data actually read: a sparse
// file costs its size, a file whose i_size lies costs what its blocks hold
// before the lie is refused.
func (img *Image) ReadFile(name string) ([]byte, error) {
	fr, _, err := img.openReader(name)
	if err != nil {
		return nil, err
	}
	size := uint64(fr.Size())
	if size > fr.maxSize {
		return nil, pathErr("read", name, corruptf("i_size %d beyond the largest file this filesystem maps (%d)", size, fr.maxSize))
	}
	if size > maxReadFile {
		return nil, pathErr("read", name, fmt.Errorf("%w: %d bytes, more than ReadFile returns whole (%d); stream it with FS().Open", ErrFileTooLarge, size, maxReadFile))
	}
	// The blocks the file maps bound the first allocation; holes beyond
	// them grow the buffer as they are read.
	buf := make([]byte, 0, min(size, fr.mappedBytes()))
	for uint64(len(buf)) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, int(min(size-uint64(len(buf)), uint64(max(cap(buf), 64<<10)))))
		}
		chunk := buf[len(buf):min(uint64(cap(buf)), size)]
		n, err := fr.ReadAt(chunk, int64(len(buf)))
		buf = buf[:len(buf)+n]
		if err != nil && (err != io.EOF || uint64(len(buf)) < size) {
			return nil, pathErr("read", name, err)
		}
	}
	return buf, nil
}

// Readlink returns the target of a symbolic link.
func (img *Image) Readlink(name string) (string, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("readlink", name, false)
	if err != nil {
		return "", err
	}
	t, err := img.readlink(r.in)
	return t, pathErr("readlink", name, err)
}
