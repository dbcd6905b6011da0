package imagepull

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// Sparse entries are copied from the stream by their map, never through
// archive/tar's zero fill (sparse.go).

// hostSparse is a sparse host file: size bytes, data at the offsets.
type hostSparse struct {
	name string
	size int64
	data map[int64]string
}

// write makes the file under dir, a hole wherever no data is.
func (h hostSparse) write(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, h.name)
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(h.size))
	for off, d := range h.data {
		_, err := f.WriteAt([]byte(d), off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	return p
}

// requireSparseContent checks the image's copy of h: its size, every data
// range and the blocks around it byte for byte against the host file,
// zeros at a few hole offsets, and no more allocated than maxAlloc.
func requireSparseContent(t testing.TB, img *ext4edit.Image, name, host string, h hostSparse, maxAlloc int64) {
	t.Helper()
	fi, err := img.Stat(name)
	require.NoError(t, err)
	require.Equal(t, h.size, fi.Size(), name)
	require.Less(t, int64(fi.Sys().(*ext4edit.InodeInfo).Blocks)*512, maxAlloc, "%s: holes were allocated", name)
	f, err := img.FS().Open(strings.TrimPrefix(name, "/"))
	require.NoError(t, err)
	defer f.Close()
	ra := f.(io.ReaderAt)
	hf, err := os.Open(host)
	require.NoError(t, err)
	defer hf.Close()
	check := func(off, n int64) {
		off = max(0, off)
		n = min(n, h.size-off)
		if n <= 0 {
			return
		}
		want, got := make([]byte, n), make([]byte, n)
		_, err := hf.ReadAt(want, off)
		require.NoError(t, err)
		_, err = ra.ReadAt(got, off)
		if err == io.EOF && off+n == h.size {
			err = nil
		}
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "%s: %d bytes at %d differ", name, n, off)
	}
	for off, d := range h.data {
		// The data and the 8 KiB around it (the block it shares with zeros).
		check(off&^4095-4096, int64(len(d))+12288)
	}
	for _, off := range []int64{h.size / 3, h.size / 2, h.size - 1} {
		check(off, 1)
	}
}

// Archives GNU tar makes of sparse host files, in each sparse format, with
// plain entries around them: the images hold the files with their holes.
func TestSparseGNUTar(t *testing.T) {
	testimg.Require(t, "e2fsck")
	out, err := exec.Command("tar", "--version").Output()
	if err != nil || !bytes.Contains(out, []byte("GNU tar")) {
		t.Skipf("tar on PATH is not GNU tar (%v): the sparse formats are GNU tar's", err)
	}
	const g = 1 << 30
	many := map[int64]string{}
	for i := int64(0); i < 150; i++ {
		// Enough fragments for old GNU extension blocks and a PAX 1.0 map
		// of several blocks.
		many[i<<20+i*7] = fmt.Sprintf("fragment %d", i)
	}
	files := []hostSparse{
		{"a", 8 * g, map[int64]string{0: strings.Repeat("head", 1000), 12_345_677: "unaligned", 3 * g: strings.Repeat("x", 9000), 8*g - 8: "the end!"}},
		{"b", 8 * g, map[int64]string{0: "start", 5_000_001: "odd"}}, // ends in a hole
		{"c", 160 << 20, many},
		{"d", 1 << 20, nil}, // all hole
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	require.NoError(t, os.Mkdir(src, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "before"), []byte("before the sparse files\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "after"), bytes.Repeat([]byte("after "), 1000), 0o644))
	names := []string{"before"}
	for _, h := range files {
		h.write(t, src)
		names = append(names, h.name)
	}
	names = append(names, "after")
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"old GNU", []string{"--format=gnu"}},
		{"PAX 0.0", []string{"--format=posix", "--sparse-version=0.0"}},
		{"PAX 0.1", []string{"--format=posix", "--sparse-version=0.1"}},
		{"PAX 1.0", []string{"--format=posix", "--sparse-version=1.0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			arch := filepath.Join(t.TempDir(), "layer.tar")
			args := append([]string{"-c", "--sparse", "-f", arch, "-C", src}, c.flags...)
			cmd := exec.Command("tar", append(args, names...)...)
			o, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", o)
			layer, err := os.ReadFile(arch)
			require.NoError(t, err)
			require.Less(t, len(layer), 1<<20, "GNU tar did not make the files sparse")
			kinds := sparseKinds(t, layer)
			for _, h := range files[:3] {
				require.NotEqual(t, sparseNone, kinds[h.name], "%s: GNU tar wrote %s as a plain file", c.name, h.name)
			}
			start := time.Now()
			p := build(t, BuildOptions{Size: 512 << 20}, layer)
			t.Logf("%s: %d-byte layer built and checked in %v", c.name, len(layer), time.Since(start))
			img := openRO(t, p)
			for _, h := range files {
				requireSparseContent(t, img, "/"+h.name, filepath.Join(src, h.name), h, 2<<20)
			}
			for _, n := range []string{"before", "after"} {
				want, err := os.ReadFile(filepath.Join(src, n))
				require.NoError(t, err)
				got, err := img.ReadFile("/" + n)
				require.NoError(t, err)
				require.Equal(t, want, got, n)
			}
		})
	}
}

// sparseKinds maps each entry of a tar stream to its sparse format as
// archive/tar reads it.
func sparseKinds(t testing.TB, layer []byte) map[string]int {
	t.Helper()
	out := map[string]int{}
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out[hdr.Name] = sparseKind(hdr)
	}
}

// bestOf3 is the shortest of three runs of f.
func bestOf3(f func()) time.Duration {
	b := time.Duration(1 << 62)
	for i := 0; i < 3; i++ {
		start := time.Now()
		f()
		b = min(b, time.Since(start))
	}
	return b
}

// A layer of a few hundred bytes declaring a huge sparse file builds, and
// pulls, in time that does not grow with what it declares: its holes are
// never zero-filled (archive/tar's fill took 10 s per TiB). Best of three:
// the machine is shared.
func TestSparseHugeTiming(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
	}{{"100 GiB", 100 << 30}, {"1 TiB", 1 << 40}, {"16 TiB - 4 KiB", 16<<40 - 4096}} {
		t.Run(c.name, func(t *testing.T) {
			layer := testimg.TarOf(t, testimg.SparseFile("var/log/lastlog", c.size, map[int64]string{0: "head", c.size/2 + 1: "middle", c.size - 4: "tail"}), testimg.File("after", "intact"))
			for _, size := range []int64{0, 256 << 20} { // 0: the sizing scan too
				took := bestOf3(func() {
					img, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(layer), BuildOptions{Size: size})
					require.NoError(t, err)
					require.NoError(t, img.Close())
				})
				t.Logf("%s: build (size %d): %v", c.name, size, took)
				require.Less(t, took, time.Second)
			}
			src := "oci:" + testimg.RawOCILayout(t, []RawLayer{{Blob: gzipOf(t, layer), Tar: layer}}, nil)
			var out string
			took := bestOf3(func() {
				var err error
				out, _, err = pullInto(t, src, PullOptions{})
				require.NoError(t, err)
			})
			t.Logf("%s: whole pull: %v", c.name, took)
			require.Less(t, took, time.Second)
			rootfs := filepath.Join(out, RootfsName)
			testimg.RequireClean(t, rootfs)
			img := openRO(t, rootfs)
			b, err := img.ReadFile("/after")
			require.NoError(t, err)
			require.Equal(t, "intact", string(b))
			f, err := img.FS().Open("var/log/lastlog")
			require.NoError(t, err)
			defer f.Close()
			ra := f.(io.ReaderAt)
			for off, want := range map[int64]string{0: "head", c.size/2 + 1: "middle", c.size - 4: "tail", c.size / 4: "\x00\x00\x00\x00"} {
				got := make([]byte, len(want))
				_, err := ra.ReadAt(got, off)
				if err == io.EOF {
					err = nil
				}
				require.NoError(t, err)
				require.Equal(t, want, string(got), "at %d", off)
			}
		})
	}
}

// Sparse entries that are not copied (whiteouts, the root, unknown types)
// have their data skipped without a zero fill, and the entries after them
// are read in step; a long chain of special headers ahead of a sparse
// entry is walked without keeping it.
func TestSparseSkippedAndLongChain(t *testing.T) {
	testimg.Require(t, "e2fsck")
	const huge = 1 << 40
	sp := func(name string) testimg.TarEntry {
		return testimg.SparseFile(name, huge, map[int64]string{7: "data"})
	}
	odd := sp("odd")
	odd.Hdr.Typeflag = 'Z'
	root := sp(".")
	// Three 1 MiB PAX headers (archive/tar keeps the last) before the
	// sparse entry's own.
	var chain []byte
	for i := 0; i < 3; i++ {
		chain = append(chain, testimg.PAXBlock(map[string]string{"comment": strings.Repeat("c", 1<<20-64)})...)
	}
	long := sp("long")
	long.Raw = append(chain, long.Raw...)
	layer1 := testimg.TarOf(t, testimg.File("x", "lower"))
	layer2 := testimg.TarOf(t, sp(".wh.x"), testimg.File("a", "after whiteout"), odd, testimg.File("b", "after odd"), root, testimg.File("c", "after root"), long, testimg.File("d", "after long"))
	var w warnings
	start := time.Now()
	p := build(t, BuildOptions{Size: 64 << 20, Warnf: w.f}, layer1, layer2)
	t.Logf("built in %v", time.Since(start))
	require.Less(t, time.Since(start), 5*time.Second)
	img := openRO(t, p)
	_, err := img.Lstat("/x")
	require.ErrorIs(t, err, os.ErrNotExist)
	for n, want := range map[string]string{"/a": "after whiteout", "/b": "after odd", "/c": "after root", "/d": "after long"} {
		b, err := img.ReadFile(n)
		require.NoError(t, err)
		require.Equal(t, want, string(b))
	}
	fi, err := img.Stat("/long")
	require.NoError(t, err)
	require.EqualValues(t, huge, fi.Size())
	b := make([]byte, 11)
	f, err := img.FS().Open("long")
	require.NoError(t, err)
	defer f.Close()
	_, err = f.(io.ReaderAt).ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "\x00\x00\x00\x00\x00\x00\x00data", string(b))
	require.True(t, w.has("unsupported"), "%v", w.msgs)
}

// sparsePAX is a GNU PAX sparse entry of the given data section, with the
// GNU.sparse records given, as they are.
func sparsePAX(name string, body []byte, records map[string]string) testimg.TarEntry {
	records["GNU.sparse.name"] = name
	return testimg.TarEntry{
		Hdr:  tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/" + name, Mode: 0o644, Format: tar.FormatUSTAR},
		Body: body,
		Raw:  testimg.PAXBlock(records),
	}
}

// sparse10 is a GNU PAX 1.0 sparse entry with the map text and data given
// as they are (physical size: the map blocks and data).
func sparse10(name string, realsize int64, m string, data []byte) testimg.TarEntry {
	body := []byte(m)
	body = append(body, make([]byte, padding(int64(len(body))))...)
	return sparsePAX(name, append(body, data...), map[string]string{
		"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": strconv.FormatInt(realsize, 10),
	})
}

// sparse01 is a GNU PAX 0.1 sparse entry with the map given as it is.
func sparse01(name string, realsize int64, m string, n int, data []byte) testimg.TarEntry {
	return sparsePAX(name, data, map[string]string{
		"GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.size": strconv.FormatInt(realsize, 10),
		"GNU.sparse.map": m, "GNU.sparse.numblocks": strconv.Itoa(n),
	})
}

// oldGNU is an old GNU sparse ('S') header block: data bytes of data, the
// file realsize bytes, the entries in the header (up to 4) and the
// extension flag as given; ext are extension blocks to follow it.
func oldGNU(name string, realsize, data int64, ents [][2]int64, ext byte) []byte {
	b := tarHeader(name, tar.TypeGNUSparse, data, "ustar  \x00")
	for i, e := range ents {
		copy(b[386+24*i:], fmt.Sprintf("%011o\x00%011o\x00", e[0], e[1]))
	}
	b[482] = ext
	copy(b[483:], fmt.Sprintf("%011o\x00", realsize))
	tarChecksum(b)
	return b
}

// tarHeader is a header block of the given type, data size and magic
// ("ustar\x0000": USTAR; "ustar  \x00": GNU).
func tarHeader(name string, typ byte, size int64, magic string) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "14000000000\x00")
	b[156] = typ
	copy(b[257:], magic)
	tarChecksum(b)
	return b
}

// gnuExt is an old GNU sparse extension block.
func gnuExt(ents [][2]int64, ext byte) []byte {
	b := make([]byte, 512)
	for i, e := range ents {
		copy(b[24*i:], fmt.Sprintf("%011o\x00%011o\x00", e[0], e[1]))
	}
	b[504] = ext
	return b
}

func tarChecksum(b []byte) {
	copy(b[148:], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
}

// blocks pads b to whole blocks.
func blocks(b ...[]byte) []byte {
	out := bytes.Join(b, nil)
	return append(out, make([]byte, padding(int64(len(out))))...)
}

// Hostile sparse maps fail the build, naming the layer, and the entry
// wherever archive/tar returned it: maps archive/tar's own checks refuse
// in Next (overlapping, out of order, past the size, a count larger than
// any map, a missing extension block), and those it would only notice
// while reading, which are now refused before anything is written (data
// that is not the fragments' sum, data cut short).
func TestSparseHostileMaps(t *testing.T) {
	after := testimg.File("after", "x")
	data := func(n int) []byte { return bytes.Repeat([]byte{'d'}, n) }
	cases := []struct {
		name  string
		layer []byte
		entry string // "": refused by archive/tar's Next
		want  string
	}{
		{"1.0 overlapping", testimg.TarOf(t, sparse10("f", 100, "2\n0\n10\n5\n10\n", data(20)), after), "", "invalid tar header"},
		{"1.0 out of order", testimg.TarOf(t, sparse10("f", 100, "2\n50\n10\n0\n10\n", data(20)), after), "", "invalid tar header"},
		{"1.0 beyond realsize", testimg.TarOf(t, sparse10("f", 100, "1\n95\n10\n", data(10)), after), "", "invalid tar header"},
		{"1.0 offset+length overflows", testimg.TarOf(t, sparse10("f", 100, "1\n9223372036854775800\n10\n", data(10)), after), "", "invalid tar header"},
		{"1.0 huge count", testimg.TarOf(t, sparse10("f", 100, "9223372036854775807\n0\n10\n", data(10)), after), "", "reading tar"},
		{"1.0 count past the map", testimg.TarOf(t, sparse10("f", 100, "1000\n0\n10\n", data(10)), after), "", "reading tar"},
		{"1.0 sum below data", testimg.TarOf(t, sparse10("f", 100, "1\n0\n10\n", data(20)), after), "f", "fragments hold 10 bytes, the data section 20"},
		{"1.0 sum above data", testimg.TarOf(t, sparse10("f", 100, "2\n0\n10\n50\n10\n", data(10)), after), "f", "more than the 10 data bytes"},
		{"0.1 sum below data", testimg.TarOf(t, sparse01("f", 100, "0,10", 1, data(30)), after), "f", "fragments hold 10 bytes, the data section 30"},
		{"0.1 overlapping", testimg.TarOf(t, sparse01("f", 100, "0,10,5,10", 2, data(20)), after), "", "invalid tar header"},
		{"1.0 data cut short", testimg.TarOf(t, sparse10("f", 1<<40, "1\n0\n100000\n", data(100000)))[:512*3+5000], "f", "unexpected EOF"},
		{"old GNU data cut short", blocks(oldGNU("f", 1<<30, 100000, [][2]int64{{0, 100000}}, 0), data(5000)), "f", "unexpected EOF"},
		{"old GNU sum below data", blocks(oldGNU("f", 1<<30, 1000, [][2]int64{{0, 100}}, 0), data(1000), make([]byte, 1024)), "f", "fragments hold 100 bytes, the data section 1000"},
		{"old GNU overlapping", blocks(oldGNU("f", 1<<30, 20, [][2]int64{{0, 10}, {5, 10}}, 0), data(20), make([]byte, 1024)), "", "invalid tar header"},
		{"old GNU beyond realsize", blocks(oldGNU("f", 100, 20, [][2]int64{{95, 20}}, 0), data(20), make([]byte, 1024)), "", "invalid tar header"},
		{"old GNU extension flag, stream ends", oldGNU("f", 1<<30, 10, [][2]int64{{0, 10}}, 1), "", "unexpected EOF"},
		{"old GNU extension flag, data follows", blocks(oldGNU("f", 1<<30, 10, [][2]int64{{0, 10}}, 1), data(10), make([]byte, 1024)), "", "invalid tar header"},
		{"old GNU extension overlapping", blocks(oldGNU("f", 1<<30, 20, [][2]int64{{0, 10}}, 1), gnuExt([][2]int64{{5, 10}}, 0), data(20), make([]byte, 1024)), "", "invalid tar header"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range []int64{0, 64 << 20} {
				_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(c.layer), BuildOptions{Size: size})
				require.Error(t, err, "size %d: the layer was applied", size)
				if size == 0 && c.entry != "" {
					// The sizing scan reads no data: the build refuses it.
					continue
				}
				var le *LayerError
				require.True(t, errors.As(err, &le), "size %d: %v", size, err)
				require.Equal(t, 1, le.Layer)
				require.Equal(t, c.entry, le.Entry, "%v", err)
				require.Contains(t, err.Error(), c.want)
			}
		})
	}
}

// The cross-checks between the map parsed from the tape and archive/tar's
// reading of the same bytes: any disagreement refuses the entry.
func TestSparseCrossCheck(t *testing.T) {
	layer := testimg.TarOf(t, testimg.SparseFile("f", 1<<30, map[int64]string{0: "a", 4096: "b"}))
	next := func() (*tape, *tar.Header) {
		var tp tape
		cr := &ctxReader{ctx: context.Background(), r: bytes.NewReader(layer), tape: &tp}
		tp.reset(0)
		hdr, err := tar.NewReader(cr).Next()
		require.NoError(t, err)
		require.Equal(t, sparsePAX10, sparseKind(hdr))
		return &tp, hdr
	}
	tp, hdr := next()
	sp, err := tp.sparseMap(hdr, sparsePAX10)
	require.NoError(t, err)
	require.Equal(t, []sparseFrag{{0, 1}, {4096, 1}}, sp.frags)
	require.EqualValues(t, 1<<30, sp.size)
	require.EqualValues(t, 2, sp.left)
	require.EqualValues(t, 510, sp.pad)

	for _, c := range []struct {
		name string
		mut  func(*tape, *tar.Header) int
		want string
	}{
		{"size", func(_ *tape, h *tar.Header) int { h.Size++; return sparsePAX10 }, "archive/tar says"},
		{"tar read further", func(tp *tape, _ *tar.Header) int { tp.add(make([]byte, 512)); return sparsePAX10 }, "archive/tar read to"},
		{"tar read less", func(tp *tape, _ *tar.Header) int {
			tp.buf = tp.buf[:len(tp.buf)-512]
			tp.end -= 512
			return sparsePAX10
		}, "runs past what archive/tar read"},
		{"format", func(_ *tape, _ *tar.Header) int { return sparsePAX0 }, "read 512 bytes past the header"},
		{"type", func(_ *tape, h *tar.Header) int { h.Typeflag = tar.TypeGNUSparse; return sparseOld }, "header type"},
		{"chain cut", func(tp *tape, _ *tar.Header) int {
			tp.start += 512
			tp.buf = tp.buf[512:]
			tp.next = tp.start
			return sparsePAX10
		}, "not where"},
		{"header moved", func(tp *tape, _ *tar.Header) int { tp.buf[1024+100]++; return sparsePAX10 }, "not where"},
		{"tape overflowed", func(tp *tape, _ *tar.Header) int { tp.err = errors.New("overflow"); return sparsePAX10 }, "overflow"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tp, hdr := next()
			kind := c.mut(tp, hdr)
			_, err := tp.sparseMap(hdr, kind)
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

// endless is an endless stream of 0xa5 bytes.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xa5
	}
	return len(p), nil
}

// Cancelling a build stops it inside a huge sparse entry's data, in the
// sizing scan (Size 0) and in the build.
func TestSparseCancelWithinEntry(t *testing.T) {
	const data = 1 << 40
	m := []byte("1\n4096\n" + strconv.Itoa(data) + "\n")
	m = append(m, make([]byte, padding(int64(len(m))))...)
	// The data section's size (past USTAR's 8 GiB) is in a PAX record.
	head := append(testimg.PAXBlock(map[string]string{
		"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "big",
		"GNU.sparse.realsize": strconv.Itoa(2 * data), "size": strconv.Itoa(len(m) + data),
	}), tarHeader("GNUSparseFile.0/big", tar.TypeReg, 0, "ustar\x0000")...)
	head = append(head, m...)
	for _, size := range []int64{0, 4 << 30} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			src := []LayerSource{{Digest: "endless", Open: func() (io.ReadCloser, error) {
				return io.NopCloser(io.MultiReader(bytes.NewReader(head), endless{})), nil
			}}}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, _, err := BuildExt4(ctx, filepath.Join(t.TempDir(), "img"), src, BuildOptions{Size: size})
			took := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Less(t, took, 3*time.Second, "cancellation not honoured within the entry")
		})
	}
}

// parseNumeric reads tar numbers as archive/tar does.
func TestSparseParseNumeric(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"00000001750\x00", 1000, true},
		{"  1750  \x00\x00", 1000, true},
		{"\x00\x00\x00", 0, true},
		{"17\x0050", 15, true},
		{"9", 0, false},
		{"\x80\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00", 2 << 32, true},
		{"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", -1, true},
		{"\x80\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 0, false},
		{"\x80\x00\x00\x00\x80\x00\x00\x00\x00\x00\x00\x00", 0, false},
	} {
		got, ok := parseNumeric([]byte(c.in))
		require.Equal(t, c.ok, ok, "%q", c.in)
		if ok {
			require.Equal(t, c.want, got, "%q", c.in)
		}
	}
}

// chunked returns at most n bytes per Read.
type chunked struct {
	r io.Reader
	n int
}

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// The tape finds the entry's header and map behind a chain of special
// headers longer than it keeps, whatever sizes the stream's reads come in.
func TestSparseTapeChunks(t *testing.T) {
	// Three 1 MiB PAX headers, or 4000 small ones (archive/tar keeps the
	// last).
	var big, small []byte
	for i := 0; i < 3; i++ {
		big = append(big, testimg.PAXBlock(map[string]string{"comment": strings.Repeat("c", 1<<20-64-i)})...)
	}
	for i := 0; i < 4000; i++ {
		small = append(small, testimg.PAXBlock(map[string]string{"comment": strings.Repeat("c", i%700)})...)
	}
	many := map[int64]string{}
	for i := int64(0); i < 200; i++ {
		many[i*4096+i] = "z"
	}
	for _, c := range []struct {
		chain []byte
		n     int
	}{{big, 1}, {big, 511}, {big, 777}, {big, 1 << 20}, {small, 1}, {small, 777}, {small, 4096}} {
		e := testimg.SparseFile("f", 1<<30, many)
		e.Raw = append(append([]byte{}, c.chain...), e.Raw...)
		layer := testimg.TarOf(t, testimg.File("first", "1"), e)
		n := c.n
		var tp tape
		cr := &ctxReader{ctx: context.Background(), r: chunked{bytes.NewReader(layer), n}}
		tr := tar.NewReader(cr)
		_, err := tr.Next()
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, tr)
		require.NoError(t, err)
		tp.reset(cr.n)
		cr.tape = &tp
		hdr, err := tr.Next()
		require.NoError(t, err)
		sp, err := tp.sparseMap(hdr, sparseKind(hdr))
		require.NoError(t, err, "reads of %d bytes", n)
		require.Len(t, sp.frags, 200)
		require.EqualValues(t, 200, sp.left)
		require.LessOrEqual(t, cap(tp.buf), 2*tapeMax, "reads of %d bytes", n)
	}
}
