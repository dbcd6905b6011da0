package imagepull

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/internal/testimg"
)

// reflinkDir mounts a fresh XFS with reflinks (a loop-mounted sparse image
// file of 16 GiB) and returns a directory on it; it skips where that
// cannot be done.
func reflinkDir(t testing.TB) string {
	t.Helper()
	testimg.RequireKernelMount(t)
	mkfs := testimg.LookTool("mkfs.xfs")
	if mkfs == "" {
		t.Skip("mkfs.xfs not installed (apt-get install xfsprogs): the reflink test needs an XFS to clone on")
	}
	if b, err := os.ReadFile("/proc/filesystems"); err != nil || !strings.Contains(string(b), "xfs") {
		t.Skip("the kernel has no XFS driver: the reflink test needs one")
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "xfs.img")
	f, err := os.Create(img)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(16<<30))
	require.NoError(t, f.Close())
	out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput()
	require.NoError(t, err, "mkfs.xfs: %s", out)
	mnt := filepath.Join(dir, "mnt")
	require.NoError(t, os.Mkdir(mnt, 0o755))
	out, err = exec.Command("mount", "-o", "loop", "-t", "xfs", img, mnt).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount an XFS image here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// On a host filesystem with reflinks the clone shares SRC's extents:
// filefrag marks them shared, and growing the copy leaves SRC as it was.
func TestCloneReflink(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "filefrag")
	mnt := reflinkDir(t)
	src := cloneSource(t, mnt)
	srcSum := testimg.SHA256File(t, src)
	dst := filepath.Join(mnt, "vm.ext4")
	res, err := Clone(src, dst, CloneOptions{Size: 8 << 30})
	require.NoError(t, err)
	require.True(t, res.Reflinked, "Clone copied instead of reflinking on XFS")
	testimg.RequireClean(t, dst)
	require.Equal(t, listImage(t, src), listImage(t, dst))
	require.Equal(t, srcSum, testimg.SHA256File(t, src))
	out, err := exec.Command(testimg.LookTool("filefrag"), "-v", src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "shared", "SRC's extents are not shared after a reflink clone:\n%s", out)
}
