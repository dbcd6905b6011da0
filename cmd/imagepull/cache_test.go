package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/internal/testimg"
)

// pull --cache: the second pull reports cached, publishes the same bytes,
// and --verity and clone compose with it.
func TestPullCacheAndClone(t *testing.T) {
	testimg.Require(t, "e2fsck")
	src := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(src, empty.Index)
	require.NoError(t, err)
	img, err := random.Image(4096, 3)
	require.NoError(t, err)
	require.NoError(t, p.AppendImage(img))
	cache := filepath.Join(t.TempDir(), "cache")
	var outs []string
	for i, wantCached := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "out")
		var stdout, stderr bytes.Buffer
		code := pull([]string{"--no-agents", "--verity", "--cache", cache, "--cache-max", "1G", "--json", "oci:" + src, out}, &stdout, &stderr)
		require.Equal(t, 0, code, stderr.String())
		var res pullJSON
		require.NoError(t, json.Unmarshal(stdout.Bytes(), &res))
		require.Equal(t, wantCached, res.Cached, "pull %d", i)
		require.NotNil(t, res.Verity)
		outs = append(outs, out)
	}
	require.Equal(t, testimg.SHA256File(t, filepath.Join(outs[0], "rootfs.ext4")), testimg.SHA256File(t, filepath.Join(outs[1], "rootfs.ext4")))

	// A VM's disk from the sealed base: unsealed, grown, clean.
	vm := filepath.Join(t.TempDir(), "vm.ext4")
	code, stdout, stderr := runCLI("clone", "--size", "256M", filepath.Join(outs[1], "rootfs.ext4"), vm)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "268435456 bytes")
	testimg.RequireClean(t, vm)

	for _, args := range [][]string{
		{"pull", "--cache-max", "1G", "oci:" + src, t.TempDir()},
		{"clone", vm},
		{"clone", "--size", "big", vm, vm + "2"},
	} {
		code, _, _ := runCLI(args...)
		require.Equal(t, 2, code, "%q", args)
	}
}
