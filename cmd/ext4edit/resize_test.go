package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseResizeSize(t *testing.T) {
	tests := []struct {
		in   string
		want resizeTarget
		bad  bool
	}{
		{in: "1073741824", want: resizeTarget{bytes: 1 << 30}},
		{in: "512M", want: resizeTarget{bytes: 512 << 20}},
		{in: "2g", want: resizeTarget{bytes: 2 << 30}},
		{in: "2GiB", want: resizeTarget{bytes: 2 << 30}},
		{in: "1T", want: resizeTarget{bytes: 1 << 40}},
		{in: "64K", want: resizeTarget{bytes: 64 << 10}},
		{in: "+1G", want: resizeTarget{bytes: 1 << 30, relative: true}},
		{in: "min", want: resizeTarget{min: true}},
		{in: "MIN", want: resizeTarget{min: true}},
		{in: "", bad: true},
		{in: "+", bad: true},
		{in: "-1G", bad: true},
		{in: "1.5G", bad: true},
		{in: "G", bad: true},
		{in: "9999999T", bad: true},
		{in: "12X", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseResizeSize(tt.in)
			if tt.bad {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// TestResizeCLI grows an image with -resize SIZE and +SIZE and checks the
// exit statuses: 0 done, 1 failed with the image unchanged, 2 usage.
func TestResizeCLI(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not found: this test needs e2fsprogs")
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	out, err := exec.Command(mkfs, "-q", "-F", img, "16M").CombinedOutput()
	require.NoError(t, err, "%s", out)
	size := func() int64 {
		fi, err := os.Stat(img)
		require.NoError(t, err)
		return fi.Size()
	}
	digest := func() [32]byte {
		b, err := os.ReadFile(img)
		require.NoError(t, err)
		return sha256.Sum256(b)
	}

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-resize", "64M", img}, nil, &stdout, &stderr), stderr.String())
	require.Equal(t, img+": 16777216 -> 67108864 bytes (16 MiB -> 64 MiB)\n", stdout.String())
	require.Equal(t, int64(64<<20), size())

	stdout.Reset()
	require.Equal(t, 0, run([]string{"-resize", "+32M", img}, nil, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "-> 100663296 bytes (64 MiB -> 96 MiB)")
	require.Equal(t, int64(96<<20), size())
	fsck := func() {
		if e2fsck, err := exec.LookPath("e2fsck"); err == nil {
			out, err := exec.Command(e2fsck, "-fn", img).CombinedOutput()
			require.NoError(t, err, "e2fsck -fn after the CLI resize:\n%s", out)
		}
	}
	fsck()

	stdout.Reset()
	require.Equal(t, 0, run([]string{"-resize", "48M", img}, nil, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "-> 50331648 bytes (96 MiB -> 48 MiB)")
	require.Equal(t, int64(48<<20), size())
	fsck()

	stdout.Reset()
	require.Equal(t, 0, run([]string{"-resize", "min", img}, nil, &stdout, &stderr), stderr.String())
	require.Less(t, size(), int64(16<<20), "min is below the size mkfs made")
	fsck()

	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"bad size", []string{"-resize", "lots", img}, 2, "want bytes"},
		{"with -w", []string{"-w", "-resize", "2G", img}, 2, "usage"},
		{"no image", []string{"-resize", "2G"}, 2, "usage"},
		{"below the content", []string{"-resize", "1M", img}, 1, "no space"},
		{"missing image", []string{"-resize", "2G", img + ".missing"}, 1, "missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := digest()
			var stdout, stderr bytes.Buffer
			require.Equal(t, tt.code, run(tt.args, nil, &stdout, &stderr), stderr.String())
			require.True(t, strings.Contains(stderr.String(), tt.want), "stderr %q lacks %q", stderr.String(), tt.want)
			require.Equal(t, before, digest(), "a failed resize leaves the image unchanged")
		})
	}
}
