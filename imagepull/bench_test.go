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

// procResult is one measured process.
type procResult struct {
	out       string
	cpu, wall time.Duration // user+system CPU; wall clock from fork to wait
	rssKiB    int64
}

// measured runs a command and returns its output, CPU and wall time and
// peak RSS in KiB. GNU time (/usr/bin/time) measures the RSS where
// installed: a child of this Go process shares the parent's memory until
// exec (vfork), so its own ru_maxrss would count the test binary's RSS;
// time forks from a small process. Without time the rusage figure is an
// upper bound. The CPU time is time's wait4 figure, which includes the
// child it waited for (and time's own few hundred microseconds, the same
// for every tool measured).
func measured(b *testing.B, name string, args ...string) procResult {
	b.Helper()
	var rssFile string
	cmd := exec.Command(name, args...)
	if tm, err := exec.LookPath("/usr/bin/time"); err == nil {
		rssFile = filepath.Join(b.TempDir(), "rss")
		cmd = exec.Command(tm, append([]string{"-f", "%M", "-o", rssFile, name}, args...)...)
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	r := procResult{out: string(out), wall: time.Since(start)}
	if err != nil {
		b.Fatalf("%s: %v\n%s", name, err, out)
	}
	r.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if rssFile == "" {
		r.rssKiB = maxRSSKiB(cmd.ProcessState)
		return r
	}
	raw, err := os.ReadFile(rssFile)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := fmt.Sscan(strings.TrimSpace(string(raw)), &r.rssKiB); err != nil {
		b.Fatalf("parsing GNU time's %%M output %q: %v", raw, err)
	}
	return r
}

func runDebugfs(b *testing.B, script, img string) procResult {
	r := measured(b, "debugfs", "-w", "-f", script, img)
	// debugfs -f keeps going past failed requests: any message other than
	// the echoed requests, the banner and the seed's tolerated "directory
	// already exists" of its shallow-first mkdirs is a failure of the
	// baseline.
	for _, l := range strings.Split(r.out, "\n") {
		if strings.Contains(l, "Ext2 directory already exists") {
			continue
		}
		if l == "" || strings.HasPrefix(l, "debugfs ") || strings.HasPrefix(l, "debugfs:") || strings.HasPrefix(l, "Allocated inode:") {
			continue
		}
		b.Fatalf("debugfs baseline failed: %s\n%s", l, r.out)
	}
	return r
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

// BenchmarkInjectProcess compares whole processes: `imagepull inject`
// against the same tree written by `debugfs -w -f SCRIPT`, alternately in
// every iteration so both see the same disk weather. It reports the
// medians of each process's CPU time (user+system, from wait4) and wall
// time, their ratios (cli/debugfs-cpu is the goal's figure: <= 0.5) and
// each process's peak RSS. Besides the bare mkfs templates it runs the
// "1G-rootfs" case: a 1 GiB image made by mkfs.ext4 -d from a tree shaped
// like a systemd distribution (etc, usr/lib/systemd, a few hundred files).
func BenchmarkInjectProcess(b *testing.B) {
	testimg.Require(b, "go")
	cli := filepath.Join(b.TempDir(), "imagepull")
	build := exec.Command("go", "build", "-o", cli, "github.com/banger/ext4kit/cmd/imagepull")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building cmd/imagepull: %v\n%s", err, out)
	}
	images := append([]struct {
		name, size string
		mkfs       []string
	}{{"1G-rootfs", "1G", []string{"-d", rootfsLikeTree(b)}}}, benchImages...)
	for _, im := range images {
		b.Run(im.name, func(b *testing.B) {
			e := newBenchEnv(b, im.size, im.mkfs)
			var cliCPU, dbgCPU, cliWall, dbgWall []time.Duration
			var cliRSS, dbgRSS int64
			for i := 0; i < b.N; i++ {
				e.fresh(b)
				r := measured(b, cli, "inject", "--agent", e.agent, e.work)
				cliCPU, cliWall, cliRSS = append(cliCPU, r.cpu), append(cliWall, r.wall), max(cliRSS, r.rssKiB)
				e.fresh(b)
				r = runDebugfs(b, e.script, e.work)
				dbgCPU, dbgWall, dbgRSS = append(dbgCPU, r.cpu), append(dbgWall, r.wall), max(dbgRSS, r.rssKiB)
			}
			e.check(b)
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(median(cliCPU)), "cli-cpu-ms")
			b.ReportMetric(ms(median(dbgCPU)), "debugfs-cpu-ms")
			b.ReportMetric(float64(median(cliCPU))/float64(median(dbgCPU)), "cli/debugfs-cpu")
			b.ReportMetric(ms(median(cliWall)), "cli-wall-ms")
			b.ReportMetric(ms(median(dbgWall)), "debugfs-wall-ms")
			b.ReportMetric(float64(median(cliWall))/float64(median(dbgWall)), "cli/debugfs-wall")
			if cliRSS > 0 {
				b.ReportMetric(float64(cliRSS), "cli-maxrss-KiB")
				b.ReportMetric(float64(dbgRSS), "debugfs-maxrss-KiB")
			}
		})
	}
}

// rootfsLikeTree writes a small tree shaped like a systemd distribution's
// root: the directories the injection writes into already exist, as they
// do in a Debian image, next to a few hundred files.
func rootfsLikeTree(b *testing.B) string {
	root := b.TempDir()
	for _, d := range []string{"etc/systemd/system/multi-user.target.wants", "etc/modules-load.d",
		"usr/local/bin", "usr/local/libexec", "usr/lib/systemd/system", "usr/bin", "usr/sbin",
		"usr/lib/x86_64-linux-gnu", "usr/share/doc", "var/lib", "var/log", "root", "tmp", "home", "proc", "sys", "dev", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, l := range [][2]string{{"bin", "usr/bin"}, {"sbin", "usr/sbin"}, {"lib", "usr/lib"}} {
		if err := os.Symlink(l[1], filepath.Join(root, l[0])); err != nil {
			b.Fatal(err)
		}
	}
	body := strings.Repeat("x", 3000)
	for i := 0; i < 400; i++ {
		dir := []string{"usr/bin", "usr/lib/x86_64-linux-gnu", "usr/share/doc", "etc", "usr/lib/systemd/system"}[i%5]
		if err := os.WriteFile(filepath.Join(root, dir, fmt.Sprintf("f%03d", i)), []byte(body[:i*7%3000]), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Symlink("/usr/lib/systemd/systemd", filepath.Join(root, "usr/sbin/init")); err != nil {
		b.Fatal(err)
	}
	return root
}

// inject runs the library's injection on the work copy, one session.
func (e *benchEnv) inject(b *testing.B) {
	img, err := ext4edit.Open(e.work, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := InjectGuestAgents(img, InjectOptions{AgentPath: e.agent, Init: InitSystemd}); err != nil {
		b.Fatal(err)
	}
	if err := img.Close(); err != nil {
		b.Fatal(err)
	}
}
