package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

// TestInjectInitFlag: --init forces a choice, auto fails on an image with
// no init before writing, a bad value is a usage error.
func TestInjectInitFlag(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	agent := testimg.AgentBinary(t)
	img := testimg.Mkfs(t, t.TempDir(), "root.img", "64M")
	sum := testimg.SHA256File(t, img)

	code, _, stderr := runCLI("inject", "--agent", agent, "--init", "auto", img)
	require.Equal(t, 1, code)
	require.True(t, strings.HasPrefix(stderr, "imagepull inject: inject guest agents: no init system found: looked for /sbin/init"), stderr)
	require.Equal(t, sum, testimg.SHA256File(t, img), "untouched")

	for _, bad := range []string{"upstart", ""} {
		code, _, stderr = runCLI("inject", "--agent", agent, "--init="+bad, img)
		require.Equal(t, 2, code, bad)
		require.Contains(t, stderr, "want auto, systemd, sysvinit, openrc or busybox")
	}
	require.Equal(t, sum, testimg.SHA256File(t, img))

	code, stdout, stderr := runCLI("inject", img, "--init", "sysvinit", "--agent", agent)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, "guest agents installed")
	st := testimg.DebugfsStat(t, img, guestassets.AgentScriptPath)
	require.Equal(t, uint32(0o755), st.Mode)
	require.Equal(t, string(guestassets.SysvinitAgentScript()), string(testimg.Cat(t, img, guestassets.AgentScriptPath)))
	require.Equal(t, "../init.d/banger-network", testimg.DebugfsStat(t, img, "/etc/rc2.d/S01banger-network").FastLink)
	require.False(t, testimg.DebugfsExists(t, img, guestassets.NetworkUnitPath))
	testimg.RequireClean(t, img)

	// The help names the flag.
	code, _, stderr = runCLI("inject", "--help")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "-init")
	require.Contains(t, stderr, "sysvinit, openrc or busybox")
}

// TestPullInitFlag: pull detects the init (or takes --init) and image.json
// and --json record it.
func TestPullInitFlag(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	agent := testimg.AgentBinary(t)
	alpine := testimg.TarOf(t,
		testimg.File("bin/busybox", "busybox"),
		testimg.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "sbin/init", Linkname: "/bin/busybox"}},
		testimg.File("sbin/openrc", "openrc"),
		testimg.File("etc/inittab", "::sysinit:/sbin/openrc sysinit\n"),
		testimg.TarEntry{Hdr: tar.Header{Typeflag: tar.TypeDir, Name: "etc/runlevels/default/", Mode: 0o755}},
	)
	src := "oci:" + testimg.RawOCILayout(t, []testimg.RawLayer{{Blob: testimg.Gzip(t, alpine), Tar: alpine}}, nil)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "detected", want: "openrc"},
		{name: "auto", args: []string{"--init", "auto"}, want: "openrc"},
		{name: "forced", args: []string{"--init=busybox"}, want: "busybox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outdir := filepath.Join(t.TempDir(), "out")
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"--json", "--size", "32M", "--agent", agent}, tc.args...), src, outdir)
			require.Equal(t, 0, pull(args, &stdout, &stderr), "stderr:\n%s", stderr.String())
			got := decodeOne(t, stdout.String())
			require.True(t, got.AgentsInjected)
			require.Equal(t, tc.want, got.Init)
			var meta imagepull.ImageMetadata
			b, err := os.ReadFile(filepath.Join(outdir, imagepull.MetadataName))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &meta))
			require.Equal(t, tc.want, meta.Init)
			rootfs := filepath.Join(outdir, imagepull.RootfsName)
			if tc.want == "openrc" {
				require.Equal(t, guestassets.AgentScriptPath, testimg.DebugfsStat(t, rootfs, "/etc/runlevels/default/banger-vsock-agent").FastLink)
			} else {
				require.Contains(t, string(testimg.Cat(t, rootfs, "/etc/inittab")), "::respawn:"+guestassets.SupervisePath+"\n")
			}
			testimg.RequireClean(t, rootfs)
		})
	}

	t.Run("human output names the init", func(t *testing.T) {
		outdir := filepath.Join(t.TempDir(), "out")
		var stdout, stderr bytes.Buffer
		require.Equal(t, 0, pull([]string{"--size", "32M", "--agent", agent, src, outdir}, &stdout, &stderr), stderr.String())
		require.Contains(t, stdout.String(), "guest agents installed for openrc)")
	})

	t.Run("no init found", func(t *testing.T) {
		outdir := filepath.Join(t.TempDir(), "out")
		empty := testimg.TarOf(t, testimg.File("etc/hostname", "x\n"))
		src := "oci:" + testimg.RawOCILayout(t, []testimg.RawLayer{{Blob: testimg.Gzip(t, empty), Tar: empty}}, nil)
		var stdout, stderr bytes.Buffer
		require.Equal(t, 1, pull([]string{"--init", "auto", "--size", "32M", "--agent", agent, src, outdir}, &stdout, &stderr))
		require.Contains(t, stderr.String(), "no init system found")
		require.NoFileExists(t, filepath.Join(outdir, imagepull.RootfsName))
	})

	t.Run("usage errors", func(t *testing.T) {
		for _, args := range [][]string{{"--init", "runit"}, {"--init", "openrc", "--no-agents"}} {
			var stdout, stderr bytes.Buffer
			require.Equal(t, 2, pull(append(args, src, filepath.Join(t.TempDir(), "out")), &stdout, &stderr), args)
			require.NotEmpty(t, stderr.String())
		}
	})
}
