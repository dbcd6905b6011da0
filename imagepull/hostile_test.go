package imagepull

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// Regression tests for hostile layers, layouts and archives: each case is
// made here from its recipe (no blobs without one).

// passwdLayer is the layer an attacker wants applied: a passwordless root.
func passwdLayer(t testing.TB) []byte {
	return tarOf(t, tDir("etc/", 0o755), tFile("etc/passwd", "root::0:0:root:/root:/bin/sh\n", 0o644))
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return out.Bytes()
}

func zstdOf(t testing.TB, b []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, append([]zstd.EOption{zstd.WithEncoderCRC(true)}, opts...)...)
	require.NoError(t, err)
	_, err = zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return out.Bytes()
}

// pullInto pulls source into a new OUTDIR without the guest agents and
// returns OUTDIR and Pull's error.
func pullInto(t testing.TB, source string, opts PullOptions) (string, *PullResult, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	res, err := Pull(context.Background(), source, out, opts)
	return out, res, err
}

// requireNoRootfs checks a failed pull published nothing.
func requireNoRootfs(t testing.TB, out string) {
	t.Helper()
	_, err := os.Lstat(filepath.Join(out, RootfsName))
	require.True(t, errors.Is(err, fs.ErrNotExist), "a failed pull published %s (%v)", RootfsName, err)
}

// A compressed layer cut short must fail the pull, naming the layer, for
// every source kind: the decompressor's io.ErrUnexpectedEOF is never a
// clean end. The blob digests match the cut bytes (a corrupted or hostile
// source serves consistent blobs); the diff ID is the full tar's.
func TestHostileTruncatedLayers(t *testing.T) {
	good := passwdLayer(t)
	gz := gzipOf(t, good)
	zs := zstdOf(t, good)
	cases := []struct {
		name string
		blob []byte
		mt   string
	}{
		{"gzip without its trailer", gz[:len(gz)-8], "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"gzip without the last trailer byte", gz[:len(gz)-1], "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"gzip cut in half", gz[:len(gz)/2], "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"zstd without its checksum", zs[:len(zs)-4], "application/vnd.oci.image.layer.v1.tar+zstd"},
		{"zstd cut in half", zs[:len(zs)/2], "application/vnd.oci.image.layer.v1.tar+zstd"},
		{"zstd without its last block byte", zs[:len(zs)-5], "application/vnd.oci.image.layer.v1.tar+zstd"},
	}
	for _, c := range cases {
		layers := []RawLayer{{Blob: c.blob, Tar: good, MediaType: c.mt}}
		for _, src := range []struct{ kind, source string }{
			{"oci", "oci:" + testimg.RawOCILayout(t, layers, nil)},
			{"docker-archive", "docker-archive:" + testimg.RawDockerArchive(t, layers, nil, nil)},
		} {
			t.Run(c.name+"/"+src.kind, func(t *testing.T) {
				out, _, err := pullInto(t, src.source, PullOptions{Size: 16 << 20})
				require.Error(t, err, "a truncated layer was applied")
				require.True(t, errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrDigestMismatch), "error does not say the layer is cut short or mismatched: %v", err)
				var le *LayerError
				require.True(t, errors.As(err, &le), "error does not name the layer: %v", err)
				require.Equal(t, 1, le.Layer)
				requireNoRootfs(t, out)
			})
		}
	}
}

// A layer that is not a tar fails at its first header, without inflating
// the rest: 2 GiB of garbage in a few MiB of gzip (32 gzip members of
// 64 MiB each) used to cost seconds of decompression and hashing after
// the error was known.
func TestHostileGarbageBomb(t *testing.T) {
	var member bytes.Buffer
	zw, err := gzip.NewWriterLevel(&member, gzip.BestSpeed)
	require.NoError(t, err)
	_, err = zw.Write(bytes.Repeat([]byte{0xff}, 64<<20))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	blob := bytes.Repeat(member.Bytes(), 32)
	layers := []RawLayer{{Blob: blob, Tar: []byte("not the tar"), MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}}
	for _, src := range []string{
		"oci:" + testimg.RawOCILayout(t, layers, nil),
		"docker-archive:" + testimg.RawDockerArchive(t, layers, nil, nil),
	} {
		t.Run(strings.SplitN(src, ":", 2)[0], func(t *testing.T) {
			start := time.Now()
			out, _, err := pullInto(t, src, PullOptions{Size: 16 << 20})
			took := time.Since(start)
			t.Logf("%v: %v", took, err)
			require.Error(t, err)
			require.Contains(t, err.Error(), "tar")
			var le *LayerError
			require.True(t, errors.As(err, &le), "error does not name the layer: %v", err)
			requireNoRootfs(t, out)
			require.Less(t, took, time.Second, "the garbage after the tar error was inflated")
		})
	}
}

// RawLayer is testimg's, under a short name.
type RawLayer = testimg.RawLayer

// Every source kind compares each layer's uncompressed tar with the
// config's diff ID, even where the blob digest matches.
func TestHostileDiffIDMismatch(t *testing.T) {
	good, evil := tarOf(t, tFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644)), passwdLayer(t)
	for _, blob := range []struct {
		name string
		b    []byte
		mt   string
	}{
		{"plain", evil, "application/vnd.oci.image.layer.v1.tar"},
		{"gzip", gzipOf(t, evil), "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"zstd", zstdOf(t, evil), "application/vnd.oci.image.layer.v1.tar+zstd"},
	} {
		layers := []RawLayer{{Blob: blob.b, MediaType: blob.mt, DiffID: testimg.Digest(good)}}
		for _, src := range []string{
			"oci:" + testimg.RawOCILayout(t, layers, nil),
			"docker-archive:" + testimg.RawDockerArchive(t, layers, nil, nil),
		} {
			t.Run(blob.name+"/"+strings.SplitN(src, ":", 2)[0], func(t *testing.T) {
				out, _, err := pullInto(t, src, PullOptions{Size: 16 << 20})
				require.ErrorIs(t, err, ErrDigestMismatch)
				require.Contains(t, err.Error(), "diff ID")
				requireNoRootfs(t, out)
			})
		}
	}
}

// The image is built through the descriptor the pull created: a symlink
// swapped in for the temporary name (by anyone who can write OUTDIR) is
// neither written through nor published, and the lock file is never
// opened through a planted symlink.
func TestHostileOutdirSymlinks(t *testing.T) {
	layers := []RawLayer{{Blob: gzipOf(t, passwdLayer(t)), Tar: passwdLayer(t)}}
	src := "oci:" + testimg.RawOCILayout(t, layers, nil)

	t.Run("temp image swapped for a symlink", func(t *testing.T) {
		victim := filepath.Join(t.TempDir(), "victim")
		require.NoError(t, os.WriteFile(victim, []byte("precious"), 0o644))
		out := filepath.Join(t.TempDir(), "out")
		swapped := false
		_, err := Pull(context.Background(), src, out, PullOptions{Size: 16 << 20, Finalize: func(img *ext4edit.Image) error {
			// Mid-pull: replace the temp image's name with a symlink.
			tmps, _ := filepath.Glob(filepath.Join(out, "."+RootfsName+".tmp-*"))
			require.Len(t, tmps, 1)
			require.NoError(t, os.Remove(tmps[0]))
			require.NoError(t, os.Symlink(victim, tmps[0]))
			swapped = true
			return img.WriteFile("/etc/motd", []byte("hello\n"), 0o644)
		}})
		require.True(t, swapped)
		require.Error(t, err, "a swapped temp image was published")
		b, rerr := os.ReadFile(victim)
		require.NoError(t, rerr)
		require.Equal(t, "precious", string(b), "the pull wrote through a symlink")
		requireNoRootfs(t, out)
	})

	t.Run("lock file is a symlink", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		require.NoError(t, os.MkdirAll(out, 0o755))
		elsewhere := filepath.Join(t.TempDir(), "created-by-pull")
		require.NoError(t, os.Symlink(elsewhere, filepath.Join(out, LockName)))
		_, err := Pull(context.Background(), src, out, PullOptions{Size: 16 << 20})
		require.Error(t, err)
		require.Contains(t, err.Error(), "symlink")
		_, serr := os.Lstat(elsewhere)
		require.True(t, errors.Is(serr, fs.ErrNotExist), "the pull created a file through the lock symlink")
	})
}

// deepName is a path of n one-letter levels.
func deepName(n int) string {
	return strings.Repeat("d/", n-1) + "f"
}

// Path depth costs time linear in the path's length, and paths longer
// than MaxPathBytes are refused at once, in the sizing scan and the build.
func TestHostileDeepPaths(t *testing.T) {
	testimg.Require(t, "e2fsck")
	for _, depth := range []int{2_500, 5_000, 20_000} {
		t.Run(fmt.Sprintf("refused at depth %d", depth), func(t *testing.T) {
			layer := tarOf(t, tFile(deepName(depth), "x", 0o644))
			for _, size := range []int64{0, 16 << 20} {
				start := time.Now()
				_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(layer), BuildOptions{Size: size})
				require.Error(t, err)
				require.Contains(t, err.Error(), "PATH_MAX")
				require.Less(t, time.Since(start), time.Second)
			}
		})
	}
	// The deepest tree a layer can build, whited out by the next layer
	// (no recursion limit in the removal), and an opaque directory over
	// it.
	deepest := MaxPathBytes / 2 // "/d" per level, within MaxPathBytes
	var ents []tent
	ents = append(ents, tFile(deepName(deepest)[:MaxPathBytes-2-len("/f")]+"/f", "bottom", 0o644))
	start := time.Now()
	p := build(t, BuildOptions{}, tarOf(t, ents...), tarOf(t, tFile("keep", "k", 0o644)))
	t.Logf("%d levels built in %v", deepest-1, time.Since(start))
	img := openRO(t, p)
	_, err := img.Stat("/" + deepName(deepest)[:MaxPathBytes-2-len("/f")] + "/f")
	require.NoError(t, err)

	start = time.Now()
	p = build(t, BuildOptions{}, tarOf(t, ents...), tarOf(t, tWh(".wh.d")))
	require.Less(t, time.Since(start), 5*time.Second)
	_, err = openRO(t, p).Lstat("/d")
	require.ErrorIs(t, err, fs.ErrNotExist)

	p = build(t, BuildOptions{}, tarOf(t, ents...), tarOf(t, tFile(".wh..wh..opq", "", 0)))
	_, err = openRO(t, p).Lstat("/d")
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// Cancelling a build stops it inside a large entry, in the sizing scan
// (Size 0) and in the build.
func TestHostileCancelWithinEntry(t *testing.T) {
	for _, size := range []int64{0, 4 << 30} {
		t.Run(fmt.Sprintf("size %d", size), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			pr, pw := io.Pipe()
			go func() {
				tw := tar.NewWriter(pw)
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: 1 << 40, Mode: 0o644}); err != nil {
					pw.CloseWithError(err)
					return
				}
				chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
				for {
					if _, err := tw.Write(chunk); err != nil {
						pw.CloseWithError(err)
						return
					}
				}
			}()
			layer := LayerSource{Digest: "stream", Open: func() (io.ReadCloser, error) { return pr, nil }}
			time.AfterFunc(200*time.Millisecond, cancel)
			start := time.Now()
			_, _, err := BuildExt4(ctx, filepath.Join(t.TempDir(), "img"), []LayerSource{layer}, BuildOptions{Size: size})
			pr.Close()
			require.ErrorIs(t, err, context.Canceled)
			require.Less(t, time.Since(start), 3*time.Second, "cancellation not honoured within the entry")
		})
	}
}

// A sparse entry's holes stay holes: a tiny layer declaring a 100 GiB
// sparse file gives a small auto-sized image, a sparse image file on the
// host, the right content, and no time spent writing zeros.
func TestHostileSparseBomb(t *testing.T) {
	testimg.Require(t, "e2fsck")
	const size = 100 << 30
	layer := tarOf(t, tSparse("var/log/lastlog", size, map[int64]string{0: "head", size - 4: "tail"}))
	src := "oci:" + testimg.RawOCILayout(t, []RawLayer{{Blob: gzipOf(t, layer), Tar: layer}}, nil)
	start := time.Now()
	out, res, err := pullInto(t, src, PullOptions{})
	require.NoError(t, err)
	took := time.Since(start)
	t.Logf("pull of a 100 GiB sparse entry: %v, image %d MiB", took, res.Metadata.Rootfs.Size>>20)
	require.Less(t, took, 5*time.Second)
	require.Less(t, res.Metadata.Rootfs.Size, int64(64<<20), "the estimate counted declared sizes")
	rootfs := filepath.Join(out, RootfsName)
	require.Less(t, allocatedBytes(t, rootfs), int64(64<<20), "the image file is not sparse")
	testimg.RequireClean(t, rootfs)
	img := openRO(t, rootfs)
	fi, err := img.Stat("/var/log/lastlog")
	require.NoError(t, err)
	require.Equal(t, int64(size), fi.Size())
	f, err := img.FS().Open("var/log/lastlog")
	require.NoError(t, err)
	defer f.Close()
	ra := f.(io.ReaderAt)
	buf := make([]byte, 4)
	_, err = ra.ReadAt(buf, 0)
	require.NoError(t, err)
	require.Equal(t, "head", string(buf))
	_, err = ra.ReadAt(buf, size-4)
	require.NoError(t, err)
	require.Equal(t, "tail", string(buf))
	_, err = ra.ReadAt(buf, 50<<30)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 0, 0, 0}, buf)
}

// The auto size has a ceiling (the size of the image the layers are
// applied to before the cut); a given size does not. 3000 files of three
// blocks each do not fit 32 MiB.
func TestHostileAutoSizeCeiling(t *testing.T) {
	var ents []tent
	for i := 0; i < 3000; i++ {
		ents = append(ents, tFile(fmt.Sprintf("f%d", i), strings.Repeat("x", 12000), 0o644))
	}
	layer := tarOf(t, ents...)
	_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(layer), BuildOptions{MaxSize: 32 << 20})
	require.ErrorIs(t, err, ErrTooBig)
	img, st, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(layer), BuildOptions{MaxSize: 1 << 30})
	require.NoError(t, err)
	require.True(t, st.Estimated)
	require.NoError(t, img.Close())
}

// Directories a layer implies without listing them count in the estimate.
func TestHostileImplicitDirsEstimate(t *testing.T) {
	testimg.Require(t, "e2fsck")
	var ents []tent
	for i := 0; i < 20_000; i++ {
		ents = append(ents, tFile(fmt.Sprintf("d%05d/f", i), "", 0o644))
	}
	layer := tarOf(t, ents...)
	u, err := ScanLayer(context.Background(), bytes.NewReader(layer), 4096)
	require.NoError(t, err)
	require.EqualValues(t, 20_000, u.Dirs)
	require.EqualValues(t, 40_000, u.Entries)
	build(t, BuildOptions{}, layer)
}

// Times outside ext4's range are clamped (with a warning), not wrapped.
func TestHostileTimes(t *testing.T) {
	testimg.Require(t, "e2fsck")
	min := time.Date(1901, 12, 13, 20, 45, 52, 0, time.UTC)
	max := time.Date(2446, 5, 10, 22, 38, 55, 0, time.UTC)
	cases := []struct {
		name      string
		in        time.Time
		want      time.Time
		clamped   bool
		exactNsec bool
	}{
		{"2447", time.Date(2447, 1, 1, 0, 0, 0, 0, time.UTC), max, true, false},
		{"9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), max, true, false},
		{"1800", time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC), min, true, false},
		{"1901 in range", min.Add(time.Hour), min.Add(time.Hour), false, true},
		{"2446 in range", max.Add(-time.Hour), max.Add(-time.Hour), false, true},
	}
	var ents []tent
	for i, c := range cases {
		ents = append(ents, tFile(fmt.Sprintf("f%d", i), "x", 0o644, mtime(c.in)), tDir(fmt.Sprintf("d%d/", i), 0o755, mtime(c.in)))
	}
	var w warnings
	p := build(t, BuildOptions{Warnf: w.f}, tarOf(t, ents...))
	img := openRO(t, p)
	for i, c := range cases {
		for _, name := range []string{fmt.Sprintf("/f%d", i), fmt.Sprintf("/d%d", i)} {
			fi, err := img.Lstat(name)
			require.NoError(t, err)
			require.Equal(t, c.want.Unix(), fi.ModTime().Unix(), "%s %s: mtime", c.name, name)
		}
	}
	require.True(t, w.has("clamped"), "no warning about clamped times: %v", w.msgs)
}

// Whiteouts naming "." or ".." are refused (they would remove the
// directory holding them, or its parent).
func TestHostileWhiteoutNames(t *testing.T) {
	base := tarOf(t, tDir("etc/", 0o755), tFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644))
	for _, name := range []string{"etc/.wh..", "etc/.wh...", "etc/sub/.wh...", ".wh.."} {
		t.Run(name, func(t *testing.T) {
			_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(base, tarOf(t, tWh(name))), BuildOptions{Size: 16 << 20})
			require.Error(t, err)
			require.Contains(t, err.Error(), "invalid whiteout")
		})
	}
}

// Device numbers the kernel's encoding holds are stored as they are; the
// rest are refused, never stored as another device.
func TestHostileDeviceNumbers(t *testing.T) {
	testimg.Require(t, "e2fsck")
	ok := []struct{ major, minor int64 }{{0, 0}, {255, 255}, {256, 1}, {1, 256}, {4095, 1048575}}
	var ents []tent
	for i, d := range ok {
		ents = append(ents, tDev(fmt.Sprintf("dev%d", i), tar.TypeChar, d.major, d.minor, 0o600))
	}
	p := build(t, BuildOptions{}, tarOf(t, ents...))
	img := openRO(t, p)
	for i, d := range ok {
		fi, err := img.Lstat(fmt.Sprintf("/dev%d", i))
		require.NoError(t, err)
		info := fi.Sys().(*ext4edit.InodeInfo)
		require.Equal(t, uint32(d.major), info.Major, "dev%d major", i)
		require.Equal(t, uint32(d.minor), info.Minor, "dev%d minor", i)
	}
	for _, d := range []struct{ major, minor int64 }{{4096, 1048576}, {4096, 0}, {0, 1048576}, {1<<21 - 1, 0}} {
		_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(tarOf(t, tDev("dev/x", tar.TypeBlock, d.major, d.minor, 0o600))), BuildOptions{Size: 16 << 20})
		require.Error(t, err, "%d:%d", d.major, d.minor)
		require.Contains(t, err.Error(), "out of range")
	}
}

// Xattrs that cannot fit an inode say the limit, not "give a larger size".
func TestHostileXattrTooLarge(t *testing.T) {
	many := func(h *tar.Header) {
		h.PAXRecords = map[string]string{}
		for i := 0; i < 1000; i++ {
			h.PAXRecords[fmt.Sprintf("SCHILY.xattr.user.a%04d", i)] = "value"
		}
	}
	for _, c := range []struct {
		name string
		ent  tent
	}{
		{"64 KiB value", tFile("f", "x", 0o644, xattr("user.big", bytes.Repeat([]byte("v"), 64<<10)))},
		{"1000 xattrs", tFile("f", "x", 0o644, many)},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), memLayers(tarOf(t, c.ent)), BuildOptions{})
			require.ErrorIs(t, err, ext4edit.ErrXattrTooLarge)
			require.NotContains(t, err.Error(), "larger size")
		})
	}
}

// trusted.* xattrs are not taken from layers.
func TestHostileTrustedXattr(t *testing.T) {
	var w warnings
	p := build(t, BuildOptions{Warnf: w.f}, tarOf(t, tDir("d/", 0o755, xattr("trusted.overlay.opaque", []byte("y"))), tFile("f", "x", 0o644, xattr("trusted.overlay.redirect", []byte("/etc")))))
	img := openRO(t, p)
	for _, n := range []string{"/d", "/f"} {
		names, err := img.ListXattr(n)
		require.NoError(t, err)
		require.Empty(t, names, n)
	}
	require.True(t, w.has("trusted"), "no warning: %v", w.msgs)
}

// Oversized image documents are refused before they are read whole.
func TestHostileDocumentCaps(t *testing.T) {
	layer := passwdLayer(t)
	layers := []RawLayer{{Blob: gzipOf(t, layer), Tar: layer}}
	bigCfg := testimg.RawConfig(layers, func(m map[string]any) {
		m["history"] = []any{map[string]any{"comment": strings.Repeat("x", 60<<20)}}
	})
	t.Run("config/oci", func(t *testing.T) {
		_, _, err := pullInto(t, "oci:"+testimg.RawOCILayout(t, layers, bigCfg), PullOptions{Size: 16 << 20})
		require.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("config/docker-archive", func(t *testing.T) {
		_, _, err := pullInto(t, "docker-archive:"+testimg.RawDockerArchive(t, layers, bigCfg, nil), PullOptions{Size: 16 << 20})
		require.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("manifest.json/docker-archive", func(t *testing.T) {
		big := []byte(`[{"Config":"x.json","RepoTags":["a:b"],"Layers":[],"Pad":"` + strings.Repeat("x", MaxManifestBytes) + `"}]`)
		_, _, err := pullInto(t, "docker-archive:"+testimg.RawDockerArchive(t, layers, nil, big), PullOptions{Size: 16 << 20})
		require.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("index.json/oci", func(t *testing.T) {
		dir := testimg.RawOCILayout(t, layers, nil)
		idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
		require.NoError(t, err)
		idx = append(idx[:len(idx)-1], []byte(`,"annotations":{"pad":"`+strings.Repeat("x", MaxManifestBytes)+`"}}`)...)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "index.json"), idx, 0o644))
		_, _, err = pullInto(t, "oci:"+dir, PullOptions{Size: 16 << 20})
		require.ErrorIs(t, err, ErrTooLarge)
	})
	t.Run("manifest/registry", func(t *testing.T) {
		host := serveRegistry(t, func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/manifests/") {
					w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
					if r.Method == http.MethodHead {
						w.Header().Set("Content-Length", fmt.Sprint(MaxManifestBytes+100))
						return
					}
					// No Content-Length: the body itself must be capped.
					w.Write([]byte(`{"schemaVersion":2,"pad":"`))
					for i := 0; i < MaxManifestBytes/4096+2; i++ {
						w.Write(bytes.Repeat([]byte("x"), 4096))
					}
					w.Write([]byte(`"}`))
					return
				}
				next.ServeHTTP(w, r)
			})
		})
		_, _, err := pullInto(t, host+"/test/big:v1", PullOptions{Size: 16 << 20})
		require.ErrorIs(t, err, ErrTooLarge)
	})
}

// A zstd layer asking for a window above MaxZstdWindow is refused
// without the decoder allocating it.
func TestHostileZstdWindow(t *testing.T) {
	layer := passwdLayer(t)
	blob := testimg.ZstdWindowFrame(layer, 29) // 512 MiB
	rc, err := Decompress(io.NopCloser(bytes.NewReader(testimg.ZstdWindowFrame(layer, 25))))
	require.NoError(t, err)
	got, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err, "a hand-made frame within the cap")
	require.Equal(t, layer, got)
	rc, err = Decompress(io.NopCloser(bytes.NewReader(blob)))
	require.NoError(t, err)
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	require.Error(t, err, "a 512 MiB window was accepted")
	// A layer within the cap still decodes.
	rc, err = Decompress(io.NopCloser(bytes.NewReader(zstdOf(t, layer, zstd.WithWindowSize(MaxZstdWindow)))))
	require.NoError(t, err)
	got, err = io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	require.Equal(t, layer, got)
}

// OUTDIR/kernel and initrd are removed only when an earlier pull staged
// them.
func TestHostileKeepsUserKernel(t *testing.T) {
	testimg.Require(t, "e2fsck")
	layout := singleLayout(t, bootLayers(t)...)
	out := filepath.Join(t.TempDir(), "out")
	require.NoError(t, os.MkdirAll(out, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(out, KernelName), []byte("mine"), 0o644))
	_, err := Pull(context.Background(), "oci:"+layout, out, PullOptions{Size: 32 << 20})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(out, KernelName))
	require.NoError(t, err, "a pull removed a kernel it did not stage")
	require.Equal(t, "mine", string(b))

	_, err = Pull(context.Background(), "oci:"+layout, out, PullOptions{Size: 32 << 20, BootArtifacts: true})
	require.NoError(t, err)
	require.NotNil(t, readMeta(t, out).Kernel)
	_, err = Pull(context.Background(), "oci:"+layout, out, PullOptions{Size: 32 << 20})
	require.NoError(t, err)
	_, err = os.Lstat(filepath.Join(out, KernelName))
	require.ErrorIs(t, err, fs.ErrNotExist, "the staged kernel of an earlier pull stayed")
}
