package testimg

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Recipes for hostile layers, shared by the imagepull tests and the
// command's memory and time checks. Each makes its bytes from scratch.

// TarOf writes hdrs (with bodies, a header's Size taken from its body) as
// one tar stream. A nil body with a set Size writes that many zero bytes.
func TarOf(t testing.TB, ents ...TarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		if e.Raw != nil {
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			b.Write(e.Raw)
		}
		h := e.Hdr
		if h.ModTime.IsZero() {
			h.ModTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
		}
		if h.Format == tar.FormatUnknown && e.Raw == nil {
			h.Format = tar.FormatPAX
		}
		if e.Body != nil {
			h.Size = int64(len(e.Body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		body := e.Body
		if body == nil && h.Size > 0 {
			body = make([]byte, h.Size)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TarEntry is one entry for TarOf; Raw, when set, is written before the
// header as it is (a hand-made PAX header archive/tar will not write).
type TarEntry struct {
	Hdr  tar.Header
	Body []byte
	Raw  []byte
}

// File is a regular file entry.
func File(name, body string) TarEntry {
	return TarEntry{Hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, Body: []byte(body)}
}

// SparseFile is a GNU PAX 1.0 sparse file entry (as GNU tar --sparse
// --format=posix writes it) of realsize bytes with data at the offsets.
func SparseFile(name string, realsize int64, chunks map[int64]string) TarEntry {
	var offs []int64
	for o := range chunks {
		offs = append(offs, o)
	}
	slices.Sort(offs)
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
	h := tar.Header{Typeflag: tar.TypeReg, Name: "GNUSparseFile.0/" + name, Mode: 0o644, Format: tar.FormatUSTAR}
	return TarEntry{Hdr: h, Body: body, Raw: PAXBlock(map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     name,
		"GNU.sparse.realsize": strconv.FormatInt(realsize, 10),
	})}
}

// PAXBlock is a PAX extended header ('x') entry holding records, sorted.
func PAXBlock(records map[string]string) []byte {
	var keys []string
	for k := range records {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	var body []byte
	for _, k := range keys {
		rec := " " + k + "=" + records[k] + "\n"
		n := len(rec) + len(strconv.Itoa(len(rec)))
		if len(strconv.Itoa(n)) > len(strconv.Itoa(len(rec))) {
			n++
		}
		body = append(body, strconv.Itoa(n)+rec...)
	}
	hdr := make([]byte, 512)
	copy(hdr, "PaxHeaders.0/x")
	copy(hdr[100:], "0000644\x00")
	copy(hdr[108:], "0000000\x00")
	copy(hdr[116:], "0000000\x00")
	copy(hdr[124:], fmt.Sprintf("%011o\x00", len(body)))
	copy(hdr[136:], "00000000000\x00")
	hdr[156] = 'x'
	copy(hdr[257:], "ustar\x0000")
	copy(hdr[148:], "        ")
	sum := 0
	for _, c := range hdr {
		sum += int(c)
	}
	copy(hdr[148:], fmt.Sprintf("%06o\x00 ", sum))
	body = append(body, make([]byte, (512-len(body)%512)%512)...)
	return append(hdr, body...)
}

// Gzip compresses b.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// Zstd compresses b (frame checksum on).
func Zstd(t testing.TB, b []byte, opts ...zstd.EOption) []byte {
	t.Helper()
	var out bytes.Buffer
	zw, err := zstd.NewWriter(&out, append([]zstd.EOption{zstd.WithEncoderCRC(true)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// ZstdWindowFrame is data as one zstd frame of raw blocks whose header
// asks for a window of 2^windowLog bytes (10..41), as a hostile encoder
// writes it: encoders shrink the window to fit small inputs.
func ZstdWindowFrame(data []byte, windowLog int) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(windowLog-10) << 3}
	for {
		n := min(len(data), 128<<10)
		last := 0
		if n == len(data) {
			last = 1
		}
		h := uint32(last) | uint32(n)<<3 // raw block
		out = append(out, byte(h), byte(h>>8), byte(h>>16))
		out = append(out, data[:n]...)
		data = data[n:]
		if last == 1 {
			return out
		}
	}
}

// HostileCase is a whole hostile image for a pull, as an OCI layout.
type HostileCase struct {
	Name   string
	Layout string // OCI layout directory
	// Size is the --size to give (0: auto); WantErr says the pull must
	// fail; SingleEntry marks a one-entry layer (its pull must be fast).
	Size        int64
	WantErr     bool
	SingleEntry bool
}

// HostileCases makes the hostile images of the hostile-input issue, each
// a small OCI layout: sparse, depth, zstd window, config size, implied
// directories, many entries, xattrs, truncation.
func HostileCases(t testing.TB) []HostileCase {
	t.Helper()
	gz := func(tarb []byte) []RawLayer { return []RawLayer{{Blob: Gzip(t, tarb), Tar: tarb}} }
	var out []HostileCase
	add := func(name string, layers []RawLayer, config []byte, size int64, wantErr, single bool) {
		out = append(out, HostileCase{Name: name, Layout: RawOCILayout(t, layers, config), Size: size, WantErr: wantErr, SingleEntry: single})
	}
	const huge = 100 << 30
	add("sparse 100 GiB", gz(TarOf(t, SparseFile("var/log/lastlog", huge, map[int64]string{0: "a", huge - 1: "z"}))), nil, 0, false, true)
	frags := map[int64]string{}
	for i := int64(0); i < 20_000; i++ {
		frags[i*8192+i%4096] = "x" // one byte every 8 KiB, unaligned
	}
	add("sparse 20000 fragments", gz(TarOf(t, SparseFile("var/lib/frag", 20_000*8192, frags))), nil, 0, false, true)
	add("depth 20000", gz(TarOf(t, File(strings.Repeat("d/", 19_999)+"f", "x"))), nil, 0, true, true)
	add("depth 2000", gz(TarOf(t, File(strings.Repeat("d/", 1_999)+"f", "x"))), nil, 0, false, true)
	layer := TarOf(t, File("etc/passwd", "root::0:0::/root:/bin/sh\n"))
	add("zstd 512 MiB window", []RawLayer{{Blob: ZstdWindowFrame(layer, 29), Tar: layer, MediaType: "application/vnd.oci.image.layer.v1.tar+zstd"}}, nil, 0, true, true)
	gzl := Gzip(t, layer)
	add("gzip without trailer", []RawLayer{{Blob: gzl[:len(gzl)-8], Tar: layer}}, nil, 0, true, true)
	big := gz(layer)
	add("config 60 MiB", big, RawConfig(big, func(m map[string]any) {
		m["history"] = []any{map[string]any{"comment": strings.Repeat("x", 60<<20)}}
	}), 0, true, true)
	var implied []TarEntry
	for i := 0; i < 20_000; i++ {
		implied = append(implied, File(fmt.Sprintf("d%05d/f", i), ""))
	}
	add("20000 implied directories", gz(TarOf(t, implied...)), nil, 0, false, false)
	var many []TarEntry
	for i := 0; i < 200_000; i++ {
		many = append(many, File(fmt.Sprintf("many/%06d", i), ""))
	}
	add("200000 empty files", gz(TarOf(t, many...)), nil, 0, false, false)
	var dirs []TarEntry
	for i := 0; i < 100_000; i++ {
		dirs = append(dirs, TarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("%s/%06d/", strings.Repeat("long-directory-name/", 40), i), Mode: 0o755}})
	}
	add("100000 directories under a 800-byte path", gz(TarOf(t, dirs...)), nil, 0, false, false)
	xa := File("f", "x")
	xa.Hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 64<<10)}
	add("64 KiB xattr", gz(TarOf(t, xa)), nil, 0, true, true)
	return out
}
