package fuzz

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
)

// FuzzResize opens any bytes as an image, read-write, and grows or
// shrinks it (sel picks how: x1.5, x4, 3/4, 1/2, MinSize, one block
// more): whatever the bytes, no panic, no hang, and the image file never
// ends past the larger of its old size and the size asked for. The
// seeds are FuzzOpenWalk's real images (ext2, ext3, ext4 with and
// without a journal, inline data, an MBR), each with every sel.
func FuzzResize(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOpenWalk", "*"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range seeds {
		data, err := readCorpusBytes(p)
		if err != nil {
			f.Fatalf("%s: %v", p, err)
		}
		for sel := uint8(0); sel < 6; sel++ {
			f.Add(data, sel)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		name := scratchFile(t)
		if _, err := writeImage(name, data); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		was := fi.Size()
		var asked int64
		guard(t, "resize", 2*inputTimeout, func() error {
			img, err := ext4edit.Open(name, &ext4edit.Options{NoLock: true})
			if err != nil {
				return nil
			}
			cur := img.Size()
			switch sel % 6 {
			case 0:
				asked = cur * 3 / 2
			case 1:
				asked = cur * 4
			case 2:
				asked = cur * 3 / 4
			case 3:
				asked = cur / 2
			case 4:
				if asked, err = img.MinSize(); err != nil {
					img.Discard()
					return nil
				}
			case 5:
				asked = cur + 4096
			}
			asked = min(asked, 1<<30) // a corrupt size must not fill the disk
			if err := img.Resize(asked); err != nil {
				if os.Getenv("EXT4EDIT_FUZZ_LOG") != "" {
					t.Logf("resize %d -> %d: %v", cur, asked, err)
				}
				img.Discard()
				return nil
			}
			if os.Getenv("EXT4EDIT_FUZZ_LOG") != "" {
				t.Logf("resized %d -> %d", cur, img.Size())
			}
			_ = img.Close()
			return nil
		})
		fi, err = os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if limit := max(was, asked); fi.Size() > limit {
			t.Fatalf("the image file grew to %d bytes, past %d (its old size %d, %d asked)", fi.Size(), limit, was, asked)
		}
	})
}

// readCorpusBytes reads the []byte of a one-value fuzz corpus file.
func readCorpusBytes(p string) ([]byte, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitN(string(b), "\n", 3)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, fmt.Errorf("not a fuzz corpus file")
	}
	v, ok := strings.CutPrefix(lines[1], "[]byte(")
	if !ok || !strings.HasSuffix(v, ")") {
		return nil, fmt.Errorf("not a []byte value: %.40s", lines[1])
	}
	s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
	return []byte(s), err
}
