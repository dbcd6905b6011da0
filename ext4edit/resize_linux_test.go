//go:build linux

package ext4edit_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/internal/testimg"
)

// rzKernelWrite mounts the image, writes 1000 files into it, unmounts it
// and asks e2fsck again (skipped without root and loop devices).
func rzKernelWrite(t *testing.T, img string) {
	t.Helper()
	dir, unmount := testimg.Mount(t, img, false)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "kernel"), 0o755))
	for i := 0; i < 1000; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "kernel", "f"+strconv.Itoa(i)), bytes.Repeat([]byte{byte(i)}, 1+i*37), 0o644))
	}
	// A file larger than the old filesystem's free space lands in the new groups.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kernel", "large"), rzBytes(48<<20, 9), 0o644))
	unmount()
	ok, out := testimg.Fsck(t, img)
	require.True(t, ok, "e2fsck -fn after the kernel wrote into the resized image:\n%s", out)
}

// rzAllocated is the disk space the image file takes (st_blocks).
func rzAllocated(t *testing.T, name string) (int64, bool) {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(name, &st))
	return st.Blocks * 512, true
}
