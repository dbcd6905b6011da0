package fuzz

// FuzzPullOCILayout and FuzzPullDockerArchive feed whole hostile images to
// imagepull.Pull: an OCI image layout directory, and a docker save
// archive, made from the fuzz input by the framing below.
//
// # Framing
//
//	input := flags extra:uvarint piece*
//	piece := kind len:uvarint bytes[len] pad:uvarint
//
// Every piece has the same syntax whatever its kind, so a mutated kind
// byte never shifts the pieces after it. The first pieces are the image's
// documents (FuzzPullOCILayout: index.json, the manifest, the config;
// FuzzPullDockerArchive: manifest.json, the config); the rest, at most
// pullMaxLayers, are layer blobs. Documents the input does not reach are
// generated. A piece's content is its bytes followed by pad filler bytes
// (spaces for documents, so JSON stays JSON; zero bytes for layers; pads
// of one input total at most pullMaxPad), so a huge document is a few
// bytes of input.
//
// kind & 3 says how the piece is made:
//
//	0 make:   a document is generated from the other pieces (their correct
//	          digests, sizes and diff IDs; the bytes are ignored, the pad
//	          still appended); a layer's bytes are its uncompressed tar,
//	          compressed as its media type says (so mutations reach the tar
//	          parser through gzip and zstd);
//	1, 3 raw: the bytes are the document or the layer blob as stored;
//	2 absent: as raw, but the file (OCI) or member (docker) is not
//	          written: what refers to it still does.
//
// For layers, kind>>2 & 7 picks the media type (pullMediaTypes): the
// manifest's descriptor (OCI), and the compression of a made layer. The
// tar header checksums of a made layer are recomputed (fixTarChecksums),
// so mutated header fields reach the layer code instead of failing the
// checksum, unless kind bit 5 keeps them as given.
// Generated diff IDs are the sha256 of the uncompressed stream, decoded as
// Pull decodes it (by magic number, leniently: a stream cut short hashes
// what decoded), unless flags says otherwise.
//
// flags:
//
//	bits 0-1 the last layer piece's diff ID: 0 right; 1 the digest of the
//	         blob as stored (wrong for a compressed layer); 2 the digest
//	         of its tar followed by 1 KiB of zeros (another tar of the same
//	         entries); 3 sha256 of 64 zeros
//	bits 2-3 (OCI) the last layer piece's descriptor size: 0 right; 1 one
//	         more; 2 one less; 3 1 TiB
//	bit 4    unused
//	bit 5    name the image by tag (oci:DIR:v1,
//	         docker-archive:FILE:test/fuzz:latest)
//	bit 6    OCI: index.json points at a nested image index (platform
//	         linux/GOARCH) that points at the manifest; docker: members
//	         named blobs/sha256/HEX (docker 25+) instead of HEX.json and
//	         N/layer.tar
//	bit 7    OCI: no oci-layout file; docker: manifest.json is the first
//	         member instead of the last
//
// extra (at most pullMaxExtra) appends as many layers whose blobs do not
// exist to the generated manifest and config.
//
// # Oracle
//
// Pull runs with a pullTimeout context, Size pullSize and no Finalize. It
// must not panic, and must return within pullGrace of the deadline. It
// must write nothing outside OUTDIR: the source's files are unchanged,
// nothing appears beside OUTDIR, nothing is left in TMPDIR; and it leaves
// no temporaries (*.tmp-*) in OUTDIR. When Pull fails OUTDIR holds no
// rootfs.ext4. When it succeeds, OUTDIR/rootfs.ext4 opens read-only,
// fs.WalkDir walks its whole tree (regular files are read in part,
// symlinks read), no whiteout name (.wh.*) is left in it, and e2fsck -fn
// calls it clean (where e2fsck is installed, as FuzzBuildTar).
//
// Seeds (pullSeeds) are made in code; a seed carries what the issue about
// hostile images says Pull must do with it (succeed, or refuse), and
// within what time: for the exact seed bytes only, never for mutations.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

const (
	pullTimeout   = 20 * time.Second // the context Pull runs under
	pullGrace     = 5 * time.Second  // how late after the deadline Pull may return
	pullSize      = 32 << 20         // PullOptions.Size: fixed, so no estimate runs
	pullMaxLayers = 16
	pullMaxExtra  = 4096
	pullMaxPad    = 10 << 20 // total padding of one input
	pullMaxDecode = 64 << 20 // what the harness decompresses of a raw layer for its diff ID
)

// Piece kinds (kind & 3).
const (
	pieceMake   = 0
	pieceRaw    = 1
	pieceAbsent = 2
)

// pullMediaTypes are the layer media types a piece picks (kind>>2 & 7),
// with the compression a made layer gets. The last is not a layer type:
// Pull must refuse it.
var pullMediaTypes = []struct{ mt, comp string }{
	{"application/vnd.oci.image.layer.v1.tar", ""},
	{"application/vnd.oci.image.layer.v1.tar+gzip", "gzip"},
	{"application/vnd.oci.image.layer.v1.tar+zstd", "zstd"},
	{"application/vnd.docker.image.rootfs.diff.tar", ""},
	{"application/vnd.docker.image.rootfs.diff.tar.gzip", "gzip"},
	{"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "gzip"},
	{"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"},
	{"application/octet-stream", ""},
}

const (
	pullFlagTag    = 1 << 5
	pullFlagNested = 1 << 6 // OCI: nested index; docker: blobs/sha256 names
	pullFlagOrder  = 1 << 7 // OCI: no oci-layout; docker: manifest.json first
	pullTagOCI     = "v1"
	pullTagDocker  = "test/fuzz:latest"
)

// FuzzPullOCILayout pulls an OCI image layout made from the input.
func FuzzPullOCILayout(f *testing.F) {
	seeds := addPullSeeds(f, false)
	f.Fuzz(func(t *testing.T, data []byte) {
		runPull(t, false, data, seeds[string(data)])
	})
}

// FuzzPullDockerArchive pulls a docker save archive made from the input.
func FuzzPullDockerArchive(f *testing.F) {
	seeds := addPullSeeds(f, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		runPull(t, true, data, seeds[string(data)])
	})
}

func addPullSeeds(f *testing.F, docker bool) map[string]*pullSeed {
	m := map[string]*pullSeed{}
	for _, s := range pullSeeds(f, docker) {
		f.Add(s.data)
		m[string(s.data)] = s
	}
	return m
}

// pullPiece is one decoded piece.
type pullPiece struct {
	how  byte
	mt   int
	body []byte // the piece's bytes
	pad  []byte // its filler
	// keepSums (kind bit 5): a made layer's tar checksums stay as given.
	keepSums bool
}

// content is the piece as given: its bytes, then the pad.
func (p pullPiece) content() []byte { return append(slices.Clip(p.body), p.pad...) }

// pullInput is a decoded input.
type pullInput struct {
	flags  byte
	extra  int
	docs   []pullPiece
	layers []pullPiece
}

// decodePull decodes data leniently: any bytes give an input.
func decodePull(data []byte, ndocs int) pullInput {
	var in pullInput
	if len(data) > 0 {
		in.flags, data = data[0], data[1:]
		extra, n := binary.Uvarint(data)
		if n > 0 {
			in.extra = int(min(extra, pullMaxExtra))
			data = data[n:]
		} else {
			data = nil
		}
	}
	padLeft := uint64(pullMaxPad)
	for len(data) > 0 && len(in.docs)+len(in.layers) < ndocs+pullMaxLayers {
		kind := data[0]
		data = data[1:]
		ln, n := binary.Uvarint(data)
		if n <= 0 {
			ln, data = 0, nil
		} else {
			data = data[n:]
		}
		ln = min(ln, uint64(len(data)))
		body := data[:ln]
		data = data[ln:]
		pad, n := binary.Uvarint(data)
		if n <= 0 {
			pad, data = 0, nil
		} else {
			data = data[n:]
		}
		pad = min(pad, padLeft)
		padLeft -= pad
		isDoc := len(in.docs) < ndocs
		filler := byte(0)
		if isDoc {
			filler = ' '
		}
		p := pullPiece{how: kind & 3, mt: int(kind>>2) & 7, keepSums: kind&(1<<5) != 0}
		if p.how == 3 {
			p.how = pieceRaw
		}
		p.body, p.pad = body, bytes.Repeat([]byte{filler}, int(pad))
		if isDoc {
			in.docs = append(in.docs, p)
		} else {
			in.layers = append(in.layers, p)
		}
	}
	for len(in.docs) < ndocs {
		in.docs = append(in.docs, pullPiece{how: pieceMake})
	}
	return in
}

// pullLayer is a layer piece made ready.
type pullLayer struct {
	blob   []byte // as stored
	diffID string
	mt     string
	absent bool
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func hexOf(digest string) string { return strings.TrimPrefix(digest, "sha256:") }

var pullZstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
})

func compressAs(b []byte, comp string) ([]byte, error) {
	switch comp {
	case "gzip":
		var out bytes.Buffer
		zw := gzip.NewWriter(&out)
		if _, err := zw.Write(b); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	case "zstd":
		enc, err := pullZstdEncoder()
		if err != nil {
			return nil, err
		}
		return enc.EncodeAll(b, nil), nil
	}
	return b, nil
}

// uncompressedOf decodes a blob as Pull does (gzip and zstd by magic
// number, anything else as it is), leniently: a stream cut short or
// corrupt gives what decoded before the error.
func uncompressedOf(blob []byte) []byte {
	var r io.Reader
	switch {
	case len(blob) >= 2 && blob[0] == 0x1f && blob[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil
		}
		r = zr
	case bytes.HasPrefix(blob, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(blob), zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(imagepull.MaxZstdWindow), zstd.WithDecoderMaxMemory(pullMaxDecode))
		if err != nil {
			return nil
		}
		defer zr.Close()
		r = zr
	default:
		return blob
	}
	var out bytes.Buffer
	_, _ = io.Copy(&out, io.LimitReader(r, pullMaxDecode))
	return out.Bytes()
}

// fixTarChecksums returns tar with the checksum of every header it finds
// recomputed, walking the stream as archive/tar does (sizes in octal or
// base-256, a PAX "size" record overriding the next header's, no data for
// header-only types); it stops where the stream stops making sense.
func fixTarChecksums(b []byte) []byte {
	b = slices.Clone(b)
	paxSize := int64(-1)
	for off := 0; off+512 <= len(b); {
		h := b[off : off+512]
		if allZero(h) {
			off += 512
			continue
		}
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
		typ := h[156]
		size := tarNumber(h[124:136])
		if paxSize >= 0 && typ != tar.TypeXHeader && typ != tar.TypeXGlobalHeader {
			size = paxSize
		}
		switch typ {
		case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
			size = 0
		}
		if size < 0 || size > int64(len(b)) {
			break
		}
		data := off + 512
		end := data + int(size+511)&^511
		if end > len(b) {
			break
		}
		switch typ {
		case tar.TypeXHeader:
			paxSize = -1
			for _, rec := range strings.Split(string(b[data:data+int(size)]), "\n") {
				if _, kv, ok := strings.Cut(rec, " "); ok {
					if v, ok := strings.CutPrefix(kv, "size="); ok {
						if n, err := strconv.ParseInt(v, 10, 64); err == nil {
							paxSize = n
						}
					}
				}
			}
		case tar.TypeXGlobalHeader, tar.TypeGNULongName, tar.TypeGNULongLink:
		default:
			paxSize = -1
		}
		off = end
	}
	return b
}

// tarNumber parses a tar numeric field (octal, or base-256 when the top
// bit is set); -1 when it is neither.
func tarNumber(f []byte) int64 {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0]&0x40 != 0 {
			return -1 // negative
		}
		n := int64(f[0] & 0x3f)
		for _, c := range f[1:] {
			if n > 1<<50 {
				return -1
			}
			n = n<<8 | int64(c)
		}
		return n
	}
	s := strings.Trim(string(f), " \x00")
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 8, 64)
	if err != nil {
		return -1
	}
	return n
}

// makeLayers prepares the layer pieces and the extra missing layers.
func makeLayers(in pullInput) ([]pullLayer, error) {
	var out []pullLayer
	for i, p := range in.layers {
		mt := pullMediaTypes[p.mt]
		l := pullLayer{mt: mt.mt, absent: p.how == pieceAbsent}
		var tarb []byte
		if p.how == pieceMake {
			tarb = p.content()
			if !p.keepSums {
				tarb = fixTarChecksums(tarb)
			}
			b, err := compressAs(tarb, mt.comp)
			if err != nil {
				return nil, err
			}
			l.blob = b
		} else {
			l.blob = p.content()
			tarb = uncompressedOf(l.blob)
		}
		l.diffID = digestOf(tarb)
		if i == len(in.layers)-1 {
			switch in.flags & 3 {
			case 1:
				l.diffID = digestOf(l.blob)
			case 2:
				l.diffID = digestOf(append(slices.Clip(tarb), make([]byte, 1024)...))
			case 3:
				l.diffID = "sha256:" + strings.Repeat("0", 64)
			}
		}
		out = append(out, l)
	}
	for i := 0; i < in.extra; i++ {
		b := []byte(fmt.Sprintf("missing layer %d", i))
		out = append(out, pullLayer{blob: b, diffID: digestOf(b), mt: pullMediaTypes[1].mt, absent: true})
	}
	return out, nil
}

// madeDoc is a document piece: generated, then the pad, when made; else
// as given.
func madeDoc(p pullPiece, gen func() []byte) []byte {
	if p.how != pieceMake {
		return p.content()
	}
	return append(gen(), p.pad...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func pullConfig(layers []pullLayer) []byte {
	ids := []string{}
	for _, l := range layers {
		ids = append(ids, l.diffID)
	}
	return mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2024-02-03T04:05:06Z",
		"config": map[string]any{"Cmd": []string{"/bin/true"}, "Env": []string{"PATH=/usr/bin:/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": ids},
	})
}

type ociDesc struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    map[string]string `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// writeOCILayout makes the layout in dir and returns Pull's source.
func writeOCILayout(dir string, in pullInput) (string, error) {
	layers, err := makeLayers(in)
	if err != nil {
		return "", err
	}
	write := func(name string, b []byte) error {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		return os.WriteFile(name, b, 0o644)
	}
	blob := func(b []byte, absent bool) (string, error) {
		d := digestOf(b)
		if absent {
			return d, nil
		}
		return d, write(filepath.Join(dir, "blobs", "sha256", hexOf(d)), b)
	}
	cfg := madeDoc(in.docs[2], func() []byte { return pullConfig(layers) })
	cfgDigest, err := blob(cfg, in.docs[2].how == pieceAbsent)
	if err != nil {
		return "", err
	}
	manifest := madeDoc(in.docs[1], func() []byte {
		m := map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        ociDesc{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cfgDigest, Size: int64(len(cfg))},
		}
		ds := []ociDesc{}
		for i, l := range layers {
			size := int64(len(l.blob))
			if i == len(in.layers)-1 {
				switch in.flags >> 2 & 3 {
				case 1:
					size++
				case 2:
					size--
				case 3:
					size = 1 << 40
				}
			}
			ds = append(ds, ociDesc{MediaType: l.mt, Digest: digestOf(l.blob), Size: size})
		}
		m["layers"] = ds
		return mustJSON(m)
	})
	mDigest, err := blob(manifest, in.docs[1].how == pieceAbsent)
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		if _, err := blob(l.blob, l.absent); err != nil {
			return "", err
		}
	}
	top := ociDesc{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: mDigest, Size: int64(len(manifest)),
		Annotations: map[string]string{"org.opencontainers.image.ref.name": pullTagOCI}}
	if in.flags&pullFlagNested != 0 {
		nested := mustJSON(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.index.v1+json",
			"manifests": []ociDesc{{MediaType: top.MediaType, Digest: mDigest, Size: int64(len(manifest)),
				Platform: map[string]string{"os": "linux", "architecture": runtime.GOARCH}}},
		})
		d, err := blob(nested, false)
		if err != nil {
			return "", err
		}
		top.MediaType, top.Digest, top.Size = "application/vnd.oci.image.index.v1+json", d, int64(len(nested))
	}
	index := madeDoc(in.docs[0], func() []byte {
		return mustJSON(map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.index.v1+json",
			"manifests":     []ociDesc{top},
		})
	})
	if in.docs[0].how != pieceAbsent {
		if err := write(filepath.Join(dir, "index.json"), index); err != nil {
			return "", err
		}
	}
	if in.flags&pullFlagOrder == 0 {
		if err := write(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
			return "", err
		}
	}
	source := "oci:" + dir
	if in.flags&pullFlagTag != 0 {
		source += ":" + pullTagOCI
	}
	return source, nil
}

// writeDockerArchive makes dir/image.tar and returns Pull's source.
func writeDockerArchive(dir string, in pullInput) (string, error) {
	layers, err := makeLayers(in)
	if err != nil {
		return "", err
	}
	blobsNames := in.flags&pullFlagNested != 0
	cfg := madeDoc(in.docs[1], func() []byte { return pullConfig(layers) })
	cname := hexOf(digestOf(cfg)) + ".json"
	if blobsNames {
		cname = "blobs/sha256/" + hexOf(digestOf(cfg))
	}
	type member struct {
		name string
		data []byte
	}
	var members []member
	var paths []string
	seen := map[string]bool{}
	for i, l := range layers {
		p := fmt.Sprintf("%d/layer.tar", i+1)
		if blobsNames {
			p = "blobs/sha256/" + hexOf(digestOf(l.blob))
		}
		if l.absent && i >= len(in.layers) {
			p = fmt.Sprintf("missing/%d/layer.tar", i+1)
		}
		paths = append(paths, p)
		if !l.absent && !seen[p] {
			seen[p] = true
			members = append(members, member{p, l.blob})
		}
	}
	if in.docs[1].how != pieceAbsent {
		members = append(members, member{cname, cfg})
	}
	manifest := madeDoc(in.docs[0], func() []byte {
		return mustJSON([]map[string]any{{"Config": cname, "RepoTags": []string{pullTagDocker}, "Layers": paths}})
	})
	if in.docs[0].how != pieceAbsent {
		m := member{"manifest.json", manifest}
		if in.flags&pullFlagOrder != 0 {
			members = append([]member{m}, members...)
		} else {
			members = append(members, m)
		}
	}
	file := filepath.Join(dir, "image.tar")
	fh, err := os.Create(file)
	if err != nil {
		return "", err
	}
	tw := tar.NewWriter(fh)
	mt := time.Unix(1700000000, 0)
	for _, m := range members {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: m.name, Size: int64(len(m.data)), Mode: 0o644, ModTime: mt}); err != nil {
			fh.Close()
			return "", err
		}
		if _, err := tw.Write(m.data); err != nil {
			fh.Close()
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		fh.Close()
		return "", err
	}
	if err := fh.Close(); err != nil {
		return "", err
	}
	source := "docker-archive:" + file
	if in.flags&pullFlagTag != 0 {
		source += ":" + pullTagDocker
	}
	return source, nil
}

// snapshotTree records every file under root: type, size, mtime, content.
func snapshotTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += " " + digestOf(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		out[rel] = desc
		return nil
	})
	return out, err
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range before {
		if w, ok := after[k]; !ok {
			d = append(d, fmt.Sprintf("%s removed (was %s)", k, v))
		} else if w != v {
			d = append(d, fmt.Sprintf("%s changed: %s -> %s", k, v, w))
		}
	}
	for k, w := range after {
		if _, ok := before[k]; !ok {
			d = append(d, fmt.Sprintf("%s appeared (%s)", k, w))
		}
	}
	sort.Strings(d)
	return d
}

// runPull materialises the input, pulls it and checks the oracle.
func runPull(t *testing.T, docker bool, data []byte, seed *pullSeed) {
	what := "oci"
	ndocs := 3
	if docker {
		what, ndocs = "docker-archive", 2
	}
	if seed != nil {
		what += " seed " + seed.name
		t.Logf("seed %s (want %s)", seed.name, seed.want)
	}
	base := t.TempDir()
	src, out, tmp := filepath.Join(base, "src"), filepath.Join(base, "out"), filepath.Join(base, "tmp")
	for _, d := range []string{src, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	in := decodePull(data, ndocs)
	var source string
	var err error
	if docker {
		source, err = writeDockerArchive(src, in)
	} else {
		source, err = writeOCILayout(src, in)
	}
	if err != nil {
		t.Fatalf("%s: making the source: %v", what, err)
	}
	before, err := snapshotTree(src)
	if err != nil {
		t.Fatal(err)
	}

	var res *imagepull.PullResult
	var perr error
	var took time.Duration
	guard(t, what+": Pull", pullTimeout+pullGrace, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), pullTimeout)
		defer cancel()
		start := time.Now()
		res, perr = imagepull.Pull(ctx, source, out, imagepull.PullOptions{Size: pullSize})
		took = time.Since(start)
		return nil
	})
	t.Logf("%s: Pull took %v: %v", what, took.Round(time.Millisecond), perr)
	guard(t, what, 2*inputTimeout, func() error {
		return checkPull(base, src, out, tmp, before, res, perr, took, seed)
	})
}

func checkPull(base, src, out, tmp string, before map[string]string, res *imagepull.PullResult, perr error, took time.Duration, seed *pullSeed) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if took > pullTimeout+pullGrace {
		bad("Pull returned %v after it started: the %v deadline was not honoured", took, pullTimeout)
	}
	// Nothing written outside OUTDIR.
	after, err := snapshotTree(src)
	if err != nil {
		return fmt.Errorf("snapshot of the source after Pull: %v", err)
	}
	if d := diffSnapshots(before, after); len(d) > 0 {
		bad("Pull changed its source:\n  %s", strings.Join(d, "\n  "))
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if n := e.Name(); n != "src" && n != "out" && n != "tmp" {
			bad("%s appeared beside OUTDIR", n)
		}
	}
	if ents, err := os.ReadDir(tmp); err != nil {
		return err
	} else if len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		bad("Pull left files in TMPDIR: %v", names)
	}
	if ents, err := os.ReadDir(out); err == nil {
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				bad("Pull left a temporary in OUTDIR: %s", e.Name())
			}
		}
	} else if perr == nil {
		bad("OUTDIR: %v", err)
	}
	rootfs := filepath.Join(out, imagepull.RootfsName)
	if perr != nil {
		if _, err := os.Lstat(rootfs); !errors.Is(err, fs.ErrNotExist) {
			bad("Pull failed (%v) but OUTDIR holds %s (%v)", perr, imagepull.RootfsName, err)
		}
	} else {
		if res == nil || res.Rootfs != rootfs {
			bad("Pull succeeded with result %+v, want Rootfs %s", res, rootfs)
		}
		if err := checkPulledImage(rootfs, seed); err != nil {
			bad("%v", err)
		}
	}
	if seed != nil {
		switch {
		case seed.want == wantOK && perr != nil:
			bad("this seed must pull; Pull failed: %v", perr)
		case seed.want == wantFail && perr == nil:
			bad("this seed must be refused; Pull succeeded")
		}
		if seed.maxDur > 0 && took > seed.maxDur {
			bad("Pull took %v; this seed must take less than %v", took, seed.maxDur)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// checkPulledImage opens a pulled image read-only, walks it all and runs
// e2fsck -fn.
func checkPulledImage(p string, seed *pullSeed) error {
	img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("pulled image: read-only open: %v", err)
	}
	if werr := walkPulled(img, "/", 0); werr != nil {
		img.Close()
		return fmt.Errorf("pulled image: walk: %v", werr)
	}
	if seed != nil {
		for name, want := range seed.files {
			got, err := img.ReadFile(name)
			if err != nil || string(got) != want {
				img.Close()
				return fmt.Errorf("pulled image: %s holds %q (%v), want %q", name, got, err, want)
			}
		}
		for _, name := range seed.gone {
			if _, err := img.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
				img.Close()
				return fmt.Errorf("pulled image: %s should be whited out (%v)", name, err)
			}
		}
	}
	if err := img.Close(); err != nil {
		return fmt.Errorf("pulled image: close of a read-only image: %v", err)
	}
	if ok, ran, out := fsckClean(p); ran && !ok {
		return fmt.Errorf("pulled image: e2fsck -fn is not clean:\n%s", out)
	}
	return nil
}

// Seeds.

type pullWant int

const (
	wantAny pullWant = iota
	wantOK
	wantFail
)

func (w pullWant) String() string { return [...]string{"any outcome", "success", "refusal"}[w] }

type pullSeed struct {
	name   string
	data   []byte
	want   pullWant
	maxDur time.Duration     // when set, Pull must take less
	files  map[string]string // on success: files and their content
	gone   []string          // on success: paths that must not exist
}

// pp is a piece for encodePull.
type pp struct {
	how  byte
	mt   byte // pullMediaTypes index
	body []byte
	pad  uint64
}

var ppGen = pp{how: pieceMake}

// mtTar, mtGzip, mtZstd index pullMediaTypes.
const (
	mtTar  = 0
	mtGzip = 1
	mtZstd = 2
)

func encodePull(flags byte, extra uint64, pieces ...pp) []byte {
	out := []byte{flags}
	out = binary.AppendUvarint(out, extra)
	for _, p := range pieces {
		out = append(out, p.how|p.mt<<2)
		out = binary.AppendUvarint(out, uint64(len(p.body)))
		out = append(out, p.body...)
		out = binary.AppendUvarint(out, p.pad)
	}
	return out
}

// pent is one tar entry of a seed layer; raw, when set, is written before
// the header as it is (a hand-made PAX block archive/tar will not write).
type pent struct {
	hdr  tar.Header
	body []byte
	raw  []byte
}

var pullSeedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func pReg(name, body string, mode int64) pent {
	return pent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: pullSeedTime, Format: tar.FormatPAX}, body: []byte(body)}
}

func pDir(name string) pent {
	return pent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: pullSeedTime, Format: tar.FormatPAX}}
}

func pOther(typ byte, name, link string) pent {
	return pent{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o777, ModTime: pullSeedTime, Format: tar.FormatPAX}}
}

func pTar(tb testing.TB, ents ...pent) []byte {
	tb.Helper()
	out := make([]testimg.TarEntry, len(ents))
	for i, e := range ents {
		out[i] = testimg.TarEntry{Hdr: e.hdr, Body: e.body, Raw: e.raw}
	}
	return testimg.TarOf(tb, out...)
}

// pSparse is a PAX 1.0 sparse file (GNU tar --sparse --format=posix) of
// realsize bytes with data at the given offsets.
func pSparse(name string, realsize int64, chunks map[int64]string) pent {
	offs := make([]int64, 0, len(chunks))
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
	dir, file := path.Split(name)
	h := tar.Header{Typeflag: tar.TypeReg, Name: dir + "GNUSparseFile.0/" + file, Mode: 0o644, ModTime: pullSeedTime, Format: tar.FormatUSTAR, Size: int64(len(body))}
	raw := testimg.PAXBlock(map[string]string{
		"GNU.sparse.major":    "1",
		"GNU.sparse.minor":    "0",
		"GNU.sparse.name":     name,
		"GNU.sparse.realsize": strconv.FormatInt(realsize, 10),
	})
	return pent{hdr: h, body: body, raw: raw}
}

func gzipOf(tb testing.TB, b []byte) []byte {
	out, err := compressAs(b, "gzip")
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func zstdOf(tb testing.TB, b []byte) []byte {
	out, err := compressAs(b, "zstd")
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// pullSeeds are the seeds of FuzzPullOCILayout (docker false) or
// FuzzPullDockerArchive: a valid image in each layer format, and the
// hostile images of the issue.
func pullSeeds(tb testing.TB, docker bool) []*pullSeed {
	tb.Helper()
	docs := []pp{ppGen, ppGen, ppGen} // index.json, manifest, config
	if docker {
		docs = docs[:2] // manifest.json, config
	}
	layers := func(ls ...pp) []pp { return append(slices.Clone(docs), ls...) }
	mk := func(tarb []byte, mt byte) pp { return pp{how: pieceMake, mt: mt, body: tarb} }
	raw := func(blob []byte, mt byte) pp { return pp{how: pieceRaw, mt: mt, body: blob} }

	tool := strings.Repeat("#!/bin/sh\necho fuzz\n", 150)
	valid := pTar(tb,
		pDir("etc/"),
		pReg("etc/hostname", "fuzz\n", 0o644),
		pDir("usr/"), pDir("usr/bin/"),
		pReg("usr/bin/tool", tool, 0o755),
		pOther(tar.TypeSymlink, "bin", "usr/bin"),
		pOther(tar.TypeLink, "etc/hostname.link", "etc/hostname"),
	)
	validFiles := map[string]string{"/etc/hostname": "fuzz\n", "/etc/hostname.link": "fuzz\n", "/usr/bin/tool": tool, "/bin/tool": tool}
	passwd := pTar(tb, pDir("etc/"), pReg("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644))
	upper := pTar(tb,
		pReg("etc/.wh.hostname", "", 0),
		pReg("usr/.wh..wh..opq", "", 0),
		pReg("usr/new", "new\n", 0o644),
	)
	gz, zs := gzipOf(tb, valid), zstdOf(tb, valid)

	withMtime := func(e pent, t time.Time) pent { e.hdr.ModTime = t; return e }
	times := pTar(tb,
		withMtime(pReg("f2447", "x", 0o644), time.Date(2447, 1, 1, 0, 0, 0, 0, time.UTC)),
		withMtime(pReg("f1800", "x", 0o644), time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)),
		withMtime(pDir("d2447/"), time.Date(2447, 1, 1, 0, 0, 0, 0, time.UTC)),
		withMtime(pDir("d1800/"), time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC)),
	)
	dev := pent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/x", Mode: 0o600, Devmajor: 4096, Devminor: 1048576, ModTime: pullSeedTime, Format: tar.FormatPAX}}
	const sparseSize = 100 << 30
	sparse := pTar(tb, pDir("var/"), pDir("var/log/"), pSparse("var/log/lastlog", sparseSize, map[int64]string{0: "head", sparseSize - 4: "tail"}))
	deep := pTar(tb, pReg(strings.Repeat("d/", 2999)+"f", "deep", 0o644))
	bigX := pReg("f", "x", 0o644)
	bigX.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 64<<10)}
	xattr := pTar(tb, bigX)

	var seeds []*pullSeed
	add := func(s *pullSeed) { seeds = append(seeds, s) }
	dockerFlags := func(oci, dock byte) byte {
		if docker {
			return dock
		}
		return oci
	}
	add(&pullSeed{name: "empty-input", data: []byte{}})
	add(&pullSeed{name: "valid-plain", want: wantOK, files: validFiles, data: encodePull(0, 0, layers(mk(valid, mtTar))...)})
	add(&pullSeed{name: "valid-gzip", want: wantOK, files: validFiles,
		data: encodePull(pullFlagTag|pullFlagNested, 0, layers(mk(valid, mtGzip))...)})
	add(&pullSeed{name: "valid-zstd", want: wantOK, files: validFiles,
		data: encodePull(dockerFlags(0, pullFlagOrder), 0, layers(mk(valid, mtZstd))...)})
	add(&pullSeed{name: "valid-two-layers-whiteouts", want: wantOK,
		files: map[string]string{"/usr/new": "new\n", "/etc/hostname.link": "fuzz\n"},
		gone:  []string{"/etc/hostname", "/usr/bin"},
		data:  encodePull(0, 0, layers(mk(valid, mtGzip), mk(upper, mtTar))...)})
	add(&pullSeed{name: "gzip-without-trailer", want: wantFail, data: encodePull(0, 0, layers(raw(gz[:len(gz)-8], mtGzip))...)})
	add(&pullSeed{name: "zstd-cut-in-half", want: wantFail, data: encodePull(0, 0, layers(raw(zs[:len(zs)/2], mtZstd))...)})
	add(&pullSeed{name: "diffid-of-compressed-blob", want: wantFail, data: encodePull(1, 0, layers(mk(valid, mtGzip))...)})
	add(&pullSeed{name: "diffid-of-other-tar", want: wantFail, data: encodePull(2, 0, layers(mk(valid, mtTar))...)})
	if !docker {
		add(&pullSeed{name: "blob-size-plus-one", want: wantFail, data: encodePull(1<<2, 0, layers(mk(valid, mtGzip))...)})
		add(&pullSeed{name: "blob-size-minus-one", want: wantFail, data: encodePull(2<<2, 0, layers(mk(valid, mtGzip))...)})
	}
	add(&pullSeed{name: "whiteout-dot-dot", want: wantFail,
		data: encodePull(0, 0, layers(mk(passwd, mtTar), mk(pTar(tb, pReg("etc/.wh..", "", 0)), mtTar))...)})
	add(&pullSeed{name: "whiteout-dot-dot-dot", want: wantFail,
		data: encodePull(0, 0, layers(mk(passwd, mtTar), mk(pTar(tb, pReg("etc/.wh...", "", 0)), mtTar))...)})
	add(&pullSeed{name: "device-4096-1048576", want: wantFail, data: encodePull(0, 0, layers(mk(pTar(tb, pDir("dev/"), dev), mtGzip))...)})
	add(&pullSeed{name: "sparse-100GiB", want: wantOK, maxDur: 5 * time.Second,
		data: encodePull(0, 0, layers(mk(sparse, mtGzip))...)})
	add(&pullSeed{name: "depth-3000", want: wantFail, maxDur: 5 * time.Second,
		data: encodePull(0, 0, layers(raw(gzipOf(tb, deep), mtGzip))...)})
	add(&pullSeed{name: "mtime-2447-and-1800", want: wantOK, files: map[string]string{"/f2447": "x", "/f1800": "x"},
		data: encodePull(0, 0, layers(mk(times, mtGzip))...)})
	add(&pullSeed{name: "xattr-64KiB", want: wantFail, data: encodePull(0, 0, layers(raw(gzipOf(tb, xattr), mtGzip))...)})
	// Documents over their caps, made by padding generated ones.
	big := slices.Clone(docs)
	big[len(big)-1] = pp{how: pieceMake, pad: 9 << 20}
	add(&pullSeed{name: "config-9MiB", want: wantFail, data: encodePull(0, 0, append(big, mk(valid, mtGzip))...)})
	big = slices.Clone(docs)
	if docker {
		big[0] = pp{how: pieceMake, pad: 5 << 20}
		add(&pullSeed{name: "manifest.json-5MiB", want: wantFail, data: encodePull(0, 0, append(big, mk(valid, mtGzip))...)})
	} else {
		big[0] = pp{how: pieceMake, pad: 5 << 20}
		add(&pullSeed{name: "index.json-5MiB", want: wantFail, data: encodePull(0, 0, append(big, mk(valid, mtGzip))...)})
		big = slices.Clone(docs)
		big[1] = pp{how: pieceMake, pad: 5 << 20}
		add(&pullSeed{name: "manifest-5MiB", want: wantFail, data: encodePull(0, 0, append(big, mk(valid, mtGzip))...)})
	}
	add(&pullSeed{name: "missing-1000-blobs", want: wantFail, data: encodePull(0, 1000, layers(mk(valid, mtGzip))...)})
	return seeds
}

// fixTarChecksums keeps a valid tar as it is, and makes a header whose
// fields were changed readable again.
func TestFixTarChecksums(t *testing.T) {
	for _, docker := range []bool{false, true} {
		for _, s := range pullSeeds(t, docker) {
			in := decodePull(s.data, map[bool]int{false: 3, true: 2}[docker])
			for i, l := range in.layers {
				if l.how != pieceMake {
					continue
				}
				if b := l.content(); !bytes.Equal(fixTarChecksums(b), b) {
					t.Errorf("%s layer %d: fixTarChecksums changed a valid tar", s.name, i)
				}
			}
		}
	}
	b := pTar(t, pDir("etc/"), pReg("etc/hostname", "fuzz\n", 0o644))
	b[512+100] = '7' // etc/hostname's mode
	tr := tar.NewReader(bytes.NewReader(fixTarChecksums(b)))
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after fixTarChecksums: %v", err)
		}
	}
}

// walkPulled visits every entry under dir through the editor's own API,
// not the io/fs view: a layer may name files with any bytes but '/' and
// NUL (Linux and tar allow it), and io/fs, like os.DirFS, cannot open a
// name that is not valid UTF-8. Regular files are read at both ends
// (through io/fs where the name allows it, so that view is exercised
// too), symlinks read back.
func walkPulled(img *ext4edit.Image, dir string, depth int) error {
	if depth > 4096 {
		return fmt.Errorf("%s: deeper than PATH_MAX allows", dir)
	}
	ents, err := img.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("readdir %q: %w", dir, err)
	}
	fsys := img.FS()
	buf := make([]byte, 64<<10)
	for _, d := range ents {
		name := path.Join(dir, d.Name())
		if strings.HasPrefix(d.Name(), ".wh.") {
			return fmt.Errorf("%q: a whiteout name left in the image", name)
		}
		fi, err := img.Lstat(name)
		if err != nil {
			return fmt.Errorf("%q: lstat: %w", name, err)
		}
		if fi.Mode().Type() != d.Type() {
			return fmt.Errorf("%q: directory entry says %v, inode says %v", name, d.Type(), fi.Mode().Type())
		}
		switch {
		case fi.IsDir():
			if err := walkPulled(img, name, depth+1); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := readBothEnds(img, fsys, name, fi.Size(), buf); err != nil {
				return fmt.Errorf("%q: %w", name, err)
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			if _, err := img.Readlink(name); err != nil {
				return fmt.Errorf("%q: readlink: %w", name, err)
			}
		}
	}
	return nil
}

func readBothEnds(img *ext4edit.Image, fsys fs.FS, name string, size int64, buf []byte) error {
	rel := strings.TrimPrefix(name, "/")
	if !fs.ValidPath(rel) {
		// Only the native API can name it; the image is at most pullSize.
		data, err := img.ReadFile(name)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if int64(len(data)) != size {
			return fmt.Errorf("read %d bytes of %d", len(data), size)
		}
		return nil
	}
	f, err := fsys.Open(rel)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, buf[:min(int64(len(buf)), size)]); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if ra, ok := f.(io.ReaderAt); ok && size > 0 {
		if _, err := ra.ReadAt(buf[:1], size-1); err != nil && err != io.EOF {
			return fmt.Errorf("read the last byte: %w", err)
		}
	}
	return nil
}
