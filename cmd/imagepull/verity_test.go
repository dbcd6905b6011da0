package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

func TestVerityCommand(t *testing.T) {
	testimg.Require(t, "mkfs.ext4")
	img := testimg.Mkfs(t, t.TempDir(), "img", "16M")

	code, stdout, stderr := runCLI("verity", "--salt", "00ff", img)
	require.Equal(t, 0, code, stderr)
	var m imagepull.VerityMetadata
	require.NoError(t, json.Unmarshal([]byte(stdout), &m), stdout)
	require.Equal(t, "00ff", m.Salt)
	require.EqualValues(t, 16<<20, m.HashOffset)
	for _, key := range []string{"root_hash", "salt", "hash_offset", "data_blocks", "data_block_size", "hash_block_size", "algorithm", "kernel_cmdline"} {
		require.Contains(t, stdout, `"`+key+`"`)
	}

	code, _, stderr = runCLI("verity", "--check", img, m.RootHash)
	require.Equal(t, 0, code, stderr)
	wrong := strings.Repeat("0", 64)
	code, _, stderr = runCLI("verity", "--check", img, wrong)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "verification failed")

	// Sealing again (the salt now derived) replaces the tree.
	code, stdout, stderr = runCLI("verity", img)
	require.Equal(t, 0, code, stderr)
	var m2 imagepull.VerityMetadata
	require.NoError(t, json.Unmarshal([]byte(stdout), &m2))
	require.NotEqual(t, m.RootHash, m2.RootHash)
	code, _, stderr = runCLI("verity", "--check", img, m2.RootHash)
	require.Equal(t, 0, code, stderr)

	for _, args := range [][]string{
		{"verity"},
		{"verity", "--check", img},
		{"verity", "--check", "--salt", "00", img, m2.RootHash},
		{"verity", img, "extra"},
		{"verity", "--salt", "xyz", img},
	} {
		code, _, _ := runCLI(args...)
		require.Equal(t, 2, code, "%q", args)
	}
	code, _, _ = runCLI("verity", img+".missing")
	require.Equal(t, 1, code)
	_, err := os.Stat(img + ".missing")
	require.True(t, os.IsNotExist(err))
}
