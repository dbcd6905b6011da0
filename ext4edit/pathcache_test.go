package ext4edit

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
)

// TestDirPathCacheAgrees runs random edits (directories, symlinks with
// relative, absolute and ".." targets, removals, renames, mode changes,
// operations that fail part way and roll back) and after each compares
// what every path resolves to with the directory path cache as the edits
// left it and with the cache emptied.
func TestDirPathCacheAgrees(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			img, err := Mkfs(filepath.Join(t.TempDir(), "img"), 32<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			r := rand.New(rand.NewPCG(seed, 7))
			names := []string{"a", "b", "c", "..", "."}
			var probes []string
			var gen func(prefix string, depth int)
			gen = func(prefix string, depth int) {
				if depth == 0 {
					return
				}
				for _, n := range names {
					p := prefix + "/" + n
					probes = append(probes, p)
					gen(p, depth-1)
				}
			}
			gen("", 3)
			pick := func() string {
				var b strings.Builder
				for d := 1 + r.IntN(3); d > 0; d-- {
					b.WriteString("/" + names[r.IntN(3)])
				}
				return b.String()
			}
			targets := []string{"a", "b/c", "/a", "/b/a", "..", "../a", ".", "/", "/c/b", "nowhere"}
			for step := 0; step < 300; step++ {
				p, q := pick(), pick()
				var op string
				switch k := r.IntN(12); k {
				case 0, 1, 2:
					op = "mkdirall " + p
					_ = img.MkdirAll(p, 0o755)
				case 3:
					tg := targets[r.IntN(len(targets))]
					op = "symlink " + tg + " " + p
					_ = img.Symlink(tg, p)
				case 4:
					op = "removeall " + p
					_ = img.RemoveAll(p)
				case 5:
					op = "remove " + p
					_ = img.Remove(p)
				case 6, 7:
					op = "rename " + p + " " + q
					_ = img.Rename(p, q)
				case 8:
					op = "write " + p
					_ = img.WriteFile(p, []byte(p), 0o644)
				case 9:
					// Fails part way (a file in the way) after making the
					// missing directories of p: the rollback must forget
					// them, or a later directory reusing an inode number
					// would be found under their names.
					op = "mkdirall-fail " + p
					_ = img.WriteFile("/f", nil, 0o644)
					_ = img.MkdirAll(p+"/../../../../f/x", 0o755)
				case 10:
					m := uint16(sIFREG | 0o644)
					if r.IntN(2) == 0 {
						m = sIFDIR | 0o755
					}
					op = fmt.Sprintf("setattr %s mode %o", p, m)
					_ = img.Lsetattr(p, Attr{Mode: &m})
				case 11:
					op = "link " + p + " " + q
					_ = img.Link(p, q)
				}
				// Every probe with the cache as the edit left it (filled by
				// the probes of earlier steps), then every probe without.
				var cached []string
				for _, pr := range probes {
					cached = append(cached, probe(img, pr, false), probe(img, pr, true))
				}
				img.mu.Lock()
				n := len(img.paths.dirs)
				img.forgetDirPaths()
				img.mu.Unlock()
				if step > 10 && n == 0 {
					t.Fatalf("step %d: the cache is empty", step)
				}
				for i, pr := range probes {
					img.mu.Lock()
					img.forgetDirPaths()
					img.mu.Unlock()
					for j, follow := range []bool{false, true} {
						if fresh := probe(img, pr, follow); cached[2*i+j] != fresh {
							t.Fatalf("step %d (%s): %s (follow %v) resolves to %s with the cache, %s without", step, op, pr, follow, cached[2*i+j], fresh)
						}
					}
				}
			}
		})
	}
}

func probe(img *Image, p string, follow bool) string {
	var fi fs.FileInfo
	var err error
	if follow {
		fi, err = img.Stat(p)
	} else {
		fi, err = img.Lstat(p)
	}
	if err != nil {
		return "error " + err.Error()
	}
	return fmt.Sprintf("inode %d", fi.Sys().(*InodeInfo).Ino)
}
