package main

// BenchmarkResize: `ext4edit -resize` against `resize2fs -f`, the same
// grow of the same image, alternately in every iteration (each on a fresh
// sparse copy, untimed) so all see the same disk weather. The image is
// rootfs-like and holds over 500 MB: mkfs.ext4 -d of a generated tree of
// a few thousand files, most small, some large. Reports the medians of
// wall time (fork to exit, fsyncs included) and their ratio, and the same
// grow as a daemon does it with this package: ext4edit.Resize called in
// the benchmark's process (open to close, fsyncs included) instead of a
// resize2fs process.
//
//	go test ./cmd/ext4edit -run '^$' -bench Resize -benchtime 5x
//
// BenchmarkResizeMin shrinks the same image, grown to 2 TiB, to its
// minimum with both tools.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func BenchmarkResize(b *testing.B) {
	resize2fs := testimg.LookTool("resize2fs")
	mkfs := testimg.LookTool("mkfs.ext4")
	if mkfs == "" || resize2fs == "" {
		b.Skip("mkfs.ext4 and resize2fs not found: BenchmarkResize needs e2fsprogs for its image and its baseline")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "ext4edit")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	pristine := filepath.Join(dir, "rootfs.ext4")
	content := benchRootfsTree(b, filepath.Join(dir, "tree"))
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", filepath.Join(dir, "tree"), pristine, "768M").CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	if err := os.RemoveAll(filepath.Join(dir, "tree")); err != nil {
		b.Fatal(err)
	}
	b.Logf("rootfs-like image: 768 MiB holding %d MB in files", content/1e6)
	work := filepath.Join(dir, "work.ext4")
	e2fsck := testimg.LookTool("e2fsck")
	for _, c := range []struct {
		name string
		size int64
	}{{"grow-16GiB", 16 << 30}, {"grow-2TiB", 2 << 40}} {
		b.Run(c.name, func(b *testing.B) {
			var ours, lib, theirs []time.Duration
			for i := 0; i < b.N; i++ {
				for _, tool := range []string{"ext4edit", "library", "resize2fs"} {
					b.StopTimer()
					if err := testimg.SparseCopySynced(pristine, work); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					var out []byte
					var err error
					switch tool {
					case "ext4edit":
						out, err = exec.Command(bin, "-resize", strconv.FormatInt(c.size, 10), work).CombinedOutput()
					case "library":
						// What a daemon calling the package instead of
						// forking resize2fs pays: Open, Resize, Close.
						_, _, err = ext4edit.Resize(work, c.size, nil)
					default:
						// resize2fs takes a size in KiB with a K suffix.
						out, err = exec.Command(resize2fs, "-f", work, strconv.FormatInt(c.size>>10, 10)+"K").CombinedOutput()
					}
					d := time.Since(start)
					if err != nil {
						b.Fatalf("%s: %v\n%s", tool, err, out)
					}
					switch tool {
					case "ext4edit":
						ours = append(ours, d)
					case "library":
						lib = append(lib, d)
					default:
						theirs = append(theirs, d)
					}
					if i == 0 && e2fsck != "" {
						b.StopTimer()
						if out, err := exec.Command(e2fsck, "-fn", work).CombinedOutput(); err != nil {
							b.Fatalf("e2fsck -fn after %s: %v\n%s", tool, err, out)
						}
						b.StartTimer()
					}
				}
			}
			mo, ml, mt := benchMedian(ours), benchMedian(lib), benchMedian(theirs)
			b.ReportMetric(float64(mo.Microseconds())/1000, "ext4edit-ms")
			b.ReportMetric(float64(ml.Microseconds())/1000, "library-ms")
			b.ReportMetric(float64(mt.Microseconds())/1000, "resize2fs-ms")
			b.ReportMetric(float64(mo)/float64(mt), "x-resize2fs")
			b.ReportMetric(float64(ml)/float64(mt), "library-x-resize2fs")
		})
	}
}

// BenchmarkResizeMin: the rootfs-like image grown to 2 TiB (by resize2fs,
// untimed), then shrunk to its minimum by `ext4edit -resize min` and by
// `resize2fs -M`, alternately; reports the times and the sizes each
// reached, and their ratios (the goals: time <= 1x, size <= 0.8x).
func BenchmarkResizeMin(b *testing.B) {
	resize2fs := testimg.LookTool("resize2fs")
	mkfs := testimg.LookTool("mkfs.ext4")
	e2fsck := testimg.LookTool("e2fsck")
	if mkfs == "" || resize2fs == "" || e2fsck == "" {
		b.Skip("mkfs.ext4, e2fsck and resize2fs not found: BenchmarkResizeMin needs e2fsprogs for its image and its baseline")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "ext4edit")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	pristine := filepath.Join(dir, "rootfs.ext4")
	benchRootfsTree(b, filepath.Join(dir, "tree"))
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", filepath.Join(dir, "tree"), pristine, "768M").CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	_ = os.RemoveAll(filepath.Join(dir, "tree"))
	if out, err := exec.Command(resize2fs, "-f", pristine, "2T").CombinedOutput(); err != nil {
		b.Fatalf("resize2fs to 2T: %v\n%s", err, out)
	}
	work := filepath.Join(dir, "work.ext4")
	var ours, theirs []time.Duration
	var ourSize, theirSize int64
	for i := 0; i < b.N; i++ {
		for _, tool := range []string{"ext4edit", "resize2fs"} {
			b.StopTimer()
			if err := testimg.SparseCopySynced(pristine, work); err != nil {
				b.Fatal(err)
			}
			if tool == "resize2fs" {
				// resize2fs -M insists on a fresh e2fsck -f; the check is
				// not part of the timed shrink.
				if out, err := exec.Command(e2fsck, "-fy", work).CombinedOutput(); err != nil {
					b.Fatalf("e2fsck -fy: %v\n%s", err, out)
				}
			}
			b.StartTimer()
			start := time.Now()
			var cmd *exec.Cmd
			if tool == "ext4edit" {
				cmd = exec.Command(bin, "-resize", "min", work)
			} else {
				cmd = exec.Command(resize2fs, "-M", work)
			}
			out, err := cmd.CombinedOutput()
			d := time.Since(start)
			b.StopTimer()
			if err != nil {
				b.Fatalf("%s: %v\n%s", tool, err, out)
			}
			if out, err := exec.Command(e2fsck, "-fn", work).CombinedOutput(); err != nil {
				b.Fatalf("e2fsck -fn after %s: %v\n%s", tool, err, out)
			}
			hdr, err := exec.Command("dumpe2fs", "-h", work).Output()
			if err != nil {
				b.Fatal(err)
			}
			size := benchFSSize(b, string(hdr))
			if tool == "ext4edit" {
				ours, ourSize = append(ours, d), size
			} else {
				theirs, theirSize = append(theirs, d), size
			}
			b.StartTimer()
		}
	}
	mo, mt := benchMedian(ours), benchMedian(theirs)
	b.ReportMetric(float64(mo.Microseconds())/1000, "ext4edit-ms")
	b.ReportMetric(float64(mt.Microseconds())/1000, "resize2fs-ms")
	b.ReportMetric(float64(mo)/float64(mt), "x-resize2fs-time")
	b.ReportMetric(float64(ourSize)/(1<<20), "ext4edit-MiB")
	b.ReportMetric(float64(theirSize)/(1<<20), "resize2fs-MiB")
	b.ReportMetric(float64(ourSize)/float64(theirSize), "x-resize2fs-size")
}

// benchFSSize is the filesystem size dumpe2fs -h reports.
func benchFSSize(b *testing.B, hdr string) int64 {
	var blocks, bs int64
	for _, l := range strings.Split(hdr, "\n") {
		if v, ok := strings.CutPrefix(l, "Block count:"); ok {
			blocks, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(l, "Block size:"); ok {
			bs, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if blocks == 0 || bs == 0 {
		b.Fatalf("dumpe2fs -h: no block count or size:\n%s", hdr)
	}
	return blocks * bs
}

func benchMedian(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// benchRootfsTree writes a tree shaped like a distribution's root: many
// small files in deep directories and some large libraries, about 520 MB
// in all. It returns the bytes written.
func benchRootfsTree(b *testing.B, root string) int64 {
	var total int64
	buf := make([]byte, 16<<20)
	for i := range buf {
		buf[i] = byte(i*131 + i>>9)
	}
	for i := 0; i < 4000; i++ {
		d := filepath.Join(root, "usr", fmt.Sprintf("pkg%03d", i/40), "share")
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		n := 200 + (i*7919)%60000
		if i%100 == 0 {
			n = 9<<20 + i*512
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), buf[i%1024:i%1024+n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	return total
}
