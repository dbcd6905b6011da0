package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	_ "github.com/banger/ext4kit/internal/checkhook"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	if args := os.Getenv(cliChildEnv); args != "" {
		// A child of TestHostilePullBudget: the command alone, so its
		// peak RSS and time are the command's own.
		code := run(strings.Split(args, "\x1f"), os.Stdout, os.Stderr)
		// The peak RSS of this process alone: ru_maxrss would count the
		// parent's pages, shared until exec.
		if b, err := os.ReadFile("/proc/self/status"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
					fmt.Fprintf(os.Stderr, "\nVMHWM_KIB=%s\n", strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
				}
			}
		}
		os.Exit(code)
	}
	code := m.Run()
	testimg.CleanupBuilds()
	os.Exit(code)
}

func runCLI(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"inject"}, "want exactly one IMAGE, got 0"},
		{[]string{"inject", "a.img", "b.img"}, "want exactly one IMAGE, got 2"},
		{[]string{"inject", "--bogus", "a.img"}, "flag provided but not defined: -bogus"},
		{[]string{"apply-ownership", "a.img"}, "at least one --layer is needed"},
		{[]string{"apply-ownership", "--layer", "l.tar"}, "want exactly one IMAGE, got 0"},
	} {
		code, _, stderr := runCLI(tc.args...)
		require.Equal(t, 2, code, "%v", tc.args)
		require.Contains(t, stderr, tc.want, "%v", tc.args)
	}
	code, stdout, _ := runCLI("--help")
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "imagepull inject [--agent PATH]")
}

func TestInject(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	agent := testimg.AgentBinary(t)
	dir := t.TempDir()
	img := testimg.Mkfs(t, dir, "root.img", "64M")
	sum := testimg.SHA256File(t, img)

	code, _, stderr := runCLI("inject", "--agent", filepath.Join(dir, "missing"), img)
	require.Equal(t, 1, code)
	require.True(t, strings.HasPrefix(stderr, "imagepull inject: inject guest agents: agent binary "), stderr)
	require.Contains(t, stderr, "not found")
	require.Equal(t, sum, testimg.SHA256File(t, img))

	code, _, stderr = runCLI("inject", filepath.Join(dir, "no.img"), "--agent", agent)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no.img")

	// A bare filesystem shows no init system: refused before any write
	// unless --init names one.
	code, _, stderr = runCLI("inject", "--agent", agent, img)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "no init system")
	require.Equal(t, sum, testimg.SHA256File(t, img))

	// Flags after the image work too.
	code, stdout, stderr := runCLI("inject", img, "--agent", agent, "--init", "systemd")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "guest agents installed")
	st := testimg.DebugfsStat(t, img, guestassets.AgentPath)
	require.Equal(t, uint32(0o755), st.Mode)
	require.Zero(t, st.UID)
	testimg.RequireClean(t, img)
}

func writeLayer(t *testing.T, dir, name string, hdrs ...*tar.Header) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		require.NoError(t, tw.WriteHeader(h))
	}
	require.NoError(t, tw.Close())
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	return p
}

func TestApplyOwnership(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	dir := t.TempDir()
	src := filepath.Join(dir, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(src, "var/www"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "var/www/index.html"), []byte("hi\n"), 0o644))
	img := testimg.MkfsFromDir(t, dir, "root.img", "32M", src)
	l1 := writeLayer(t, dir, "l1.tar",
		&tar.Header{Name: "var/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "var/www/", Typeflag: tar.TypeDir, Uid: 33, Gid: 33, Mode: 0o750},
		&tar.Header{Name: "var/www/index.html", Typeflag: tar.TypeReg, Uid: 33, Gid: 33, Mode: 0o644})
	l2 := writeLayer(t, dir, "l2.tar",
		&tar.Header{Name: "var/www/index.html", Typeflag: tar.TypeReg, Uid: 33, Gid: 33, Mode: 0o600})

	code, stdout, stderr := runCLI("apply-ownership", "--layer", l1, "--layer", l2, img)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "3 paths checked")
	st := testimg.DebugfsStat(t, img, "/var/www/index.html")
	require.Equal(t, []uint32{33, 33, 0o600}, []uint32{st.UID, st.GID, st.Mode})
	testimg.RequireClean(t, img)

	l3 := writeLayer(t, dir, "l3.tar",
		&tar.Header{Name: "gone/a", Typeflag: tar.TypeReg, Mode: 0o644},
		&tar.Header{Name: "var/www/", Typeflag: tar.TypeDir, Uid: 44, Gid: 44, Mode: 0o755})
	code, _, stderr = runCLI("apply-ownership", "--layer", l1, "--layer", l3, img)
	require.Equal(t, 1, code)
	require.Equal(t, "imagepull apply-ownership: apply ownership: 1 recorded path missing in the image: /gone/a\n", stderr)
	require.Equal(t, uint32(44), testimg.DebugfsStat(t, img, "/var/www").UID, "present paths are applied and committed")
	testimg.RequireClean(t, img)

	code, _, stderr = runCLI("apply-ownership", "--layer", filepath.Join(dir, "nope.tar"), img)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "nope.tar")
}
