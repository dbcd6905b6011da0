package ext4edit_test

import (
	"io/fs"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestAddJournal: a journal added to a filesystem made without one is
// what e2fsck and the kernel expect, and the next commits go through it.
func TestAddJournal(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "dumpe2fs")
	for _, c := range []struct {
		name   string
		mkfs   []string
		blocks uint32
		want   uint64
	}{
		{"default-size", []string{"-O", "^has_journal"}, 0, 4096},
		{"given-size", []string{"-O", "^has_journal", "-b", "4096"}, 2048, 2048},
		{"ext2", []string{"-t", "ext2"}, 0, 4096},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := testimg.Mkfs(t, t.TempDir(), "j.img", "128M", c.mkfs...)
			im, err := ext4edit.Open(img, nil)
			require.NoError(t, err)
			require.NoError(t, im.WriteFile("/before", []byte("x"), 0o644))
			require.NoError(t, im.AddJournal(c.blocks))
			require.ErrorIs(t, im.AddJournal(0), fs.ErrExist)
			require.NoError(t, im.Sync())
			require.NoError(t, im.WriteFile("/after", []byte("y"), 0o644)) // a journaled commit
			require.NoError(t, im.Close())
			ok, out := testimg.Fsck(t, img)
			require.True(t, ok, "e2fsck -fn:\n%s", out)
			hdr := testimg.Dumpe2fs(t, img, true)
			require.Contains(t, hdr, "has_journal")
			n, _ := testimg.HeaderField(hdr, "Total journal blocks")
			require.Equal(t, c.want, n)
			if os.Getuid() == 0 {
				rzKernelWrite(t, img)
			}
		})
	}
}
