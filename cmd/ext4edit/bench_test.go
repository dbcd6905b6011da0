package main

// The -demo check and the whole-process benchmarks:
//
//	go test -bench . -run '^$' ./cmd/ext4edit/
//
// BenchmarkInject builds this command once, makes a 1 GiB and a 1 TiB
// sparse image with mkfs.ext4, and times the seed's guest-agent injection
// (fixtures.InjectScript: mkdirs, five writes, sifs, two symlinks; the agent
// is a 4 MiB blob standing in for the static Go binary) on a fresh sparse
// copy of the image per iteration (the copy is outside the timer):
//
//	SIZE/debugfs   debugfs -w -f SCRIPT COPY
//	SIZE/ext4edit  ext4edit -w -f SCRIPT COPY (whole process)
//	SIZE/inproc    the same requests through script.Runner in this process
//
// Metrics besides ns/op: cpu-ns/op is the CPU time (user+system) of the
// child process, steadier than ns/op on a busy machine; x-debugfs is
// ext4edit's time over debugfs's on the same image (target <= 0.5 at
// 1 GiB); x-1GiB is a case's 1 TiB time over its own 1 GiB time (target
// <= 1.2). The ratios appear when the cases they compare ran in the same
// go test invocation. Images live in TMPDIR; TMPDIR=/dev/shm leaves the
// disk's fsync latency out.

import (
	"bytes"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/ext4edit/script"
	"github.com/banger/ext4kit/internal/fixtures"
	"github.com/banger/ext4kit/internal/testimg"
)

// benchAgentSize stands in for the static Go vsock agent binary.
const benchAgentSize = 4 << 20

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := runDemo(dir, &stdout, &stderr); code != 0 {
		t.Fatalf("runDemo = %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, p := range fixtures.InjectedPaths() {
		if !strings.Contains(out, "== stat \""+p+"\"\n") {
			t.Errorf("no stat of %s in:\n%s", p, out)
		}
	}
	for _, want := range []string{
		"== ls -l \"" + fixtures.WantsDir + "\"\n",
		"Fast link dest: \"/etc/systemd/system/banger-vsock-agent.service\"",
		" banger-network.service\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	// Only the mkdir notices for /usr and /etc, which the image has.
	if n := strings.Count(stderr.String(), "\n"); n != 2 || strings.Count(stderr.String(), "directory already exists") != 2 {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	img := filepath.Join(dir, "demo.ext4")
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fixtures.InjectedPaths()[:5] {
		got, err := im.ReadFile(p)
		if err != nil || !bytes.Equal(got, fixtures.Asset(filepath.Base(p))) {
			t.Errorf("%s: %d bytes, err %v; want the asset's %d bytes", p, len(got), err, len(fixtures.Asset(filepath.Base(p))))
		}
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	// A second run starts again from the embedded image.
	stdout.Reset()
	stderr.Reset()
	if code := runDemo(dir, &stdout, &stderr); code != 0 {
		t.Fatalf("second runDemo = %d\n%s", code, stderr.String())
	}
	if e2fsck := testimg.LookTool("e2fsck"); e2fsck != "" {
		if b, err := exec.Command(e2fsck, "-fn", img).CombinedOutput(); err != nil {
			t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, b)
		}
	} else if os.Getenv("CI") == "true" {
		t.Fatal("e2fsck not found; CI must install e2fsprogs")
	} else {
		t.Log("e2fsck not found: the demo image was not judged (install e2fsprogs)")
	}
}

// benchResults keeps each case's final ns/op for the ratio metrics.
var benchResults sync.Map // "1GiB/debugfs" -> float64 ns/op

func BenchmarkInject(b *testing.B) {
	mkfs := testimg.LookTool("mkfs.ext4")
	if mkfs == "" {
		b.Skip("mkfs.ext4 not found: BenchmarkInject needs e2fsprogs to make its images")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		b.Skip("go not found on PATH: cannot build ext4edit")
	}
	dir := b.TempDir()
	if err := testimg.SparseCopySynced(os.Args[0], filepath.Join(dir, "probe")); err != nil {
		b.Skipf("cp --sparse=always does not work here (GNU coreutils needed to copy sparse images): %v", err)
	}

	bin := filepath.Join(dir, "ext4edit")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	build := exec.Command(goBin, "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	assets := filepath.Join(dir, "assets")
	if err := os.Mkdir(assets, 0o755); err != nil {
		b.Fatal(err)
	}
	for _, name := range fixtures.AssetNames() {
		data := fixtures.Asset(name)
		if name == "banger-vsock-agent" {
			data = make([]byte, benchAgentSize)
			rng := rand.NewChaCha8([32]byte{'b', 'a', 'n', 'g', 'e', 'r'})
			_, _ = rng.Read(data)
		}
		if err := os.WriteFile(filepath.Join(assets, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	scriptPath := filepath.Join(dir, "inject.debugfs")
	if err := os.WriteFile(scriptPath, []byte(fixtures.InjectScript()), 0o644); err != nil {
		b.Fatal(err)
	}
	inproc := absHostNames(fixtures.InjectScript(), assets)
	debugfs := testimg.LookTool("debugfs")
	e2fsck := testimg.LookTool("e2fsck")

	for _, size := range []struct {
		name  string
		bytes int64
	}{{"1GiB", 1 << 30}, {"1TiB", 1 << 40}} {
		pristine := filepath.Join(dir, size.name+".ext4")
		if err := testimg.MkfsLazy(mkfs, pristine, size.bytes); err != nil {
			b.Skipf("making the %s sparse image: %v", size.name, err)
		}
		work := filepath.Join(dir, "work.ext4")
		judge := func(b *testing.B) {
			if e2fsck == "" {
				return
			}
			if out, err := exec.Command(e2fsck, "-fn", work).CombinedOutput(); err != nil {
				b.Fatalf("e2fsck -fn after the injection: %v\n%s", err, out)
			}
		}

		b.Run(size.name+"/debugfs", func(b *testing.B) {
			if debugfs == "" {
				b.Skip("debugfs not found: no baseline (install e2fsprogs)")
			}
			runCase(b, pristine, work, judge, func() (time.Duration, error) {
				cmd := exec.Command(debugfs, "-w", "-f", scriptPath, work)
				cmd.Dir = assets
				out, err := cmd.CombinedOutput()
				if err == nil && !strings.Contains(string(out), "Allocated inode") {
					b.Fatalf("debugfs wrote nothing:\n%s", out)
				}
				return processCPU(cmd), err
			})
		})
		b.Run(size.name+"/ext4edit", func(b *testing.B) {
			runCase(b, pristine, work, judge, func() (time.Duration, error) {
				cmd := exec.Command(bin, "-w", "-f", scriptPath, work)
				cmd.Dir = assets
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("ext4edit: %v\n%s", err, out)
				}
				return processCPU(cmd), nil
			})
		})
		b.Run(size.name+"/inproc", func(b *testing.B) {
			runCase(b, pristine, work, judge, func() (time.Duration, error) {
				im, err := ext4edit.Open(work, nil)
				if err != nil {
					return 0, err
				}
				var stderr bytes.Buffer
				r := &script.Runner{Img: im, Stderr: &stderr, Writable: true}
				failed, err := r.RunScript(strings.NewReader(inproc))
				if cerr := im.Close(); err == nil {
					err = cerr
				}
				if err == nil && failed > 0 {
					b.Fatalf("%d requests failed:\n%s", failed, stderr.String())
				}
				return 0, err
			})
		})
	}
}

// runCase times op on a fresh copy of pristine per iteration, judges the
// first result, and reports the metrics. op returns the CPU time of the
// process it ran (0 in process), reported as cpu-ns/op: on a busy machine
// it varies less than the wall time.
func runCase(b *testing.B, pristine, work string, judge func(*testing.B), op func() (time.Duration, error)) {
	var cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := testimg.SparseCopySynced(pristine, work); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		c, err := op()
		if err != nil {
			b.Fatal(err)
		}
		cpu += c
		if i == 0 && b.N == 1 {
			b.StopTimer()
			judge(b)
			b.StartTimer()
		}
	}
	b.StopTimer()
	nsop := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	name := b.Name()[strings.Index(b.Name(), "/")+1:] // "1GiB/ext4edit"
	benchResults.Store(name, nsop)
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	size, tool, _ := strings.Cut(name, "/")
	if tool != "debugfs" {
		if base, ok := benchResults.Load(size + "/debugfs"); ok {
			b.ReportMetric(nsop/base.(float64), "x-debugfs")
		}
	}
	if size != "1GiB" {
		if base, ok := benchResults.Load("1GiB/" + tool); ok {
			b.ReportMetric(nsop/base.(float64), "x-1GiB")
		}
	}
}

// processCPU is the user and system time of a finished command.
func processCPU(cmd *exec.Cmd) time.Duration {
	if cmd.ProcessState == nil {
		return 0
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}
