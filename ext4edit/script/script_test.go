package script_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/ext4edit/script"
)

// seedScript is what the microVM daemon feeds `debugfs -w -f -` to install
// banger's guest agents; HOST stands for the directory holding the assets.
const seedScript = `mkdir /usr
mkdir /usr/local
mkdir /usr/local/bin
mkdir /usr/local/libexec
mkdir /etc
mkdir /etc/systemd
mkdir /etc/systemd/system
mkdir /etc/systemd/system/multi-user.target.wants
mkdir /etc/modules-load.d
write "HOST/agent" /usr/local/bin/banger-vsock-agent
write "HOST/bootstrap" /usr/local/libexec/banger-network-bootstrap
write "HOST/net.service" /etc/systemd/system/banger-network.service
write "HOST/agent.service" /etc/systemd/system/banger-vsock-agent.service
write "HOST/vsock.conf" /etc/modules-load.d/banger-vsock.conf
sif /usr/local/bin/banger-vsock-agent uid 0
sif /usr/local/bin/banger-vsock-agent gid 0
sif /usr/local/bin/banger-vsock-agent mode 0100755
sif /usr/local/libexec/banger-network-bootstrap uid 0
sif /usr/local/libexec/banger-network-bootstrap gid 0
sif /usr/local/libexec/banger-network-bootstrap mode 0100755
sif /etc/systemd/system/banger-network.service uid 0
sif /etc/systemd/system/banger-network.service gid 0
sif /etc/systemd/system/banger-network.service mode 0100644
sif /etc/systemd/system/banger-vsock-agent.service uid 0
sif /etc/systemd/system/banger-vsock-agent.service gid 0
sif /etc/systemd/system/banger-vsock-agent.service mode 0100644
sif /etc/modules-load.d/banger-vsock.conf uid 0
sif /etc/modules-load.d/banger-vsock.conf gid 0
sif /etc/modules-load.d/banger-vsock.conf mode 0100644
symlink /etc/systemd/system/multi-user.target.wants/banger-network.service /etc/systemd/system/banger-network.service
symlink /etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service /etc/systemd/system/banger-vsock-agent.service
`

// hostAssets writes the files the seed script copies in (mode 0600, so
// only sif can make the modes right) and returns the script with HOST
// filled in and the size of each asset by host name.
func hostAssets(t *testing.T) (text string, sizes map[string]int) {
	t.Helper()
	dir := t.TempDir()
	agent := make([]byte, 2<<20)
	_, err := rand.Read(agent)
	require.NoError(t, err)
	files := map[string][]byte{
		"agent":         agent,
		"bootstrap":     []byte("#!/bin/sh\nset -eu\necho banger-network-bootstrap\n"),
		"net.service":   []byte("[Unit]\nDescription=banger network\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/local/libexec/banger-network-bootstrap\n\n[Install]\nWantedBy=multi-user.target\n"),
		"agent.service": []byte("[Unit]\nDescription=banger vsock agent\nAfter=systemd-modules-load.service\n\n[Service]\nExecStart=/usr/local/bin/banger-vsock-agent\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\n"),
		"vsock.conf":    []byte("vsock\nvmw_vsock_virtio_transport\n"),
	}
	sizes = make(map[string]int)
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
		sizes[name] = len(data)
	}
	return strings.ReplaceAll(seedScript, "HOST", filepath.ToSlash(dir)), sizes
}

// e2fsTool finds an e2fsprogs tool on PATH or in the sbin directories
// that are often missing from a user's PATH, and skips the test without it.
func e2fsTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	t.Skipf("%s not found: the end-to-end tests need e2fsprogs (mkfs.ext4, debugfs, e2fsck)", name)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

type e2fs struct{ mkfsBin, debugfsBin, e2fsckBin string }

func needE2fs(t *testing.T) e2fs {
	return e2fs{e2fsTool(t, "mkfs.ext4"), e2fsTool(t, "debugfs"), e2fsTool(t, "e2fsck")}
}

// mkfs makes a fresh 64 MiB ext4 image in a temporary directory.
func (e e2fs) mkfs(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "rootfs.ext4")
	out, err := exec.Command(e.mkfsBin, "-q", "-F", img, "64M").CombinedOutput()
	require.NoError(t, err, "mkfs.ext4: %s", out)
	return img
}

// request runs one debugfs request read-only and returns its standard
// output.
func (e e2fs) request(t *testing.T, img, req string) string {
	t.Helper()
	cmd := exec.Command(e.debugfsBin, "-R", req, img)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "debugfs -R %q: %s", req, stderr.String())
	return string(out)
}

// fsck requires `e2fsck -fn` to find the image clean.
func (e e2fs) fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command(e.e2fsckBin, "-fn", img).CombinedOutput()
	require.NoError(t, err, "e2fsck -fn:\n%s", out)
}

// runScript opens img read-write, runs text through a Runner and commits.
func runScript(t *testing.T, img, text string) (results []script.Result, stderr string) {
	t.Helper()
	im, err := ext4edit.Open(img, nil)
	require.NoError(t, err)
	var errs bytes.Buffer
	r := &script.Runner{Img: im, Stdout: &bytes.Buffer{}, Stderr: &errs, Writable: true}
	results, err = r.Run(strings.NewReader(text))
	require.NoError(t, err)
	require.NoError(t, im.Close())
	return results, errs.String()
}

type inodeStat struct {
	Type, Mode, UID, GID, Size, Link string
}

var (
	statTypeMode = regexp.MustCompile(`Type: (.+?)\s+Mode:\s+(\d+)`)
	statOwner    = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+).*?\bSize: (\d+)`)
	statLink     = regexp.MustCompile(`Fast link dest: "(.*)"`)
)

// stat reads an inode's type, mode, owner, size and fast link target with
// debugfs's stat.
func (e e2fs) stat(t *testing.T, img, p string) inodeStat {
	t.Helper()
	out := e.request(t, img, fmt.Sprintf("stat %q", p))
	tm := statTypeMode.FindStringSubmatch(out)
	ow := statOwner.FindStringSubmatch(out)
	require.NotNil(t, tm, "no Type/Mode for %s in:\n%s", p, out)
	require.NotNil(t, ow, "no User/Group/Size for %s in:\n%s", p, out)
	st := inodeStat{Type: tm[1], Mode: tm[2], UID: ow[1], GID: ow[2], Size: ow[3]}
	if m := statLink.FindStringSubmatch(out); m != nil {
		st.Link = m[1]
	}
	return st
}

func TestSeedScriptMatchesDebugfsStat(t *testing.T) {
	e := needE2fs(t)
	img := e.mkfs(t)
	text, sizes := hostAssets(t)

	results, stderr := runScript(t, img, text)
	for _, res := range results {
		require.NoError(t, res.Err)
		require.Empty(t, res.Notice, "line %d", res.Line)
	}
	require.Empty(t, stderr)

	dir := func() inodeStat { return inodeStat{Type: "directory", Mode: "0755", UID: "0", GID: "0"} }
	file := func(host, mode string) inodeStat {
		return inodeStat{Type: "regular", Mode: mode, UID: "0", GID: "0", Size: fmt.Sprint(sizes[host])}
	}
	link := func(target string) inodeStat {
		return inodeStat{Type: "symlink", Mode: "0777", UID: "0", GID: "0", Size: fmt.Sprint(len(target)), Link: target}
	}
	want := map[string]inodeStat{
		"/usr":                dir(),
		"/usr/local":          dir(),
		"/usr/local/bin":      dir(),
		"/usr/local/libexec":  dir(),
		"/etc":                dir(),
		"/etc/systemd":        dir(),
		"/etc/systemd/system": dir(),
		"/etc/systemd/system/multi-user.target.wants":                            dir(),
		"/etc/modules-load.d":                                                    dir(),
		"/usr/local/bin/banger-vsock-agent":                                      file("agent", "0755"),
		"/usr/local/libexec/banger-network-bootstrap":                            file("bootstrap", "0755"),
		"/etc/systemd/system/banger-network.service":                             file("net.service", "0644"),
		"/etc/systemd/system/banger-vsock-agent.service":                         file("agent.service", "0644"),
		"/etc/modules-load.d/banger-vsock.conf":                                  file("vsock.conf", "0644"),
		"/etc/systemd/system/multi-user.target.wants/banger-network.service":     link("/etc/systemd/system/banger-network.service"),
		"/etc/systemd/system/multi-user.target.wants/banger-vsock-agent.service": link("/etc/systemd/system/banger-vsock-agent.service"),
	}
	for p, w := range want {
		got := e.stat(t, img, p)
		if w.Type == "directory" {
			got.Size = "" // the directory's block size, not ours to fix
		}
		require.Equal(t, w, got, "debugfs stat %s", p)
	}
	e.fsck(t, img)
}

// tree lists an image recursively with debugfs's `ls -p`: path -> mode,
// owner, size, plus a content hash for regular files and the target for
// fast symlinks. Inode numbers and times are left out.
func (e e2fs) tree(t *testing.T, img string) map[string]string {
	t.Helper()
	tree := make(map[string]string)
	var walk func(dir string)
	walk = func(dir string) {
		out := e.request(t, img, fmt.Sprintf("ls -p %q", dir))
		for _, line := range strings.Split(out, "\n") {
			if line == "" {
				continue
			}
			// /INO/MODE/UID/GID/NAME/SIZE/ (SIZE empty for directories)
			f := strings.Split(line, "/")
			require.Len(t, f, 8, "ls -p line %q", line)
			mode, uid, gid, name, size := f[2], f[3], f[4], f[5], f[6]
			if name == "." || name == ".." {
				continue
			}
			p := path.Join(dir, name)
			desc := fmt.Sprintf("mode=%s uid=%s gid=%s size=%s", mode, uid, gid, size)
			switch mode[:2] {
			case "04": // directory
				walk(p)
			case "10": // regular file
				sum := sha256.Sum256([]byte(e.request(t, img, fmt.Sprintf("cat %q", p))))
				desc += fmt.Sprintf(" sha256=%x", sum)
			case "12": // symlink
				desc += " target=" + e.stat(t, img, p).Link
			}
			tree[p] = desc
		}
	}
	walk("/")
	return tree
}

func TestSeedScriptSameTreeAsDebugfs(t *testing.T) {
	e := needE2fs(t)
	ours, theirs := e.mkfs(t), e.mkfs(t)
	text, _ := hostAssets(t)

	results, _ := runScript(t, ours, text)
	for _, res := range results {
		require.NoError(t, res.Err)
	}

	scriptFile := filepath.Join(t.TempDir(), "seed.debugfs")
	require.NoError(t, os.WriteFile(scriptFile, []byte(text), 0o644))
	out, err := exec.Command(e.debugfsBin, "-w", "-f", scriptFile, theirs).CombinedOutput()
	require.NoError(t, err, "debugfs -w -f: %s", out)

	want := e.tree(t, theirs)
	require.Contains(t, want, "/usr/local/bin/banger-vsock-agent", "debugfs did not run the seed script:\n%s", out)
	require.Equal(t, want, e.tree(t, ours))
	e.fsck(t, ours)
}

func TestFailingRequestsNameTheirLines(t *testing.T) {
	e := needE2fs(t)
	img := e.mkfs(t)
	text := strings.Join([]string{
		"mkdir /a",                   // 1
		"",                           // 2
		"# a comment",                // 3
		"rmdir /nonexistent",         // 4: fails
		"mkdir /a",                   // 5: notice only
		"bogus x",                    // 6: unknown request
		"sif /a mode 0755",           // 7: would drop the directory type
		"write /nonexistent/host /b", // 8: no host file
		"mkdir /a/b",                 // 9
	}, "\n")

	results, stderr := runScript(t, img, text)
	lines := make(map[int]script.Result)
	failed := 0
	for _, res := range results {
		lines[res.Line] = res
		if res.Err != nil {
			failed++
		}
	}
	require.Len(t, results, 7, "blank and comment lines are not requests")
	require.Equal(t, 4, failed)
	for _, n := range []int{1, 9} {
		require.NoError(t, lines[n].Err, "line %d", n)
	}
	require.NoError(t, lines[5].Err)
	require.Contains(t, lines[5].Notice, "already exists")
	require.ErrorIs(t, lines[6].Err, script.ErrUnknownRequest)
	for _, n := range []int{4, 6, 7, 8} {
		require.Error(t, lines[n].Err, "line %d", n)
		prefix := fmt.Sprintf("line %d: %s: ", n, lines[n].Request)
		require.True(t, strings.HasPrefix(lines[n].Err.Error(), prefix), "%q lacks %q", lines[n].Err, prefix)
		require.Contains(t, stderr, prefix)
	}
	require.Contains(t, stderr, "line 5: mkdir /a: ")

	require.Equal(t, "directory", e.stat(t, img, "/a").Type)
	require.Equal(t, "directory", e.stat(t, img, "/a/b").Type)
	e.fsck(t, img)
}

// Requests that fail before they reach the image: these run without one.
func TestRunScriptFailuresBeforeImage(t *testing.T) {
	var stderr bytes.Buffer
	r := &script.Runner{Img: new(ext4edit.Image), Stderr: &stderr}
	text := strings.Join([]string{
		"# read-only runner", // 1
		"mkdir /x",           // 2: read-only
		"",                   // 3
		"frobnicate",         // 4: unknown
		"stat",               // 5: usage
		`cat "unbalanced`,    // 6: parse error
		"ls -z /",            // 7: usage
	}, "\n")
	failed, err := r.RunScript(strings.NewReader(text))
	require.NoError(t, err)
	require.Equal(t, 5, failed)
	require.Equal(t, strings.Join([]string{
		"line 2: mkdir /x: ext4 image opened read-only (use -w)",
		`line 4: frobnicate: unknown request "frobnicate"`,
		"line 5: stat: usage: stat PATH",
		`line 6: cat "unbalanced: unbalanced quotes in command line`,
		"line 7: ls -z /: usage: ls [-l] [-p] [PATH]",
	}, "\n")+"\n", stderr.String())

	err = r.RunLine(9, "write a b")
	require.ErrorIs(t, err, ext4edit.ErrReadOnly)
	var re *script.RequestError
	require.ErrorAs(t, err, &re)
	require.Equal(t, 9, re.Line)
	require.NoError(t, r.RunLine(10, "   # just a comment"))
}
