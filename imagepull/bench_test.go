package imagepull

// Benchmarks of the injection against what the seed did: one
// `debugfs -w -f -` script making the same tree. Each iteration works on a
// fresh copy of the same freshly made image; the copy is not timed.
//
//	go test ./imagepull -run '^$' -bench Inject -benchtime 20x
//
// BenchmarkInject times the library in-process (Open, InjectGuestAgents,
// Close) against the debugfs process. BenchmarkInjectProcess runs both as
// processes (cmd/imagepull inject vs debugfs) and also reports each
// process's peak resident set size (maxrss-KiB, from getrusage).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
)

// benchImages are the templates: mkfs.ext4 defaults at two sizes.
var benchImages = []struct {
	name, size string
	mkfs       []string
}{
	{"64M-1k", "64M", []string{"-b", "1024"}},
	{"512M-4k", "512M", []string{"-b", "4096"}},
}

// debugfsScript is the seed's injection as one debugfs request script:
// shallow-first mkdir (File exists tolerated), write, set_inode_field for
// mode and owner, then the enable symlinks.
func debugfsScript(b testing.TB, agent string) string {
	dir := b.TempDir()
	var s strings.Builder
	var targets []string
	for _, f := range guestassets.Files() {
		targets = append(targets, f.Path)
	}
	for _, l := range guestassets.Symlinks() {
		targets = append(targets, l.Path)
	}
	for _, d := range ancestors(targets) {
		fmt.Fprintf(&s, "mkdir %s\n", d)
	}
	for i, f := range guestassets.Files() {
		src := agent
		if !f.Companion {
			src = filepath.Join(dir, fmt.Sprintf("asset-%d", i))
			if err := os.WriteFile(src, f.Data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
		fmt.Fprintf(&s, "write %s %s\n", src, f.Path)
		fmt.Fprintf(&s, "sif %s mode 0100%o\n", f.Path, f.Mode)
		fmt.Fprintf(&s, "sif %s uid 0\nsif %s gid 0\n", f.Path, f.Path)
	}
	for _, l := range guestassets.Symlinks() {
		fmt.Fprintf(&s, "symlink %s %s\n", l.Path, l.Target)
		fmt.Fprintf(&s, "sif %s uid 0\nsif %s gid 0\n", l.Path, l.Path)
	}
	return s.String()
}

type benchEnv struct {
	template, agent, script string
	work                    string
}

func newBenchEnv(b *testing.B, size string, mkfs []string) *benchEnv {
	b.Helper()
	testimg.Require(b, "mke2fs", "debugfs", "e2fsck")
	dir := b.TempDir()
	e := &benchEnv{
		template: testimg.Mkfs(b, dir, "template.img", size, mkfs...),
		agent:    testimg.AgentBinary(b),
		work:     filepath.Join(dir, "work.img"),
	}
	e.script = filepath.Join(dir, "inject.debugfs")
	if err := os.WriteFile(e.script, []byte(debugfsScript(b, e.agent)), 0o644); err != nil {
		b.Fatal(err)
	}
	return e
}

// fresh copies the template to the work image and flushes the copy to
// disk, untimed: the timed run must not pay for writing the copy back.
func (e *benchEnv) fresh(b *testing.B) {
	b.StopTimer()
	testimg.CopyFile(b, e.template, e.work)
	f, err := os.OpenFile(e.work, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	b.StartTimer()
}

// check verifies the last iteration's result, untimed.
func (e *benchEnv) check(b *testing.B) {
	b.StopTimer()
	if ok, out := testimg.Fsck(b, e.work); !ok {
		b.Fatalf("e2fsck after the benchmark:\n%s", out)
	}
	st := testimg.DebugfsStat(b, e.work, guestassets.AgentPath)
	if st.Mode != 0o755 || st.UID != 0 || st.Type != "regular" {
		b.Fatalf("agent after the benchmark: %+v", st)
	}
	b.StartTimer()
}

// measured runs a command and returns its output and peak RSS in KiB.
// GNU time (/usr/bin/time) measures it where installed: a child of this
// Go process shares the parent's memory until exec (vfork), so its own
// ru_maxrss would count the test binary's RSS; time forks from a small
// process. Without time the rusage figure is an upper bound.
func measured(b *testing.B, name string, args ...string) (string, int64) {
	b.Helper()
	var rssFile string
	cmd := exec.Command(name, args...)
	if tm, err := exec.LookPath("/usr/bin/time"); err == nil {
		rssFile = filepath.Join(b.TempDir(), "rss")
		cmd = exec.Command(tm, append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	if rssFile == "" {
		return string(out), maxRSSKiB(cmd.ProcessState)
	}
	raw, err := os.ReadFile(rssFile)
	if err != nil {
		b.Fatal(err)
	}
	var kib int64
	if _, err := fmt.Sscan(strings.TrimSpace(string(raw)), &kib); err != nil {
		b.Fatalf("parsing GNU time's %%M output %q: %v", raw, err)
	}
	return string(out), kib
}

func runDebugfs(b *testing.B, script, img string) int64 {
	out, rss := measured(b, "debugfs", "-w", "-f", script, img)
	// debugfs -f keeps going past failed requests: any message other than
	// the echoed requests and the banner is a failure of the baseline.
	for _, l := range strings.Split(string(out), "\n") {
		if l == "" || strings.HasPrefix(l, "debugfs ") || strings.HasPrefix(l, "debugfs:") || strings.HasPrefix(l, "Allocated inode:") {
			continue
		}
		b.Fatalf("debugfs baseline failed: %s\n%s", l, out)
	}
	return rss
}

func BenchmarkInject(b *testing.B) {
	for _, im := range benchImages {
		b.Run(im.name, func(b *testing.B) {
			e := newBenchEnv(b, im.size, im.mkfs)
			b.Run("library", func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					e.fresh(b)
					e.inject(b)
				}
				e.check(b)
			})
			b.Run("debugfs", func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					e.fresh(b)
					runDebugfs(b, e.script, e.work)
				}
				e.check(b)
			})
		})
	}
}

// BenchmarkInjectInterleaved runs the library and debugfs alternately in
// every iteration, so that both see the same disk weather (on a shared
// machine fsync latency drifts by 10x), and reports the median of each
// and their ratio (lib/debugfs; the goal is <= 0.5).
func BenchmarkInjectInterleaved(b *testing.B) {
	for _, im := range benchImages {
		b.Run(im.name, func(b *testing.B) {
			e := newBenchEnv(b, im.size, im.mkfs)
			var lib, dbg []time.Duration
			for i := 0; i < b.N; i++ {
				e.fresh(b)
				start := time.Now()
				e.inject(b)
				lib = append(lib, time.Since(start))
				e.fresh(b)
				start = time.Now()
				runDebugfs(b, e.script, e.work)
				dbg = append(dbg, time.Since(start))
			}
			e.check(b)
			ml, md := median(lib), median(dbg)
			b.ReportMetric(float64(ml.Microseconds())/1000, "lib-median-ms")
			b.ReportMetric(float64(md.Microseconds())/1000, "debugfs-median-ms")
			b.ReportMetric(float64(ml)/float64(md), "lib/debugfs")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkInjectProcess compares whole processes, with peak RSS.
func BenchmarkInjectProcess(b *testing.B) {
	testimg.Require(b, "go")
	cli := filepath.Join(b.TempDir(), "imagepull")
	build := exec.Command("go", "build", "-o", cli, "github.com/banger/ext4kit/cmd/imagepull")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building cmd/imagepull: %v\n%s", err, out)
	}
	for _, im := range benchImages {
		b.Run(im.name, func(b *testing.B) {
			e := newBenchEnv(b, im.size, im.mkfs)
			b.Run("imagepull-cli", func(b *testing.B) {
				var peak int64
				for i := 0; i < b.N; i++ {
					e.fresh(b)
					_, rss := measured(b, cli, "inject", "--agent", e.agent, e.work)
					peak = max(peak, rss)
				}
				e.check(b)
				if peak > 0 {
					b.ReportMetric(float64(peak), "maxrss-KiB")
				}
			})
			b.Run("debugfs", func(b *testing.B) {
				var peak int64
				for i := 0; i < b.N; i++ {
					e.fresh(b)
					peak = max(peak, runDebugfs(b, e.script, e.work))
				}
				e.check(b)
				if peak > 0 {
					b.ReportMetric(float64(peak), "maxrss-KiB")
				}
			})
		})
	}
}

// inject runs the library's injection on the work copy, one session.
func (e *benchEnv) inject(b *testing.B) {
	img, err := ext4edit.Open(e.work, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := InjectGuestAgents(img, InjectOptions{AgentPath: e.agent}); err != nil {
		b.Fatal(err)
	}
	if err := img.Close(); err != nil {
		b.Fatal(err)
	}
}
