package ext4edit_test

// Sparse files written through File.Hole and File.SetSparse, on the
// matrix's feature mixes (extents with metadata_csum, ext3 block maps,
// 1 KiB blocks ...), judged by e2fsck -fn, debugfs stat's block count and
// a byte-exact read back.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// hlVariant is a filesystem layout for the sparse tests: a matrix variant
// (its mkfs options, without the fixture tree, at size) or, with create,
// an image made by Create.
type hlVariant struct {
	name    string
	create  bool
	opts    []string
	extents bool
	bs      int
}

// hlVariants picks the matrix variants by name (mxVariants is the one
// table of feature mixes) plus the editor's own Create.
func hlVariants(t *testing.T, names ...string) []hlVariant {
	t.Helper()
	out := []hlVariant{{name: "create", create: true, extents: true, bs: 4096}}
	byName := map[string]*mxVariant{}
	for _, v := range mxVariants() {
		byName[v.name] = v
	}
	for _, n := range names {
		v, ok := byName[n]
		require.True(t, ok, "no matrix variant %q", n)
		// At 64 MiB mke2fs would pick its "small" 1 KiB blocks; the
		// matrix's 512 MiB bases get 4 KiB unless the variant says.
		bs, opts := 4096, v.opts
		if i := slices.Index(opts, "-b"); i >= 0 {
			bs, _ = strconv.Atoi(opts[i+1])
		} else {
			opts = append([]string{"-b", "4096"}, opts...)
		}
		out = append(out, hlVariant{name: n, opts: opts, extents: v.extents(), bs: bs})
	}
	return out
}

// image makes a fresh 64 MiB image of the variant and opens it.
func (v hlVariant) image(t *testing.T) (*ext4edit.Image, string) {
	t.Helper()
	dir := t.TempDir()
	if v.create {
		p := filepath.Join(dir, "img")
		img, err := ext4edit.Mkfs(p, 64<<20, &ext4edit.MkfsOptions{})
		require.NoError(t, err)
		return img, p
	}
	p := testimg.Mkfs(t, dir, "img", "64M", v.opts...)
	bs, _ := testimg.HeaderField(testimg.Dumpe2fs(t, p, true), "Block size")
	require.Equal(t, uint64(v.bs), bs, "block size of %s", v.name)
	img, err := ext4edit.Open(p, nil)
	require.NoError(t, err)
	return img, p
}

// hlSeg is a piece of a sparse file: data bytes, or a run of zeros
// meant to be a hole.
type hlSeg struct {
	hole bool
	n    int64
}

// hlPattern is data/hole/data/hole... in units of the block size bs: the
// data pieces start and end inside blocks, so Hole must buffer partial
// zeros as data, and the file ends in a whole-block hole.
func hlPattern(bs int64) []hlSeg {
	segs := []hlSeg{
		{false, bs + 904},
		{true, 3*bs + 100},
		{false, 2 * bs},
		{true, 10 * bs},
		{false, 7},
	}
	var end int64
	for _, s := range segs {
		end += s.n
	}
	// Up to the block boundary and 4 whole blocks more: the file ends in
	// a hole.
	return append(segs, hlSeg{true, (bs-end%bs)%bs + 4*bs})
}

// hlExpect returns the file's bytes and which of its blocks are
// allocated: every block except those lying wholly inside one hole
// piece.
func hlExpect(segs []hlSeg, bs int64) ([]byte, []bool) {
	var content []byte
	var holes [][2]int64
	for i, s := range segs {
		if s.hole {
			holes = append(holes, [2]int64{int64(len(content)), int64(len(content)) + s.n})
			content = append(content, make([]byte, s.n)...)
		} else {
			content = append(content, mxData(uint64(i+1), int(s.n))...)
		}
	}
	nblk := (int64(len(content)) + bs - 1) / bs
	alloc := make([]bool, nblk)
	for b := range alloc {
		alloc[b] = true
		for _, h := range holes {
			if int64(b)*bs >= h[0] && int64(b+1)*bs <= h[1] {
				alloc[b] = false
			}
		}
	}
	return content, alloc
}

// hlPointerBlocks counts the indirect blocks a block map needs for the
// allocated logical blocks: one per distinct pointer block on their paths.
func hlPointerBlocks(alloc []bool, bs int64) int {
	a := bs / 4
	seen := map[string]bool{}
	for l, ok := range alloc {
		if !ok {
			continue
		}
		lb := int64(l)
		switch {
		case lb < 12:
		case lb < 12+a:
			seen["ind"] = true
		case lb < 12+a+a*a:
			r := lb - 12 - a
			seen["dind"] = true
			seen[fmt.Sprint("dind/", r/a)] = true
		default:
			r := lb - 12 - a - a*a
			seen["tind"] = true
			seen[fmt.Sprint("tind/", r/(a*a))] = true
			seen[fmt.Sprint("tind/", r/(a*a), "/", r/a)] = true
		}
	}
	return len(seen)
}

var hlBlockcount = regexp.MustCompile(`Blockcount:\s+(\d+)`)

// hlStatBlocks returns debugfs stat's Blockcount (512-byte units).
func hlStatBlocks(t *testing.T, img, p string) uint64 {
	t.Helper()
	st := testimg.DebugfsStat(t, img, p)
	m := hlBlockcount.FindStringSubmatch(st.Raw)
	require.NotNil(t, m, "no Blockcount in debugfs stat %s:\n%s", p, st.Raw)
	n, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(t, err)
	return n
}

// onlyReader hides a reader's WriterTo, so io.Copy (or a direct call)
// goes through File.ReadFrom.
type onlyReader struct{ io.Reader }

func TestFileHoles(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "mke2fs")
	methods := []struct {
		name  string
		write func(f *ext4edit.File, segs []hlSeg, content []byte) error
	}{
		{"Hole", func(f *ext4edit.File, segs []hlSeg, content []byte) error {
			off := 0
			for _, s := range segs {
				if s.hole {
					if err := f.Hole(s.n); err != nil {
						return err
					}
				} else if _, err := f.Write(content[off : off+int(s.n)]); err != nil {
					return err
				}
				off += int(s.n)
			}
			return nil
		}},
		{"SetSparse-Write", func(f *ext4edit.File, _ []hlSeg, content []byte) error {
			f.SetSparse(true)
			// Odd-sized writes: the zero check must look at the file's
			// blocks, not at the caller's buffers.
			for off := 0; off < len(content); off += 3001 {
				if _, err := f.Write(content[off:min(off+3001, len(content))]); err != nil {
					return err
				}
			}
			return nil
		}},
		{"SetSparse-ReadFrom", func(f *ext4edit.File, _ []hlSeg, content []byte) error {
			f.SetSparse(true)
			n, err := f.ReadFrom(onlyReader{bytes.NewReader(content)})
			if err == nil && n != int64(len(content)) {
				err = fmt.Errorf("ReadFrom copied %d of %d bytes", n, len(content))
			}
			return err
		}},
	}
	for _, v := range hlVariants(t, "default", "b1024", "ext3", "ext2-b1024", "noextent", "i128") {
		for _, m := range methods {
			t.Run(v.name+"/"+m.name, func(t *testing.T) {
				img, p := v.image(t)
				bs := int64(v.bs)
				segs := hlPattern(bs)
				content, alloc := hlExpect(segs, bs)
				f, err := img.CreateExcl("/sparse", 0o644)
				require.NoError(t, err)
				require.NoError(t, m.write(f, segs, content))
				require.NoError(t, f.Close())
				// The same data written densely, for contrast.
				require.NoError(t, img.WriteFile("/dense", content, 0o644))

				got, err := img.ReadFile("/sparse")
				require.NoError(t, err)
				require.True(t, bytes.Equal(content, got), "ReadFile differs")
				got, err = fs.ReadFile(img.FS(), "sparse")
				require.NoError(t, err)
				require.True(t, bytes.Equal(content, got), "fs.ReadFile differs")
				fi, err := img.Stat("/sparse")
				require.NoError(t, err)
				require.Equal(t, int64(len(content)), fi.Size())
				require.NoError(t, img.Close())

				testimg.RequireClean(t, p)
				require.True(t, bytes.Equal(content, testimg.Cat(t, p, "/sparse")), "debugfs cat differs")
				data := 0
				for _, ok := range alloc {
					if ok {
						data++
					}
				}
				meta := 0 // at most 4 runs: the extent tree fits the inode
				if !v.extents {
					meta = hlPointerBlocks(alloc, bs)
				}
				// debugfs's blocks lists a block map's pointer blocks too.
				require.Len(t, testimg.DebugfsBlocks(t, p, "/sparse"), data+meta, "blocks")
				require.Equal(t, uint64(data+meta)*uint64(bs/512), hlStatBlocks(t, p, "/sparse"), "debugfs Blockcount")
				require.Less(t, hlStatBlocks(t, p, "/sparse"), hlStatBlocks(t, p, "/dense"))
				require.Equal(t, uint64(len(content)), testimg.DebugfsStat(t, p, "/sparse").Size)
			})
		}
	}
}

// TestFileHoleHuge writes a 100 GiB (and a 1 TiB) file that is one data
// block after a hole into a 64 MiB image: the hole costs nothing, the
// mapping a few blocks. A 1 KiB-block block map cannot reach 100 GiB and
// must say so before anything changes.
func TestFileHoleHuge(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "mke2fs")
	for _, v := range hlVariants(t, "default", "b1024", "ext3", "ext2-b1024") {
		for _, size := range []int64{100 << 30, 1 << 40} {
			t.Run(fmt.Sprintf("%s/%dGiB", v.name, size>>30), func(t *testing.T) {
				img, p := v.image(t)
				bs := int64(v.bs)
				last := mxData(5, v.bs)
				fits := v.extents || (v.bs == 4096 && size <= 2<<40)
				start := time.Now()
				f, err := img.CreateExcl("/huge", 0o644)
				require.NoError(t, err)
				err = f.Hole(size - bs)
				if !fits {
					require.ErrorIs(t, err, ext4edit.ErrFileTooLarge)
					var pe *fs.PathError
					require.True(t, errors.As(err, &pe), "%T is not a *fs.PathError", err)
					require.NoError(t, f.Close())
					fi, err := img.Stat("/huge")
					require.NoError(t, err)
					require.Zero(t, fi.Size())
					require.NoError(t, img.Close())
					testimg.RequireClean(t, p)
					return
				}
				require.NoError(t, err)
				_, err = f.Write(last)
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.NoError(t, img.Close())
				took := time.Since(start)
				t.Logf("%s: %d-byte sparse file written and committed in %v", v.name, size, took)
				require.Less(t, took, 500*time.Millisecond)

				testimg.RequireClean(t, p)
				st := testimg.DebugfsStat(t, p, "/huge")
				require.Equal(t, uint64(size), st.Size)
				meta := 0
				if !v.extents {
					alloc := make([]bool, size/bs)
					alloc[len(alloc)-1] = true
					meta = hlPointerBlocks(alloc, bs)
				}
				require.Equal(t, uint64(1+meta)*uint64(bs/512), hlStatBlocks(t, p, "/huge"))

				ro, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
				require.NoError(t, err)
				defer ro.Close()
				fh, err := ro.FS().Open("huge")
				require.NoError(t, err)
				defer fh.Close()
				ra := fh.(io.ReaderAt)
				buf := make([]byte, 2*bs)
				n, err := ra.ReadAt(buf, size-2*bs)
				require.True(t, err == nil || err == io.EOF, "%v", err)
				require.Equal(t, int(2*bs), n)
				require.Equal(t, make([]byte, bs), buf[:bs], "the hole reads as zeros")
				require.Equal(t, last, buf[bs:])
			})
		}
	}
}

// TestFileHoleLimits: a file may reach exactly the largest size its
// mapping allows (ext4's s_maxbytes), with its last block mapped; one
// byte more fails with ErrFileTooLarge, through Hole and through Write,
// and leaves the file as it was.
func TestFileHoleLimits(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "mke2fs")
	for _, v := range hlVariants(t, "ext3", "b1024", "ext2-b1024") {
		t.Run(v.name, func(t *testing.T) {
			img, p := v.image(t)
			bs := int64(v.bs)
			max := hlMaxSize(t, p, v)
			f, err := img.CreateExcl("/max", 0o644)
			require.NoError(t, err)
			require.NoError(t, f.Hole(max-bs))
			require.ErrorIs(t, f.Hole(bs+1), ext4edit.ErrFileTooLarge)
			_, err = f.Write(make([]byte, bs+1))
			require.ErrorIs(t, err, ext4edit.ErrFileTooLarge)
			_, err = f.Write(mxData(9, int(bs)))
			require.NoError(t, err)
			require.ErrorIs(t, f.Hole(1), ext4edit.ErrFileTooLarge)
			_, err = f.Write([]byte{1})
			require.ErrorIs(t, err, ext4edit.ErrFileTooLarge)
			require.NoError(t, f.Close())
			require.NoError(t, img.Close())
			testimg.RequireClean(t, p)
			require.Equal(t, uint64(max), testimg.DebugfsStat(t, p, "/max").Size)
			meta := 0
			if !v.extents {
				meta = 3 // the last block is under triple indirection
			}
			require.Len(t, testimg.DebugfsBlocks(t, p, "/max"), 1+meta)
		})
	}
}

// hlMaxSize is the kernel's s_maxbytes for the variant, computed here
// from the formulas of fs/ext4/super.c (ext4_max_size,
// ext4_max_bitmap_size) with the image's huge_file feature.
func hlMaxSize(t *testing.T, img string, v hlVariant) int64 {
	t.Helper()
	huge := bytes.Contains([]byte(testimg.Dumpe2fs(t, img, true)), []byte("huge_file"))
	bits := int64(10)
	for 1<<bits < v.bs {
		bits++
	}
	if v.extents {
		res := int64(1<<32-1) << bits
		if !huge {
			res = min(res, int64(1<<32-1)>>(bits-9)<<bits)
		}
		return res
	}
	ppb := int64(v.bs / 4)
	upper := int64(1<<48 - 1)
	if !huge {
		upper = int64(1<<32-1) >> (bits - 9)
	}
	// ext4_max_bitmap_size, transcribed.
	res := 12 + ppb + ppb*ppb + ppb*ppb*ppb
	meta := 1 + (1 + ppb) + (1 + ppb + ppb*ppb)
	if res+meta <= upper {
		return res << bits
	}
	res = upper
	upper -= 12 + ppb
	meta = 1
	if upper < ppb*ppb {
		meta += 1 + (upper+ppb-1)/ppb
	} else {
		meta += 1 + ppb
		upper -= ppb * ppb
		meta += 1 + (upper+ppb-1)/ppb + (upper+ppb*ppb-1)/(ppb*ppb)
	}
	return (res - meta) << bits
}
