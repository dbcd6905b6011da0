package imagepull

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

func TestAncestors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{name: "none", in: nil, want: nil},
		{name: "top-level file", in: []string{"/x"}, want: nil},
		{name: "one deep path", in: []string{"/a/b/c/f"}, want: []string{"/a", "/a/b", "/a/b/c"}},
		{
			name: "shallow first, then by name, deduplicated",
			in:   []string{"/z/y/f", "/a/b/c/f", "/a/b/g", "/z/f", "/a/b/c/h"},
			want: []string{"/a", "/z", "/a/b", "/z/y", "/a/b/c"},
		},
		{name: "unclean paths", in: []string{"a//b/./f", "/a/b/../b/g"}, want: []string{"/a", "/a/b"}},
		{
			name: "the guest assets",
			in: func() []string {
				var p []string
				for _, f := range guestassets.Files() {
					p = append(p, f.Path)
				}
				for _, l := range guestassets.Symlinks() {
					p = append(p, l.Path)
				}
				return p
			}(),
			want: []string{
				"/etc", "/usr",
				"/etc/modules-load.d", "/etc/systemd", "/usr/local",
				"/etc/systemd/system", "/usr/local/bin", "/usr/local/libexec",
				"/etc/systemd/system/multi-user.target.wants",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ancestors(tc.in)
			require.Equal(t, tc.want, got)
			// Deterministic: any input order gives the same result.
			rev := append([]string(nil), tc.in...)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			require.Equal(t, got, ancestors(rev))
		})
	}
}

// expectAssets checks every asset with debugfs stat and cat, and e2fsck.
// resolve maps an asset path to the path it really lives at (merged-usr
// images); debugfs is asked both.
func expectAssets(t *testing.T, img, agent string, resolve func(string) string) {
	t.Helper()
	agentSum := testimg.SHA256File(t, agent)
	agentInfo, err := os.Stat(agent)
	require.NoError(t, err)
	for _, f := range guestassets.Files() {
		for _, p := range []string{f.Path, resolve(f.Path)} {
			st := testimg.DebugfsStat(t, img, p)
			require.Equal(t, "regular", st.Type, p)
			require.Equal(t, uint32(f.Mode), st.Mode, "%s mode %o", p, st.Mode)
			require.Zero(t, st.UID, p)
			require.Zero(t, st.GID, p)
			require.Equal(t, uint32(1), st.Links, p)
			content := testimg.Cat(t, img, p)
			if f.Companion {
				require.Equal(t, uint64(agentInfo.Size()), st.Size, p)
				s := sha256Hex(content)
				require.Equal(t, agentSum, s, "%s content", p)
			} else {
				require.Equal(t, uint64(len(f.Data)), st.Size, p)
				require.Equal(t, string(f.Data), string(content), "%s content", p)
			}
		}
	}
	for _, l := range guestassets.Symlinks() {
		st := testimg.DebugfsStat(t, img, l.Path)
		require.Equal(t, "symlink", st.Type, l.Path)
		require.Equal(t, l.Target, st.FastLink, l.Path)
		require.Equal(t, uint64(len(l.Target)), st.Size)
		require.Zero(t, st.UID, l.Path)
		require.Zero(t, st.GID, l.Path)
	}
	testimg.RequireClean(t, img)
}

// TestInjectRealExt4 is the round trip on real images: mkfs.ext4, inject,
// debugfs and e2fsck judge; then inject again and nothing changes.
func TestInjectRealExt4(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	agent := testimg.AgentBinary(t)
	bigDir := func(dir string, n int, link bool) map[string]string {
		m := map[string]string{}
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("%s/unit-with-a-longish-name-%04d.service", dir, i)
			if link {
				m[name] = "-> /lib/systemd/system/" + path.Base(name)
			} else {
				m[name] = "[Unit]\n"
			}
		}
		return m
	}
	merge := func(ms ...map[string]string) map[string]string {
		out := map[string]string{}
		for _, m := range ms {
			for k, v := range m {
				out[k] = v
			}
		}
		return out
	}
	mergedUsr := map[string]string{
		"usr/bin/":       "",
		"usr/lib/":       "",
		"usr/sbin/":      "",
		"bin":            "-> usr/bin",
		"lib":            "-> usr/lib",
		"sbin":           "-> usr/sbin",
		"etc/os-release": "ID=debian\n",
		"opt/bin/":       "",
		"usr/local/":     "",
	}
	sameOwner := func(p string) string { return p }
	for _, tc := range []struct {
		name    string
		mkfs    []string
		tree    map[string]string // populate with mkfs -d
		htree   bool              // index the directories with e2fsck -fyD
		opts    *ext4edit.Options
		resolve func(string) string
	}{
		{name: "4k blocks", mkfs: []string{"-b", "4096"}},
		{name: "1k blocks", mkfs: []string{"-b", "1024"}},
		{name: "no metadata_csum", mkfs: []string{"-O", "^metadata_csum"}},
		{name: "no journal, no flex_bg", mkfs: []string{"-O", "^has_journal,^flex_bg"}},
		{name: "session creates as 1000:1000", opts: &ext4edit.Options{UID: 1000, GID: 1000}},
		{
			name:  "htree unit directories",
			mkfs:  []string{"-b", "1024"},
			tree:  merge(bigDir("etc/systemd/system", 320, false), bigDir("etc/systemd/system/multi-user.target.wants", 320, true)),
			htree: true,
		},
		{
			name: "merged usr, /usr/local/bin -> /opt/bin",
			tree: merge(mergedUsr, map[string]string{"usr/local/bin": "-> /opt/bin"}),
			resolve: func(p string) string {
				return strings.Replace(p, "/usr/local/bin/", "/opt/bin/", 1)
			},
		},
		{
			name: "merged usr, /usr/local/bin -> ../bin, /usr/local/libexec -> ../lib",
			tree: merge(mergedUsr, map[string]string{"usr/local/bin": "-> ../bin", "usr/local/libexec": "-> ../lib"}),
			resolve: func(p string) string {
				p = strings.Replace(p, "/usr/local/bin/", "/usr/bin/", 1)
				return strings.Replace(p, "/usr/local/libexec/", "/usr/lib/", 1)
			},
		},
		{
			name: "stale assets in the way",
			tree: map[string]string{
				// An old unit (wrong mode and owner set below), a stray
				// enable link, the agent as a symlink to a file that must
				// survive, and a hard-linked script.
				"etc/systemd/system/banger-network.service":                             "old unit\n",
				"etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service": "-> /lib/systemd/system/elsewhere.service",
				"etc/systemd/system/multi-user.target.wants/banger-network.service":     "not a link\n",
				"usr/local/bin/banger-vsock-agent":                                      "-> /usr/bin/true",
				"usr/bin/true":                                                          "keep me\n",
				"etc/modules-load.d/banger-vsock.conf":                                  "old\n",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var imgPath string
			if tc.tree != nil {
				root := hostTree(t, tc.tree)
				chownTree(t, root, 1000, 1000)
				if tc.name == "stale assets in the way" {
					require.NoError(t, os.Chmod(filepath.Join(root, "etc/systemd/system/banger-network.service"), 0o600))
					// The script's path shares its inode with another file,
					// which must keep its content.
					require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/local/libexec"), 0o755))
					require.NoError(t, os.Link(filepath.Join(root, "usr/bin/true"), filepath.Join(root, "usr/local/libexec/banger-network-bootstrap")))
				}
				imgPath = testimg.MkfsFromDir(t, dir, "root.img", "64M", root, tc.mkfs...)
			} else {
				imgPath = testimg.Mkfs(t, dir, "root.img", "64M", tc.mkfs...)
			}
			if tc.htree {
				out, _ := execCombined("e2fsck", "-fyD", imgPath)
				testimg.RequireClean(t, imgPath)
				for _, d := range []string{guestassets.UnitDir, guestassets.WantsDir} {
					st := testimg.DebugfsStat(t, imgPath, d)
					require.NotZero(t, st.Flags&0x1000, "%s must be htree-indexed (e2fsck -fyD):\n%s", d, out)
				}
			}
			resolve := tc.resolve
			if resolve == nil {
				resolve = sameOwner
			}
			before := listImage(t, imgPath)

			inject := func() {
				img, err := ext4edit.Open(imgPath, tc.opts)
				require.NoError(t, err)
				require.NoError(t, InjectGuestAgents(img, InjectOptions{AgentPath: agent, Init: InitSystemd}))
				require.NoError(t, img.Close())
			}
			inject()
			expectAssets(t, imgPath, agent, resolve)
			first := listImage(t, imgPath)

			// Nothing else changed, and new directories are root's.
			assets := map[string]bool{}
			for _, f := range guestassets.Files() {
				assets[resolve(f.Path)] = true
			}
			for _, l := range guestassets.Symlinks() {
				assets[l.Path] = true
			}
			old := map[string]entry{}
			for _, e := range before {
				old[e.Path] = e
			}
			for _, e := range first {
				o, existed := old[e.Path]
				switch {
				case assets[e.Path]:
				case !existed:
					require.True(t, e.Mode.IsDir(), "only directories are created besides the assets: %s", e.Path)
					require.Equal(t, fs.ModeDir|0o755, e.Mode, e.Path)
					require.Zero(t, e.UID, e.Path)
					require.Zero(t, e.GID, e.Path)
				case e.Mode.IsDir():
					o.Size, o.Links, e.Size, e.Links = 0, 0, 0, 0
					require.Equal(t, o, e, "existing directory %s keeps its mode and owner", e.Path)
				default:
					o.Links, e.Links = 0, 0 // a hard link to it may have been replaced
					require.Equal(t, o, e, "%s is untouched", e.Path)
				}
			}
			if tc.tree != nil && tc.tree["usr/local/bin"] != "" {
				st := testimg.DebugfsStat(t, imgPath, "/usr/local/bin")
				require.Equal(t, "symlink", st.Type, "the symlinked directory stays a symlink")
			}

			// Idempotent: the same tree again, still clean.
			inject()
			expectAssets(t, imgPath, agent, resolve)
			require.Equal(t, first, listImage(t, imgPath))
		})
	}
}

// TestInjectIdempotentSameSession runs the injection twice in one session
// and once more in another: every listing is identical.
func TestInjectIdempotentSameSession(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	imgPath := testimg.Mkfs(t, t.TempDir(), "root.img", "64M")
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.NoError(t, InjectGuestAgents(img, InjectOptions{AgentPath: agent, Init: InitSystemd}))
	once := listTree(t, img)
	require.NoError(t, InjectGuestAgents(img, InjectOptions{AgentPath: agent, Init: InitSystemd}))
	require.Equal(t, once, listTree(t, img))
	require.NoError(t, img.Close())
	testimg.RequireClean(t, imgPath)
	require.Equal(t, once, listImage(t, imgPath))
	require.NoError(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: agent, Init: InitSystemd}))
	require.Equal(t, once, listImage(t, imgPath))
	testimg.RequireClean(t, imgPath)
}

func execCombined(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// patchedAgent copies the agent with its ELF header changed by patch.
func patchedAgent(t *testing.T, agent string, patch func(b []byte)) string {
	t.Helper()
	b, err := os.ReadFile(agent)
	require.NoError(t, err)
	patch(b)
	p := filepath.Join(t.TempDir(), "banger-vsock-agent")
	require.NoError(t, os.WriteFile(p, b, 0o755))
	return p
}

// otherMachine is an ELF machine that is not the host's.
func otherMachine() elf.Machine {
	if runtime.GOARCH == "arm64" {
		return elf.EM_X86_64
	}
	return elf.EM_AARCH64
}

// TestInjectRejects: every rejection happens before any write, so the
// image file is byte-identical afterwards, Close included.
func TestInjectRejects(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck")
	agent := testimg.AgentBinary(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "script")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o755))
	empty := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(empty, nil, 0o755))
	setType := func(typ elf.Type) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint16(b[16:], uint16(typ)) }
	}
	foreign := patchedAgent(t, agent, func(b []byte) { binary.LittleEndian.PutUint16(b[18:], uint16(otherMachine())) })

	for _, tc := range []struct {
		name   string
		tree   map[string]string
		setup  func(t *testing.T, root string)
		opts   InjectOptions
		ro     bool
		is     []error
		msg    []string
		noOpen bool
	}{
		{name: "missing binary", opts: InjectOptions{AgentPath: filepath.Join(dir, "nope", "banger-vsock-agent"), Init: InitSystemd}, is: []error{fs.ErrNotExist}, msg: []string{"agent binary", "not found", "--agent"}},
		{name: "default path next to the executable", opts: InjectOptions{}, is: []error{fs.ErrNotExist}, msg: []string{"banger-vsock-agent not found", "next to the running executable"}},
		{name: "a directory", opts: InjectOptions{AgentPath: dir, Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"not a regular file"}},
		{name: "a shell script", opts: InjectOptions{AgentPath: script, Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"not an ELF executable"}},
		{name: "an empty file", opts: InjectOptions{AgentPath: empty, Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"not an ELF executable"}},
		{name: "a relocatable object", opts: InjectOptions{AgentPath: patchedAgent(t, agent, setType(elf.ET_REL)), Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"not an executable (ELF type ET_REL)"}},
		{name: "a core file", opts: InjectOptions{AgentPath: patchedAgent(t, agent, setType(elf.ET_CORE)), Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"ET_CORE"}},
		{name: "a shared library", opts: InjectOptions{AgentPath: patchedAgent(t, agent, setType(elf.ET_DYN)), Init: InitSystemd}, is: []error{ErrInvalidAgent}, msg: []string{"shared library"}},
		{name: "a FreeBSD binary", opts: InjectOptions{AgentPath: patchedAgent(t, agent, func(b []byte) { b[7] = byte(elf.ELFOSABI_FREEBSD) })}, is: []error{ErrInvalidAgent}, msg: []string{"not Linux"}},
		{
			name: "another architecture than the image's /bin/sh",
			tree: map[string]string{"usr/bin/": "", "bin": "-> usr/bin"},
			setup: func(t *testing.T, root string) {
				testimg.CopyFile(t, agent, filepath.Join(root, "usr/bin/dash"))
				require.NoError(t, os.Symlink("dash", filepath.Join(root, "usr/bin/sh")))
			},
			opts: InjectOptions{AgentPath: foreign, Init: InitSystemd},
			is:   []error{ErrInvalidAgent},
			msg:  []string{"the image's /bin/sh is", "GOARCH=" + runtime.GOARCH},
		},
		{name: "/usr/local/bin is a file", tree: map[string]string{"usr/local/bin": "oops"}, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{ext4edit.ErrNotDir}, msg: []string{"/usr/local/bin", "regular file"}},
		{name: "/etc/systemd is a symlink to a file", tree: map[string]string{"etc/systemd": "-> /etc/hostname", "etc/hostname": "vm\n"}, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{ext4edit.ErrNotDir}, msg: []string{"/etc/systemd"}},
		{name: "dangling symlinked directory", tree: map[string]string{"usr/local/bin": "-> /nonexistent/bin"}, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{fs.ErrNotExist}, msg: []string{"/usr/local/bin", `symlink to "/nonexistent/bin"`}},
		{name: "a directory where a unit goes", tree: map[string]string{"etc/systemd/system/banger-network.service/": ""}, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{ext4edit.ErrIsDir}, msg: []string{"banger-network.service", "directory is in the way"}},
		{name: "a directory where an enable link goes", tree: map[string]string{"etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service/x": ""}, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{ext4edit.ErrIsDir}},
		{name: "read-only session", ro: true, opts: InjectOptions{AgentPath: agent, Init: InitSystemd}, is: []error{ext4edit.ErrReadOnly}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			var imgPath string
			if tc.tree != nil || tc.setup != nil {
				root := hostTree(t, tc.tree)
				if tc.setup != nil {
					tc.setup(t, root)
				}
				imgPath = testimg.MkfsFromDir(t, d, "root.img", "64M", root)
			} else {
				imgPath = testimg.Mkfs(t, d, "root.img", "64M")
			}
			sum := testimg.SHA256File(t, imgPath)

			img, err := ext4edit.Open(imgPath, &ext4edit.Options{ReadOnly: tc.ro})
			require.NoError(t, err)
			err = InjectGuestAgents(img, tc.opts)
			require.Error(t, err)
			for _, target := range tc.is {
				require.ErrorIs(t, err, target)
			}
			for _, m := range tc.msg {
				require.Contains(t, err.Error(), m)
			}
			require.True(t, strings.HasPrefix(err.Error(), "inject guest agents: "), err.Error())
			require.NoError(t, img.Close())
			require.Equal(t, sum, testimg.SHA256File(t, imgPath), "the image is byte-identical after the rejection and Close")

			// The file variant rejects the same way, untouched too.
			if !tc.ro {
				err = InjectGuestAgentsFile(imgPath, tc.opts)
				for _, target := range tc.is {
					require.ErrorIs(t, err, target)
				}
				require.Equal(t, sum, testimg.SHA256File(t, imgPath))
			}
			testimg.RequireClean(t, imgPath)
		})
	}

	t.Run("arch mismatch allowed", func(t *testing.T) {
		root := hostTree(t, map[string]string{"bin/": ""})
		testimg.CopyFile(t, agent, filepath.Join(root, "bin/sh"))
		imgPath := testimg.MkfsFromDir(t, t.TempDir(), "root.img", "64M", root)
		require.ErrorIs(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: foreign, Init: InitSystemd}), ErrInvalidAgent)
		require.NoError(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: foreign, AllowArchMismatch: true, Init: InitSystemd}))
		require.NoError(t, InjectGuestAgentsFile(imgPath, InjectOptions{AgentPath: agent, Init: InitSystemd}), "the host agent matches the host /bin/sh copy")
		testimg.RequireClean(t, imgPath)
	})
}
