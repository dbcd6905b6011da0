package imagepull

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"strings"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// LayerSource is one image layer for BuildExt4: its uncompressed tar
// stream, opened on demand. BuildExt4 opens each layer once, or twice
// when it has to size the image (a scan first).
type LayerSource struct {
	// Digest names the layer in messages (and image.json); may be empty.
	Digest string
	// Open returns the uncompressed tar stream. BuildExt4 reads it to EOF
	// (where a verifying reader checks the digest) and closes it.
	Open func() (io.ReadCloser, error)
}

// BuildOptions shape the image BuildExt4 makes.
type BuildOptions struct {
	// Size of the image in bytes. Zero: the layers are read once into a
	// sparse image of MaxSize, cut afterwards to the content plus the
	// headroom (AutoHeadroomDiv, AutoHeadroomMin).
	Size int64
	// BlockSize of the filesystem (default 4096).
	BlockSize uint32
	// InodeRatio is bytes per inode; zero picks one: mkfs's default (16
	// KiB) or denser when the layers hold many small files.
	InodeRatio uint64
	// Label is the volume label (at most 16 bytes).
	Label string
	// Seed feeds the filesystem UUID and directory hash seed (the manifest
	// digest, say): equal layers and options give byte-identical images.
	Seed []byte
	// Time stamps the filesystem and every time the layers do not give:
	// ctimes, creation times, directories the layers imply without
	// listing. Zero: the Unix epoch plus one second.
	Time time.Time
	// NoJournal makes an ext4 image without a journal.
	NoJournal bool
	// MaxSize caps the size of a Size==0 build (default
	// DefaultMaxAutoSize): the layers are applied once into a sparse image
	// of that size, which is then cut to the content plus the headroom
	// (AutoHeadroomDiv, AutoHeadroomMin); layers that do not fit fail
	// with ErrTooBig, so a small hostile layer cannot claim a huge image.
	// A given Size is not capped.
	MaxSize int64
	// Warnf receives notes on entries that were skipped or changed
	// (unsupported xattr namespaces, unknown entry types, clamped times).
	// Nil discards.
	Warnf func(format string, args ...any)
	// Progress, when set, receives ProgressBuild events as the layers are
	// applied (from the goroutine calling BuildExt4). Nil reports nothing.
	Progress func(ProgressEvent)
}

// DefaultMaxAutoSize is the largest image an estimate may ask for unless
// BuildOptions.MaxSize (PullOptions.MaxSize, imagepull pull --max-size)
// raises it: above the largest container images in common use (CUDA and ML
// images of 10-30 GB), far below what a few-KiB layer declaring huge
// sparse files or millions of entries would claim.
const DefaultMaxAutoSize = 64 << 30

// AutoHeadroom is the free space an auto-sized image keeps past what its
// content needs, as a fraction of the content's blocks (1/AutoHeadroomDiv)
// plus AutoHeadroomMin bytes: room for the finalize step (guest agents,
// ownership) and a VM's first writes. A VM that needs more grows its copy
// (ext4edit.Resize).
const (
	AutoHeadroomDiv = 32       // 1/32 (about 3%) of the content
	AutoHeadroomMin = 16 << 20 // and 16 MiB
)

// autoInodeRatio is the bytes per inode of an auto-sized image: as many
// inodes as a group's inode bitmap holds (32,768 per 128 MiB group of
// 4 KiB blocks), since the image is cut to its content and a tree of
// many small files (node_modules, a Python site-packages) would
// otherwise keep groups for their inodes, not their blocks. The tables
// cost 1/16 of the kept groups.
const autoInodeRatio = 4096

// autoCut shrinks an image built at the auto-size ceiling to the content
// plus the headroom, then gives it its journal (sized like mke2fs sizes
// one for the final size) unless noJournal. It returns the new size.
func autoCut(img *ext4edit.Image, bs uint32, noJournal bool) (int64, error) {
	target := func(content int64) int64 {
		size := content + content/AutoHeadroomDiv + AutoHeadroomMin
		if !noJournal {
			// The journal comes out of the free space: add it to the size.
			size += int64(ext4edit.DefaultJournalBlocks(uint64(size)/uint64(bs))) * int64(bs)
		}
		return size
	}
	// The content is measured from the group counters (ContentSize), not
	// by MinSize's bisection: that reads every inode for each size it
	// tries (0.2 s for 35,000 entries) to find a minimum a few dozen
	// blocks above the counters' bound, far inside the headroom.
	content, err := img.ContentSize()
	if err != nil {
		return 0, fmt.Errorf("sizing the image to its content: %w", err)
	}
	if size := target(content); size < img.Size() {
		err := img.Resize(size)
		if errors.Is(err, ext4edit.ErrNoSpace) || errors.Is(err, ext4edit.ErrUnsupportedFeature) {
			// The bound was too far below the minimum for the headroom
			// to cover (not seen on this layout, where every group holds
			// its own tables): measure the minimum.
			var min int64
			if min, err = img.MinSize(); err == nil {
				if size := target(min); size < img.Size() {
					err = img.Resize(size)
				}
			}
		}
		if err != nil {
			return 0, fmt.Errorf("cutting the image to its content: %w", err)
		}
	}
	if !noJournal {
		if err := img.AddJournal(0); err != nil {
			return 0, fmt.Errorf("adding the journal: %w", err)
		}
	}
	return img.Size(), nil
}

// ErrTooBig: the layers need a larger image than the auto-size ceiling
// (BuildOptions.MaxSize).
var ErrTooBig = errors.New("layers need an image larger than the auto-size ceiling")

// BuildStats counts what BuildExt4 did.
type BuildStats struct {
	Layers        int
	Entries       int64 // inodes created or re-declared (directories)
	Files         int64
	FileBytes     int64
	Dirs          int64
	Symlinks      int64
	Hardlinks     int64
	Nodes         int64 // devices and FIFOs
	Whiteouts     int64
	Xattrs        int64
	XattrsSkipped int64
	ImplicitDirs  int64 // parents created because a layer did not list them
	// AttrsFromCreate counts entries whose attributes the creating call
	// set (root-owned, atime = mtime), with no Lsetattr.
	AttrsFromCreate int64
	Skipped         int64 // entries of unsupported types
	TimesClamped    int64 // times outside ext4's range, clamped into it
	// Size is the image size in bytes; Estimated says BuildExt4 chose it.
	Size       int64
	InodeRatio uint64
	Estimated  bool
}

// syncEvery bounds the editor's dirty set: the image is committed once
// the entries since the last commit weigh this much. An entry weighs 1;
// a new directory dirSyncWeight, since it brings a whole dirty block
// (4 KiB): 8,192 directories hold 32 MiB, so memory stays flat however
// many entries or directories a layer has.
const (
	syncEvery     = 1 << 16
	dirSyncWeight = 8
)

// BuildExt4 makes a new ext4 image at path (replacing any file there) from
// layers applied in order, lowest first, and returns it open: the caller
// finalizes it and commits with Close. On error the file at path is
// removed. Running out of space fails with an error wrapping
// ext4edit.ErrNoSpace.
//
// The image is a scratch file until Close returns (ext4edit's
// Options.Scratch and NoUndo): publish it (rename it into place) only
// after Close succeeded, and remove it when a finalizing edit or Close
// fails; an edit that fails part way leaves it refusing further edits
// (ext4edit.ErrPartialEdit). Close makes it durable with one flush.
func BuildExt4(ctx context.Context, imgPath string, layers []LayerSource, opts BuildOptions) (*ext4edit.Image, *BuildStats, error) {
	f, err := os.OpenFile(imgPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, nil, err
	}
	img, st, err := BuildExt4File(ctx, f, layers, opts)
	if err != nil {
		_ = os.Remove(imgPath)
	}
	return img, st, err
}

// BuildExt4File is BuildExt4 into a file the caller opened (made with
// O_EXCL, say, so no path is opened twice): f is formatted and the
// returned Image writes through it. BuildExt4File takes f over: closing
// the Image closes it, and an error closes it before returning; removing
// the file on error is the caller's.
func BuildExt4File(ctx context.Context, f *os.File, layers []LayerSource, opts BuildOptions) (*ext4edit.Image, *BuildStats, error) {
	bs := opts.BlockSize
	if bs == 0 {
		bs = 4096
	}
	st := &BuildStats{Size: opts.Size, InodeRatio: opts.InodeRatio}
	// Without a size the layers are read once: into a sparse image as
	// large as the ceiling, which the editor fills from the front, cut
	// down afterwards to the content plus AutoHeadroom (autoCut).
	auto := st.Size == 0
	ceiling := opts.MaxSize
	if ceiling <= 0 {
		ceiling = DefaultMaxAutoSize
	}
	if auto {
		st.Size, st.Estimated = ceiling, true
		if st.InodeRatio == 0 {
			st.InodeRatio = autoInodeRatio
		}
	}
	if st.InodeRatio == 0 {
		st.InodeRatio = mke2fsInodeRatio(st.Size)
	}
	t := opts.Time
	if t.IsZero() {
		t = time.Unix(1, 0)
	}
	// The base time stamps the superblock and implicit directories: keep
	// it where every inode can store it (a config may say year 9999).
	t = clampToExt4(t)
	clock := t
	groupsPerFlex := uint32(0)
	if auto {
		groupsPerFlex = 1
	}
	img, err := ext4edit.MkfsFile(f, st.Size, &ext4edit.MkfsOptions{
		BlockSize:  bs,
		InodeRatio: st.InodeRatio,
		Label:      opts.Label,
		Seed:       opts.Seed,
		Time:       t,
		// An auto-sized image keeps each group's metadata in the group
		// (no flex_bg packing): the cut then frees the removed groups'
		// tables whole instead of leaving them at the front.
		GroupsPerFlex: groupsPerFlex,
		// An auto-sized image gets its journal after the cut, sized for
		// what it became.
		NoJournal: opts.NoJournal || auto,
		// The file is new, private until the caller publishes it after
		// Close, and removed on any error: no rollback of failed edits
		// and no crash-safe commits until then, one flush at Close.
		// Directory times are set as each directory is made or declared
		// (KeepDirTimes): nothing is remembered per directory.
		Open: ext4edit.Options{Now: func() time.Time { return clock }, NoUndo: true, Scratch: true, KeepDirTimes: true},
	})
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	a := newApplier(img, opts.Warnf, &clock, t)
	fail := func(err error) (*ext4edit.Image, *BuildStats, error) {
		_ = img.Close()
		if errors.Is(err, ext4edit.ErrNoSpace) {
			if auto {
				err = fmt.Errorf("%w: the layers do not fit %d bytes (give a size, or raise the ceiling with MaxSize / --max-size): %w", ErrTooBig, ceiling, err)
			} else {
				err = fmt.Errorf("image of %d bytes is too small for the layers (give a larger size): %w", st.Size, err)
			}
		}
		return nil, nil, err
	}
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		rc, err := l.Open()
		if err != nil {
			return fail(&LayerError{Layer: i + 1, Digest: l.Digest, Err: err})
		}
		var r io.Reader = rc
		if opts.Progress != nil {
			r = &buildProgress{r: rc, stats: &a.stats, ev: ProgressEvent{Phase: ProgressBuild, Layer: i + 1, Layers: len(layers)}, progress: opts.Progress}
		}
		err = a.applyLayer(ctx, i+1, l.Digest, r)
		if cerr := rc.Close(); err == nil && cerr != nil {
			err = &LayerError{Layer: i + 1, Digest: l.Digest, Err: cerr}
		}
		if err != nil {
			return fail(err)
		}
	}
	if auto {
		size, err := autoCut(img, bs, opts.NoJournal)
		if err != nil {
			return fail(err)
		}
		st.Size = size
	}
	a.stats.Size, a.stats.InodeRatio, a.stats.Estimated = st.Size, st.InodeRatio, st.Estimated
	if opts.Progress != nil {
		opts.Progress(ProgressEvent{Phase: ProgressBuild, Layers: len(layers), Entries: a.stats.Entries, FileBytes: a.stats.FileBytes, Done: true})
	}
	return img, &a.stats, nil
}

// buildProgress reports the applier's counts on each read of a layer's
// stream. The applier reads the stream from the goroutine that updates
// its stats, so reading them here needs no lock, and the applier itself
// needs no hook.
type buildProgress struct {
	r        io.Reader
	stats    *BuildStats
	ev       ProgressEvent
	progress func(ProgressEvent)
}

func (p *buildProgress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.ev.Entries, p.ev.FileBytes = p.stats.Entries, p.stats.FileBytes
	p.progress(p.ev)
	return n, err
}

// LayerUsage is what one layer needs in an ext4 image, counted from its
// tar headers by ScanLayer.
type LayerUsage struct {
	TarBytes     int64 // the uncompressed stream's length
	Entries      int64 // inodes: everything but hard links and whiteouts
	Dirs         int64
	Files        int64
	FileBlocks   int64 // data blocks of regular files
	DirentBytes  int64 // directory entry bytes of every name
	LongSymlinks int64 // symlinks whose target needs a block
	XattrBlocks  int64 // inodes whose xattrs will not fit in the inode
}

// ScanLayer reads a layer's uncompressed tar stream to its end and counts
// what it needs in an image of bs-byte blocks. It counts data, not
// declared sizes: a file's blocks are bounded by the bytes the stream
// carries for it, a sparse entry's by the blocks its data fragments touch
// (so 100 GiB declared in a few bytes counts a block or two, and 20,000
// one-byte fragments 20,000 blocks and their extent tree), and
// directories a layer implies without listing them count like listed
// ones. Entry data is skipped, never read through tar (which would fill
// a sparse entry's holes with zeros).
func ScanLayer(ctx context.Context, r io.Reader, bs uint32) (LayerUsage, error) {
	var u LayerUsage
	// Every read checks ctx: skipping a huge entry's data is cancellable.
	cr := &ctxReader{ctx: ctx, r: r}
	// Entries as the applier reads them (sparse.go): a sparse entry's
	// map from its headers, its data skipped by the map.
	ts := newTarStream(cr, make([]byte, 64<<10))
	b := int64(bs)
	dirs := newPathSet()
	// pending is the declared data size of the previous file entry, whose
	// blocks are counted once the next header shows how many bytes of
	// the stream it took (its data, padding and the next headers: a
	// slight overcount).
	var pending int64 = -1
	last := int64(0)
	settle := func() {
		if pending >= 0 {
			took := cr.n - last
			u.FileBlocks = satAdd(u.FileBlocks, (min(pending, took)+b-1)/b)
			pending = -1
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return u, err
		}
		hdr, err := ts.next()
		settle()
		last = cr.n
		if err == io.EOF {
			break
		}
		if err != nil {
			return u, fmt.Errorf("reading tar: %w", err)
		}
		if err := ts.readSparseMap(hdr); err != nil {
			return u, fmt.Errorf("entry %q: %w", shortName(hdr.Name), err)
		}
		p := cleanPath(hdr.Name)
		if len(p) > MaxPathBytes {
			return u, fmt.Errorf("entry %q: path of %d bytes: longer than the %d bytes (PATH_MAX) a layer entry may name", shortName(hdr.Name), len(p), MaxPathBytes)
		}
		dir, base := path.Split(p)
		// Parents the layer does not list are made by the build all the
		// same: count them as directories (and a listed directory that
		// was one of them, once).
		d := path.Clean(dir)
		isDir := hdr.Typeflag == tar.TypeDir
		if isDir {
			d = p
		}
		newDir := false
		for _, end := range dirs.insert(d) {
			if isDir && end == len(p) {
				newDir = true // p itself: counted below
				break
			}
			u.Dirs++
			u.Entries++
			u.DirentBytes += int64(8+len(path.Base(d[:end]))+3) &^ 3
		}
		if strings.HasPrefix(base, layerWhiteoutPrefix) || p == "/" || (isDir && !newDir) {
			continue // a whiteout, the root, or a directory counted before
		}
		u.DirentBytes += int64(8+len(base)+3) &^ 3
		switch hdr.Typeflag {
		case tar.TypeLink:
			continue
		case tar.TypeDir:
			u.Dirs++
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
			u.Files++
			if ts.sp != nil {
				u.FileBlocks = satAdd(u.FileBlocks, sparseBlocks(ts.sp.frags, b))
			} else {
				pending = max(hdr.Size, 0)
			}
		case tar.TypeSymlink:
			if len(hdr.Linkname) >= 60 {
				u.LongSymlinks++
			}
		}
		u.Entries++
		xb := 0
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") || strings.HasPrefix(k, "LIBARCHIVE.xattr.") {
				xb += 16 + (len(k)+3)&^3 + (len(v)+3)&^3
			}
		}
		if xb > 80 {
			u.XattrBlocks++
		}
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return u, err
	}
	u.TarBytes = cr.n
	return u, nil
}

// satAdd adds non-negative counts without overflowing.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// clampToExt4 brings t into the range ext4's 256-byte inodes store
// (seconds -2^31 .. 2^34-2^31-1: 1901-12-13 to 2446-05-10).
func clampToExt4(t time.Time) time.Time {
	lo, hi := time.Unix(math.MinInt32, 0), time.Unix(1<<34-1<<31-1, 999999999)
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}

// Sizing policy: the layers' data and metadata blocks plus 20% and 16 MiB
// of slack, then the filesystem's own overhead (inode tables, journal,
// bitmaps and descriptors) on top.
const (
	estimateSlackPercent = 20
	estimateSlackBytes   = 16 << 20
	estimateMinBytes     = 32 << 20
)

// EstimateSize returns an image size (bytes, a whole number of MiB) and an
// inode ratio that hold the layers' content with slack. Layers are summed
// as if nothing were deleted or replaced, which only overestimates.
func EstimateSize(layers []LayerUsage, bs uint32) (size int64, inodeRatio uint64) {
	if bs == 0 {
		bs = 4096
	}
	b := int64(bs)
	var data, inodes int64
	for _, u := range layers {
		dirBlocks := u.Dirs + (u.DirentBytes+b*3/4-1)/(b*3/4) // htree leaves are ~3/4 full
		data += u.FileBlocks + dirBlocks + u.LongSymlinks + u.XattrBlocks
		inodes += u.Entries
	}
	data += data/64 + 64 // extent tree blocks, lost+found, fragmentation
	content := data * b
	content += content*estimateSlackPercent/100 + estimateSlackBytes
	wantInodes := inodes + inodes*estimateSlackPercent/100 + 1024

	size = content
	for i := 0; i < 4; i++ {
		blocks := size / b
		ratio := int64(16384)
		if size/ratio < wantInodes {
			ratio = max(b, size/wantInodes/1024*1024)
		}
		nInodes := size / ratio
		groups := (blocks + 8*b - 1) / (8 * b)
		overhead := nInodes*256 + int64(ext4edit.DefaultJournalBlocks(uint64(blocks)))*b + groups*(2*b+64) + 2*b
		next := content + overhead
		if next/b < wantInodes {
			// Even at one inode per block there are too few: grow.
			next = wantInodes*b + overhead
		}
		size = next
		inodeRatio = uint64(ratio)
	}
	size = max(size, estimateMinBytes)
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	if int64(inodeRatio) < b {
		inodeRatio = uint64(b)
	}
	return size, inodeRatio
}

// mke2fsInodeRatio is the bytes-per-inode mke2fs.conf gives a filesystem
// of size bytes: "floppy" below 3 MiB, "small" below 512 MiB, else the
// default.
func mke2fsInodeRatio(size int64) uint64 {
	switch {
	case size < 3<<20:
		return 8192
	case size < 512<<20:
		return 4096
	}
	return 16384
}
