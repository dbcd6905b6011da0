package imagepull

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"sort"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
)

// Ownership is the recorded owner and mode of one path.
type Ownership struct {
	UID, GID int
	// Mode holds the permission bits and fs.ModeSetuid, fs.ModeSetgid and
	// fs.ModeSticky; it is not applied to symlinks.
	Mode fs.FileMode
}

// OwnershipTable maps absolute, cleaned image paths ("/", "/etc/passwd")
// to their recorded ownership.
type OwnershipTable map[string]Ownership

// modeBits are the bits of an fs.FileMode that Ownership records.
const modeBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// MissingPathsError lists the table paths ApplyOwnership did not find in
// the image. errors.Is(err, fs.ErrNotExist) holds for it.
type MissingPathsError struct {
	Paths []string // sorted
}

// maxListed bounds how many paths Error spells out.
const maxListed = 50

func (e *MissingPathsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d recorded path", len(e.Paths))
	if len(e.Paths) != 1 {
		b.WriteString("s")
	}
	b.WriteString(" missing in the image: ")
	for i, p := range e.Paths {
		if i == maxListed {
			fmt.Fprintf(&b, " ... and %d more", len(e.Paths)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p)
	}
	return b.String()
}

func (e *MissingPathsError) Unwrap() error { return fs.ErrNotExist }

// ApplyOwnership sets the recorded uid, gid and mode on the paths of an
// image built elsewhere (by `mkfs.ext4 -d` from a rootless unpack, where
// every file belongs to the unpacking user). Paths are not followed at
// their last component (lchown semantics); symlinks get their owner only.
// Intermediate symlinks resolve inside the image. Paths already right are
// not touched. Paths the image lacks are collected and reported together
// in one *MissingPathsError after every present path has been applied.
// Like InjectGuestAgents it works in img's session; the caller commits.
func ApplyOwnership(img *ext4edit.Image, table OwnershipTable) error {
	keys := make([]string, 0, len(table))
	for p := range table {
		keys = append(keys, p)
	}
	sort.Strings(keys)
	var missing []string
	for _, p := range keys {
		o := table[p]
		if o.UID < 0 || o.GID < 0 || int64(o.UID) > math.MaxUint32 || int64(o.GID) > math.MaxUint32 {
			return fmt.Errorf("apply ownership: %s: uid/gid %d:%d out of range", p, o.UID, o.GID)
		}
		fi, err := img.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ext4edit.ErrNotDir) {
			missing = append(missing, p)
			continue
		}
		if err != nil {
			return fmt.Errorf("apply ownership: %w", err)
		}
		ii, ok := fi.Sys().(*ext4edit.InodeInfo)
		if !ok {
			return fmt.Errorf("apply ownership: %s: no inode information", p)
		}
		if int64(ii.UID) != int64(o.UID) || int64(ii.GID) != int64(o.GID) {
			if err := img.Lchown(p, o.UID, o.GID); err != nil {
				return fmt.Errorf("apply ownership: %w", err)
			}
		}
		if fi.Mode()&fs.ModeSymlink == 0 && fi.Mode()&modeBits != o.Mode&modeBits {
			if err := img.Chmod(p, o.Mode&modeBits); err != nil {
				return fmt.Errorf("apply ownership: %w", err)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("apply ownership: %w", &MissingPathsError{Paths: missing})
	}
	return nil
}

// Whiteout names of the OCI image layer format.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// OwnershipFromLayers reads the ownership recorded in image layers (tar
// streams, gzip-compressed or not, detected by their magic), lowest layer
// first. Later layers win; OCI whiteouts apply to the layers below theirs:
// DIR/.wh.NAME removes DIR/NAME and everything under it, DIR/.wh..wh..opq
// removes what lower layers put under DIR (DIR itself stays). Hard links
// and every other entry type are recorded under their own names.
func OwnershipFromLayers(layers ...io.Reader) (OwnershipTable, error) {
	table := OwnershipTable{}
	for i, layer := range layers {
		if err := readLayer(table, layer); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return table, nil
}

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// readLayer applies one layer to table.
func readLayer(table OwnershipTable, layer io.Reader) error {
	br := bufio.NewReader(layer)
	magic, _ := br.Peek(4)
	var src io.Reader = br
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer gz.Close()
		src = gz
	case bytes.HasPrefix(magic, zstdMagic):
		return errors.New("zstd-compressed layer: not supported (decompress it first)")
	}
	entries := OwnershipTable{}
	whiteouts := map[string]bool{}
	opaque := map[string]bool{}
	tr := tar.NewReader(src)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			// Read to the end so that gzip checks its trailer.
			if _, err := io.Copy(io.Discard, src); err != nil {
				return fmt.Errorf("after the tar end: %w", err)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeXGlobalHeader, tar.TypeXHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
			continue // folded into the next header by archive/tar
		}
		name := path.Clean("/" + hdr.Name)
		dir, base := path.Split(name)
		dir = path.Clean(dir)
		switch {
		case base == whiteoutOpaque:
			opaque[dir] = true
			continue
		case strings.HasPrefix(base, whiteoutPrefix):
			whiteouts[path.Join(dir, base[len(whiteoutPrefix):])] = true
			continue
		}
		if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > math.MaxUint32 || int64(hdr.Gid) > math.MaxUint32 {
			return fmt.Errorf("%s: uid/gid %d:%d out of range", hdr.Name, hdr.Uid, hdr.Gid)
		}
		entries[name] = Ownership{UID: hdr.Uid, GID: hdr.Gid, Mode: hdr.FileInfo().Mode() & modeBits}
	}
	if len(whiteouts) > 0 || len(opaque) > 0 {
		for p := range table {
			if removedBy(p, whiteouts, opaque) {
				delete(table, p)
			}
		}
	}
	for p, o := range entries {
		table[p] = o
	}
	return nil
}

// removedBy reports whether a lower layer's path p is hidden by a
// whiteout of p or an ancestor, or by an opaque marker in an ancestor.
func removedBy(p string, whiteouts, opaque map[string]bool) bool {
	if whiteouts[p] {
		return true
	}
	for d := p; d != "/"; {
		d = path.Dir(d)
		if opaque[d] || (d != "/" && whiteouts[d]) {
			return true
		}
	}
	return false
}
