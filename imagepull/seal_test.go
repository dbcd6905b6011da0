package imagepull

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestPullVerity: pull --verity seals rootfs.ext4 so that veritysetup
// verifies it with image.json's root hash, the filesystem part stays
// e2fsck-clean, two pulls are byte-identical, sealing the unsealed pull
// afterwards gives the same bytes, and edits of the sealed image refuse.
func TestPullVerity(t *testing.T) {
	testimg.Require(t, "e2fsck", "veritysetup")
	src := "oci:" + singleLayout(t, archLayers(t, "amd64")...) + ":v1"
	finalize := func(img *ext4edit.Image) error { return img.WriteFile("/etc/finalized", []byte("yes"), 0o644) }
	var outs []string
	for i := range 2 {
		out := filepath.Join(t.TempDir(), "out"+strconv.Itoa(i))
		res, err := Pull(context.Background(), src, out, PullOptions{Finalize: finalize, Verity: &verity.Options{}})
		require.NoError(t, err)
		require.NotNil(t, res.Metadata.Verity)
		outs = append(outs, out)
	}
	p := filepath.Join(outs[0], RootfsName)
	m := readMeta(t, outs[0])
	v := m.Verity
	require.NotNil(t, v, "image.json has no verity object")
	require.Equal(t, testimg.SHA256File(t, p), testimg.SHA256File(t, filepath.Join(outs[1], RootfsName)), "two sealed pulls differ")
	require.Equal(t, *v, *readMeta(t, outs[1]).Verity)
	require.Len(t, v.RootHash, 64)
	require.Len(t, v.Salt, 64)
	require.Equal(t, "sha256", v.Algorithm)
	require.EqualValues(t, 4096, v.DataBlockSize)
	require.EqualValues(t, 4096, v.HashBlockSize)
	require.Equal(t, v.HashOffset, int64(v.DataBlocks)*4096)
	require.Contains(t, v.KernelCmdline, "dm-mod.create=\"vroot,,,ro,0 "+strconv.FormatUint(v.DataBlocks*8, 10)+" verity 1 /dev/vda /dev/vda 4096 4096 ")
	require.Contains(t, v.KernelCmdline, v.RootHash+" "+v.Salt+"\" root=/dev/dm-0")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), m.Rootfs.Size)
	require.Greater(t, fi.Size(), v.HashOffset)

	// The judges: the filesystem, then the tree.
	testimg.RequireClean(t, p)
	img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	require.Equal(t, v.HashOffset, img.Size())
	require.NoError(t, img.Close())
	vs := testimg.LookTool("veritysetup")
	out, err := exec.Command(vs, "verify", "--hash-offset="+strconv.FormatInt(v.HashOffset, 10), p, p, v.RootHash).CombinedOutput()
	require.NoError(t, err, "veritysetup verify: %s", out)
	got, err := CheckVerity(p, v.RootHash)
	require.NoError(t, err)
	require.Equal(t, *v, *got)

	// Sealing an unsealed pull afterwards gives the same file.
	plain := filepath.Join(t.TempDir(), "plain")
	_, err = Pull(context.Background(), src, plain, PullOptions{Finalize: finalize})
	require.NoError(t, err)
	sealed, err := SealVerity(filepath.Join(plain, RootfsName), nil)
	require.NoError(t, err)
	require.Equal(t, *v, *sealed)
	require.Equal(t, testimg.SHA256File(t, p), testimg.SHA256File(t, filepath.Join(plain, RootfsName)))

	// Edits of the sealed image refuse, leaving it byte-identical.
	before := testimg.SHA256File(t, p)
	img, err = ext4edit.Open(p, nil)
	require.NoError(t, err)
	err = img.WriteFile("/etc/tampered", []byte("x"), 0o644)
	require.ErrorIs(t, err, ext4edit.ErrVeritySealed)
	require.NoError(t, img.Close())
	_, _, err = ext4edit.Resize(p, 2*v.HashOffset, nil)
	require.ErrorIs(t, err, ext4edit.ErrVeritySealed)
	require.Equal(t, before, testimg.SHA256File(t, p))
	_, err = CheckVerity(p, v.RootHash)
	require.NoError(t, err)

	// A flipped byte in the filesystem fails the check.
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	b := make([]byte, 1)
	_, err = f.ReadAt(b, 4096*3+17)
	require.NoError(t, err)
	b[0] ^= 1
	_, err = f.WriteAt(b, 4096*3+17)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = CheckVerity(p, v.RootHash)
	require.ErrorIs(t, err, verity.ErrMismatch)
	out, err = exec.Command(vs, "verify", "--hash-offset="+strconv.FormatInt(v.HashOffset, 10), p, p, v.RootHash).CombinedOutput()
	require.Error(t, err, "veritysetup verify accepted a flipped byte: %s", out)
}

// TestDropVerity: an explicit drop removes the tree, after which the
// image edits and checks clean like any other.
func TestDropVerity(t *testing.T) {
	testimg.Require(t, "e2fsck", "mkfs.ext4")
	p := testimg.Mkfs(t, t.TempDir(), "img", "32M")
	fsSize := fileSize(t, p)
	v, err := SealVerity(p, nil)
	require.NoError(t, err)
	require.Equal(t, fsSize, v.HashOffset)
	require.Greater(t, fileSize(t, p), fsSize)

	// Read-only opens work on a sealed image.
	img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	_, err = img.ReadDir("/")
	require.NoError(t, err)
	require.NoError(t, img.Close())

	img, err = ext4edit.Open(p, &ext4edit.Options{DropVerity: true})
	require.NoError(t, err)
	require.Equal(t, fsSize, fileSize(t, p), "the tree is still in the file")
	require.NoError(t, img.WriteFile("/after-drop", []byte("ok"), 0o644))
	require.NoError(t, img.Close())
	testimg.RequireClean(t, p)
	_, err = CheckVerity(p, v.RootHash)
	require.ErrorIs(t, err, verity.ErrNoSuperblock)
	// Dropping where there is no tree changes nothing.
	before := testimg.SHA256File(t, p)
	img, err = ext4edit.Open(p, &ext4edit.Options{DropVerity: true})
	require.NoError(t, err)
	require.NoError(t, img.Close())
	require.Equal(t, before, testimg.SHA256File(t, p))
}

// TestSealVerityBadInput: what cannot be sealed fails with the file
// unchanged.
func TestSealVerityBadInput(t *testing.T) {
	dir := t.TempDir()
	notExt4 := filepath.Join(dir, "zeros")
	require.NoError(t, os.WriteFile(notExt4, make([]byte, 1<<20), 0o644))
	_, err := SealVerity(notExt4, nil)
	require.ErrorIs(t, err, ext4edit.ErrCorrupt)
	b, err := os.ReadFile(notExt4)
	require.NoError(t, err)
	require.True(t, bytes.Equal(b, make([]byte, 1<<20)))
	_, err = SealVerity(filepath.Join(dir, "missing"), nil)
	require.True(t, errors.Is(err, os.ErrNotExist))
	_, err = CheckVerity(notExt4, "zz")
	require.Error(t, err)
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	return fi.Size()
}
