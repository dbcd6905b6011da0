package verity

import (
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFormat: Format against `veritysetup format` on the same 1 GiB
// image (three quarters data, a quarter holes, like a rootfs image with
// headroom), alternately in every iteration so both see the same machine.
// Both write the tree into the image file; ours is synced before the
// clock stops (veritysetup syncs its writes too). Reports the medians and
// their ratio.
//
//	go test ./imagepull/verity -run '^$' -bench Format -benchtime 5x
func BenchmarkFormat(b *testing.B) {
	vs := veritysetup(b)
	const size = 1 << 30
	dir := b.TempDir()
	pristine := filepath.Join(dir, "pristine.img")
	f, err := os.Create(pristine)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if r.IntN(4) == 0 {
			continue
		}
		for i := 0; i < len(chunk); i += 8 {
			le.PutUint64(chunk[i:], r.Uint64())
		}
		if _, err := f.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	work := filepath.Join(dir, "work.img")
	var ours, theirs []time.Duration
	for i := 0; i < b.N; i++ {
		for _, tool := range []string{"ours", "veritysetup"} {
			b.StopTimer()
			copySparse(b, pristine, work)
			b.StartTimer()
			start := time.Now()
			if tool == "ours" {
				f, err := os.OpenFile(work, os.O_RDWR, 0)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Format(f, size, nil); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				f.Close()
				ours = append(ours, time.Since(start))
			} else {
				out, err := exec.Command(vs, "format", "--hash-offset="+strconv.Itoa(size), work, work).CombinedOutput()
				if err != nil {
					b.Fatalf("veritysetup format: %v\n%s", err, out)
				}
				theirs = append(theirs, time.Since(start))
			}
		}
	}
	mo, mt := median(ours), median(theirs)
	b.ReportMetric(float64(mo.Milliseconds()), "ours-ms")
	b.ReportMetric(float64(mt.Milliseconds()), "veritysetup-ms")
	b.ReportMetric(float64(mo)/float64(mt), "x-veritysetup")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// copySparse copies src to dst keeping zero megabytes holes, synced, so
// every timed run starts from the same file on disk.
func copySparse(b *testing.B, src, dst string) {
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(in, buf)
		if n > 0 && !allZero(buf[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				b.Fatal(werr)
			}
		}
		off += int64(n)
		if err != nil {
			break
		}
	}
	if err := out.Truncate(off); err != nil {
		b.Fatal(err)
	}
	if err := out.Sync(); err != nil {
		b.Fatal(err)
	}
	out.Close()
}
