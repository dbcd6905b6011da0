package imagepull

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/banger/ext4kit/internal/testimg"
)

// BenchmarkPullCache: a pull of a Debian-sized image (one gzip layer of
// about 650 MB in 3,000 files) into an empty cache, against the same pull
// served from the cache, alternately. Both publish rootfs.ext4 and
// image.json into a fresh OUTDIR (auto size, no agents), with OUTDIR and
// the cache on the temp dir's filesystem (ext4 here: the cached pull
// copies the image's data blocks) and, where root, loop devices and
// mkfs.xfs exist, on an XFS with reflinks (it shares them). Reports the
// medians and their ratio (the goal: the cached pull <= 0.1x).
//
//	go test ./imagepull -run '^$' -bench PullCache -benchtime 3x
func BenchmarkPullCache(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	pool := make([]byte, 8<<20)
	for i := range pool {
		pool[i] = byte(r.Uint32())
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	total := 0
	for i := 0; i < 3000; i++ {
		if i%40 == 0 {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: fmt.Sprintf("usr/lib/d%02d/", i/40), Mode: 0o755}); err != nil {
				b.Fatal(err)
			}
		}
		n := 4096 + r.IntN(64<<10)
		if i%20 == 0 {
			n = 3<<20 + r.IntN(1<<20)
		}
		off := r.IntN(len(pool) - n)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/lib/d%02d/f%04d", i/40, i), Mode: 0o644, Size: int64(n)}); err != nil {
			b.Fatal(err)
		}
		if _, err := tw.Write(pool[off : off+n]); err != nil {
			b.Fatal(err)
		}
		total += n
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(b.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.AppendImage(testImage(b, amd64, buf.Bytes()), layout.WithAnnotations(map[string]string{refNameAnnotation: "v1"})); err != nil {
		b.Fatal(err)
	}
	buf = bytes.Buffer{}
	src := "oci:" + dir + ":v1"
	b.Logf("image: one gzip layer holding %d MB in 3,000 files", total/1e6)
	places := []struct{ name, dir string }{{"tempdir", b.TempDir()}}
	if os.Geteuid() == 0 && testimg.LookTool("mkfs.xfs") != "" {
		places = append(places, struct{ name, dir string }{"xfs-reflink", reflinkDir(b)})
	}
	for _, pl := range places {
		b.Run(pl.name, func(b *testing.B) {
			var first, cached []time.Duration
			for i := 0; i < b.N; i++ {
				cache := &Cache{Dir: filepath.Join(pl.dir, "cache")}
				for _, want := range []bool{false, true} {
					out := filepath.Join(pl.dir, "out")
					start := time.Now()
					res, err := Pull(context.Background(), src, out, PullOptions{Cache: cache})
					d := time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					if res.Cached != want {
						b.Fatalf("pull %d: cached %v, want %v", i, res.Cached, want)
					}
					if want {
						cached = append(cached, d)
					} else {
						first = append(first, d)
					}
					if err := os.RemoveAll(out); err != nil {
						b.Fatal(err)
					}
				}
				if err := os.RemoveAll(cache.Dir); err != nil {
					b.Fatal(err)
				}
			}
			mf, mc := median(first), median(cached)
			b.ReportMetric(float64(mf.Milliseconds()), "first-ms")
			b.ReportMetric(float64(mc.Milliseconds()), "cached-ms")
			b.ReportMetric(float64(mc)/float64(mf), "x-first")
		})
	}
}
