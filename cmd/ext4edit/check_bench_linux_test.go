package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/internal/testimg"
)

// BenchmarkCheck: `ext4edit -check` against `e2fsck -fn` on the same
// rootfs-like image (mkfs.ext4 -d of 36,000 entries: 1,200 directories,
// most files small, a few large, symlinks), alternately, each a whole
// process. Reports the median wall times, their ratio (the goal: no
// slower than e2fsck) and, where GNU time is installed, both tools' peak
// RSS.
//
//	go test ./cmd/ext4edit -run '^$' -bench Check -benchtime 10x
func BenchmarkCheck(b *testing.B) {
	mkfs, e2fsck := testimg.LookTool("mkfs.ext4"), testimg.LookTool("e2fsck")
	if mkfs == "" || e2fsck == "" {
		b.Skip("mkfs.ext4 and e2fsck not found: BenchmarkCheck needs e2fsprogs for its image and its baseline")
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "ext4edit")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	tree := filepath.Join(dir, "tree")
	entries := 0
	body := strings.Repeat("checker bench content ", 400)
	for d := 0; d < 1200; d++ {
		p := filepath.Join(tree, fmt.Sprintf("usr/lib/pkg%02d/d%04d", d%30, d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			b.Fatal(err)
		}
		entries++
		for f := 0; f < 28; f++ {
			n := (d*31 + f*17) % len(body)
			if f == 0 && d%100 == 0 {
				n = 0
				if err := os.WriteFile(filepath.Join(p, "big"), []byte(strings.Repeat(body, 300)), 0o644); err != nil {
					b.Fatal(err)
				}
			} else if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("f%02d", f)), []byte(body[:n]), 0o644); err != nil {
				b.Fatal(err)
			}
			entries++
		}
		if err := os.Symlink("../d0000", filepath.Join(p, "link")); err != nil {
			b.Fatal(err)
		}
		entries++
	}
	img := filepath.Join(dir, "rootfs.ext4")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", tree, img, "1G").CombinedOutput(); err != nil {
		b.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	b.Logf("image: 1 GiB, %d entries", entries)
	run := func(cmd *exec.Cmd) time.Duration {
		start := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
		return d
	}
	var ours, theirs []time.Duration
	for i := 0; i < b.N; i++ {
		ours = append(ours, run(exec.Command(bin, "-check", img)))
		theirs = append(theirs, run(exec.Command(e2fsck, "-fn", img)))
	}
	// Peak RSS, measured apart through GNU time where it is installed: a
	// child forked from this test process starts with its resident set
	// counted, so wait4's figure would be the test's.
	if gtime, err := exec.LookPath("time"); err == nil || fileExists("/usr/bin/time") {
		if gtime == "" {
			gtime = "/usr/bin/time"
		}
		for _, tc := range []struct {
			unit string
			args []string
		}{{"check-maxrss-MiB", []string{bin, "-check", img}}, {"e2fsck-maxrss-MiB", []string{e2fsck, "-fn", img}}} {
			out, err := exec.Command(gtime, append([]string{"-f", "maxrss=%M"}, tc.args...)...).CombinedOutput()
			if err != nil {
				b.Fatalf("time %v: %v\n%s", tc.args, err, out)
			}
			if i := strings.LastIndex(string(out), "maxrss="); i >= 0 {
				var kib float64
				fmt.Sscanf(string(out[i:]), "maxrss=%f", &kib)
				b.ReportMetric(kib/1024, tc.unit)
			}
		}
	}
	mo, mt := benchMedian(ours), benchMedian(theirs)
	b.ReportMetric(float64(mo.Microseconds())/1000, "check-ms")
	b.ReportMetric(float64(mt.Microseconds())/1000, "e2fsck-ms")
	b.ReportMetric(float64(mo)/float64(mt), "x-e2fsck")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
