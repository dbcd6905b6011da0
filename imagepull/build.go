package imagepull

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
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
	// Size of the image in bytes. Zero: estimated from the layers
	// (EstimateSize over a scan of every layer).
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
	// Warnf receives notes on entries that were skipped or changed
	// (unsupported xattr namespaces, unknown entry types). Nil discards.
	Warnf func(format string, args ...any)
}

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
	// Size is the image size in bytes; Estimated says BuildExt4 chose it.
	Size       int64
	InodeRatio uint64
	Estimated  bool
}

// syncEvery bounds the editor's dirty set: the image is committed after
// this many entries, so memory stays flat however big the image.
const syncEvery = 1 << 16

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
	bs := opts.BlockSize
	if bs == 0 {
		bs = 4096
	}
	st := &BuildStats{Size: opts.Size, InodeRatio: opts.InodeRatio}
	if st.Size == 0 {
		var usage []LayerUsage
		for i, l := range layers {
			u, err := scanSource(ctx, l, bs)
			if err != nil {
				return nil, nil, &LayerError{Layer: i + 1, Digest: l.Digest, Err: fmt.Errorf("sizing: %w", err)}
			}
			usage = append(usage, u)
		}
		size, ratio := EstimateSize(usage, bs)
		st.Size, st.Estimated = size, true
		if st.InodeRatio == 0 {
			st.InodeRatio = ratio
		}
	}
	if st.InodeRatio == 0 {
		st.InodeRatio = mke2fsInodeRatio(st.Size)
	}
	t := opts.Time
	if t.IsZero() {
		t = time.Unix(1, 0)
	}
	clock := t
	img, err := ext4edit.Create(imgPath, st.Size, &ext4edit.CreateOptions{
		BlockSize:  bs,
		InodeRatio: st.InodeRatio,
		Label:      opts.Label,
		Seed:       opts.Seed,
		Time:       t,
		NoJournal:  opts.NoJournal,
		// The file is new, private until the caller publishes it after
		// Close, and removed on any error: no rollback of failed edits
		// and no crash-safe commits until then, one flush at Close.
		Open: ext4edit.Options{Now: func() time.Time { return clock }, NoUndo: true, Scratch: true},
	})
	if err != nil {
		return nil, nil, err
	}
	a := newApplier(img, opts.Warnf, &clock, t)
	fail := func(err error) (*ext4edit.Image, *BuildStats, error) {
		_ = img.Close()
		_ = os.Remove(imgPath)
		if errors.Is(err, ext4edit.ErrNoSpace) {
			how := "give a larger size"
			if st.Estimated {
				how = "the estimate was short: give a size"
			}
			err = fmt.Errorf("image of %d bytes is too small for the layers (%s): %w", st.Size, how, err)
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
		err = a.applyLayer(ctx, i+1, l.Digest, rc)
		if cerr := rc.Close(); err == nil && cerr != nil {
			err = &LayerError{Layer: i + 1, Digest: l.Digest, Err: cerr}
		}
		if err != nil {
			return fail(err)
		}
	}
	if err := a.finish(); err != nil {
		return fail(err)
	}
	a.stats.Size, a.stats.InodeRatio, a.stats.Estimated = st.Size, st.InodeRatio, st.Estimated
	return img, &a.stats, nil
}

func scanSource(ctx context.Context, l LayerSource, bs uint32) (LayerUsage, error) {
	rc, err := l.Open()
	if err != nil {
		return LayerUsage{}, err
	}
	u, err := ScanLayer(ctx, rc, bs)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	return u, err
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
// what it needs in an image of bs-byte blocks.
func ScanLayer(ctx context.Context, r io.Reader, bs uint32) (LayerUsage, error) {
	var u LayerUsage
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	b := int64(bs)
	for {
		if err := ctx.Err(); err != nil {
			return u, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u, fmt.Errorf("reading tar: %w", err)
		}
		base := path.Base(cleanPath(hdr.Name))
		if strings.HasPrefix(base, layerWhiteoutPrefix) {
			continue
		}
		u.DirentBytes += int64(8+len(base)+3) &^ 3
		switch hdr.Typeflag {
		case tar.TypeLink:
			continue
		case tar.TypeDir:
			u.Dirs++
		case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
			u.Files++
			u.FileBlocks += (hdr.Size + b - 1) / b
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

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
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
