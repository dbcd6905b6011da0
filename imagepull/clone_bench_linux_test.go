package imagepull

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/banger/ext4kit/internal/testimg"
)

// BenchmarkClone: a VM disk from a base image, grown to 8 GiB: Clone
// against `cp --sparse=always` + `resize2fs` of the copy, alternately in
// every iteration, on the temp dir's filesystem (ext4 here) and, where
// root, loop devices and mkfs.xfs exist, on an XFS with reflinks. The
// base is rootfs-like: mkfs.ext4 -d of 3,000 files holding about 600 MB,
// in a 768 MiB image. Reports the medians and their ratio (the goal:
// <= 0.7x on ext4, milliseconds with reflinks).
//
//	go test ./imagepull -run '^$' -bench Clone -benchtime 5x
func BenchmarkClone(b *testing.B) {
	mkfs, resize2fs := testimg.LookTool("mkfs.ext4"), testimg.LookTool("resize2fs")
	if mkfs == "" || resize2fs == "" {
		b.Skip("mkfs.ext4 and resize2fs not found: BenchmarkClone needs e2fsprogs for its base image and its baseline")
	}
	tree := b.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	var total int
	for i := 0; i < 3000; i++ {
		d := filepath.Join(tree, fmt.Sprintf("d%02d", i%40))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		n := 4096 + r.IntN(64<<10)
		if i%20 == 0 {
			n = 3<<20 + r.IntN(1<<20)
		}
		off := r.IntN(len(buf) - n)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), buf[off:off+n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += n
	}
	places := []struct{ name, dir string }{{"tempdir", b.TempDir()}}
	if os.Geteuid() == 0 && testimg.LookTool("mkfs.xfs") != "" {
		places = append(places, struct{ name, dir string }{"xfs-reflink", reflinkDir(b)})
	}
	for _, pl := range places {
		base := filepath.Join(pl.dir, "base.ext4")
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", tree, base, "768M").CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
		}
		dst := filepath.Join(pl.dir, "vm.ext4")
		b.Run(pl.name, func(b *testing.B) {
			b.Logf("base: 768 MiB holding %d MB in files", total/1e6)
			var ours, theirs []time.Duration
			for i := 0; i < b.N; i++ {
				for _, tool := range []string{"clone", "cp+resize2fs"} {
					_ = os.Remove(dst)
					exec.Command("sync").Run()
					start := time.Now()
					if tool == "clone" {
						if _, err := Clone(base, dst, CloneOptions{Size: 8 << 30}); err != nil {
							b.Fatal(err)
						}
						ours = append(ours, time.Since(start))
					} else {
						if out, err := exec.Command("cp", "--sparse=always", base, dst).CombinedOutput(); err != nil {
							b.Fatalf("cp: %v\n%s", err, out)
						}
						if out, err := exec.Command(resize2fs, "-f", dst, "8G").CombinedOutput(); err != nil {
							b.Fatalf("resize2fs: %v\n%s", err, out)
						}
						theirs = append(theirs, time.Since(start))
					}
					if i == 0 {
						if ok, out := testimg.Fsck(b, dst); !ok {
							b.Fatalf("e2fsck -fn after %s:\n%s", tool, out)
						}
					}
				}
			}
			mo, mt := median(ours), median(theirs)
			b.ReportMetric(float64(mo.Microseconds())/1000, "clone-ms")
			b.ReportMetric(float64(mt.Microseconds())/1000, "cp+resize2fs-ms")
			b.ReportMetric(float64(mo)/float64(mt), "x-cp+resize2fs")
		})
	}
}
