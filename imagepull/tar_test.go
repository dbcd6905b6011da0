package imagepull

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// A small language for layers made in tests.

var (
	t0 = time.Date(2021, 3, 4, 5, 6, 7, 123456789, time.UTC)
	t1 = time.Date(2022, 6, 7, 8, 9, 10, 987654321, time.UTC)
	t2 = time.Date(2023, 9, 10, 11, 12, 13, 555000000, time.UTC)
)

// tent is one tar entry; raw, when set, is written as it is (hand-made
// headers archive/tar will not write).
type tent struct {
	hdr  tar.Header
	body []byte
	raw  []byte
}

type hmod func(*tar.Header)

func owner(uid, gid int) hmod { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }
func mtime(m time.Time) hmod  { return func(h *tar.Header) { h.ModTime = m } }
func atime(a time.Time) hmod  { return func(h *tar.Header) { h.AccessTime = a } }
func xattr(k string, v []byte) hmod {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+k] = string(v)
	}
}
func gnu() hmod { return func(h *tar.Header) { h.Format = tar.FormatGNU } }

func mk(h tar.Header, body []byte, mods []hmod) tent {
	if h.ModTime.IsZero() {
		h.ModTime = t0
	}
	if h.Format == tar.FormatUnknown {
		h.Format = tar.FormatPAX
	}
	for _, m := range mods {
		m(&h)
	}
	h.Size = int64(len(body))
	return tent{hdr: h, body: body}
}

func tFile(name, body string, mode int64, mods ...hmod) tent {
	return mk(tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, []byte(body), mods)
}
func tDir(name string, mode int64, mods ...hmod) tent {
	return mk(tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}, nil, mods)
}
func tSym(name, target string, mods ...hmod) tent {
	return mk(tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil, mods)
}
func tLink(name, target string, mods ...hmod) tent {
	return mk(tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}, nil, mods)
}
func tDev(name string, typ byte, major, minor int64, mode int64, mods ...hmod) tent {
	return mk(tar.Header{Typeflag: typ, Name: name, Devmajor: major, Devminor: minor, Mode: mode}, nil, mods)
}
func tWh(name string) tent { return tFile(name, "", 0) }

// tSparse is a PAX 1.0 sparse file of realsize bytes with data at the
// given offsets, as GNU tar --sparse --format=posix writes it.
func tSparse(name string, realsize int64, chunks map[int64]string, mods ...hmod) tent {
	offs := make([]int64, 0, len(chunks))
	for o := range chunks {
		offs = append(offs, o)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	var m strings.Builder
	fmt.Fprintf(&m, "%d\n", len(offs))
	for _, o := range offs {
		fmt.Fprintf(&m, "%d\n%d\n", o, len(chunks[o]))
	}
	body := []byte(m.String())
	body = append(body, make([]byte, (512-len(body)%512)%512)...)
	for _, o := range offs {
		body = append(body, chunks[o]...)
	}
	dir, base := filepath.Split(name)
	h := tar.Header{Typeflag: tar.TypeReg, Name: dir + "GNUSparseFile.0/" + base, Mode: 0o644, ModTime: t0, Format: tar.FormatUSTAR}
	for _, mod := range mods {
		mod(&h)
	}
	h.Size = int64(len(body))
	raw := testimg.PAXBlock(map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     name,
		"GNU.sparse.realsize": strconv.FormatInt(realsize, 10),
	})
	return tent{hdr: h, body: body, raw: raw}
}

// tarOf writes entries as one tar stream.
func tarOf(t testing.TB, ents ...tent) []byte {
	t.Helper()
	out := make([]testimg.TarEntry, len(ents))
	for i, e := range ents {
		out[i] = testimg.TarEntry{Hdr: e.hdr, Body: e.body, Raw: e.raw}
	}
	return testimg.TarOf(t, out...)
}

// memLayers makes LayerSources of in-memory tar streams.
func memLayers(layers ...[]byte) []LayerSource {
	out := make([]LayerSource, len(layers))
	for i, l := range layers {
		l := l
		out[i] = LayerSource{Digest: fmt.Sprintf("mem:%d", i+1), Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(l)), nil
		}}
	}
	return out
}

// warnings collects Warnf messages.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) f(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, fmt.Sprintf(format, args...))
}

func (w *warnings) has(sub string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// build makes an image from layers (closed, e2fsck-clean) and returns its
// path.
func build(t testing.TB, opts BuildOptions, layers ...[]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.ext4")
	img, _, err := BuildExt4(context.Background(), p, memLayers(layers...), opts)
	if err != nil {
		t.Fatalf("BuildExt4: %v", err)
	}
	if err := img.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	testimg.RequireClean(t, p)
	return p
}

// openRO opens a built image read-only for the editor's own checks.
func openRO(t testing.TB, p string) *ext4edit.Image {
	t.Helper()
	img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func mustNotExist(t testing.TB, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err == nil {
		t.Fatalf("%s exists on the host", p)
	}
}
