package imagepull

import (
	"archive/tar"
	"bufio"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	gzip "github.com/klauspost/compress/gzip"
)

// synthConfig shapes a synthetic multi-layer image for the benchmark.
type synthConfig struct {
	SmallFiles  int   // spread over a tree of directories, 0..8 KiB
	MediumFiles int   // shared-library sized, 8..256 KiB, a few dirs
	LargeFiles  int   // LargeSize each
	LargeSize   int64 //
	DeepLevels  int   // one chain of nested directories this deep
	BigDirs     int   // directories with BigDirSize entries each
	BigDirSize  int
	Layers      int // the small files and big dirs spread over these
}

// benchSynth is what the benchmark asks for: over 10,000 entries
// and 500 MB of tar, shaped like a distribution (about 570 MB and 34,000
// entries in 3 layers: most entries small, most bytes in medium and
// large files).
var benchSynth = synthConfig{
	SmallFiles:  21000,
	MediumFiles: 2400,
	LargeFiles:  8,
	LargeSize:   16 << 20,
	DeepLevels:  40,
	BigDirs:     3,
	BigDirSize:  3000,
	Layers:      3,
}

var smallSynth = synthConfig{
	SmallFiles:  600,
	MediumFiles: 20,
	LargeFiles:  2,
	LargeSize:   1 << 20,
	DeepLevels:  20,
	BigDirs:     1,
	BigDirSize:  500,
	Layers:      2,
}

// synthPool is text-like bytes with some noise (gzip shrinks it about
// 3x); synthContent copies slices of it from random offsets.
var synthPool = func() []byte {
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua 0123456789 ABCDEF\n"
	r := rand.New(rand.NewSource(7))
	p := make([]byte, 4<<20)
	for i := 0; i < len(p); {
		if r.Intn(8) == 0 {
			n := min(len(p)-i, 64)
			r.Read(p[i : i+n])
			i += n
			continue
		}
		s := r.Intn(len(words) - 16)
		i += copy(p[i:], words[s:s+1+r.Intn(15)])
	}
	return p
}()

// synthContent fills p with slices of synthPool.
func synthContent(r *rand.Rand, p []byte) {
	for i := 0; i < len(p); {
		off := r.Intn(len(synthPool) - 65536)
		i += copy(p[i:], synthPool[off:off+4096+r.Intn(61440)])
	}
}

// synthLayers writes the layers of cfg as tar streams (only additions and
// replacements, so `tar -x` of each in order gives the same tree). Every
// layer lists its directories.
func synthLayers(cfg synthConfig, w func(layer int) io.Writer) error {
	r := rand.New(rand.NewSource(42))
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	buf := make([]byte, 1<<20)
	for l := 0; l < cfg.Layers; l++ {
		tw := tar.NewWriter(w(l))
		dirsDone := map[string]bool{}
		dir := func(d string) error {
			var parts []string
			for p := d; p != "." && p != "/"; p = filepath.Dir(p) {
				parts = append([]string{p}, parts...)
			}
			for _, p := range parts {
				if dirsDone[p] {
					continue
				}
				dirsDone[p] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
			return nil
		}
		file := func(name string, size int64, mode int64, uid int) error {
			if err := dir(filepath.Dir(name)); err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: mode, Uid: uid, Gid: uid, ModTime: mt, Format: tar.FormatPAX}); err != nil {
				return err
			}
			for size > 0 {
				n := min(size, int64(len(buf)))
				synthContent(r, buf[:n])
				if _, err := tw.Write(buf[:n]); err != nil {
					return err
				}
				size -= n
			}
			return nil
		}
		// Small files in a tree of usr/share/pkgNN/subNN.
		per := cfg.SmallFiles / cfg.Layers
		for i := 0; i < per; i++ {
			name := fmt.Sprintf("usr/share/pkg%02d/sub%02d/file-%d-%05d.txt", i%50, (i/50)%8, l, i)
			if err := file(name, int64(r.Intn(8192)), 0o644, i%3); err != nil {
				return err
			}
		}
		// Replacements of files of the layer below.
		if l > 0 {
			for i := 0; i < per/10; i++ {
				name := fmt.Sprintf("usr/share/pkg%02d/sub%02d/file-%d-%05d.txt", i%50, (i/50)%8, l-1, i)
				if err := file(name, int64(r.Intn(4096)), 0o600, 0); err != nil {
					return err
				}
			}
		}
		// Medium files: libraries, a few directories of them.
		for i := 0; i < cfg.MediumFiles/cfg.Layers; i++ {
			name := fmt.Sprintf("usr/lib/mod%02d/lib-%d-%05d.so", i%20, l, i)
			if err := file(name, 8192+int64(r.Intn(248<<10)), 0o644, 0); err != nil {
				return err
			}
		}
		// Big directories.
		for d := 0; d < cfg.BigDirs; d++ {
			if d%cfg.Layers != l {
				continue
			}
			for i := 0; i < cfg.BigDirSize; i++ {
				name := fmt.Sprintf("var/lib/big%d/entry-with-a-longish-name-%06d", d, i)
				if i%4 == 0 {
					if err := dir(filepath.Dir(name)); err != nil {
						return err
					}
					if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: "../../../usr/share/pkg01", ModTime: mt, Format: tar.FormatPAX}); err != nil {
						return err
					}
					continue
				}
				if err := file(name, int64(r.Intn(512)), 0o644, 0); err != nil {
					return err
				}
			}
		}
		// A deep chain.
		if l == 0 {
			p := "deep"
			for i := 0; i < cfg.DeepLevels; i++ {
				p = filepath.Join(p, fmt.Sprintf("level%02d", i))
			}
			for i := 0; i < 20; i++ {
				if err := file(filepath.Join(p, fmt.Sprintf("leaf%02d", i)), 100, 0o644, 0); err != nil {
					return err
				}
			}
		}
		// Large files.
		for i := 0; i < cfg.LargeFiles; i++ {
			if i%cfg.Layers != l {
				continue
			}
			if err := file(fmt.Sprintf("opt/large/blob%02d.bin", i), cfg.LargeSize, 0o755, 0); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// synthFiles writes cfg's layers to dir as layerN.tar and layerN.tar.gz
// and returns both path lists. Each layer streams to its two files (the
// gzip in its own goroutine), so this process stays small: the
// benchmark's children are forked from it.
func synthFiles(t testing.TB, cfg synthConfig, dir string) (plain, gz []string) {
	t.Helper()
	var cur *synthOut
	var err error
	werr := synthLayers(cfg, func(l int) io.Writer {
		if cur != nil {
			if err = cur.close(); err != nil {
				t.Fatal(err)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("layer%d.tar", l))
		if cur, err = newSynthOut(p, p+".gz"); err != nil {
			t.Fatal(err)
		}
		plain, gz = append(plain, p), append(gz, p+".gz")
		return cur
	})
	if werr != nil {
		t.Fatal(werr)
	}
	if cur != nil {
		if err := cur.close(); err != nil {
			t.Fatal(err)
		}
	}
	return plain, gz
}

// synthOut writes one layer to a plain file and, through a pipe to a
// goroutine, to a gzip file.
type synthOut struct {
	plain, gz *os.File
	bw        *bufio.Writer
	pw        *io.PipeWriter
	done      chan error
}

func newSynthOut(plainPath, gzPath string) (*synthOut, error) {
	pf, err := os.Create(plainPath)
	if err != nil {
		return nil, err
	}
	zf, err := os.Create(gzPath)
	if err != nil {
		pf.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	o := &synthOut{plain: pf, gz: zf, bw: bufio.NewWriterSize(pf, 1<<20), pw: pw, done: make(chan error, 1)}
	go func() {
		zb := bufio.NewWriterSize(zf, 1<<20)
		zw, _ := gzip.NewWriterLevel(zb, gzip.DefaultCompression)
		_, err := io.Copy(zw, pr)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		if ferr := zb.Flush(); err == nil {
			err = ferr
		}
		pr.CloseWithError(err)
		o.done <- err
	}()
	return o, nil
}

func (o *synthOut) Write(p []byte) (int, error) {
	if _, err := o.pw.Write(p); err != nil {
		return 0, err
	}
	return o.bw.Write(p)
}

func (o *synthOut) close() error {
	err := o.bw.Flush()
	o.pw.Close()
	if zerr := <-o.done; err == nil {
		err = zerr
	}
	for _, f := range []*os.File{o.plain, o.gz} {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
