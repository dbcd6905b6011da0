package imagepull

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
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
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
// it (or its length differs from the descriptor's size), or a layer's
// uncompressed tar does not hash to its diff ID.
var ErrDigestMismatch = errors.New("digest mismatch")

// ErrTooLarge: an image document (index, manifest, config) is larger than
// its cap (MaxManifestBytes, MaxConfigBytes).
var ErrTooLarge = errors.New("image document too large")

// Caps on the JSON documents of an image, read whole into memory. Registries
// (distribution, Harbor, Pulp) and containerd refuse manifests and indexes
// over 4 MiB; real configs are tens of KiB (a long build history: hundreds).
// A source that claims or serves more is refused with ErrTooLarge before the
// bytes are read, so a hostile image cannot make a pull buffer it.
const (
	MaxManifestBytes = 4 << 20 // an index.json, index or manifest
	MaxConfigBytes   = 8 << 20 // an image config
	// maxArchiveMembers bounds what Fetch records of a docker archive's
	// member list (docker save writes a handful per layer).
	maxArchiveMembers = 1 << 16
)

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
	// Insecure lets the registry the source names (only that host: a
	// token server elsewhere keeps its TLS checked) be reached over plain
	// HTTP (name.Insecure) or over TLS without certificate verification.
	// The verification is skipped in a clone of Transport when it is an
	// *http.Transport (or nil); another RoundTripper's TLS is the
	// caller's. Without it, plain HTTP is tried only where
	// go-containerregistry tries it: localhost, 127.0.0.1, ::1 and
	// private (RFC 1918) addresses.
	Insecure bool
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
	// open returns the blob, verified against Digest as it is read (when
	// Digest is set: docker archives name layers by path only).
	open func() (io.ReadCloser, error)
}

// Open returns the layer's uncompressed tar stream, checked in one pass
// as containerd checks it: the blob against its digest (registry and OCI
// layout sources) and the uncompressed tar against the config's diff ID
// (every source; for a docker archive it is the only check). A mismatch,
// and a compressed stream cut short (a gzip member without its trailer, a
// zstd frame without its end), is a read error at the end of the stream,
// wrapping ErrDigestMismatch or io.ErrUnexpectedEOF: the consumer never
// sees a clean EOF for bytes that were not verified. Decompression runs
// ahead in its own goroutine.
func (l FetchedLayer) Open() (io.ReadCloser, error) {
	h, err := v1.NewHash(l.DiffID)
	if err != nil {
		return nil, fmt.Errorf("diff ID %q: %w", l.DiffID, err)
	}
	rc, err := l.open()
	if err != nil {
		return nil, err
	}
	// Verify in the decompressing goroutine (it is the one reading).
	return decompress(rc, func(r io.Reader) io.Reader {
		v, _ := verifyReader(io.NopCloser(r), h, -1, "layer diff ID "+l.DiffID)
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

// fromManifest fills a Fetched from an image manifest's raw bytes (already
// checked against the digest that named them, where one did). config
// returns the config blob's bytes (at most MaxConfigBytes, checked here
// against the descriptor), blob a layer's compressed bytes (checked here,
// as they are read).
func fromManifest(raw []byte, opts FetchOptions, config func(d v1.Descriptor) ([]byte, error), blob func(d v1.Descriptor) (io.ReadCloser, error)) (*Fetched, error) {
	if len(raw) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest: %w: %d bytes, the cap is %d", ErrTooLarge, len(raw), MaxManifestBytes)
	}
	mdig := sha256Hash(raw)
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if err := checkDocSize(m.Config, MaxConfigBytes, "config"); err != nil {
		return nil, err
	}
	rawCfg, err := config(m.Config)
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
	f := &Fetched{
		ManifestDigest:    mdig.String(),
		ManifestMediaType: string(m.MediaType),
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
		if d.Size < 0 {
			return nil, fmt.Errorf("layer %d (%s): negative size %d", i+1, d.Digest, d.Size)
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

// checkDocSize refuses a descriptor of a document read whole into memory
// whose size is missing or over max.
func checkDocSize(d v1.Descriptor, max int64, what string) error {
	if d.Size <= 0 {
		return fmt.Errorf("%s %s: descriptor gives no size (%d)", what, d.Digest, d.Size)
	}
	if d.Size > max {
		return fmt.Errorf("%s %s: %w: the descriptor says %d bytes, the cap is %d", what, d.Digest, ErrTooLarge, d.Size, max)
	}
	return nil
}

// readCapped reads r to its end, refusing more than max bytes with
// ErrTooLarge (having read at most max+1).
func readCapped(r io.Reader, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than %d bytes", what, ErrTooLarge, max)
	}
	return b, nil
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
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(s, nopts...)
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	rt := opts.Transport
	if rt == nil {
		rt = remote.DefaultTransport
	}
	if opts.Insecure {
		rt = insecureFor(ref.Context().RegistryStr(), rt)
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(capManifests{rt})}
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		if !opts.Insecure && (errors.Is(err, http.ErrSchemeMismatch) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")) {
			// Say what to do about it: the plain-HTTP registry is the
			// user's to trust.
			return nil, fmt.Errorf("%w (registry %s speaks plain HTTP: allow it with Insecure / --insecure)", err, ref.Context().RegistryStr())
		}
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
	raw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	// The registry's config read is bounded by the descriptor's size,
	// which fromManifest caps first.
	config := func(v1.Descriptor) ([]byte, error) { return img.RawConfigFile() }
	f, err := fromManifest(raw, opts, config, func(d v1.Descriptor) (io.ReadCloser, error) {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		return spoolBlob(opts.SpoolDir, d, l.Compressed)
	})
	if err != nil {
		return nil, err
	}
	if f.ManifestMediaType == "" {
		if t, err := img.MediaType(); err == nil {
			f.ManifestMediaType = string(t)
		}
	}
	f.Kind = SourceRegistry
	f.IndexDigest = indexDigest
	f.Reference = ref.Context().Digest(f.ManifestDigest).String()
	return f, nil
}

// insecureFor returns a RoundTripper that sends requests for host
// (host[:port], as the reference names the registry) through a clone of
// rt that skips TLS verification, and every other request (a token
// server, a blob redirect elsewhere) through rt itself.
func insecureFor(host string, rt http.RoundTripper) http.RoundTripper {
	t, ok := rt.(*http.Transport)
	if !ok {
		return rt // not ours to reconfigure
	}
	t = t.Clone()
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{}
	}
	t.TLSClientConfig.InsecureSkipVerify = true // asked for, for this one registry
	return hostRoute{host: host, insecure: t, rt: rt}
}

// hostRoute sends host's requests through insecure, others through rt.
type hostRoute struct {
	host         string
	insecure, rt http.RoundTripper
}

func (h hostRoute) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host == h.host {
		return h.insecure.RoundTrip(req)
	}
	return h.rt.RoundTrip(req)
}

// capManifests refuses registry manifest and index responses over
// MaxManifestBytes (go-containerregistry reads up to 100 MiB of one into
// memory): by Content-Length before the body is read, else as the body is.
type capManifests struct{ rt http.RoundTripper }

func (c capManifests) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err != nil || !strings.Contains(req.URL.Path, "/manifests/") {
		return resp, err
	}
	what := "manifest " + path.Base(req.URL.Path)
	if resp.ContentLength > MaxManifestBytes {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w: the registry says %d bytes, the cap is %d", what, ErrTooLarge, resp.ContentLength, MaxManifestBytes)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: MaxManifestBytes, what: what}
	return resp, nil
}

// cappedBody fails a read past its cap with ErrTooLarge.
type cappedBody struct {
	rc   io.ReadCloser
	left int64
	what string
}

func (b *cappedBody) Read(p []byte) (int, error) {
	// At most one byte past the cap: enough to tell a body of exactly
	// the cap from a longer one.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, fmt.Errorf("%s: %w: more than %d bytes", b.what, ErrTooLarge, MaxManifestBytes)
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

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
	// The layout's documents are read here, capped, rather than by
	// go-containerregistry's layout package, which reads any file whole.
	rawIndex, err := readLayoutFile(filepath.Join(dir, "index.json"), MaxManifestBytes, "index.json")
	if err != nil {
		return nil, fmt.Errorf("%s is not an OCI image layout: %w", dir, err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(rawIndex))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
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
	blobPath := func(d v1.Descriptor) string {
		// v1.Hash parsing admits only an algorithm ggcr knows and hex
		// digits: the path stays under blobs/.
		return filepath.Join(dir, "blobs", d.Digest.Algorithm, d.Digest.Hex)
	}
	doc := func(d v1.Descriptor, max int64, what string) ([]byte, error) {
		if err := checkDocSize(d, max, what); err != nil {
			return nil, err
		}
		raw, err := readLayoutFile(blobPath(d), max, what+" "+d.Digest.String())
		if err != nil {
			return nil, err
		}
		if err := checkBytes(raw, d.Digest, d.Size, what); err != nil {
			return nil, err
		}
		return raw, nil
	}
	var indexDigest string
	if desc.MediaType.IsIndex() {
		raw, err := doc(desc, MaxManifestBytes, "index")
		if err != nil {
			return nil, err
		}
		subm, err := v1.ParseIndexManifest(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
		}
		d, err := pickManifest(subm, wantPlatform(opts))
		if err != nil {
			return nil, err
		}
		indexDigest = desc.Digest.String()
		desc = d
	}
	if !desc.MediaType.IsImage() {
		return nil, fmt.Errorf("%s is a %q, not an image", desc.Digest, desc.MediaType)
	}
	raw, err := doc(desc, MaxManifestBytes, "manifest")
	if err != nil {
		return nil, err
	}
	config := func(d v1.Descriptor) ([]byte, error) { return doc(d, MaxConfigBytes, "config") }
	f, err := fromManifest(raw, opts, config, func(d v1.Descriptor) (io.ReadCloser, error) {
		return openRegular(blobPath(d))
	})
	if err != nil {
		return nil, err
	}
	if f.ManifestMediaType == "" {
		f.ManifestMediaType = string(desc.MediaType)
	}
	f.Kind = SourceOCILayout
	f.IndexDigest = indexDigest
	f.Reference = tag
	return f, nil
}

// openRegular opens a file of a source (an OCI layout's blob, a docker
// archive) that must be a regular file: a FIFO would block the pull, a
// device never end.
func openRegular(name string) (*os.File, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%v)", name, fi.Mode().Type())
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("%s: changed while opened", name)
	}
	return f, nil
}

// readLayoutFile reads a regular file of at most max bytes.
func readLayoutFile(name string, max int64, what string) ([]byte, error) {
	f, err := openRegular(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, max, what)
}

var hex64 = regexp.MustCompile(`[0-9a-f]{64}`)

func fetchArchive(s string, opts FetchOptions) (*Fetched, error) {
	file, tagStr := splitTag(s)
	// manifest.json read capped (tarball.LoadManifest decodes any size).
	rawManifest, err := readTarMember(file, "manifest.json", MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var m tarball.Manifest
	if err := json.Unmarshal(rawManifest, &m); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
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
	rawCfg, err := readTarMember(file, desc.Config, MaxConfigBytes)
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
			// compressed) and names them by path: the diff ID, checked by
			// Open, is their only check.
			open: func() (io.ReadCloser, error) { return openTarMember(file, member) },
		})
	}
	return f, nil
}

// openTarMember streams the member name of the tar file (following
// symlink and hard link members, as docker save uses them for repeated
// layers).
func openTarMember(file, member string) (io.ReadCloser, error) {
	for hops := 0; hops < 16; hops++ {
		f, err := openRegular(file)
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
// with link members resolved. A docker archive has a few members per
// layer: one of more than maxArchiveMembers members (or with names longer
// than a path can be) is refused rather than mapped.
func tarMemberSizes(file string) (map[string]int64, error) {
	f, err := openRegular(file)
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
		if len(sizes)+len(links) >= maxArchiveMembers {
			return nil, fmt.Errorf("%s: more than %d members: not a docker archive", file, maxArchiveMembers)
		}
		if len(hdr.Name) > MaxPathBytes || len(hdr.Linkname) > MaxPathBytes {
			continue // not a name manifest.json can use
		}
		n := path.Clean(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			links[n] = path.Join(path.Dir(n), hdr.Linkname)
		case tar.TypeLink:
			links[n] = path.Clean(hdr.Linkname)
		case tar.TypeReg:
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

// readTarMember reads the member of at most max bytes.
func readTarMember(file, member string, max int64) ([]byte, error) {
	rc, err := openTarMember(file, member)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readCapped(rc, max, member)
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
	if f, err := openNoFollow(final, os.O_RDONLY, 0); err == nil {
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

// MaxZstdWindow caps the window a zstd layer may ask the decoder to keep
// (the decoder's default, 512 MiB, lets a 19 KiB layer take half a GiB).
// zstd's levels 1 to 20 and the encoders of docker, buildkit and
// containerd use windows of at most 32 MiB; a layer made with a larger one
// (zstd --ultra -21/-22, --long) is refused with the decoder's "window size
// exceeded" error.
const MaxZstdWindow = 32 << 20

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
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(MaxZstdWindow))
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
		n, err := fill(src, buf[:cap(buf)])
		if n > 0 {
			select {
			case r.full <- buf[:n]:
			case <-r.done:
				r.err = errors.New("read after close")
				return
			}
		}
		if err != nil {
			// io.EOF is the only clean end: a decompressor's
			// io.ErrUnexpectedEOF (a stream cut short) stays an error.
			r.err = err
			return
		}
	}
}

// fill reads into buf until it is full or src fails. Unlike io.ReadFull
// it returns src's error as it is: io.ReadFull turns a clean io.EOF after
// some bytes into io.ErrUnexpectedEOF, which would hide a decompressor's
// own io.ErrUnexpectedEOF among clean ends.
func fill(src io.Reader, buf []byte) (int, error) {
	n, empty := 0, 0
	for n < len(buf) {
		k, err := src.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
		if k == 0 {
			if empty++; empty >= 100 {
				return n, io.ErrNoProgress
			}
		}
	}
	return n, nil
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
