package main

import (
	"bytes"
	_ "github.com/banger/ext4kit/internal/checkhook"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUsageErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.ext4")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no image", nil, "usage: ext4edit"},
		{"two images", []string{"a", "b"}, "usage: ext4edit"},
		{"both -f and -R", []string{"-f", "s", "-R", "ls", "img"}, "usage: ext4edit"},
		{"unknown flag", []string{"-x", "img"}, "flag provided but not defined"},
		{"missing script", []string{"-f", filepath.Join(t.TempDir(), "nope"), "img"}, "nope"},
		{"missing image", []string{"-R", "ls", missing}, "missing.ext4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, strings.NewReader(""), &stdout, &stderr)
			require.Equal(t, 2, code, "stderr: %s", stderr.String())
			require.Contains(t, stderr.String(), tt.want)
		})
	}
}

// TestExitStatus needs the editor core and mkfs.ext4.
func TestExitStatus(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not found: this test needs e2fsprogs")
	}
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	out, err := exec.Command(mkfs, "-q", "-F", img, "64M").CombinedOutput()
	require.NoError(t, err, "%s", out)

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"-w", "-R", "mkdir /x", img}, nil, &stdout, &stderr), stderr.String())

	stderr.Reset()
	requests := strings.NewReader("mkdir /y\nbogus\n")
	require.Equal(t, 1, run([]string{"-w", img}, requests, &stdout, &stderr))
	require.Contains(t, stderr.String(), "line 2: bogus: unknown request")

	stderr.Reset()
	require.Equal(t, 1, run([]string{"-R", "mkdir /z", img}, nil, &stdout, &stderr))
	require.Contains(t, stderr.String(), "line 1: mkdir /z: ext4 image opened read-only (use -w)")

	stdout.Reset()
	require.Equal(t, 0, run([]string{"-R", "ls -p /", img}, nil, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "/x//\n")
	require.Contains(t, stdout.String(), "/y//\n")
}
