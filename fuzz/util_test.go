package fuzz

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// Image inputs: raw bytes, gzip, or the sparse form (see doc.go).
const (
	sparseMagic = "EXT4SPR1"
	maxImage    = 64 << 20 // decoded images are capped (sparse files: no cost)
	gzipLimit   = 16 << 20 // gunzip at most this much
)

// sparseChunk is one run of bytes of an image at an offset.
type sparseChunk struct {
	off  int64
	data []byte
}

// decodeSparse parses the sparse form leniently: whatever the bytes, it
// returns an image size and chunks that fit inside it.
func decodeSparse(in []byte) (int64, []sparseChunk, bool) {
	if !bytes.HasPrefix(in, []byte(sparseMagic)) {
		return 0, nil, false
	}
	in = in[len(sparseMagic):]
	size, n := binary.Uvarint(in)
	if n <= 0 {
		return 0, nil, true
	}
	in = in[n:]
	size = min(size, maxImage)
	var chunks []sparseChunk
	pos := uint64(0)
	for len(in) > 0 {
		skip, n := binary.Uvarint(in)
		if n <= 0 {
			break
		}
		in = in[n:]
		ln, n := binary.Uvarint(in)
		if n <= 0 {
			break
		}
		in = in[n:]
		ln = min(ln, uint64(len(in)))
		if skip > size || pos > size-skip {
			break
		}
		pos += skip
		w := min(ln, size-pos)
		if w > 0 {
			chunks = append(chunks, sparseChunk{int64(pos), in[:w]})
		}
		pos += w
		in = in[ln:]
	}
	return int64(size), chunks, true
}

// writeImage materialises an input as the file at name and returns its
// size. Gzip input is gunzipped (a damaged stream keeps what decoded).
func writeImage(name string, in []byte) (int64, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if size, chunks, ok := decodeSparse(in); ok {
		if err := f.Truncate(size); err != nil {
			return 0, err
		}
		for _, c := range chunks {
			if _, err := f.WriteAt(c.data, c.off); err != nil {
				return 0, err
			}
		}
		return size, nil
	}
	if len(in) > 2 && in[0] == 0x1f && in[1] == 0x8b {
		if zr, err := gzip.NewReader(bytes.NewReader(in)); err == nil {
			n, _ := io.Copy(f, io.LimitReader(zr, gzipLimit))
			if n >= 2048 {
				return n, nil
			}
			if err := f.Truncate(0); err != nil {
				return 0, err
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return 0, err
			}
		}
	}
	if len(in) > maxImage {
		in = in[:maxImage]
	}
	_, err = f.Write(in)
	return int64(len(in)), err
}

// imageChunks reads a (sparse) image file into memory as its non-zero
// 4 KiB blocks, so a base image is copied cheaply for every input.
func imageChunks(name string) (int64, []sparseChunk, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return 0, nil, err
	}
	var out []sparseChunk
	const blk = 4096
	for off := 0; off < len(b); off += blk {
		end := min(off+blk, len(b))
		if !allZero(b[off:end]) {
			if k := len(out) - 1; k >= 0 && out[k].off+int64(len(out[k].data)) == int64(off) {
				out[k].data = b[out[k].off:end]
			} else {
				out = append(out, sparseChunk{int64(off), b[off:end]})
			}
		}
	}
	return int64(len(b)), out, nil
}

func writeChunks(name string, size int64, chunks []sparseChunk) error {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	for _, c := range chunks {
		if _, err := f.WriteAt(c.data, c.off); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guard runs fn in a goroutine and fails t if it panics (with the stack)
// or does not return within d (with every goroutine's stack: the hang).
func guard(t *testing.T, what string, d time.Duration, fn func() error) {
	t.Helper()
	type result struct {
		err   error
		panic string
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{panic: fmt.Sprintf("%v\n%s", r, debug.Stack())}
			}
		}()
		done <- result{err: fn()}
	}()
	select {
	case r := <-done:
		if r.panic != "" {
			t.Fatalf("%s: panic: %s", what, r.panic)
		}
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("%s: no result after %v (hang)\n%s", what, d, buf[:n])
	}
}

// Walk limits: a corrupt image can describe a huge or cyclic tree.
const (
	walkMaxEntries = 4000
	walkMaxDepth   = 24
	walkMaxRead    = 1 << 20
)

// walkStats counts what a walk saw.
type walkStats struct {
	entries, files, errs int
	bytes                int64
}

// walkImage reads everything reachable in img with every read method of
// the public API; errors are counted, never fatal (the image may be
// garbage). Regular files are read through fs.FS up to walkMaxRead
// bytes, and with ReadFile only when that small: ReadFile allocates the
// inode's i_size.
func walkImage(img *ext4edit.Image, st *walkStats) {
	fsys := img.FS()
	_, _ = img.Stat("/")
	_, _ = fs.Stat(fsys, ".")
	_, _ = img.Lstat("/no/such/file")
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := img.ReadDir(dir)
		if err != nil {
			st.errs++
			return
		}
		for _, e := range ents {
			if st.entries >= walkMaxEntries {
				return
			}
			st.entries++
			p := path.Join(dir, e.Name())
			_ = e.Type()
			if _, err := e.Info(); err != nil {
				st.errs++
			}
			fi, err := img.Lstat(p)
			if err != nil {
				st.errs++
				continue
			}
			if names, err := img.ListXattr(p); err != nil {
				st.errs++
			} else {
				for _, n := range names {
					if _, err := img.GetXattr(p, n); err != nil {
						st.errs++
					}
				}
			}
			switch m := fi.Mode(); {
			case m.IsDir():
				if depth < walkMaxDepth {
					walk(p, depth+1)
				}
			case m&fs.ModeSymlink != 0:
				if _, err := img.Readlink(p); err != nil {
					st.errs++
				}
				if _, err := img.Stat(p); err != nil {
					st.errs++
				}
			case m.IsRegular():
				st.files++
				readFile(img, fsys, p, fi.Size(), st)
			}
		}
	}
	walk("/", 0)
}

func readFile(img *ext4edit.Image, fsys fs.FS, p string, size int64, st *walkStats) {
	// ReadFile allocates i_size bytes: only small files, and absurd sizes
	// (beyond any ext4 file: it must refuse them, not panic).
	if size >= 0 && size <= walkMaxRead || size < 0 || size > 1<<48 {
		b, err := img.ReadFile(p)
		if err != nil {
			st.errs++
		}
		st.bytes += int64(len(b))
	}
	f, err := fsys.Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		st.errs++
		return
	}
	defer f.Close()
	n, err := io.CopyN(io.Discard, f, walkMaxRead)
	if err != nil && !errors.Is(err, io.EOF) {
		st.errs++
	}
	st.bytes += n
	if ra, ok := f.(io.ReaderAt); ok && size > 0 {
		buf := make([]byte, 512)
		_, _ = ra.ReadAt(buf, size/2)
		_, _ = ra.ReadAt(buf, size-1)
	}
}

// e2fsck finds e2fsck on PATH or in the sbin directories.
var e2fsckPath = sync.OnceValue(func() string { return testimg.LookTool("e2fsck") })

// fsckClean runs e2fsck -fn; ok reports a clean verdict. ran is false
// when e2fsck is not installed (the oracle is then skipped).
func fsckClean(img string) (ok, ran bool, out string) {
	p := e2fsckPath()
	if p == "" {
		return false, false, ""
	}
	o, err := exec.Command(p, "-fn", img).CombinedOutput()
	return err == nil, true, string(o)
}

// scratch is a per-process directory for fuzz inputs' image files.
var scratch = sync.OnceValues(func() (string, error) {
	return os.MkdirTemp("", "ext4edit-fuzz-")
})

func scratchFile(t *testing.T) string {
	t.Helper()
	dir, err := scratch()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(dir, "img-*")
	if err != nil {
		t.Fatal(err)
	}
	name := f.Name()
	f.Close()
	t.Cleanup(func() { os.Remove(name) })
	return name
}
