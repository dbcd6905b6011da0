package ext4edit_test

// BenchmarkLibraryInject: the seed's guest-agent injection (the requests of
// fixtures.InjectScript: shallow-first Mkdir tolerating existing
// directories, five WriteFile, Lchown and Chmod as the sif requests do, two
// Symlink) made directly through the library, Open to Close, on a fresh
// sparse copy of a 1 GiB and a 1 TiB mkfs.ext4 image per iteration (the copy
// is outside the timer). The agent is a 4 MiB blob standing in for the
// static Go binary. x-1GiB is the 1 TiB time over the 1 GiB time (target
// <= 1.2: the cost of an edit grows with what it touches, not the image).
//
//	go test -bench LibraryInject -run '^$' ./ext4edit/
//
// Images live in TMPDIR; TMPDIR=/dev/shm leaves the disk's fsync latency out.

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/fixtures"
	"github.com/banger/ext4kit/internal/testimg"
)

const benchAgentSize = 4 << 20

// injectStep is one request of the injection script, as library calls.
type injectStep struct {
	op   string // mkdir, write, chown, chmod, symlink
	path string
	arg  string // host asset name, or symlink target
	mode fs.FileMode
}

// injectSteps translates fixtures.InjectScript into library calls.
func injectSteps(tb testing.TB) []injectStep {
	var steps []injectStep
	for _, line := range strings.Split(fixtures.InjectScript(), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "mkdir" && len(f) == 2:
			steps = append(steps, injectStep{op: "mkdir", path: f[1]})
		case f[0] == "write" && len(f) == 3:
			steps = append(steps, injectStep{op: "write", path: f[2], arg: strings.Trim(f[1], `"`)})
		case f[0] == "sif" && len(f) == 4 && (f[2] == "uid" || f[2] == "gid"):
			// uid and gid come in pairs; one Lchown does both.
			if f[2] == "uid" {
				steps = append(steps, injectStep{op: "chown", path: f[1]})
			}
		case f[0] == "sif" && len(f) == 4 && f[2] == "mode":
			m, err := strconv.ParseUint(f[3], 8, 32)
			if err != nil {
				tb.Fatalf("inject script: %q: %v", line, err)
			}
			steps = append(steps, injectStep{op: "chmod", path: f[1], mode: fs.FileMode(m & 0o777)})
		case f[0] == "symlink" && len(f) == 3:
			steps = append(steps, injectStep{op: "symlink", path: f[1], arg: f[2]})
		default:
			tb.Fatalf("inject script: unexpected request %q", line)
		}
	}
	return steps
}

func runInject(img *ext4edit.Image, steps []injectStep, assets map[string][]byte) error {
	for _, s := range steps {
		var err error
		switch s.op {
		case "mkdir":
			if err = img.Mkdir(s.path, 0o755); errors.Is(err, fs.ErrExist) {
				err = nil
			}
		case "write":
			err = img.WriteFile(s.path, assets[s.arg], 0o600)
		case "chown":
			err = img.Lchown(s.path, 0, 0)
		case "chmod":
			err = img.Chmod(s.path, s.mode)
		case "symlink":
			err = img.Symlink(s.arg, s.path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkLibraryInject(b *testing.B) {
	mkfs := testimg.LookTool("mkfs.ext4")
	if mkfs == "" {
		b.Skip("mkfs.ext4 not found: BenchmarkLibraryInject needs e2fsprogs to make its images")
	}
	dir := b.TempDir()
	if err := testimg.SparseCopySynced(os.Args[0], filepath.Join(dir, "probe")); err != nil {
		b.Skipf("cp --sparse=always does not work here (GNU coreutils needed to copy sparse images): %v", err)
	}
	assets := map[string][]byte{}
	for _, name := range fixtures.AssetNames() {
		assets[name] = fixtures.Asset(name)
	}
	agent := make([]byte, benchAgentSize)
	_, _ = rand.NewChaCha8([32]byte{'b', 'a', 'n', 'g', 'e', 'r'}).Read(agent)
	assets["banger-vsock-agent"] = agent
	steps := injectSteps(b)
	e2fsck := testimg.LookTool("e2fsck")

	var base float64 // ns/op at 1 GiB
	for _, size := range []struct {
		name  string
		bytes int64
	}{{"1GiB", 1 << 30}, {"1TiB", 1 << 40}} {
		pristine := filepath.Join(dir, size.name+".ext4")
		if err := testimg.MkfsLazy(mkfs, pristine, size.bytes); err != nil {
			b.Skipf("making the %s sparse image: %v", size.name, err)
		}
		work := filepath.Join(dir, "work.ext4")
		b.Run(size.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := testimg.SparseCopySynced(pristine, work); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				img, err := ext4edit.Open(work, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := runInject(img, steps, assets); err != nil {
					b.Fatal(err)
				}
				if err := img.Close(); err != nil {
					b.Fatal(err)
				}
				if i == 0 && b.N == 1 && e2fsck != "" {
					b.StopTimer()
					if out, err := exec.Command(e2fsck, "-fn", work).CombinedOutput(); err != nil {
						b.Fatalf("e2fsck -fn after the injection: %v\n%s", err, out)
					}
					b.StartTimer()
				}
			}
			b.StopTimer()
			nsop := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if size.name == "1GiB" {
				base = nsop
			} else if base > 0 {
				b.ReportMetric(nsop/base, "x-1GiB")
			}
		})
	}
}
