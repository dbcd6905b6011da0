package imagepull

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Source kinds, as Fetched.Kind names them.
const (
	SourceRegistry      = "registry"
	SourceOCILayout     = "oci"
	SourceDockerArchive = "docker-archive"
)

// ErrDigestMismatch: a blob's bytes do not hash to the digest that names
// it (or its length differs from the descriptor's size).
var ErrDigestMismatch = errors.New("digest mismatch")

// FetchOptions control Fetch.
type FetchOptions struct {
	// Platform picks the manifest of a multi-platform image and must match
	// a single-platform image's config when set. Nil: linux and the
	// running GOARCH for an index; a single image is taken as it is.
	Platform *v1.Platform
	// Keychain authenticates to registries; nil is authn.DefaultKeychain
	// (the usual docker config and credential helpers).
	Keychain authn.Keychain
	// Transport for registry requests; nil is remote.DefaultTransport.
	Transport http.RoundTripper
	// SpoolDir, when set, keeps each registry layer's compressed bytes in
	// a file there on first read, so a second read (the size scan, then
	// the build) does not download again. The caller removes the
	// directory.
	SpoolDir string
}

// Fetched is an image ready to stream: its metadata, with the manifest
// and config digests checked, and its layers.
type Fetched struct {
	Source string // as given
	Kind   string // SourceRegistry, SourceOCILayout or SourceDockerArchive
	// Reference is the registry reference pinned to the manifest digest
	// (registry sources), the layout tag, or the archive tag.
	Reference string
	// IndexDigest is the digest of the index the manifest was picked from
	// ("" when the source named a single image).
	IndexDigest string
	// ManifestDigest is "" for docker-archive sources (docker save writes
	// no registry manifest).
	ManifestDigest    string
	ManifestMediaType string
	ConfigDigest      string
	Platform          v1.Platform
	Config            *v1.ConfigFile
	Layers            []FetchedLayer
}

// FetchedLayer is one layer of a Fetched image.
type FetchedLayer struct {
	Digest    string // of the blob as stored ("" for docker-archive)
	DiffID    string // of the uncompressed tar
	MediaType string
	Size      int64 // blob size, -1 when unknown
	// open returns the blob (verified against Digest unless diffIDCheck,
	// where the uncompressed stream is verified against DiffID).
	open        func() (io.ReadCloser, error)
	diffIDCheck bool
}

// Open returns the layer's uncompressed tar stream. The blob is checked
// against its digest as it is read: a mismatch is a read error
// (ErrDigestMismatch) at the end of the stream. Decompression runs ahead
// in its own goroutine.
func (l FetchedLayer) Open() (io.ReadCloser, error) {
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	if !l.diffIDCheck {
		return Decompress(rc)
	}
	h, err := v1.NewHash(l.DiffID)
	if err != nil {
		rc.Close()
		return nil, err
	}
	// Verify in the decompressing goroutine (it is the one reading).
	return decompress(rc, func(r io.Reader) io.Reader {
		v, _ := verifyReader(io.NopCloser(r), h, -1, "layer "+l.DiffID)
		return v
	})
}

// LayerSources lists the layers for BuildExt4.
func (f *Fetched) LayerSources() []LayerSource {
	out := make([]LayerSource, len(f.Layers))
	for i, l := range f.Layers {
		d := l.Digest
		if d == "" {
			d = l.DiffID
		}
		out[i] = LayerSource{Digest: d, Open: l.Open}
	}
	return out
}

// ParsePlatform parses "os/arch[/variant]" ("linux/arm64/v8").
func ParsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil, err
	}
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	return p, nil
}

// DefaultPlatform is linux on the running architecture.
func DefaultPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// Fetch resolves source to one image and prepares its layers for
// streaming; nothing is downloaded but manifests and the config. SOURCE
// is a registry reference ("docker.io/library/debian:bookworm",
// optionally "docker://..."), "oci:DIR[:TAG]" (an OCI image layout) or
// "docker-archive:FILE[:TAG]" (a docker save tarball).
func Fetch(ctx context.Context, source string, opts FetchOptions) (*Fetched, error) {
	var (
		f   *Fetched
		err error
	)
	switch {
	case strings.HasPrefix(source, "oci:"):
		f, err = fetchLayout(strings.TrimPrefix(source, "oci:"), opts)
	case strings.HasPrefix(source, "docker-archive:"):
		f, err = fetchArchive(strings.TrimPrefix(source, "docker-archive:"), opts)
	default:
		f, err = fetchRemote(ctx, strings.TrimPrefix(source, "docker://"), opts)
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", source, err)
	}
	f.Source = source
	return f, nil
}

func wantPlatform(opts FetchOptions) v1.Platform {
	if opts.Platform != nil {
		return *opts.Platform
	}
	return DefaultPlatform()
}

// pickManifest chooses the manifest for want among an index's entries.
func pickManifest(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var avail []string
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if !d.MediaType.IsImage() && !d.MediaType.IsIndex() {
			continue
		}
		if d.Platform == nil {
			avail = append(avail, "(no platform)")
			continue
		}
		if d.Platform.OS == "unknown" { // attestation manifests
			continue
		}
		avail = append(avail, d.Platform.String())
		if d.Platform.Satisfies(want) {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		// An index of one manifest without a platform is a single image.
		if len(im.Manifests) == 1 && im.Manifests[0].Platform == nil {
			return im.Manifests[0], nil
		}
		return v1.Descriptor{}, fmt.Errorf("no manifest for platform %s (the index has: %s)", want.String(), strings.Join(avail, ", "))
	}
	return found[0], nil
}

// checkPlatform compares a single image's config with an explicit platform.
func checkPlatform(cfg *v1.ConfigFile, opts FetchOptions) error {
	if opts.Platform == nil {
		return nil
	}
	have := v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	if !have.Satisfies(v1.Platform{OS: opts.Platform.OS, Architecture: opts.Platform.Architecture, Variant: opts.Platform.Variant}) {
		return fmt.Errorf("the image is for %s, not %s", have.String(), opts.Platform.String())
	}
	return nil
}

// fromImage fills a Fetched from a v1.Image whose blobs are read through
// blob (compressed bytes, not yet verified).
func fromImage(img v1.Image, opts FetchOptions, blob func(d v1.Descriptor) (io.ReadCloser, error)) (*Fetched, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	mdig := sha256Hash(raw)
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := checkBytes(rawCfg, m.Config.Digest, m.Config.Size, "config"); err != nil {
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := checkPlatform(cfg, opts); err != nil {
		return nil, err
	}
	mt := string(m.MediaType)
	if mt == "" {
		if t, err := img.MediaType(); err == nil {
			mt = string(t)
		}
	}
	f := &Fetched{
		ManifestDigest:    mdig.String(),
		ManifestMediaType: mt,
		ConfigDigest:      m.Config.Digest.String(),
		Platform:          v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
		Config:            cfg,
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("manifest lists %d layers but the config %d diff IDs", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	for i, d := range m.Layers {
		if !layerMediaType(d.MediaType) {
			return nil, fmt.Errorf("layer %d (%s): media type %q is not a layer this tool can unpack", i+1, d.Digest, d.MediaType)
		}
		d := d
		f.Layers = append(f.Layers, FetchedLayer{
			Digest:    d.Digest.String(),
			DiffID:    cfg.RootFS.DiffIDs[i].String(),
			MediaType: string(d.MediaType),
			Size:      d.Size,
			open: func() (io.ReadCloser, error) {
				rc, err := blob(d)
				if err != nil {
					return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
				}
				return verifyReader(rc, d.Digest, d.Size, "layer "+d.Digest.String())
			},
		})
	}
	return f, nil
}

func layerMediaType(mt types.MediaType) bool {
	switch mt {
	case types.OCILayer, types.OCILayerZStd, types.OCIUncompressedLayer, types.DockerLayer,
		types.DockerUncompressedLayer, types.DockerForeignLayer, types.OCIRestrictedLayer, types.OCIUncompressedRestrictedLayer:
		return true
	}
	return false
}

func fetchRemote(ctx context.Context, s string, opts FetchOptions) (*Fetched, error) {
	ref, err := name.ParseReference(s)
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	if opts.Transport != nil {
		ropts = append(ropts, remote.WithTransport(opts.Transport))
	}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, err
	}
	var img v1.Image
	var indexDigest string
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, err
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		d, err := pickManifest(im, wantPlatform(opts))
		if err != nil {
			return nil, err
		}
		if !d.MediaType.IsImage() {
			return nil, fmt.Errorf("nested index %s is not supported", d.Digest)
		}
		indexDigest = desc.Digest.String()
		// Fetched by digest: ggcr checks the manifest against it.
		if img, err = idx.Image(d.Digest); err != nil {
			return nil, err
		}
	case desc.MediaType.IsImage():
		if img, err = desc.Image(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%s is a %q, not an image", ref, desc.MediaType)
	}
	f, err := fromImage(img, opts, func(d v1.Descriptor) (io.ReadCloser, error) {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		return spoolBlob(opts.SpoolDir, d, l.Compressed)
	})
	if err != nil {
		return nil, err
	}
	f.Kind = SourceRegistry
	f.IndexDigest = indexDigest
	f.Reference = ref.Context().Digest(f.ManifestDigest).String()
	return f, nil
}

// splitTag splits "PATH:TAG" where TAG may itself hold colons and
// slashes ("f.tar:repo/img:v1"): PATH is the shortest prefix before a
// colon that exists; with none, the whole string is the path.
func splitTag(s string) (string, string) {
	if _, err := os.Stat(s); err == nil {
		return s, ""
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' || i == 0 {
			continue
		}
		if _, err := os.Stat(s[:i]); err == nil {
			return s[:i], s[i+1:]
		}
	}
	// Nothing exists: split at the first colon (not a drive letter's) so
	// the error names the path.
	if i := strings.IndexByte(s[min(2, len(s)):], ':'); i >= 0 {
		i += min(2, len(s))
		return s[:i], s[i+1:]
	}
	return s, ""
}

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

func fetchLayout(s string, opts FetchOptions) (*Fetched, error) {
	dir, tag := splitTag(s)
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var desc v1.Descriptor
	if tag != "" {
		var tags []string
		found := false
		for _, d := range im.Manifests {
			n := d.Annotations[refNameAnnotation]
			tags = append(tags, n)
			if n == tag || strings.HasSuffix(n, ":"+tag) {
				desc, found = d, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("tag %q not in %s (it has: %s)", tag, dir, strings.Join(tags, ", "))
		}
	} else if len(im.Manifests) == 1 {
		desc = im.Manifests[0]
	} else {
		d, err := pickManifest(im, wantPlatform(opts))
		if err != nil {
			return nil, fmt.Errorf("%s holds %d manifests; name one with oci:DIR:TAG (%w)", dir, len(im.Manifests), err)
		}
		desc = d
	}
	var indexDigest string
	parent := idx
	if desc.MediaType.IsIndex() {
		sub, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, err
		}
		raw, err := checkedRaw(sub.RawManifest, desc, "index")
		if err != nil {
			return nil, err
		}
		subm, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		d, err := pickManifest(subm, wantPlatform(opts))
		if err != nil {
			return nil, err
		}
		indexDigest = desc.Digest.String()
		desc, parent = d, sub
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s is a %q, not an image", desc.Digest, desc.MediaType)
	}
	img, err := parent.Image(desc.Digest)
	if err != nil {
		return nil, err
	}
	if _, err := checkedRaw(img.RawManifest, desc, "manifest"); err != nil {
		return nil, err
	}
	f, err := fromImage(img, opts, func(d v1.Descriptor) (io.ReadCloser, error) {
		return p.Blob(d.Digest)
	})
	if err != nil {
		return nil, err
	}
	f.Kind = SourceOCILayout
	f.IndexDigest = indexDigest
	f.Reference = tag
	return f, nil
}

var hex64 = regexp.MustCompile(`[0-9a-f]{64}`)

func fetchArchive(s string, opts FetchOptions) (*Fetched, error) {
	file, tagStr := splitTag(s)
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, err
	}
	var desc *tarball.Descriptor
	switch {
	case tagStr != "":
		tag, err := name.NewTag(tagStr)
		if err != nil {
			return nil, err
		}
		var all []string
		for i := range m {
			for _, t := range m[i].RepoTags {
				all = append(all, t)
				if rt, err := name.NewTag(t); err == nil && rt.Name() == tag.Name() && desc == nil {
					desc = &m[i]
				}
			}
		}
		if desc == nil {
			return nil, fmt.Errorf("tag %s not in %s (it has: %s)", tag, file, strings.Join(all, ", "))
		}
	case len(m) == 1:
		desc = &m[0]
	default:
		return nil, fmt.Errorf("%s holds %d images; name one with docker-archive:FILE:TAG", file, len(m))
	}
	rawCfg, err := readTarMember(file, desc.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cdig := sha256Hash(rawCfg)
	if h := hex64.FindString(path.Base(desc.Config)); h != "" && h != cdig.Hex {
		return nil, fmt.Errorf("config %s: %w (content is %s)", desc.Config, ErrDigestMismatch, cdig)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := checkPlatform(cfg, opts); err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(desc.Layers) {
		return nil, fmt.Errorf("manifest.json lists %d layers but the config %d diff IDs", len(desc.Layers), len(cfg.RootFS.DiffIDs))
	}
	f := &Fetched{
		Kind:         SourceDockerArchive,
		ConfigDigest: cdig.String(),
		Platform:     v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant},
		Config:       cfg,
	}
	if len(desc.RepoTags) > 0 {
		f.Reference = desc.RepoTags[0]
		if tagStr != "" {
			f.Reference = tagStr
		}
	}
	sizes, err := tarMemberSizes(file)
	if err != nil {
		return nil, err
	}
	for i, member := range desc.Layers {
		member := member
		size, ok := sizes[path.Clean(member)]
		if !ok {
			return nil, fmt.Errorf("layer %s not in %s", member, file)
		}
		f.Layers = append(f.Layers, FetchedLayer{
			DiffID:    cfg.RootFS.DiffIDs[i].String(),
			MediaType: string(types.DockerLayer),
			Size:      size,
			// docker save stores layers uncompressed (or, rarely,
			// compressed) and names them by path: the diff ID checks the
			// uncompressed stream.
			diffIDCheck: true,
			open:        func() (io.ReadCloser, error) { return openTarMember(file, member) },
		})
	}
	return f, nil
}

// openTarMember streams the member name of the tar file (following
// symlink and hard link members, as docker save uses them for repeated
// layers).
func openTarMember(file, member string) (io.ReadCloser, error) {
	for hops := 0; hops < 16; hops++ {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		tr := tar.NewReader(f)
		next := ""
		for next == "" {
			hdr, err := tr.Next()
			if err == io.EOF {
				f.Close()
				return nil, fmt.Errorf("%s not found in %s", member, file)
			}
			if err != nil {
				f.Close()
				return nil, err
			}
			if path.Clean(hdr.Name) != path.Clean(member) {
				continue
			}
			switch hdr.Typeflag {
			case tar.TypeSymlink:
				next = path.Join(path.Dir(member), hdr.Linkname)
			case tar.TypeLink:
				next = hdr.Linkname
			default:
				return &readCloser{Reader: tr, close: f.Close}, nil
			}
		}
		f.Close()
		member = next
	}
	return nil, fmt.Errorf("%s in %s: too many links", member, file)
}

// tarMemberSizes maps the regular members of the tar file to their sizes,
// with link members resolved.
func tarMemberSizes(file string) (map[string]int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sizes := map[string]int64{}
	links := map[string]string{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		n := path.Clean(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			links[n] = path.Join(path.Dir(n), hdr.Linkname)
		case tar.TypeLink:
			links[n] = path.Clean(hdr.Linkname)
		case tar.TypeReg, tar.TypeRegA:
			sizes[n] = hdr.Size
		}
	}
	for n, t := range links {
		for hops := 0; hops < 16; hops++ {
			if sz, ok := sizes[t]; ok {
				sizes[n] = sz
				break
			}
			if t = links[t]; t == "" {
				break
			}
		}
	}
	return sizes, nil
}

func readTarMember(file, member string) ([]byte, error) {
	rc, err := openTarMember(file, member)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<20))
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

// sha256Hash is the sha256 v1.Hash of b.
func sha256Hash(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

// checkBytes verifies b against a descriptor's digest and size.
// checkedRaw fetches a manifest's raw bytes and verifies them against the
// descriptor that named them.
func checkedRaw(get func() ([]byte, error), d v1.Descriptor, what string) ([]byte, error) {
	raw, err := get()
	if err != nil {
		return nil, err
	}
	if err := checkBytes(raw, d.Digest, d.Size, what); err != nil {
		return nil, err
	}
	return raw, nil
}

func checkBytes(b []byte, want v1.Hash, size int64, what string) error {
	h, err := newHash(want)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	h.Write(b)
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("%s %s: %w (content is %s:%s)", what, want, ErrDigestMismatch, want.Algorithm, got)
	}
	if size > 0 && int64(len(b)) != size {
		return fmt.Errorf("%s %s: %w: %d bytes, descriptor says %d", what, want, ErrDigestMismatch, len(b), size)
	}
	return nil
}

func newHash(h v1.Hash) (hash.Hash, error) {
	switch h.Algorithm {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unsupported digest algorithm %q", h.Algorithm)
}

// verifyReader checks what rc yields against want (and size, when >= 0)
// at EOF: a mismatch replaces io.EOF with an ErrDigestMismatch error.
func verifyReader(rc io.ReadCloser, want v1.Hash, size int64, what string) (io.ReadCloser, error) {
	h, err := newHash(want)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &verifying{rc: rc, h: h, want: want, size: size, what: what}, nil
}

type verifying struct {
	rc   io.ReadCloser
	h    hash.Hash
	want v1.Hash
	size int64
	n    int64
	what string
	err  error
}

func (v *verifying) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%s: %w: more than the descriptor's %d bytes", v.what, ErrDigestMismatch, v.size)
		return n, v.err
	}
	if err != nil && err != io.EOF && v.size >= 0 && v.n == v.size {
		// The layer below failed at the very end (ggcr's own check):
		// say whether the bytes match.
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			v.err = fmt.Errorf("%s: %w (content is %s:%s; %v)", v.what, ErrDigestMismatch, v.want.Algorithm, got, err)
			return n, v.err
		}
	}
	if err == io.EOF {
		if v.size >= 0 && v.n != v.size {
			v.err = fmt.Errorf("%s: %w: %d bytes, descriptor says %d", v.what, ErrDigestMismatch, v.n, v.size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want.Hex {
			v.err = fmt.Errorf("%s: %w (content is %s:%s)", v.what, ErrDigestMismatch, v.want.Algorithm, got)
		} else {
			v.err = io.EOF
		}
		return n, v.err
	}
	return n, err
}

func (v *verifying) Close() error { return v.rc.Close() }

// spoolBlob returns the blob d: from dir when an earlier read stored it
// there, else from open, copying it into dir as it is read. With dir ""
// it is open().
func spoolBlob(dir string, d v1.Descriptor, open func() (io.ReadCloser, error)) (io.ReadCloser, error) {
	if dir == "" {
		return open()
	}
	final := filepath.Join(dir, d.Digest.Algorithm+"-"+d.Digest.Hex)
	if f, err := os.Open(final); err == nil {
		return f, nil
	}
	rc, err := open()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, ".partial-*")
	if err != nil {
		rc.Close()
		return nil, err
	}
	// The spool is only kept when the whole blob was read and matched its
	// digest: the consumer's verifying reader sees the same bytes.
	h, _ := newHash(d.Digest)
	if h == nil {
		h = sha256.New()
	}
	return &spooling{rc: rc, tmp: tmp, final: final, h: h, want: d.Digest.Hex, size: d.Size}, nil
}

type spooling struct {
	rc    io.ReadCloser
	tmp   *os.File
	final string
	h     hash.Hash
	want  string
	size  int64
	n     int64
	done  bool
	werr  error
}

func (s *spooling) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 && s.werr == nil {
		if _, werr := s.tmp.Write(p[:n]); werr != nil {
			s.werr = werr
		}
		s.h.Write(p[:n])
		s.n += int64(n)
	}
	if err == io.EOF {
		s.done = true
	}
	return n, err
}

func (s *spooling) Close() error {
	err := s.rc.Close()
	name := s.tmp.Name()
	cerr := s.tmp.Close()
	keep := s.done && s.werr == nil && cerr == nil && hex.EncodeToString(s.h.Sum(nil)) == s.want && (s.size < 0 || s.n == s.size)
	if keep {
		if rerr := os.Rename(name, s.final); rerr == nil {
			return err
		}
	}
	os.Remove(name)
	return err
}

// Decompress returns the uncompressed stream of rc: gzip and zstd are
// detected by their magic numbers, anything else passes through. The
// decompressor runs ahead in its own goroutine (up to a few MiB), so
// decompression overlaps with whatever consumes the stream. Closing the
// result closes rc.
func Decompress(rc io.ReadCloser) (io.ReadCloser, error) {
	return decompress(rc, nil)
}

// decompress is Decompress with wrap (when not nil) applied to the
// uncompressed stream inside the goroutine.
func decompress(rc io.ReadCloser, wrap func(io.Reader) io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(rc, 256<<10)
	magic, err := br.Peek(4)
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, err
	}
	var r io.Reader = br
	var closeDec func()
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := kgzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r = zr
	case len(magic) >= 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("zstd: %w", err)
		}
		r, closeDec = zr, zr.Close
	}
	if r != io.Reader(br) {
		r = &drainOnError{r: r, src: br}
	}
	if wrap != nil {
		r = wrap(r)
	}
	return newReadahead(r, rc.Close, closeDec), nil
}

// drainOnError reads the compressed source to its end when decompression
// fails, so a verifying reader below can tell a corrupted blob (reported
// as ErrDigestMismatch) from a bad stream.
type drainOnError struct {
	r   io.Reader
	src io.Reader
}

func (d *drainOnError) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		if _, derr := io.Copy(io.Discard, d.src); errors.Is(derr, ErrDigestMismatch) {
			return n, fmt.Errorf("%w (decompressing: %v)", derr, err)
		}
	}
	return n, err
}

// readahead reads src in a goroutine into a few recycled chunks.
type readahead struct {
	full   chan []byte
	free   chan []byte
	done   chan struct{}
	exited chan struct{}
	err    error // set before full is closed
	cur    []byte
	chunk  []byte
	closer func() error
	after  func()
	once   sync.Once
}

const (
	readaheadChunk  = 512 << 10
	readaheadChunks = 6
)

// newReadahead reads src ahead. Close calls closer (which must make a
// blocked read of src return), waits for the goroutine, then calls after.
func newReadahead(src io.Reader, closer func() error, after func()) *readahead {
	r := &readahead{
		full:   make(chan []byte, readaheadChunks),
		free:   make(chan []byte, readaheadChunks),
		done:   make(chan struct{}),
		exited: make(chan struct{}),
		closer: closer,
		after:  after,
	}
	for i := 0; i < readaheadChunks; i++ {
		r.free <- make([]byte, readaheadChunk)
	}
	go r.run(src)
	return r
}

func (r *readahead) run(src io.Reader) {
	defer close(r.exited)
	defer close(r.full)
	for {
		var buf []byte
		select {
		case buf = <-r.free:
		case <-r.done:
			r.err = errors.New("read after close")
			return
		}
		n, err := io.ReadFull(src, buf[:cap(buf)])
		if n > 0 {
			select {
			case r.full <- buf[:n]:
			case <-r.done:
				r.err = errors.New("read after close")
				return
			}
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				err = io.EOF
			}
			r.err = err
			return
		}
	}
}

func (r *readahead) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		if r.chunk != nil {
			r.free <- r.chunk[:cap(r.chunk)]
			r.chunk = nil
		}
		b, ok := <-r.full
		if !ok {
			return 0, r.err
		}
		r.cur, r.chunk = b, b
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// WriteTo hands whole chunks to w (io.Copy uses it).
func (r *readahead) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(r.cur) == 0 {
			if r.chunk != nil {
				r.free <- r.chunk[:cap(r.chunk)]
				r.chunk = nil
			}
			b, ok := <-r.full
			if !ok {
				if r.err == io.EOF {
					return total, nil
				}
				return total, r.err
			}
			r.cur, r.chunk = b, b
		}
		n, err := w.Write(r.cur)
		total += int64(n)
		r.cur = r.cur[n:]
		if err != nil {
			return total, err
		}
	}
}

func (r *readahead) Close() error {
	var err error
	r.once.Do(func() {
		close(r.done)
		// Closing the source unblocks a reader stuck in it.
		err = r.closer()
		<-r.exited
		if r.after != nil {
			r.after()
		}
	})
	return err
}

// sortedStrings returns the keys of m in order.
func sortedStrings[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
