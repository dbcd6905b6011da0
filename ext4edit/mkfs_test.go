package ext4edit_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	h := sha256.New()
	_, err = io.Copy(h, f)
	require.NoError(t, err)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func TestCreate(t *testing.T) {
	testimg.Require(t, "e2fsck", "dumpe2fs", "debugfs")
	cases := []struct {
		name string
		size int64
		opts ext4edit.MkfsOptions
	}{
		{"64M-default", 64 << 20, ext4edit.MkfsOptions{}},
		{"64M-1k", 64 << 20, ext4edit.MkfsOptions{BlockSize: 1024}},
		{"300M-2k", 300 << 20, ext4edit.MkfsOptions{BlockSize: 2048}},
		{"1G", 1 << 30, ext4edit.MkfsOptions{Label: "rootfs"}},
		{"6G", 6 << 30, ext4edit.MkfsOptions{}},
		{"512M-64k", 512 << 20, ext4edit.MkfsOptions{BlockSize: 65536}},
		{"20M-1k-last-group", 20 << 20, ext4edit.MkfsOptions{BlockSize: 1024}},
		{"128-byte-inodes", 64 << 20, ext4edit.MkfsOptions{InodeSize: 128}},
		{"no-journal", 64 << 20, ext4edit.MkfsOptions{NoJournal: true}},
		{"1T-sparse", 1 << 40, ext4edit.MkfsOptions{}},
		{"4M-no-room-for-journal", 4 << 20, ext4edit.MkfsOptions{}},
		{"8M", 8 << 20, ext4edit.MkfsOptions{}},
		{"12M", 12 << 20, ext4edit.MkfsOptions{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			start := time.Now()
			im, err := ext4edit.Mkfs(img, c.size, &c.opts)
			require.NoError(t, err)
			took := time.Since(start)
			require.NoError(t, im.MkdirAll("/etc/systemd", 0o755))
			require.NoError(t, im.WriteFile("/etc/hostname", []byte("vm\n"), 0o644))
			require.NoError(t, im.Close())
			t.Logf("created %s in %v", c.name, took)
			testimg.RequireClean(t, img)
			hdr := testimg.Debugfs(t, img, "stats")
			for _, feat := range []string{"extent", "64bit", "flex_bg", "metadata_csum", "dir_index", "huge_file", "dir_nlink", "sparse_super"} {
				require.Contains(t, hdr, feat)
			}
			if !c.opts.NoJournal && c.size >= 8<<20 {
				require.Contains(t, hdr, "has_journal")
			}
			require.Equal(t, "vm\n", string(testimg.Cat(t, img, "/etc/hostname")))
			lf := testimg.DebugfsStat(t, img, "/lost+found")
			require.Equal(t, "directory", lf.Type)
			require.Equal(t, uint32(0o700), lf.Mode)
			if c.opts.Label != "" {
				require.True(t, strings.Contains(hdr, "volume name:   "+c.opts.Label), hdr)
			}
		})
	}
}

func TestCreateDeterministic(t *testing.T) {
	dir := t.TempDir()
	opts := &ext4edit.MkfsOptions{Seed: []byte("sha256:abc"), Time: time.Unix(1700000000, 0)}
	make := func(name string) [32]byte {
		p := filepath.Join(dir, name)
		im, err := ext4edit.Mkfs(p, 256<<20, opts)
		require.NoError(t, err)
		require.NoError(t, im.MkdirAll("/usr/bin", 0o755))
		require.NoError(t, im.WriteFile("/usr/bin/x", []byte("#!/bin/sh\n"), 0o755))
		require.NoError(t, im.Close())
		return fileSHA(t, p)
	}
	require.Equal(t, make("a"), make("b"), "same inputs must give byte-identical images")
	other := *opts
	other.Seed = []byte("sha256:def")
	p := filepath.Join(dir, "c")
	im, err := ext4edit.Mkfs(p, 256<<20, &other)
	require.NoError(t, err)
	require.NoError(t, im.Close())
	require.NotEqual(t, fileSHA(t, filepath.Join(dir, "a")), fileSHA(t, p))
}

func TestCreateRejectsBadGeometry(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		size int64
		opts ext4edit.MkfsOptions
	}{
		{1 << 16, ext4edit.MkfsOptions{}},
		{64 << 20, ext4edit.MkfsOptions{BlockSize: 8192}},
		{64 << 20, ext4edit.MkfsOptions{InodeSize: 100}},
		{64 << 20, ext4edit.MkfsOptions{Label: "a label longer than 16"}},
	} {
		_, err := ext4edit.Mkfs(filepath.Join(dir, "x"), c.size, &c.opts)
		require.Error(t, err)
	}
}

func TestDiscardAndDanglingMkdirAll(t *testing.T) {
	img := filepath.Join(t.TempDir(), "img")
	im, err := ext4edit.Mkfs(img, 64<<20, nil)
	require.NoError(t, err)
	require.NoError(t, im.Close())
	before := fileSHA(t, img)

	im, err = ext4edit.Open(img, nil)
	require.NoError(t, err)
	require.NoError(t, im.MkdirAll("/a/b", 0o755))
	require.NoError(t, im.WriteFile("/a/b/f", make([]byte, 100000), 0o644))
	require.NoError(t, im.Discard())
	_ = before // data went to free blocks only; the tree is what must not change
	testimg.RequireClean(t, img)
	im, err = ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	_, err = im.Stat("/a")
	require.ErrorIs(t, err, fs.ErrNotExist, "discarded edits must not be visible")
	require.NoError(t, im.Close())

	im, err = ext4edit.Open(img, nil)
	require.NoError(t, err)
	require.NoError(t, im.MkdirAll("/usr/local", 0o755))
	require.NoError(t, im.Symlink("/opt/bin", "/usr/local/bin"))
	err = im.MkdirAll("/usr/local/bin", 0o755)
	require.ErrorIs(t, err, fs.ErrExist, "like os.MkdirAll, a dangling symlink is in the way")
	require.NoError(t, im.MkdirAll("/opt/bin", 0o755))
	require.NoError(t, im.MkdirAll("/usr/local/bin/sub", 0o755), "through a symlink to a directory")
	_, err = im.Stat("/opt/bin/sub")
	require.NoError(t, err)
	require.NoError(t, im.Close())
	testimg.RequireClean(t, img)
}

// TestMkfsUnpackedGroupsUninit: with every group's bitmaps and inode table
// in the group itself (GroupsPerFlex 1, as imagepull's auto size builds),
// the groups holding nothing but their own metadata stay BLOCK_UNINIT as
// mke2fs -O ^flex_bg leaves them, so a large image writes no bitmap per
// group. Files then written across them (ours, and the kernel's where it
// can mount) must skip each group's own metadata: e2fsck judges.
func TestMkfsUnpackedGroupsUninit(t *testing.T) {
	testimg.Require(t, "e2fsck", "dumpe2fs")
	for _, bs := range []uint32{1024, 4096} {
		t.Run(fmt.Sprintf("bs=%d", bs), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			size := int64(1 << 30)
			if bs == 1024 {
				size = 256 << 20
			}
			im, err := ext4edit.Mkfs(img, size, &ext4edit.MkfsOptions{BlockSize: bs, GroupsPerFlex: 1})
			require.NoError(t, err)
			require.NoError(t, im.Close())
			testimg.RequireClean(t, img)
			groups := testimg.ParseGroups(testimg.Dumpe2fs(t, img, false))
			require.Greater(t, len(groups), 4)
			var uninit int
			for _, g := range groups {
				if g.HasFlag("BLOCK_UNINIT") {
					uninit++
					require.NotZero(t, g.N, "group 0 is initialised")
					require.NotEqual(t, len(groups)-1, g.N, "the last group is initialised")
				}
			}
			// Every group but the first, the last and the journal's.
			require.GreaterOrEqual(t, uninit, len(groups)-4, "groups holding only their own metadata must stay BLOCK_UNINIT")

			// A file across several groups, written by us.
			im, err = ext4edit.Open(img, nil)
			require.NoError(t, err)
			data := make([]byte, size/3)
			for i := range data {
				data[i] = byte(i*7 + i>>13)
			}
			require.NoError(t, im.WriteFile("/big", data, 0o644))
			require.NoError(t, im.Close())
			testimg.RequireClean(t, img)
			require.Equal(t, sha256.Sum256(data), sha256.Sum256(testimg.Cat(t, img, "/big")))

			// And by the kernel, into groups still uninitialised.
			if testing.Short() {
				return
			}
			testimg.RequireKernelMount(t)
			dir, unmount := testimg.Mount(t, img, false)
			for i := 0; i < 200; i++ {
				require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("k%03d", i)), data[:256<<10], 0o644))
			}
			unmount()
			testimg.RequireClean(t, img)
		})
	}
}

// TestScratchEarlyFlush: a scratch image (Options.Scratch) that writes
// well past the early-flush stride (64 MiB of data) flushes in the
// background while files are still being written and closed; run under
// -race it checks that flush against the writers. The image must come
// out clean with every byte read back, and a Discard after early flushes
// must not race either.
func TestScratchEarlyFlush(t *testing.T) {
	testimg.Require(t, "e2fsck")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i*13 + i>>11)
	}
	for _, discard := range []bool{false, true} {
		t.Run(fmt.Sprintf("discard=%v", discard), func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "img")
			im, err := ext4edit.Mkfs(img, 512<<20, &ext4edit.MkfsOptions{Open: ext4edit.Options{Scratch: true, NoUndo: true}})
			require.NoError(t, err)
			for i := 0; i < 60; i++ { // 180 MiB: two or three early flushes
				d := data
				d[0] = byte(i)
				require.NoError(t, im.WriteFile(fmt.Sprintf("/f%02d", i), d, 0o644))
			}
			if discard {
				require.NoError(t, im.Discard())
				return
			}
			require.NoError(t, im.Close())
			testimg.RequireClean(t, img)
			im, err = ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer im.Close()
			for _, i := range []int{0, 31, 59} {
				got, err := fs.ReadFile(im.FS(), fmt.Sprintf("f%02d", i))
				require.NoError(t, err)
				want := append([]byte(nil), data...)
				want[0] = byte(i)
				require.Equal(t, sha256.Sum256(want), sha256.Sum256(got), "f%02d", i)
			}
		})
	}
}
