package main

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

// repoRoot is the module root, relative to this package's directory.
var repoRoot = filepath.Join("..", "..")

// readmeFirstCommand returns the first line of README.md's first ```sh
// block: the command a newcomer runs first.
func readmeFirstCommand(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "README.md"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "```sh" {
			require.True(t, sc.Scan(), "README.md: the first ```sh block is empty")
			return strings.TrimSpace(sc.Text())
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("README.md has no ```sh block")
	return ""
}

// shellCommand is one simple command of a `A && B` line: its leading
// NAME=VALUE assignments and its words.
type shellCommand struct {
	env  []string
	args []string
}

var assignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// splitCommandLine splits a line of simple commands joined by && (no
// quotes, no other shell syntax: the test runs the commands itself).
func splitCommandLine(t *testing.T, line string) []shellCommand {
	t.Helper()
	require.NotRegexp(t, "[\"'`$;|<>()\\\\*?#~]|&&&|(^|[^&])&([^&]|$)", line, "the first command must stay simple commands joined by &&, which this test runs without a shell")
	var cmds []shellCommand
	for _, part := range strings.Split(line, "&&") {
		var c shellCommand
		for _, w := range strings.Fields(part) {
			if len(c.args) == 0 && assignment.MatchString(w) {
				c.env = append(c.env, w)
				continue
			}
			c.args = append(c.args, w)
		}
		require.NotEmpty(t, c.args, "an empty command in %q", line)
		cmds = append(cmds, c)
	}
	return cmds
}

// TestReadmeFirstCommand runs the README's first command the way a
// newcomer does on a fresh clone, with two differences that keep the
// repository and /tmp untouched: bin/ is a temporary directory, and so is
// the pull's OUTDIR. The build may not download modules (GOPROXY=off) and
// the pull gets a proxy that refuses every connection, so it must be
// offline. Then it judges the rootfs the output names: e2fsck -fn clean,
// the five guest assets and both enable links there, root-owned with
// their modes, and the demo image's layers applied (whiteouts, an opaque
// directory, setuid, a non-root owner, a hard link, an xattr).
func TestReadmeFirstCommand(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skipf("the README's first command installs bin/banger-vsock-agent as built for the host, which must be Linux (on %s the README has the agent built with GOOS=linux)", runtime.GOOS)
	}
	if testing.Short() {
		t.Skip("builds ./cmd/... and pulls the demo image; not in -short")
	}
	testimg.Require(t, "go")
	line := readmeFirstCommand(t)
	cmds := splitCommandLine(t, line)
	require.Len(t, cmds, 2, "README's first command: %q", line)
	build, pull := cmds[0], cmds[1]
	require.Equal(t, []string{"go", "build", "-o", "bin/", "./cmd/..."}, build.args, "README's first command builds the commands into bin/: %q", line)
	require.Contains(t, build.env, "CGO_ENABLED=0", "the agent is static")
	require.Len(t, pull.args, 4, "README's first command: %q", line)
	require.Equal(t, []string{"bin/imagepull", "pull"}, pull.args[:2])
	src := pull.args[2]
	require.True(t, strings.HasPrefix(src, "oci:testdata/demo-oci"), "the pull's source %q is the committed demo layout (offline)", src)

	root, err := filepath.Abs(repoRoot)
	require.NoError(t, err)
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	outdir := filepath.Join(tmp, "banger-demo")
	noNet := []string{
		"GOPROXY=off",
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "NO_PROXY=", "no_proxy=",
		"DOCKER_CONFIG=" + filepath.Join(tmp, "docker-config"),
	}
	// rewrite maps the line's bin/ and OUTDIR to the temporary ones.
	rewrite := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			switch {
			case a == pull.args[3]:
				out[i] = outdir
			case a == "bin/":
				out[i] = bin + string(filepath.Separator)
			case strings.HasPrefix(a, "bin/"):
				out[i] = filepath.Join(bin, strings.TrimPrefix(a, "bin/"))
			default:
				out[i] = a
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var stdout string
	for i, c := range cmds {
		args := rewrite(c.args)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = root
		cmd.Env = append(append(os.Environ(), noNet...), c.env...)
		var outb, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &outb, &errb
		err := cmd.Run()
		require.NoError(t, err, "command %d of %q, run as %q in %s\nstdout:\n%s\nstderr:\n%s", i+1, line, args, root, outb.String(), errb.String())
		t.Logf("%s\nstdout:\n%s\nstderr:\n%s", strings.Join(append(append([]string(nil), c.env...), args...), " "), outb.String(), errb.String())
		stdout = outb.String()
	}

	// The output names the rootfs it made.
	m := regexp.MustCompile(`(\S+/rootfs\.ext4)\b`).FindStringSubmatch(stdout)
	require.NotNil(t, m, "the pull's output names no rootfs.ext4:\n%s", stdout)
	rootfs := m[1]
	require.Equal(t, filepath.Join(outdir, "rootfs.ext4"), rootfs)
	require.FileExists(t, rootfs)
	// It ends with how to inspect it: the ext4edit built beside imagepull,
	// and e2fsck.
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.GreaterOrEqual(t, len(lines), 3, "output:\n%s", stdout)
	inspect := regexp.MustCompile(`^inspect: (\S+) -R 'ls -l /' (\S+)$`).FindStringSubmatch(lines[len(lines)-2])
	require.NotNil(t, inspect, "no inspect line before the last:\n%s", stdout)
	require.Equal(t, "ext4edit", filepath.Base(strings.TrimSuffix(inspect[1], ".exe")))
	require.Equal(t, rootfs, inspect[2])
	require.Equal(t, "check:   e2fsck -fn "+rootfs, lines[len(lines)-1])
	ls, err := exec.Command(inspect[1], "-R", "ls -l /", rootfs).CombinedOutput()
	require.NoError(t, err, "the inspect command fails:\n%s", ls)
	require.Contains(t, string(ls), "usr")

	t.Run("e2fsck", func(t *testing.T) {
		testimg.Require(t, "e2fsck")
		testimg.RequireClean(t, rootfs)
	})

	img, err := ext4edit.Open(rootfs, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer img.Close()

	type node struct {
		path     string
		typ      uint16 // ext4edit.IMode* type bits
		perm     uint16 // permission, set-id and sticky bits
		uid, gid uint32
		target   string // a symlink's
	}
	var want []node
	for _, f := range guestassets.Files() {
		want = append(want, node{path: f.Path, typ: ext4edit.IModeRegular, perm: uint16(f.Mode.Perm())})
	}
	for _, l := range guestassets.Symlinks() {
		want = append(want, node{path: l.Path, typ: ext4edit.IModeSymlink, perm: 0o777, target: l.Target})
	}
	require.Len(t, want, 7, "five assets and two enable links")
	want = append(want,
		// The demo image, merged-usr and systemd-shaped.
		node{path: "/bin", typ: ext4edit.IModeSymlink, perm: 0o777, target: "usr/bin"},
		node{path: "/sbin", typ: ext4edit.IModeSymlink, perm: 0o777, target: "usr/sbin"},
		node{path: "/lib", typ: ext4edit.IModeSymlink, perm: 0o777, target: "usr/lib"},
		node{path: "/lib64", typ: ext4edit.IModeSymlink, perm: 0o777, target: "usr/lib64"},
		node{path: "/usr/sbin/init", typ: ext4edit.IModeSymlink, perm: 0o777, target: "../lib/systemd/systemd"},
		node{path: "/usr/lib/systemd/systemd", typ: ext4edit.IModeRegular, perm: 0o755},
		node{path: "/etc/os-release", typ: ext4edit.IModeSymlink, perm: 0o777, target: "../usr/lib/os-release"},
		node{path: "/etc/shadow", typ: ext4edit.IModeRegular, perm: 0o640, gid: 42},
		node{path: "/root", typ: ext4edit.IModeDir, perm: 0o700},
		node{path: "/tmp", typ: ext4edit.IModeDir, perm: 0o1777},
		node{path: "/usr/bin/su", typ: ext4edit.IModeRegular, perm: 0o4755},
		node{path: "/var/lib/demo", typ: ext4edit.IModeDir, perm: 0o750, uid: 100, gid: 101},
		node{path: "/var/lib/demo/state", typ: ext4edit.IModeRegular, perm: 0o640, uid: 100, gid: 101},
		node{path: "/etc/systemd/system/multi-user.target.wants/demo-hello.service", typ: ext4edit.IModeSymlink, perm: 0o777, target: "/usr/lib/systemd/system/demo-hello.service"},
		node{path: "/etc/apt/sources.list.d/banger-demo-1.1.sources", typ: ext4edit.IModeRegular, perm: 0o644},
	)
	for _, w := range want {
		t.Run(strings.TrimPrefix(w.path, "/"), func(t *testing.T) {
			fi, err := img.Lstat(w.path)
			require.NoError(t, err)
			in := fi.Sys().(*ext4edit.InodeInfo)
			require.Equal(t, w.typ, in.Mode&ext4edit.IModeType, "type")
			require.Equal(t, w.perm, in.Mode&^ext4edit.IModeType, "mode %o", in.Mode)
			require.Equal(t, [2]uint32{w.uid, w.gid}, [2]uint32{in.UID, in.GID}, "owner")
			if w.target != "" {
				got, err := img.Readlink(w.path)
				require.NoError(t, err)
				require.Equal(t, w.target, got)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		check func(t *testing.T)
	}{
		{"the agent is the ELF built beside imagepull", func(t *testing.T) {
			got, err := img.ReadFile(guestassets.AgentPath)
			require.NoError(t, err)
			built, err := os.ReadFile(filepath.Join(bin, guestassets.AgentName))
			require.NoError(t, err)
			require.True(t, string(got) == string(built), "%s differs from %s/%s", guestassets.AgentPath, bin, guestassets.AgentName)
			require.Equal(t, "\x7fELF", string(got[:4]))
		}},
		{"whiteouts removed the legacy service and its enable link", func(t *testing.T) {
			for _, p := range []string{"/usr/lib/systemd/system/demo-legacy.service", "/etc/systemd/system/multi-user.target.wants/demo-legacy.service"} {
				_, err := img.Lstat(p)
				require.ErrorIs(t, err, fs.ErrNotExist, p)
			}
		}},
		{"the opaque directory holds only the update's sources", func(t *testing.T) {
			ents, err := img.ReadDir("/etc/apt/sources.list.d")
			require.NoError(t, err)
			var got []string
			for _, e := range ents {
				got = append(got, e.Name())
			}
			require.Equal(t, []string{"banger-demo-1.1.sources"}, got)
		}},
		{"upper layers replace files", func(t *testing.T) {
			b, err := img.ReadFile("/etc/os-release") // through the symlink
			require.NoError(t, err)
			require.Contains(t, string(b), `VERSION_ID="1.1"`)
			b, err = img.ReadFile("/etc/hostname")
			require.NoError(t, err)
			require.Equal(t, "banger-demo\n", string(b))
		}},
		{"the hard link shares the inode", func(t *testing.T) {
			a, err := img.Lstat("/usr/bin/demo-hello")
			require.NoError(t, err)
			b, err := img.Lstat("/usr/bin/hello")
			require.NoError(t, err)
			ia, ib := a.Sys().(*ext4edit.InodeInfo), b.Sys().(*ext4edit.InodeInfo)
			require.Equal(t, ia.Ino, ib.Ino)
			require.Equal(t, uint16(2), ia.LinksCount)
		}},
		{"ping keeps its security.capability", func(t *testing.T) {
			v, err := img.GetXattr("/usr/bin/ping", "security.capability")
			require.NoError(t, err)
			require.Equal(t, []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, v)
		}},
	} {
		t.Run(tc.name, tc.check)
	}
}
