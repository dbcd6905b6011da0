package ext4edit

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"sort"
	"time"
)

// fileInfo implements fs.FileInfo over an inode.
type fileInfo struct {
	name string
	info InodeInfo
}

func (img *Image) inodeInfo(in *inode) InodeInfo {
	ii := InodeInfo{
		Ino: in.ino, Mode: in.mode(), UID: in.uid(), GID: in.gid(), LinksCount: in.links(),
		Size: in.size(), Blocks: in.blocks512(img), Atime: in.atime(), Mtime: in.mtime(),
		Ctime: in.ctime(), Crtime: in.crtime(), Flags: in.flags(), Generation: in.generation(),
	}
	if m := in.mode() & sIFMT; m == sIFCHR || m == sIFBLK {
		ii.Major, ii.Minor = getDevice(in)
	}
	return ii
}

func (img *Image) fileInfo(name string, in *inode) *fileInfo {
	if name == "/" || name == "." {
		name = "/"
	}
	return &fileInfo{name: name, info: img.inodeInfo(in)}
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return int64(fi.info.Size) }
func (fi *fileInfo) Mode() fs.FileMode  { return fileMode(fi.info.Mode) }
func (fi *fileInfo) ModTime() time.Time { return fi.info.Mtime }
func (fi *fileInfo) IsDir() bool        { return fi.info.Mode&sIFMT == sIFDIR }
func (fi *fileInfo) Sys() any           { return &fi.info }

// dirEntry implements fs.DirEntry; Info reads the inode on demand.
type dirEntry struct {
	img  *Image
	name string
	ino  uint32
	ft   uint8
}

func (d *dirEntry) Name() string { return d.name }
func (d *dirEntry) IsDir() bool  { return d.Type().IsDir() }
func (d *dirEntry) Type() fs.FileMode {
	// Without the filetype feature (or with an unknown code) only the
	// inode knows.
	if d.ft == ftUnknown || d.ft > ftSymlink {
		if fi, err := d.Info(); err == nil {
			return fi.Mode().Type()
		}
		return fs.ModeIrregular
	}
	switch d.ft {
	case ftDir:
		return fs.ModeDir
	case ftSymlink:
		return fs.ModeSymlink
	case ftChr:
		return fs.ModeDevice | fs.ModeCharDevice
	case ftBlk:
		return fs.ModeDevice
	case ftFifo:
		return fs.ModeNamedPipe
	case ftSock:
		return fs.ModeSocket
	}
	return 0
}
func (d *dirEntry) Info() (fs.FileInfo, error) {
	d.img.mu.Lock()
	defer d.img.mu.Unlock()
	in, err := d.img.readInode(d.ino)
	if err != nil {
		return nil, err
	}
	return d.img.fileInfo(d.name, in), nil
}
func (d *dirEntry) String() string { return fs.FormatDirEntry(d) }

// fileReader reads a regular file: straight from its blocks on disk, holes
// and unwritten extents as zeros, inline data from the inode.
type fileReader struct {
	img    *Image
	size   int64
	exts   []fileExtent
	inline []byte
	pos    int64
	// maxSize is the largest i_size the file's mapping allows here
	// (maxFileSize): beyond it the size cannot be genuine.
	maxSize uint64
}

// openReader opens the regular file name (following symlinks) for reading.
func (img *Image) openReader(name string) (*fileReader, fs.FileInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	r, err := img.readLookup("open", name, true)
	if err != nil {
		return nil, nil, err
	}
	if r.in.isDir() {
		return nil, nil, pathErr("read", name, ErrIsDir)
	}
	if !r.in.isReg() {
		return nil, nil, pathErr("read", name, fmt.Errorf("%w: not a regular file", fs.ErrInvalid))
	}
	fr, err := img.newFileReader(r.in)
	if err != nil {
		return nil, nil, pathErr("read", name, err)
	}
	return fr, img.fileInfo(r.name, r.in), nil
}

func (img *Image) newFileReader(in *inode) (*fileReader, error) {
	if in.size() > 1<<62 {
		return nil, corruptf("inode %d size %d", in.ino, in.size())
	}
	fr := &fileReader{img: img, size: int64(in.size()), maxSize: img.maxFileSize(in.hasExtents())}
	if in.hasInlineData() {
		data, err := img.readInline(in)
		if err != nil {
			return nil, err
		}
		if int64(len(data)) < fr.size {
			return nil, corruptf("inode %d inline data shorter than its size", in.ino)
		}
		fr.inline = data[:fr.size]
		return fr, nil
	}
	err := img.walkFile(in, func(e fileExtent) error {
		fr.exts = append(fr.exts, e)
		return nil
	}, nil)
	return fr, err
}

func (r *fileReader) Size() int64 { return r.size }

// mappedBytes is how many bytes the file's mapping covers: what a file
// of this size can hold without holes, a bound on disk that i_size is not.
func (r *fileReader) mappedBytes() uint64 {
	if r.inline != nil {
		return uint64(len(r.inline))
	}
	var n uint64
	for _, e := range r.exts {
		n += e.len
	}
	return n * uint64(r.img.bs)
}

func (r *fileReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%w: negative offset", fs.ErrInvalid)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > r.size-off {
		p = p[:r.size-off]
	}
	if r.inline != nil {
		n := copy(p, r.inline[off:])
		if n < want {
			return n, io.EOF
		}
		return n, nil
	}
	bs := int64(r.img.bs)
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		lblk := uint64(pos / bs)
		i := sort.Search(len(r.exts), func(i int) bool { return r.exts[i].lblk+r.exts[i].len > lblk })
		if i == len(r.exts) || r.exts[i].lblk > lblk {
			// Hole up to the next extent.
			end := int64(len(p))
			if i < len(r.exts) {
				end = min(end, int64(r.exts[i].lblk)*bs-off)
			}
			clear(p[done:end])
			done = int(end)
			continue
		}
		e := r.exts[i]
		end := min(int64(len(p)), int64(e.lblk+e.len)*bs-off)
		if e.uninit {
			clear(p[done:end])
		} else if r.img.overlay != nil {
			// A read-only open over an unreplayed journal: blocks the log
			// holds must come from the log.
			if err := r.readViaOverlay(p[done:end], e.pblk+(lblk-e.lblk), pos%bs); err != nil {
				return done, err
			}
		} else {
			disk := r.img.off + int64(e.pblk+(lblk-e.lblk))*bs + pos%bs
			if _, err := r.img.dev.ReadAt(p[done:end], disk); err != nil {
				if err == io.EOF {
					err = corruptf("file data at byte %d beyond the end of the image file", disk)
				}
				return done, err
			}
		}
		done = int(end)
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// readViaOverlay fills p from consecutive blocks starting at pblk, offset
// bytes into the first, through readBlock (which consults the overlay).
func (r *fileReader) readViaOverlay(p []byte, pblk uint64, offset int64) error {
	buf := make([]byte, r.img.bs)
	for len(p) > 0 {
		if err := r.img.readBlock(pblk, buf); err != nil {
			return err
		}
		n := copy(p, buf[offset:])
		p = p[n:]
		pblk++
		offset = 0
	}
	return nil
}

func (r *fileReader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.pos)
	r.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (r *fileReader) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.pos
	case io.SeekEnd:
		off += r.size
	default:
		return 0, fmt.Errorf("%w: whence %d", fs.ErrInvalid, whence)
	}
	if off < 0 {
		return 0, fmt.Errorf("%w: negative position", fs.ErrInvalid)
	}
	r.pos = off
	return off, nil
}

// File is a regular file opened for writing by Create. Data goes straight
// to newly allocated blocks; the mapping and size are set by Close (or by
// the image's Sync/Close if the File is still open then). Hole (and
// SetSparse) leave ranges unallocated.
type File struct {
	img  *Image
	name string
	ino  uint32
	// size is the file's length up to buf: always a whole number of
	// blocks until Close writes the tail, so the next block written is
	// logical block size/bs, holes included.
	size uint64
	buf  []byte // bytes not yet making a whole block
	exts []fileExtent
	// tally is what mapping exts costs besides the data, valid while
	// tallied (allocWrite keeps it in step; restoreExts invalidates it).
	tally   mapTally
	tallied bool
	closed  bool
	// sparse: whole zero blocks given to Write/ReadFrom become holes.
	sparse bool
	// orphaned: the inode was removed or truncated by another call while
	// this File was open. Its data is dropped at Close (its blocks freed)
	// instead of being mapped into an inode that may now be someone else's.
	orphaned bool
	// attr and xattrs wait for Close (SetAttr, SetXattr).
	attr   *Attr
	xattrs []fileXattr
}

type fileXattr struct {
	name  string
	value []byte
}

// writeChunk is how much data a File gathers before allocating.
const writeChunk = 256 << 10

// Create creates or truncates name (O_TRUNC semantics) and returns a File
// whose Write streams data into newly allocated blocks. Blocks run out ->
// Write returns ErrNoSpace and the file keeps what was written before.
func (img *Image) Create(name string, perm fs.FileMode) (*File, error) {
	f := &File{img: img, name: name}
	err := img.mutate("create", name, func() error {
		in, err := img.openForWrite(name, perm, 0)
		if err != nil {
			return err
		}
		f.ino = in.ino
		img.files.open = append(img.files.open, f) // under the image lock
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// CreateExcl creates name as a new, empty regular file and returns it open
// for writing, like open(2) with O_CREAT|O_EXCL: it fails with fs.ErrExist
// when name exists in any form (a final symlink is not followed, dangling
// or not), and with fs.ErrNotExist when a parent is missing, in both cases
// before anything changes. It is Create without what an existing name
// needs (following it, truncating it): a builder that knows a name is new,
// or clears it first, creates each file in one lookup.
func (img *Image) CreateExcl(name string, perm fs.FileMode) (*File, error) {
	f := &File{img: img, name: name}
	err := img.mutate("create", name, func() error {
		r, err := img.lookupNew(name)
		if err != nil {
			return err
		}
		in, err := img.newInode(r.parent.ino, sIFREG|unixMode(perm)&0o7777)
		if err != nil {
			return err
		}
		in.setLinks(1)
		if img.newFileUsesExtents() {
			// An empty extent root, as truncate leaves one.
			in.setFlags(in.flags() | flagExtents)
			put16(in.iblock(), ehMagic, extentMagic)
			put16(in.iblock(), ehMax, rootEntries)
		}
		if err := img.dirAdd(r.parent, []byte(r.name), in.ino, ftReg); err != nil {
			return err
		}
		img.touch(r.parent)
		if err := img.writeInode(r.parent); err != nil {
			return err
		}
		f.ino = in.ino
		if err := img.writeInode(in); err != nil {
			return err
		}
		img.files.open = append(img.files.open, f) // under the image lock
		return nil
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// SetAttr records raw inode fields to set at Close, in the operation that
// maps the file's data (Lsetattr's fields; nil fields are left alone):
// a builder sets owner, mode and times without another lookup. The type
// bits of Mode must stay those of a regular file. Later calls override
// earlier ones field by field.
func (f *File) SetAttr(a Attr) error {
	if f.closed {
		return pathErr("setattr", f.name, fs.ErrClosed)
	}
	if a.Mode != nil && *a.Mode&sIFMT != sIFREG {
		return pathErr("setattr", f.name, fmt.Errorf("%w: mode 0%o is not a regular file's", fs.ErrInvalid, *a.Mode))
	}
	if f.attr == nil {
		f.attr = &Attr{}
	}
	f.attr.merge(a)
	return nil
}

// SetXattr records an extended attribute to set at Close (as Image's
// SetXattr does, ctime included), after the SetAttr fields; attributes
// are set in the order given.
func (f *File) SetXattr(attr string, value []byte) error {
	if f.closed {
		return pathErr("setxattr", f.name, fs.ErrClosed)
	}
	f.xattrs = append(f.xattrs, fileXattr{attr, append([]byte{}, value...)})
	return nil
}

// SetSparse turns sparse writing on or off for what Write and ReadFrom
// are given from now on. While on, every whole block of the file (block
// aligned in the file, not in the caller's buffers) that holds only zeros
// becomes a hole instead of an allocated block, as mke2fs -d and
// cp --sparse=always make them; a partial last block is written as data.
// The check reads each block a word at a time and stops at the first
// non-zero word, so data costs next to nothing.
func (f *File) SetSparse(on bool) { f.sparse = on }

// Hole extends the file by n zero bytes without allocating them: every
// whole block inside the range stays unmapped (a hole: no extent, a zero
// block pointer) and reads as zeros; the zeros sharing a block with data
// (the range's partial first and last blocks) are buffered as ordinary
// data. A file may end in a hole: Close sets i_size past its last mapped
// block, and i_blocks counts only what is allocated. Growing the file
// past the largest size its inode can map fails with an error wrapping
// ErrFileTooLarge, before anything changes. Writing out the buffered data
// ahead of the hole can fail like Write (ErrNoSpace); the file has then
// grown by part of n, up to the block boundary, as after a short Write.
func (f *File) Hole(n int64) error {
	if f.closed {
		return pathErr("write", f.name, fs.ErrClosed)
	}
	if n < 0 {
		return pathErr("write", f.name, fmt.Errorf("%w: hole of %d bytes", fs.ErrInvalid, n))
	}
	if err := f.checkGrow(uint64(n)); err != nil {
		return err
	}
	bs := uint64(f.img.bs)
	left := uint64(n)
	// f.size is block aligned, so the buffer ends r bytes into a block:
	// zeros up to the block's end are that block's data.
	if r := uint64(len(f.buf)) % bs; r != 0 {
		k := min(left, bs-r)
		f.appendZeros(int(k))
		left -= k
	}
	if left < bs {
		f.appendZeros(int(left))
		return nil
	}
	// The buffer now ends on a block boundary: write it out, so the hole
	// starts at f.size.
	if err := f.flush(); err != nil {
		return err
	}
	f.size += left / bs * bs
	f.appendZeros(int(left % bs))
	return nil
}

// appendZeros buffers n zero bytes; the caller makes sure they fit (less
// than a block, and the buffer's capacity is whole blocks).
func (f *File) appendZeros(n int) {
	if n == 0 {
		return
	}
	if f.buf == nil {
		f.buf = f.img.getWriteBuf()
	}
	k := len(f.buf)
	f.buf = f.buf[:k+n]
	clear(f.buf[k:])
}

// checkGrow fails when n more bytes past the buffered ones (f.size +
// len(buf)) would make the file larger than its inode can map: an
// extent's ee_block is 32 bits and a block map reaches only so far, and
// past that the logical block numbers would wrap.
func (f *File) checkGrow(n uint64) error {
	return f.checkSize(f.size+uint64(len(f.buf)), n)
}

// checkSize fails when a file of have bytes cannot grow by n more.
func (f *File) checkSize(have, n uint64) error {
	limit := f.img.maxFileSize(f.img.newFileUsesExtents())
	if have > limit || n > limit-have {
		return pathErr("write", f.name, fmt.Errorf("%w: %d bytes written, %d more would pass the %d bytes a file can have here",
			ErrFileTooLarge, have, n, limit))
	}
	return nil
}

// Write appends p to the file. Whole blocks go straight from p to newly
// allocated blocks; only a partial tail is buffered.
func (f *File) Write(p []byte) (int, error) {
	if f.closed {
		return 0, pathErr("write", f.name, fs.ErrClosed)
	}
	if err := f.checkGrow(uint64(len(p))); err != nil {
		return 0, err
	}
	bs := int(f.img.bs)
	n := len(p)
	for len(p) > 0 {
		if len(f.buf) == 0 && len(p) >= bs {
			k := min(len(p), writeChunk*8) / bs * bs
			if err := f.writeBlocks(p[:k]); err != nil {
				return n - len(p), err
			}
			p = p[k:]
			continue
		}
		if f.buf == nil {
			f.buf = f.img.getWriteBuf()
		}
		take := min(cap(f.buf)-len(f.buf), len(p))
		f.buf = append(f.buf, p[:take]...)
		p = p[take:]
		if len(f.buf) == cap(f.buf) {
			if err := f.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// ReadFrom copies r into the file through the write buffer, without an
// intermediate copy (io.Copy uses it).
func (f *File) ReadFrom(r io.Reader) (int64, error) {
	if f.closed {
		return 0, pathErr("write", f.name, fs.ErrClosed)
	}
	if f.buf == nil {
		f.buf = f.img.getWriteBuf()
	}
	var total int64
	for {
		n, err := r.Read(f.buf[len(f.buf):cap(f.buf)])
		if gerr := f.checkGrow(uint64(n)); gerr != nil {
			return total, gerr // those n bytes are not the file's
		}
		f.buf = f.buf[:len(f.buf)+n]
		total += int64(n)
		if len(f.buf) == cap(f.buf) {
			if ferr := f.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush writes the whole blocks gathered so far (Close writes the rest).
func (f *File) flush() error {
	n := len(f.buf) / int(f.img.bs) * int(f.img.bs)
	if n == 0 {
		return nil
	}
	if err := f.writeBlocks(f.buf[:n]); err != nil {
		return err
	}
	f.buf = f.buf[:copy(f.buf, f.buf[n:])]
	return nil
}

// writeBlocks allocates blocks for data (whole blocks) and writes it;
// in sparse mode its zero blocks become holes instead.
func (f *File) writeBlocks(data []byte) error {
	saved := f.saveExts()
	err := f.img.mutate("write", f.name, func() error {
		if f.sparse {
			return f.allocSparse(data)
		}
		return f.allocWrite(data, len(data))
	})
	if err != nil {
		f.restoreExts(saved) // the failed operation's blocks are free again
	}
	return err
}

// savedExts is the File's mapping before an operation that may fail.
type savedExts struct {
	n    int
	last []fileExtent // a copy of the last extent, which allocWrite may grow
	size uint64
}

func (f *File) saveExts() savedExts {
	s := savedExts{n: len(f.exts), size: f.size}
	if s.n > 0 {
		s.last = []fileExtent{f.exts[s.n-1]}
	}
	return s
}

func (f *File) restoreExts(s savedExts) {
	f.exts = append(f.exts[:s.n-len(s.last)], s.last...)
	f.size = s.size
	f.tallied = false
}

// allocSparse is allocWrite for whole blocks in sparse mode: runs of
// zero blocks only move the end of the file (holes), runs of data blocks
// are allocated and written. f.size is block aligned here, so every block
// of data is a block of the file.
func (f *File) allocSparse(data []byte) error {
	bs := int(f.img.bs)
	for len(data) > 0 {
		z := 0
		for z < len(data) && zeroBlock(data[z:z+bs]) {
			z += bs
		}
		if z > 0 {
			if err := f.checkSize(f.size, uint64(z)); err != nil {
				return err
			}
			f.size += uint64(z)
			data = data[z:]
		}
		d := 0
		for d < len(data) && !zeroBlock(data[d:d+bs]) {
			d += bs
		}
		if d > 0 {
			if err := f.allocWrite(data[:d], d); err != nil {
				return err
			}
			data = data[d:]
		}
	}
	return nil
}

// zeroBlock reports whether b holds only zeros, reading 8 bytes at a
// time, 64 per step: a data block fails at its first non-zero word.
func zeroBlock(b []byte) bool {
	le := binary.LittleEndian
	for len(b) >= 64 {
		if le.Uint64(b)|le.Uint64(b[8:])|le.Uint64(b[16:])|le.Uint64(b[24:])|
			le.Uint64(b[32:])|le.Uint64(b[40:])|le.Uint64(b[48:])|le.Uint64(b[56:]) != 0 {
			return false
		}
		b = b[64:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// allocWrite allocates blocks for data and writes it, inside an
// operation; the first size bytes of data are the file's (the rest pads
// the last block with zeros).
func (f *File) allocWrite(data []byte, size int) error {
	bs := int(f.img.bs)
	blocks := uint64((len(data) + bs - 1) / bs)
	// Callers checked what they accepted; this guards the 32-bit block
	// numbers of the mapping against any path that did not.
	if err := f.checkSize(f.size, uint64(size)); err != nil {
		return err
	}
	// Keep room for the tree Close will build, counting this run as a
	// new one (it may merge with the last).
	if !f.tallied {
		f.tally, f.tallied = f.img.tallyOf(f.exts), true
	}
	next := f.tally
	next.add(fileExtent{lblk: f.nextLblk(), len: blocks}, false)
	if err := f.img.needBlocks(blocks + next.overhead(f.img)); err != nil {
		return err
	}
	goal := f.img.groupFirstBlock((f.ino - 1) / f.img.ipg)
	if len(f.exts) > 0 {
		last := f.exts[len(f.exts)-1]
		goal = last.pblk + last.len
	}
	runs, err := f.img.allocBlocks(goal, blocks)
	if err != nil {
		return err
	}
	lblk := f.nextLblk()
	off := 0
	for _, r := range runs {
		end := min(off+int(r.len)*bs, len(data))
		if err := f.img.writeData(r.start, data[off:end]); err != nil {
			return err
		}
		run := fileExtent{lblk: lblk, pblk: r.start, len: r.len}
		if k := len(f.exts) - 1; k >= 0 && f.exts[k].pblk+f.exts[k].len == r.start && f.exts[k].lblk+f.exts[k].len == lblk {
			f.exts[k].len += r.len
			f.tally.add(run, true)
		} else {
			f.exts = append(f.exts, run)
			f.tally.add(run, false)
		}
		lblk += r.len
		off = end
	}
	f.size += uint64(size)
	return nil
}

// nextLblk is the logical block the next data lands in: right after
// everything written so far, holes included.
func (f *File) nextLblk() uint64 { return f.size / uint64(f.img.bs) }

// Close finishes the file: the buffered tail is written, the blocks are
// mapped, the size and what SetAttr and SetXattr recorded are set, all in
// one operation.
func (f *File) Close() error {
	if f.closed {
		return pathErr("close", f.name, fs.ErrClosed)
	}
	f.closed = true
	f.img.mu.Lock()
	f.img.dropOpenFile(f)
	f.img.mu.Unlock()
	saved := f.saveExts()
	err := f.img.mutate("close", f.name, f.finish)
	f.img.putWriteBuf(f.buf)
	f.buf = nil
	if err != nil {
		// Map what earlier operations wrote; this one's blocks were
		// rolled back.
		f.restoreExts(saved)
		f.img.abandonFile(f)
	}
	return err
}

// finish is Close's operation.
func (f *File) finish() error {
	img := f.img
	if f.orphaned {
		for _, e := range f.exts {
			img.freeBlocks(e.pblk, e.len)
		}
		return nil
	}
	if err := f.checkXattrs(); err != nil {
		return err
	}
	if whole := len(f.buf) / int(img.bs) * int(img.bs); f.sparse && whole > 0 {
		// The buffer's whole blocks, holes where they are zeros.
		if err := f.allocSparse(f.buf[:whole]); err != nil {
			return err
		}
		f.buf = f.buf[:copy(f.buf, f.buf[whole:])]
	}
	if n := len(f.buf); n > 0 {
		// The tail, its last block padded with zeros in place: the
		// buffer's capacity is whole blocks.
		bs := int(img.bs)
		padded := f.buf[:(n+bs-1)/bs*bs]
		clear(padded[n:])
		if err := f.allocWrite(padded, n); err != nil {
			return err
		}
		f.buf = f.buf[:0]
	}
	in, err := img.mapFile(f)
	if err != nil {
		return err
	}
	if f.attr != nil {
		if err := img.setattr(in, *f.attr); err != nil {
			return err
		}
	}
	for _, x := range f.xattrs {
		if err := img.setXattr(in, x.name, x.value); err != nil {
			return err
		}
		in.setCtime(img.now())
	}
	return img.writeInode(in)
}

// checkXattrs places the attributes SetXattr recorded on a copy of the
// inode, allocating nothing: attributes that cannot fit fail Close
// (ErrXattrTooLarge) before its operation changes anything, so even an
// image opened with Options.NoUndo stays consistent.
func (f *File) checkXattrs() error {
	if len(f.xattrs) == 0 {
		return nil
	}
	in, err := f.img.readInode(f.ino)
	if err != nil {
		return err
	}
	in = &inode{ino: in.ino, b: append([]byte(nil), in.b...)}
	st, err := f.img.xattrState(in)
	if err != nil {
		return err
	}
	for _, x := range f.xattrs {
		if _, err := f.img.placeXattr(in, st, x.name, x.value); err != nil {
			return err
		}
	}
	return nil
}

// mapFile maps the blocks f wrote into its inode and sets its size.
func (img *Image) mapFile(f *File) (*inode, error) {
	in, err := img.readInode(f.ino)
	if err != nil {
		return nil, err
	}
	if err := img.mapNew(in, f.exts, img.dataGoal(in)); err != nil {
		return nil, err
	}
	if err := img.noteLargeFile(f.size); err != nil {
		return nil, err
	}
	in.setSize(f.size)
	return in, nil
}

// noteLargeFile sets the large_file feature when a file reaches 2 GiB, as
// the kernel does on writing such an inode: without it e2fsck and old
// kernels take i_size_high for garbage. A revision 0 superblock cannot
// carry the feature.
func (img *Image) noteLargeFile(size uint64) error {
	if size <= 1<<31-1 || img.sb.hasRoCompat(roCompatLargeFile) {
		return nil
	}
	if le32(img.sb.b, sbRevLevel) == 0 {
		return fmt.Errorf("%w: a file of %d bytes needs large_file, which a revision 0 filesystem cannot have", ErrFileTooLarge, size)
	}
	img.sb.setRoCompat(img.sb.roCompat() | roCompatLargeFile)
	return nil
}

// abandonFile maps what a failed File managed to write, so no allocated
// block is left unreferenced.
func (img *Image) abandonFile(f *File) {
	_ = img.mutate("close", f.name, func() error {
		if f.orphaned {
			for _, e := range f.exts {
				img.freeBlocks(e.pblk, e.len)
			}
			return nil
		}
		in, err := img.mapFile(f)
		if err != nil {
			return err
		}
		return img.writeInode(in)
	})
}

func (img *Image) dropOpenFile(f *File) {
	for i, o := range img.files.open {
		if o == f {
			img.files.open = append(img.files.open[:i], img.files.open[i+1:]...)
			return
		}
	}
}

// closeOpenFiles finishes Files still open at Sync/Close. Each Close
// takes the image lock itself, so the list is copied under it first.
func (img *Image) closeOpenFiles() error {
	img.mu.Lock()
	open := slices.Clone(img.files.open)
	img.mu.Unlock()
	var first error
	for _, f := range open {
		if f.closed {
			continue
		}
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// getWriteBuf hands out a write buffer, reusing those of closed Files: a
// fresh 1 MiB allocation per file costs more than the copy it serves.
func (img *Image) getWriteBuf() []byte {
	img.files.bufMu.Lock()
	defer img.files.bufMu.Unlock()
	if n := len(img.files.writeBufs); n > 0 {
		b := img.files.writeBufs[n-1]
		img.files.writeBufs = img.files.writeBufs[:n-1]
		return b[:0]
	}
	return make([]byte, 0, writeChunk)
}

func (img *Image) putWriteBuf(b []byte) {
	if cap(b) != writeChunk {
		return
	}
	img.files.bufMu.Lock()
	defer img.files.bufMu.Unlock()
	if len(img.files.writeBufs) < 2 {
		img.files.writeBufs = append(img.files.writeBufs, b)
	}
}

// orphanOpenFiles detaches open Files from inode ino, which is being freed
// or truncated underneath them.
func (img *Image) orphanOpenFiles(ino uint32) {
	for _, f := range img.files.open {
		if f.ino == ino && !f.orphaned {
			f.orphaned = true
			img.undo.touched = true
			if img.undo.active {
				img.undo.orphaned = append(img.undo.orphaned, f) // a failed operation re-adopts it
			}
		}
	}
}
