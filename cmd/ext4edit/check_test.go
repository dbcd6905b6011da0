package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// -check: e2fsck -n's exit codes and one line per problem, or JSON.
func TestCheckCLI(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "debugfs")
	dir := t.TempDir()
	clean := testimg.Mkfs(t, dir, "clean", "16M")
	dirty := testimg.Mkfs(t, dir, "dirty", "16M")
	out, err := exec.Command("debugfs", "-w", "-R", "freei <11>", dirty).CombinedOutput()
	require.NoError(t, err, "%s", out)
	junk := filepath.Join(dir, "junk")
	require.NoError(t, os.WriteFile(junk, make([]byte, 1<<20), 0o644))
	bigalloc := filepath.Join(dir, "bigalloc")
	if o, err := exec.Command("mkfs.ext4", "-q", "-F", "-O", "bigalloc", bigalloc, "16M").CombinedOutput(); err != nil {
		t.Logf("mkfs -O bigalloc: %v %s", err, o)
		bigalloc = ""
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"clean", []string{"-check", clean}, 0, ""},
		{"dirty", []string{"-check", dirty}, 4, "inode_bitmap_differs"},
		{"junk", []string{"-check", junk}, 4, "unreadable_metadata"},
		{"missing", []string{"-check", filepath.Join(dir, "missing")}, 8, ""},
		{"usage: two images", []string{"-check", clean, dirty}, 2, ""},
		{"usage: -json alone", []string{"-json", clean}, 2, ""},
		{"usage: with -w", []string{"-check", "-w", clean}, 2, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			require.Equal(t, tc.code, run(tc.args, nil, &stdout, &stderr), "stdout %s\nstderr %s", stdout.String(), stderr.String())
			require.Contains(t, stdout.String(), tc.out)
		})
	}
	if bigalloc != "" {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 8, run([]string{"-check", bigalloc}, nil, &stdout, &stderr))
		require.Contains(t, stderr.String(), "bigalloc")
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 4, run([]string{"-check", "-json", dirty}, nil, &stdout, &stderr))
	var rep ext4edit.CheckReport
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &rep), stdout.String())
	require.False(t, rep.Clean)
	require.NotEmpty(t, rep.Problems)
	require.NotEmpty(t, rep.NotChecked)
	require.True(t, strings.HasPrefix(string(rep.Problems[0].Kind), "inode_bitmap"))
}
