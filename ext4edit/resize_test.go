package ext4edit_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func TestResizeGrowBare(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		opts []string
		size string
		to   int64
	}{
		{"default-x1.5", nil, "256M", 384 << 20},
		{"default-x64", nil, "256M", 16 << 30},
		{"default-2T", nil, "1G", 2 << 40},
		{"b1024-x64", []string{"-b", "1024"}, "64M", 4 << 30},
		{"nocsum-x8", []string{"-O", "^metadata_csum"}, "128M", 1 << 30},
		{"uninit-x8", []string{"-O", "^metadata_csum,uninit_bg"}, "128M", 1 << 30},
		{"no64-x16", []string{"-O", "^64bit"}, "128M", 2 << 30},
		{"noflex-x8", []string{"-O", "^flex_bg"}, "128M", 1 << 30},
		{"noresize-x8", []string{"-O", "^resize_inode"}, "128M", 1 << 30},
		{"ext3-x8", []string{"-t", "ext3"}, "128M", 1 << 30},
		{"ext2-x8", []string{"-t", "ext2"}, "128M", 1 << 30},
		{"metabg", []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}, "64M", 1 << 30},
		{"nosparse", []string{"-O", "^sparse_super,^resize_inode"}, "128M", 1 << 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := testimg.Mkfs(t, dir, c.name+".img", c.size, c.opts...)
			o, n, err := ext4edit.Resize(img, c.to, nil)
			if err != nil {
				t.Fatalf("resize: %v", err)
			}
			t.Logf("%d -> %d", o, n)
			out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
			if err != nil {
				t.Errorf("e2fsck: %v\n%s", err, out)
			}
			os.Remove(filepath.Join(dir, c.name+".img"))
		})
	}
}
