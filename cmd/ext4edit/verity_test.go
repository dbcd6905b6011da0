package main

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/testimg"
)

// A sealed image refuses -w edits and -resize (exit 1, image unchanged)
// until -drop-verity removes its tree.
func TestDropVerityFlag(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck")
	img := testimg.Mkfs(t, t.TempDir(), "img", "16M")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = verity.Format(f, 16<<20, nil)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	before := testimg.SHA256File(t, img)

	for _, args := range [][]string{
		{"-w", "-R", "mkdir /x", img},
		{"-resize", "32M", img},
	} {
		var stdout, stderr bytes.Buffer
		require.NotEqual(t, 0, run(args, nil, &stdout, &stderr), "%q", args)
		require.Contains(t, stdout.String()+stderr.String(), "dm-verity", "%q", args)
		require.Equal(t, before, testimg.SHA256File(t, img), "%q changed a sealed image", args)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, run([]string{"-drop-verity", "-R", "ls /", img}, nil, &stdout, &stderr), "-drop-verity without -w")

	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 0, run([]string{"-resize", "32M", "-drop-verity", img}, nil, &stdout, &stderr), stderr.String())
	fi, err := os.Stat(img)
	require.NoError(t, err)
	require.EqualValues(t, 32<<20, fi.Size())
	testimg.RequireClean(t, img)
}
