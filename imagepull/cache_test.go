package imagepull

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/testimg"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

func cacheFinalize(builds *atomic.Int32) FinalizeStep {
	return func(img *ext4edit.Image) error {
		builds.Add(1)
		return img.WriteFile("/etc/finalized", []byte("yes"), 0o644)
	}
}

// TestPullCacheRegistry: the second pull of one image with one set of
// options publishes a byte-identical rootfs from the cache without a
// single layer download; other options or another image build anew.
func TestPullCacheRegistry(t *testing.T) {
	testimg.Require(t, "e2fsck")
	var mu sync.Mutex
	var layerGets int
	var layers map[string]bool
	host := serveRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			for d := range layers {
				if strings.HasSuffix(r.URL.Path, "/blobs/"+d) {
					layerGets++
				}
			}
			mu.Unlock()
			next.ServeHTTP(w, r)
		})
	})
	ref, _ := name.ParseReference(host + "/test/single:v1")
	img := testImage(t, amd64, archLayers(t, "amd64")...)
	require.NoError(t, remote.Write(ref, img))
	ls, err := img.Layers()
	require.NoError(t, err)
	mu.Lock()
	layers = map[string]bool{}
	for _, l := range ls {
		d, err := l.Digest()
		require.NoError(t, err)
		layers[d.String()] = true
	}
	mu.Unlock()

	cache := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	var builds atomic.Int32
	opts := PullOptions{Platform: &amd64, Cache: cache, Finalize: cacheFinalize(&builds), FinalizeID: "test finalize v1"}
	out1 := filepath.Join(t.TempDir(), "out1")
	res, err := Pull(context.Background(), ref.String(), out1, opts)
	require.NoError(t, err)
	require.False(t, res.Cached)
	mu.Lock()
	require.Positive(t, layerGets, "the first pull read no layer")
	layerGets = 0
	mu.Unlock()

	out2 := filepath.Join(t.TempDir(), "out2")
	res, err = Pull(context.Background(), ref.String(), out2, opts)
	require.NoError(t, err)
	require.True(t, res.Cached, "the second pull did not come from the cache")
	mu.Lock()
	require.Zero(t, layerGets, "the cached pull downloaded layers")
	mu.Unlock()
	require.EqualValues(t, 1, builds.Load(), "the cached pull finalized an image")
	require.Equal(t, testimg.SHA256File(t, filepath.Join(out1, RootfsName)), testimg.SHA256File(t, filepath.Join(out2, RootfsName)))
	m1, m2 := readMeta(t, out1), readMeta(t, out2)
	require.Equal(t, m1, m2)
	testimg.RequireClean(t, filepath.Join(out2, RootfsName))
	require.Equal(t, "yes", string(testimg.Cat(t, filepath.Join(out2, RootfsName), "/etc/finalized")))

	// Other output-changing options are other entries.
	for _, change := range []func(*PullOptions){
		func(o *PullOptions) { o.FinalizeID = "test finalize v2" },
		func(o *PullOptions) { o.Size = 64 << 20 },
		func(o *PullOptions) { o.Verity = &verity.Options{} },
	} {
		o := opts
		change(&o)
		res, err := Pull(context.Background(), ref.String(), filepath.Join(t.TempDir(), "o"), o)
		require.NoError(t, err)
		require.False(t, res.Cached)
	}
	require.EqualValues(t, 4, builds.Load())

	// A Finalize step without an ID cannot be cached.
	o := opts
	o.FinalizeID = ""
	_, err = Pull(context.Background(), ref.String(), filepath.Join(t.TempDir(), "o"), o)
	require.ErrorContains(t, err, "FinalizeID")
}

// TestPullCacheBootAndVerity: a cached entry carries the boot artifacts
// and the verity seal; the published copy verifies and matches.
func TestPullCacheBootAndVerity(t *testing.T) {
	testimg.Require(t, "e2fsck")
	src := "oci:" + singleLayout(t, bootLayers(t)...) + ":v1"
	cache := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	opts := PullOptions{Cache: cache, BootArtifacts: true, Verity: &verity.Options{}}
	out1, out2 := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	_, err := Pull(context.Background(), src, out1, opts)
	require.NoError(t, err)
	res, err := Pull(context.Background(), src, out2, opts)
	require.NoError(t, err)
	require.True(t, res.Cached)
	for _, f := range []string{RootfsName, KernelName, InitrdName, MetadataName} {
		require.Equal(t, testimg.SHA256File(t, filepath.Join(out1, f)), testimg.SHA256File(t, filepath.Join(out2, f)), f)
	}
	m := readMeta(t, out2)
	require.NotNil(t, m.Verity)
	require.NotNil(t, m.Kernel)
	_, err = CheckVerity(filepath.Join(out2, RootfsName), m.Verity.RootHash)
	require.NoError(t, err)
}

// TestPullCacheConcurrent: pulls of one image started together build it
// once; the others wait and publish the entry.
func TestPullCacheConcurrent(t *testing.T) {
	testimg.Require(t, "e2fsck")
	src := "oci:" + singleLayout(t, archLayers(t, "amd64")...) + ":v1"
	cache := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	var builds atomic.Int32
	opts := PullOptions{Cache: cache, Finalize: cacheFinalize(&builds), FinalizeID: "test"}
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	cached := make([]bool, n)
	outs := make([]string, n)
	for i := range n {
		outs[i] = filepath.Join(t.TempDir(), "out")
		wg.Go(func() {
			res, err := Pull(context.Background(), src, outs[i], opts)
			errs[i] = err
			if err == nil {
				cached[i] = res.Cached
			}
		})
	}
	wg.Wait()
	fromCache := 0
	for i := range n {
		require.NoError(t, errs[i])
		if cached[i] {
			fromCache++
		}
		require.Equal(t, testimg.SHA256File(t, filepath.Join(outs[0], RootfsName)), testimg.SHA256File(t, filepath.Join(outs[i], RootfsName)))
	}
	require.EqualValues(t, 1, builds.Load(), "concurrent pulls of one image built it more than once")
	require.Equal(t, n-1, fromCache)
}

// TestPullCacheEviction: with a size limit, the least recently used
// entries go first; the one just used stays.
func TestPullCacheEviction(t *testing.T) {
	testimg.Require(t, "e2fsck")
	cache := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	var srcs []string
	for _, arch := range []string{"amd64", "arm64", "riscv64"} {
		srcs = append(srcs, "oci:"+singleLayout(t, archLayers(t, arch)...)+":v1")
	}
	pull := func(src string) *PullResult {
		res, err := Pull(context.Background(), src, filepath.Join(t.TempDir(), "o"), PullOptions{Cache: cache, Size: 32 << 20})
		require.NoError(t, err)
		return res
	}
	pull(srcs[0])
	pull(srcs[1])
	entries := func() int {
		ents, err := os.ReadDir(cache.Dir)
		require.NoError(t, err)
		n := 0
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				n++
			}
		}
		return n
	}
	require.Equal(t, 2, entries())
	one := diskUsage(filepath.Join(cache.Dir, firstEntry(t, cache.Dir)))
	// Room for two: using the first again makes the second the oldest.
	require.True(t, pull(srcs[0]).Cached)
	cache.MaxBytes = 2*one + one/2
	pull(srcs[2])
	require.Equal(t, 2, entries())
	require.True(t, pull(srcs[0]).Cached, "the recently used entry was evicted")
	require.True(t, pull(srcs[2]).Cached, "the new entry was evicted")
	require.False(t, pull(srcs[1]).Cached, "the least recently used entry was kept")
}

func firstEntry(t *testing.T, dir string) string {
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			return e.Name()
		}
	}
	t.Fatal("no cache entry")
	return ""
}
