package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

// bootLayout is an OCI layout of one gzip layer holding a kernel and its
// initrd in /boot, and a file.
func bootLayout(t *testing.T) string {
	t.Helper()
	tr := testimg.TarOf(t,
		testimg.File("boot/vmlinuz-6.1.0-test", "not really a kernel"),
		testimg.File("boot/initrd.img-6.1.0-test", "not really an initrd"),
		testimg.File("etc/hostname", "flags-test\n"),
	)
	return testimg.RawOCILayout(t, []testimg.RawLayer{{Blob: testimg.Gzip(t, tr), Tar: tr}}, nil)
}

// stubFinalize makes the agents' finalize step a no-op that counts its
// runs (the real one needs the agent binary), restored after the test.
func stubFinalize(t *testing.T) *int {
	t.Helper()
	var runs int
	old := pullFinalize
	pullFinalize = func(string) imagepull.FinalizeStep {
		return func(*ext4edit.Image) error { runs++; return nil }
	}
	t.Cleanup(func() { pullFinalize = old })
	return &runs
}

// decodeOne decodes stdout as exactly one JSON object and nothing else.
func decodeOne(t *testing.T, stdout string) pullJSON {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var out pullJSON
	require.NoError(t, dec.Decode(&out), "stdout is a JSON object:\n%s", stdout)
	var extra any
	require.ErrorIs(t, dec.Decode(&extra), io.EOF, "stdout holds one JSON object only:\n%s", stdout)
	return out
}

// TestPullJSON: --json prints one object on stdout with the outputs and
// the digests image.json records; the aliases of --no-agents and
// --kernel-from-image do the same as the names; --size takes auto.
func TestPullJSON(t *testing.T) {
	src := "oci:" + bootLayout(t)
	for _, tc := range []struct {
		name       string
		args       []string
		agents     bool
		boot       bool
		size       int64 // 0: estimated
		wantStderr string
	}{
		{name: "defaults", agents: true},
		{name: "no-agents", args: []string{"--no-agents"}},
		{name: "no-agent alias", args: []string{"--no-agent"}},
		{name: "kernel-from-image", args: []string{"--kernel-from-image", "--no-agents"}, boot: true},
		{name: "boot-artifacts alias", args: []string{"--boot-artifacts"}, boot: true, agents: true},
		{name: "size auto", args: []string{"--size", "auto", "--no-agents"}},
		{name: "size AUTO", args: []string{"--size=AUTO", "--no-agents"}},
		{name: "size 24M", args: []string{"--size", "24M", "--no-agents"}, size: 24 << 20},
		{name: "size bytes", args: []string{"--size=25165824", "--no-agents"}, size: 24 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs := stubFinalize(t)
			outdir := filepath.Join(t.TempDir(), "out")
			var stdout, stderr bytes.Buffer
			args := append(append([]string{"--json"}, tc.args...), src, outdir)
			require.Equal(t, 0, pull(args, &stdout, &stderr), "stderr:\n%s", stderr.String())
			got := decodeOne(t, stdout.String())

			var meta imagepull.ImageMetadata
			b, err := os.ReadFile(filepath.Join(outdir, imagepull.MetadataName))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &meta))

			require.Equal(t, filepath.Join(outdir, imagepull.RootfsName), got.Rootfs)
			require.Equal(t, filepath.Join(outdir, imagepull.MetadataName), got.Metadata)
			require.FileExists(t, got.Rootfs)
			require.Equal(t, src, got.Source)
			require.Equal(t, "oci", got.Kind)
			require.Equal(t, "linux/amd64", got.Platform)
			require.Regexp(t, `^sha256:[0-9a-f]{64}$`, got.ManifestDigest)
			require.Equal(t, meta.ManifestDigest, got.ManifestDigest)
			require.Regexp(t, `^sha256:[0-9a-f]{64}$`, got.ConfigDigest)
			require.Equal(t, meta.ConfigDigest, got.ConfigDigest)
			require.Len(t, got.Layers, 1)
			require.Equal(t, meta.Layers[0].Digest, got.Layers[0].Digest)
			require.Equal(t, meta.Layers[0].DiffID, got.Layers[0].DiffID)
			require.Equal(t, meta.Layers[0].Size, got.Layers[0].Size)
			fi, err := os.Stat(got.Rootfs)
			require.NoError(t, err)
			require.Equal(t, fi.Size(), got.Size)
			require.Equal(t, tc.size == 0, got.SizeEstimated)
			if tc.size != 0 {
				require.Equal(t, tc.size, got.Size)
			}
			require.Equal(t, tc.agents, got.AgentsInjected)
			require.Equal(t, map[bool]int{true: 1}[tc.agents], *runs, "finalize runs")
			if tc.boot {
				require.Equal(t, filepath.Join(outdir, imagepull.KernelName), got.Kernel)
				require.Equal(t, filepath.Join(outdir, imagepull.InitrdName), got.Initrd)
				k, err := os.ReadFile(got.Kernel)
				require.NoError(t, err)
				require.Equal(t, "not really a kernel", string(k))
			} else {
				require.Empty(t, got.Kernel)
				require.Empty(t, got.Initrd)
				require.NoFileExists(t, filepath.Join(outdir, imagepull.KernelName))
			}
			// Logs stay on stderr.
			require.Contains(t, stderr.String(), "imagepull pull: fetched ")
		})
	}
}

// TestPullHumanOutput: without --json, stdout names the rootfs and ends
// with how to inspect and check it.
func TestPullHumanOutput(t *testing.T) {
	stubFinalize(t)
	outdir := filepath.Join(t.TempDir(), "out dir")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, pull([]string{"--kernel-from-image", "oci:" + bootLayout(t), outdir}, &stdout, &stderr), stderr.String())
	rootfs := filepath.Join(outdir, imagepull.RootfsName)
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	require.Len(t, lines, 5, stdout.String())
	require.True(t, strings.HasPrefix(lines[0], rootfs+": sha256:"), lines[0])
	require.Contains(t, lines[0], "guest agents installed")
	require.Equal(t, filepath.Join(outdir, "kernel")+": /boot/vmlinuz-6.1.0-test from the image", lines[1])
	require.Equal(t, filepath.Join(outdir, "initrd")+": /boot/initrd.img-6.1.0-test from the image", lines[2])
	require.Equal(t, "inspect: ext4edit -R 'ls -l /' "+shellQuote(rootfs), lines[3])
	require.Equal(t, "check:   e2fsck -fn "+shellQuote(rootfs), lines[4])
	require.Equal(t, "'/a b/it'\\''s'", shellQuote("/a b/it's"))
	require.Equal(t, "/plain/rootfs.ext4", shellQuote("/plain/rootfs.ext4"))
}

// TestPullUsageErrors: bad values of the new flags are usage errors.
func TestPullUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--size", "lots", "oci:x", "out"},
		{"--size", "", "oci:x", "out"},
		{"--size", "autox", "oci:x", "out"},
		{"--json=maybe", "oci:x", "out"},
		{"--insecure", "oci:x"},
	} {
		var stdout, stderr bytes.Buffer
		require.Equal(t, 2, pull(args, &stdout, &stderr), "%q: %s", args, stderr.String())
		require.Empty(t, stdout.String(), "%q", args)
	}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 2, pull([]string{"--help"}, &stdout, &stderr))
	for _, f := range []string{"--no-agents", "--no-agent", "--kernel-from-image", "--boot-artifacts", "--insecure", "--json", "--size auto|SIZE"} {
		require.Contains(t, stderr.String(), f)
	}
}

// childPull runs `imagepull ARGS` as a child (the test binary, see
// TestMain) through sh -c SCRIPT, where "$@" is the command.
func childPull(t *testing.T, script string, args ...string) *exec.Cmd {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("needs a POSIX shell")
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("sh", append([]string{"-c", script, "sh", exe, "-test.run", "^$"}, args...)...)
	cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join(append([]string{"pull"}, args...), "\x1f"))
	return cmd
}

// TestPullOutputModes: the outputs are 0644 less the umask (not the 0600
// of a temp file).
func TestPullOutputModes(t *testing.T) {
	src := "oci:" + bootLayout(t)
	for _, tc := range []struct {
		umask string
		want  os.FileMode
	}{{"022", 0o644}, {"027", 0o640}, {"077", 0o600}} {
		t.Run("umask "+tc.umask, func(t *testing.T) {
			outdir := filepath.Join(t.TempDir(), "out")
			cmd := childPull(t, `umask `+tc.umask+`; exec "$@"`, "--no-agents", "--kernel-from-image", src, outdir)
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			for _, n := range []string{imagepull.RootfsName, imagepull.MetadataName, imagepull.KernelName, imagepull.InitrdName} {
				fi, err := os.Stat(filepath.Join(outdir, n))
				require.NoError(t, err)
				require.Equal(t, tc.want, fi.Mode().Perm(), "%s under umask %s", n, tc.umask)
			}
		})
	}
}

// TestPullProgress: progress bars are drawn when stderr is a terminal
// (a pseudo-terminal from script(1)), with --json too (stdout keeps the
// JSON), and not when stderr is a pipe.
func TestPullProgress(t *testing.T) {
	src := "oci:" + bootLayout(t)
	t.Run("pipe", func(t *testing.T) {
		outdir := filepath.Join(t.TempDir(), "out")
		cmd := childPull(t, `exec "$@"`, "--no-agents", src, outdir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		require.NoError(t, cmd.Run(), stderr.String())
		require.NotContains(t, stderr.String(), "layer 1/1")
		require.NotContains(t, stderr.String(), "\x1b[", "no terminal control sequences")
		require.Contains(t, stderr.String(), "imagepull pull: staged ")
		require.Contains(t, stdout.String(), "inspect: ext4edit")
	})
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) (util-linux) is not installed: no pseudo-terminal to draw progress on")
	}
	for _, jsonMode := range []bool{false, true} {
		name := map[bool]string{false: "terminal", true: "terminal --json"}[jsonMode]
		t.Run(name, func(t *testing.T) {
			outdir := filepath.Join(t.TempDir(), "out")
			args := []string{"--no-agents", src, outdir}
			if jsonMode {
				args = append([]string{"--json"}, args...)
			}
			// script runs the command on a new pseudo-terminal (stdin,
			// stdout and stderr); the JSON goes to a file so it can be
			// told from the terminal's output. stty gives the terminal a
			// size: one nobody sized has no room for bars.
			jsonOut := filepath.Join(t.TempDir(), "stdout")
			cmd := childPull(t, `stty cols 120 rows 40 2>/dev/null; exec "$@" >`+shellQuote(jsonOut), args...)
			sh := strings.Join(append([]string{"sh", "-c", shellQuote(cmd.Args[2])}, quoteAll(cmd.Args[3:])...), " ")
			cmd = exec.Command(script, "-qc", sh, "/dev/null")
			cmd.Env = append(os.Environ(), cliChildEnv+"="+strings.Join(append([]string{"pull"}, args...), "\x1f"))
			tty, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", tty)
			require.Contains(t, string(tty), "layer 1/1 sha256:", "a bar per layer")
			require.Regexp(t, `\] \d+\.\d (b|KiB) / \d+\.\d (b|KiB)`, string(tty), "the layer's bytes")
			require.Regexp(t, `build .*3 entries, 0\.0 MiB of files`, string(tty))
			require.Contains(t, string(tty), "imagepull pull: staged ", "logs still show")
			out, err := os.ReadFile(jsonOut)
			require.NoError(t, err)
			if jsonMode {
				got := decodeOne(t, string(out))
				require.Equal(t, filepath.Join(outdir, imagepull.RootfsName), got.Rootfs)
			} else {
				require.Contains(t, string(out), "inspect: ext4edit")
				require.NotContains(t, string(out), "layer 1/1", "progress is on stderr only")
			}
		})
	}
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}

// TestPullInsecure: a plain-HTTP registry on a loopback address that
// go-containerregistry does not already treat as local (127.0.0.2, not
// 127.0.0.1 or localhost) is refused with a hint without --insecure and
// pulled from with it.
func TestPullInsecure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2 (only Linux routes all of 127/8 to loopback): %v", err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials of the host

	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := random.Image(2048, 2)
	require.NoError(t, err)
	ref, err := name.ParseReference(host+"/flags/insecure:v1", name.Insecure)
	require.NoError(t, err)
	require.NoError(t, remote.Write(ref, img))
	digest, err := img.Digest()
	require.NoError(t, err)

	src := host + "/flags/insecure:v1"
	outdir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, pull([]string{"--no-agents", "--size", "32M", src, outdir}, &stdout, &stderr))
	t.Logf("without --insecure: %s", stderr.String())
	require.Contains(t, stderr.String(), "plain HTTP")
	require.Contains(t, stderr.String(), "--insecure", "the error says what to do")
	require.NoFileExists(t, filepath.Join(outdir, imagepull.RootfsName))

	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 0, pull([]string{"--insecure", "--json", "--no-agents", "--size", "32M", src, outdir}, &stdout, &stderr), stderr.String())
	got := decodeOne(t, stdout.String())
	require.Equal(t, "registry", got.Kind)
	require.Equal(t, digest.String(), got.ManifestDigest)
	require.Equal(t, host+"/flags/insecure@"+digest.String(), got.Reference)
	require.Len(t, got.Layers, 2)
	testimg.Require(t, "e2fsck")
	testimg.RequireClean(t, got.Rootfs)
}
