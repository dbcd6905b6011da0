package imagepull

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/banger/ext4kit/internal/testimg"
)

var imgCreated = time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)

// testImage makes a v1.Image (gzip layers) of tar streams, for platform.
func testImage(t testing.TB, plat v1.Platform, layers ...[]byte) v1.Image {
	t.Helper()
	return testimg.OCIImage(t, plat, imgCreated, v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo hi"},
		Env:        []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"},
		WorkingDir: "/srv",
		User:       "1000:1000",
		Labels:     map[string]string{"org.example": "yes"},
	}, layers...)
}

// archLayers are two layers whose /arch says which platform they are.
func archLayers(t testing.TB, arch string) [][]byte {
	return [][]byte{
		tarOf(t, tDir("etc/", 0o755), tFile("etc/os-release", "ID=test\n", 0o644), tFile("usr/bin/ping", "ping", 0o755, xattr("security.capability", capNetRaw)), tFile("gone", "x", 0o644)),
		tarOf(t, tFile("arch", arch, 0o644), tWh(".wh.gone"), tFile("usr/bin/ping", "ping2", 0o755, owner(0, 5), xattr("security.capability", capNetRaw))),
	}
}

// testIndex holds linux/amd64 and linux/arm64 images.
func testIndex(t testing.TB) v1.ImageIndex {
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		p := v1.Platform{OS: "linux", Architecture: arch}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        testImage(t, p, archLayers(t, arch)...),
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return idx
}

// writeLayout writes an OCI layout with the index under tag "multi" and
// the amd64 image under tag "single".
func writeLayout(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(testIndex(t), layout.WithAnnotations(map[string]string{refNameAnnotation: "multi"})); err != nil {
		t.Fatal(err)
	}
	single := testImage(t, v1.Platform{OS: "linux", Architecture: "riscv64"}, archLayers(t, "riscv64")...)
	if err := p.AppendImage(single, layout.WithAnnotations(map[string]string{refNameAnnotation: "single"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveRegistry runs ggcr's in-process registry on 127.0.0.1 (only) and
// returns its host:port. wrap, when set, sits in front of it.
func serveRegistry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	// No credentials of the host: the keychain reads this empty config.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	return strings.TrimPrefix(srv.URL, "http://")
}

func tarHashOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// checkArchImage checks an image built from archLayers(arch).
func checkArchImage(t *testing.T, p, arch string) {
	t.Helper()
	testimg.RequireClean(t, p)
	if got := string(testimg.Cat(t, p, "/arch")); got != arch {
		t.Errorf("/arch = %q, want %q", got, arch)
	}
	if testimg.DebugfsExists(t, p, "/gone") {
		t.Errorf("/gone survived its whiteout")
	}
	s := testimg.DebugfsStat(t, p, "/usr/bin/ping")
	if s.GID != 5 || string(testimg.Cat(t, p, "/usr/bin/ping")) != "ping2" {
		t.Errorf("/usr/bin/ping: gid %d content %q", s.GID, testimg.Cat(t, p, "/usr/bin/ping"))
	}
	if v, ok := testimg.DebugfsXattr(t, p, "/usr/bin/ping", "security.capability"); !ok || !bytes.Equal(v, capNetRaw) {
		t.Errorf("/usr/bin/ping: security.capability %x", v)
	}
}

// buildFetched builds f's layers into an image and returns its path.
func buildFetched(t *testing.T, f *Fetched) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img.ext4")
	img, _, err := BuildExt4(context.Background(), p, f.LayerSources(), BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFetchOCILayout(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	dir := writeLayout(t)
	arm := &v1.Platform{OS: "linux", Architecture: "arm64"}
	for _, c := range []struct {
		source string
		plat   *v1.Platform
		arch   string
		err    string
	}{
		{"oci:" + dir + ":multi", nil, runtime.GOARCH, ""},
		{"oci:" + dir + ":multi", arm, "arm64", ""},
		{"oci:" + dir + ":single", nil, "riscv64", ""},
		{"oci:" + dir + ":multi", &v1.Platform{OS: "linux", Architecture: "s390x"}, "", "no manifest for platform linux/s390x (the index has: linux/amd64, linux/arm64)"},
		{"oci:" + dir + ":single", arm, "", "the image is for linux/riscv64, not linux/arm64"},
		{"oci:" + dir + ":nope", nil, "", `tag "nope" not in`},
	} {
		t.Run(strings.TrimPrefix(c.source, "oci:"+dir)+"/"+c.arch, func(t *testing.T) {
			if c.arch != "" && c.arch != "amd64" && c.arch != "arm64" && c.arch != "riscv64" {
				t.Skipf("no test image for %s", c.arch)
			}
			f, err := Fetch(context.Background(), c.source, FetchOptions{Platform: c.plat})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != SourceOCILayout || f.Platform.Architecture != c.arch || len(f.Layers) != 2 || f.ConfigDigest == "" || f.ManifestDigest == "" {
				t.Errorf("fetched %+v", f)
			}
			if strings.HasSuffix(c.source, ":multi") && f.IndexDigest == "" {
				t.Errorf("no index digest")
			}
			if f.Config.Config.WorkingDir != "/srv" {
				t.Errorf("config %+v", f.Config.Config)
			}
			layers := archLayers(t, c.arch)
			for i, l := range f.Layers {
				if l.DiffID != tarHashOf(layers[i]) || l.MediaType != string(types.OCILayer) || l.Size <= 0 {
					t.Errorf("layer %d: %+v", i, l)
				}
			}
			checkArchImage(t, buildFetched(t, f), c.arch)
		})
	}
}

// A corrupted blob fails the build with ErrDigestMismatch.
func TestFetchOCILayoutCorruptBlob(t *testing.T) {
	dir := writeLayout(t)
	f, err := Fetch(context.Background(), "oci:"+dir+":single", FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := v1.NewHash(f.Layers[1].Digest)
	blob := filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
	if _, err := os.Stat(blob); err != nil {
		t.Fatal(err)
	}
	// Still a valid gzip stream, different content: only the digest can tell.
	data := gzipBytes(t, tarOf(t, tFile("arch", "tampered", 0o644)))
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	requireDigestMismatch(t, f, "a tampered layer was accepted")
	// The manifest too: rewrite the index entry's target.
	mh, _ := v1.NewHash(f.ManifestDigest)
	if err := os.WriteFile(filepath.Join(dir, "blobs", mh.Algorithm, mh.Hex), []byte(`{"schemaVersion":2}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(context.Background(), "oci:"+dir+":single", FetchOptions{}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("tampered manifest: error %v", err)
	}
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	rc, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	r, err := rc.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFetchDockerArchive(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	dir := t.TempDir()
	// ggcr's docker save format (gzip layers, one image).
	img := testImage(t, v1.Platform{OS: "linux", Architecture: "arm64"}, archLayers(t, "arm64")...)
	tag, _ := name.NewTag("example.com/test/img:v1")
	ggcrTar := filepath.Join(dir, "ggcr.tar")
	if err := tarball.WriteToFile(ggcrTar, tag, img); err != nil {
		t.Fatal(err)
	}
	// docker save's classic layout: uncompressed ID/layer.tar members,
	// a repeated layer as a symlink, two images.
	classic := filepath.Join(dir, "classic.tar")
	writeClassicArchive(t, classic, archLayers(t, "amd64"))

	for _, c := range []struct {
		source, arch, err string
		plat              *v1.Platform
	}{
		{"docker-archive:" + ggcrTar, "arm64", "", nil},
		{"docker-archive:" + ggcrTar + ":example.com/test/img:v1", "arm64", "", nil},
		{"docker-archive:" + classic + ":test/classic:latest", "amd64", "", nil},
		{"docker-archive:" + classic, "", "holds 2 images", nil},
		{"docker-archive:" + classic + ":test/other:latest", "", "", &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{"docker-archive:" + ggcrTar, "", "the image is for linux/arm64, not linux/amd64", &v1.Platform{OS: "linux", Architecture: "amd64"}},
	} {
		t.Run(filepath.Base(c.source), func(t *testing.T) {
			f, err := Fetch(context.Background(), c.source, FetchOptions{Platform: c.plat})
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != SourceDockerArchive || f.ManifestDigest != "" || f.ConfigDigest == "" {
				t.Errorf("fetched %+v", f)
			}
			arch := c.arch
			if arch == "" {
				arch = "amd64"
			}
			checkArchImage(t, buildFetched(t, f), arch)
		})
	}
}

// writeClassicArchive writes a docker save archive the way docker before
// 25 did: uncompressed layers at ID/layer.tar, the config at HEX.json; a
// second image reuses the layers through symlinks. The second image's
// config lists a wrong diff ID for its second layer when bad is set.
func writeClassicArchive(t testing.TB, file string, layers [][]byte) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	var diffIDs []string
	var paths []string
	for i, l := range layers {
		id := fmt.Sprintf("%064x", i+1)
		add(id+"/VERSION", []byte("1.0"))
		add(id+"/layer.tar", l)
		diffIDs = append(diffIDs, tarHashOf(l))
		paths = append(paths, id+"/layer.tar")
	}
	// The second image's layers are symlinks to the first's.
	var paths2 []string
	for i := range layers {
		id := fmt.Sprintf("%064x", 100+i)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: id + "/layer.tar", Linkname: fmt.Sprintf("../%064x/layer.tar", i+1)}); err != nil {
			t.Fatal(err)
		}
		paths2 = append(paths2, id+"/layer.tar")
	}
	cfg := func(arch string, ids []string) []byte {
		b, _ := json.Marshal(map[string]any{
			"architecture": arch, "os": "linux", "created": imgCreated,
			"config": map[string]any{"Cmd": []string{"/bin/true"}},
			"rootfs": map[string]any{"type": "layers", "diff_ids": ids},
		})
		return b
	}
	c1, c2 := cfg("amd64", diffIDs), cfg("amd64", diffIDs)
	c2 = append(c2, ' ') // a different config for the second image
	add(hex.EncodeToString(sha256Sum(c1))+".json", c1)
	add(hex.EncodeToString(sha256Sum(c2))+".json", c2)
	m, _ := json.Marshal([]map[string]any{
		{"Config": hex.EncodeToString(sha256Sum(c1)) + ".json", "RepoTags": []string{"test/classic:latest"}, "Layers": paths},
		{"Config": hex.EncodeToString(sha256Sum(c2)) + ".json", "RepoTags": []string{"test/other:latest"}, "Layers": paths2},
	})
	add("manifest.json", m)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// A docker-archive layer whose content does not match the config's diff
// ID fails the build.
func TestFetchDockerArchiveBadDiffID(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.tar")
	layers := archLayers(t, "amd64")
	writeClassicArchive(t, file, layers)
	// Swap the first layer's bytes for another valid tar of the same size.
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("ID=test"))
	if i < 0 {
		t.Fatal("layer content not found")
	}
	copy(data[i:], "ID=evil")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Fetch(context.Background(), "docker-archive:"+file+":test/classic:latest", FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	requireDigestMismatch(t, f, "a layer that does not match its diff ID was accepted")
}

func TestFetchRegistry(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	host := serveRegistry(t, nil)
	idxRef, _ := name.ParseReference(host + "/test/multi:v1")
	if err := remote.WriteIndex(idxRef, testIndex(t)); err != nil {
		t.Fatal(err)
	}
	// A random image (ggcr's random layers) with our layers on top.
	rnd, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	ours := testImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, archLayers(t, "amd64")...)
	ourLayers, _ := ours.Layers()
	rnd, err = mutate.AppendLayers(rnd, ourLayers...)
	if err != nil {
		t.Fatal(err)
	}
	rndRef, _ := name.ParseReference(host + "/test/random:latest")
	if err := remote.Write(rndRef, rnd); err != nil {
		t.Fatal(err)
	}
	rndDigest, _ := rnd.Digest()

	for _, c := range []struct {
		source, arch string
		plat         *v1.Platform
		layers       int
	}{
		{host + "/test/multi:v1", runtime.GOARCH, nil, 2},
		{"docker://" + host + "/test/multi:v1", "arm64", &v1.Platform{OS: "linux", Architecture: "arm64"}, 2},
		{host + "/test/random@" + rndDigest.String(), "amd64", nil, 4},
	} {
		t.Run(c.arch, func(t *testing.T) {
			if c.arch != "amd64" && c.arch != "arm64" {
				t.Skipf("no test image for %s", c.arch)
			}
			f, err := Fetch(context.Background(), c.source, FetchOptions{Platform: c.plat})
			if err != nil {
				t.Fatal(err)
			}
			if f.Kind != SourceRegistry || len(f.Layers) != c.layers || !strings.Contains(f.Reference, "@sha256:") {
				t.Errorf("fetched %+v", f)
			}
			checkArchImage(t, buildFetched(t, f), c.arch)
		})
	}
}

// The registry needs credentials; the docker config in DOCKER_CONFIG has
// them and the default keychain finds them. A blob served corrupted fails
// the build.
func TestFetchRegistryAuthAndCorruption(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	const user, pass = "banger", "s3cret"
	var corrupt string // a blob digest to corrupt
	host := serveRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, "auth", http.StatusUnauthorized)
				return
			}
			if corrupt != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+corrupt) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				body[len(body)/2] ^= 0xff
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	cfgDir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", cfgDir)
	img := testImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, archLayers(t, "amd64")...)
	ref, _ := name.ParseReference(host + "/private/img:v1")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatal(err)
	}
	f, err := Fetch(context.Background(), ref.String(), FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkArchImage(t, buildFetched(t, f), "amd64")

	h, _ := v1.NewHash(f.Layers[0].Digest)
	corrupt = h.String()
	requireDigestMismatch(t, f, "a corrupted blob was accepted")
	// Without credentials the registry refuses.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	if _, err := Fetch(context.Background(), ref.String(), FetchOptions{}); err == nil {
		t.Fatal("fetched without credentials")
	}
}

func TestSplitTag(t *testing.T) {
	dir := t.TempDir()
	withColon := filepath.Join(dir, "a:b")
	os.Mkdir(withColon, 0o755)
	for in, want := range map[string][2]string{
		"/x/layout:v1":         {"/x/layout", "v1"},
		"/x/layout":            {"/x/layout", ""},
		withColon:              {withColon, ""},
		"/x/f.tar:repo/img:v1": {"/x/f.tar", "repo/img:v1"},
		"rel:tag":              {"rel", "tag"},
	} {
		a, b := splitTag(in)
		if a != want[0] || b != want[1] {
			t.Errorf("splitTag(%q) = %q, %q; want %q, %q", in, a, b, want[0], want[1])
		}
	}
}

func TestDecompressReadahead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 300000) // 4.8 MB: several chunks
	for name, blob := range map[string][]byte{"plain": data, "gzip": gzipBytes(t, data)} {
		rc, err := Decompress(io.NopCloser(bytes.NewReader(blob)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %d bytes (%v), want %d", name, len(got), err, len(data))
		}
		if err := rc.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
		// Closing early does not leak or hang.
		rc, _ = Decompress(io.NopCloser(bytes.NewReader(blob)))
		buf := make([]byte, 10)
		rc.Read(buf)
		rc.Close()
	}
}

// requireDigestMismatch builds f's layers and wants ErrDigestMismatch;
// what says what was tampered with.
func requireDigestMismatch(t *testing.T, f *Fetched, what string) {
	t.Helper()
	img, _, err := BuildExt4(context.Background(), filepath.Join(t.TempDir(), "img"), f.LayerSources(), BuildOptions{Size: 32 << 20})
	if err == nil {
		img.Close()
		t.Fatal(what)
	}
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("error %v is not ErrDigestMismatch", err)
	}
}
