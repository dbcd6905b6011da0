package imagepull

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/testimg"
)

// cloneSource is a populated ext4 image: mkfs.ext4 -d of a small tree.
func cloneSource(t *testing.T, dir string) string {
	t.Helper()
	tree := hostTree(t, map[string]string{
		"etc/":           "",
		"etc/hostname":   "base\n",
		"usr/bin/":       "",
		"usr/bin/tool":   string(make([]byte, 300_000)) + "end",
		"usr/lib/":       "",
		"usr/lib/lib.so": "ELF...",
		"bin -> usr/bin": "",
		"srv/data/":      "",
		"srv/data/a.txt": "alpha",
		"srv/data/b.txt": "beta",
	})
	return testimg.MkfsFromDir(t, dir, "base.ext4", "64M", tree)
}

func TestClone(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck")
	dir := t.TempDir()
	src := cloneSource(t, dir)
	srcSum := testimg.SHA256File(t, src)
	want := listImage(t, src)
	for _, tc := range []struct {
		name      string
		size      int64
		noReflink bool
		wantSize  int64
	}{
		{"same size", 0, false, 64 << 20},
		{"grow to 8 GiB", 8 << 30, false, 8 << 30},
		{"grow, byte copy", 1 << 30, true, 1 << 30},
		{"shrink", 48 << 20, false, 48 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "vm.ext4")
			res, err := Clone(src, dst, CloneOptions{Size: tc.size, NoReflink: tc.noReflink})
			require.NoError(t, err)
			require.Equal(t, int64(64<<20), res.SourceSize)
			require.Equal(t, tc.wantSize, res.Size)
			fi, err := os.Stat(dst)
			require.NoError(t, err)
			require.Equal(t, tc.wantSize, fi.Size())
			testimg.RequireClean(t, dst)
			require.Equal(t, want, listImage(t, dst), "the copy's tree differs from SRC's")
			require.Equal(t, "end", string(testimg.Cat(t, dst, "/usr/bin/tool")[300_000:]))
			require.Equal(t, srcSum, testimg.SHA256File(t, src), "SRC changed")
			// Nothing left beside DST.
			ents, err := os.ReadDir(filepath.Dir(dst))
			require.NoError(t, err)
			require.Len(t, ents, 1)
		})
	}
}

// A sealed SRC clones to an unsealed, editable DST; SRC keeps its tree.
func TestCloneSealed(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck")
	dir := t.TempDir()
	src := cloneSource(t, dir)
	v, err := SealVerity(src, nil)
	require.NoError(t, err)
	srcSum := testimg.SHA256File(t, src)
	dst := filepath.Join(dir, "vm.ext4")
	_, err = Clone(src, dst, CloneOptions{Size: 128 << 20})
	require.NoError(t, err)
	img, err := ext4edit.Open(dst, nil)
	require.NoError(t, err)
	require.NoError(t, img.WriteFile("/etc/vm", []byte("1"), 0o644))
	require.NoError(t, img.Close())
	testimg.RequireClean(t, dst)
	require.Equal(t, srcSum, testimg.SHA256File(t, src))
	_, err = CheckVerity(src, v.RootHash)
	require.NoError(t, err)
	_, err = verity.ReadParams(mustOpen(t, dst), 128<<20)
	require.ErrorIs(t, err, verity.ErrNoSuperblock)
}

// Clone refuses what is not an ext4 image, and leaves no DST.
func TestCloneBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, make([]byte, 1<<20), 0o644))
	dst := filepath.Join(dir, "dst")
	_, err := Clone(junk, dst, CloneOptions{})
	require.ErrorIs(t, err, ext4edit.ErrCorrupt)
	_, err = Clone(filepath.Join(dir, "missing"), dst, CloneOptions{})
	require.ErrorIs(t, err, os.ErrNotExist)
	if testimg.LookTool("mkfs.ext4") != "" {
		src := testimg.Mkfs(t, dir, "small", "16M")
		_, err = Clone(src, dst, CloneOptions{Size: 64 << 10}) // below the content
		require.Error(t, err)
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		require.NotEqual(t, "dst", e.Name())
		require.NotContains(t, e.Name(), ".tmp-")
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}
