// Package testimg makes real ext4 images with mkfs.ext4 and judges them
// with e2fsck and debugfs, for tests. Tests that need a tool it cannot
// find are skipped with a message naming the tool; in CI the tools are
// installed (see .ci/run), so the judges really run there.
package testimg

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Require skips t unless every tool is on PATH. Under CI=true a missing
// tool fails the test instead: CI installs them, so absence is a defect.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not found on PATH; CI must install it (e2fsprogs)", tool)
			}
			t.Skipf("%s not found on PATH: install e2fsprogs to run this test", tool)
		}
	}
}

// LookTool finds a tool on PATH or in the sbin directories a non-root PATH
// lacks (where e2fsprogs installs); "" when it is missing.
func LookTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// Tool is LookTool for a test that needs the tool: missing, it skips t, or
// fails it under CI=true (CI installs every tool the tests use).
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := LookTool(name)
	if p == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must install it (see .ci/run)", name)
		}
		t.Skipf("%s not found: install it (e2fsprogs) to run this test", name)
	}
	return p
}

// Mkfs creates an image file of size (mkfs syntax: "64M", "6G") in dir
// with mkfs.ext4 (or mke2fs -t for ext2/ext3 args) and returns its path.
// Options come before the device as mkfs expects; -F -q are added.
func Mkfs(t testing.TB, dir, name, size string, opts ...string) string {
	t.Helper()
	Require(t, "mke2fs")
	img := filepath.Join(dir, name)
	args := append([]string{"-q", "-F"}, opts...)
	hasType := false
	for _, o := range opts {
		if o == "-t" {
			hasType = true
		}
	}
	if !hasType {
		args = append([]string{"-t", "ext4"}, args...)
	}
	args = append(args, img, size)
	cmd := exec.Command("mke2fs", args...)
	cmd.Env = append(os.Environ(), "MKE2FS_CONFIG=/etc/mke2fs.conf", "E2FSPROGS_FAKE_TIME=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mke2fs %v: %v\n%s", args, err, out)
	}
	return img
}

// MkfsFromDir is Mkfs with -d SRC: the image holds a copy of a host tree.
func MkfsFromDir(t testing.TB, dir, name, size, src string, opts ...string) string {
	t.Helper()
	return Mkfs(t, dir, name, size, append(opts, "-d", src)...)
}

// Fsck runs e2fsck -fn and reports whether it found the image clean.
// Where CheckHook is set it also runs the pure-Go checker, which must call
// clean every image e2fsck calls clean (a dirty image it calls clean is
// logged: the checker's documented misses).
func Fsck(t testing.TB, img string) (bool, string) {
	t.Helper()
	Require(t, "e2fsck")
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	clean := err == nil
	if CheckHook != nil {
		ok, report, cerr := CheckHook(img)
		switch {
		case errors.Is(cerr, ErrCheckUnsupported):
			t.Logf("ext4edit.Check does not check %s: %v", img, cerr)
		case cerr != nil && clean:
			t.Errorf("ext4edit.Check could not check %s, which e2fsck -fn calls clean: %v", img, cerr)
		case cerr == nil && clean && !ok:
			t.Errorf("ext4edit.Check calls %s dirty, e2fsck -fn clean:\n%s\ne2fsck:\n%s", img, report, out)
		case cerr == nil && !clean && ok:
			t.Logf("ext4edit.Check calls %s clean, e2fsck -fn dirty (a miss):\n%s", img, out)
		}
	}
	return clean, string(out)
}

// ErrCheckUnsupported: a CheckHook error wrapping it says the image has
// a feature the checker declines (ext4edit.ErrUnsupportedFeature): its
// "could not check" verdict, not a disagreement with e2fsck.
var ErrCheckUnsupported = errors.New("feature not supported by the checker")

// CheckHook, when a test package that can import ext4edit sets it, runs
// ext4edit.Check on every image Fsck judges (see Fsck): clean, the
// problems one per line, or why it could not check.
var CheckHook func(img string) (clean bool, report string, err error)

// RequireClean fails t unless e2fsck -fn finds img clean.
func RequireClean(t testing.TB, img string) {
	t.Helper()
	if ok, out := Fsck(t, img); !ok {
		t.Fatalf("e2fsck -fn %s is not clean:\n%s", img, out)
	}
}

// Debugfs runs one read-only debugfs request and returns its output
// (debugfs prints its banner on stderr, which is dropped).
func Debugfs(t testing.TB, img, request string) string {
	t.Helper()
	Require(t, "debugfs")
	cmd := exec.Command("debugfs", "-R", request, img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, stderr.String())
	}
	return stdout.String()
}

// DebugfsWrite runs a debugfs -w -f script (for building fixtures and for
// baselines) and returns the combined output.
func DebugfsWrite(t testing.TB, img, script string) string {
	t.Helper()
	Require(t, "debugfs")
	cmd := exec.Command("debugfs", "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -w: %v\n%s", err, out)
	}
	return string(out)
}

// Stat is what debugfs's stat request shows of an inode.
type Stat struct {
	Inode    uint64
	Type     string // regular, directory, symlink, character special, block special, FIFO, socket
	Mode     uint32 // permission bits as printed (e.g. 0755)
	UID, GID uint32
	Size     uint64
	Links    uint32
	FastLink string // fast symlink target ("Fast link dest:")
	Flags    uint32
	Raw      string
}

var (
	reInode = regexp.MustCompile(`Inode:\s+(\d+)\s+Type:\s+(.+?)\s+Mode:\s+(\d+)\s+Flags:\s+0x([0-9a-f]+)`)
	reUser  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+)`)
	reSize  = regexp.MustCompile(`Size:\s+(\d+)`)
	reLinks = regexp.MustCompile(`Links:\s+(\d+)`)
	reFast  = regexp.MustCompile(`Fast link dest:\s+"(.*)"`)
)

// DebugfsStat runs `debugfs -R 'stat PATH'` and parses it.
func DebugfsStat(t testing.TB, img, path string) Stat {
	t.Helper()
	out := Debugfs(t, img, fmt.Sprintf("stat %q", path))
	s, err := ParseStat(out)
	if err != nil {
		t.Fatalf("debugfs stat %s: %v\n%s", path, err, out)
	}
	return s
}

// ParseStat parses debugfs stat output.
func ParseStat(out string) (Stat, error) {
	s := Stat{Raw: out}
	m := reInode.FindStringSubmatch(out)
	if m == nil {
		return s, fmt.Errorf("no inode line")
	}
	s.Inode, _ = strconv.ParseUint(m[1], 10, 64)
	s.Type = m[2]
	mode, _ := strconv.ParseUint(m[3], 8, 32)
	s.Mode = uint32(mode)
	fl, _ := strconv.ParseUint(m[4], 16, 32)
	s.Flags = uint32(fl)
	if m := reUser.FindStringSubmatch(out); m != nil {
		u, _ := strconv.ParseUint(m[1], 10, 32)
		g, _ := strconv.ParseUint(m[2], 10, 32)
		s.UID, s.GID = uint32(u), uint32(g)
	}
	if m := reSize.FindStringSubmatch(out); m != nil {
		s.Size, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if m := reLinks.FindStringSubmatch(out); m != nil {
		l, _ := strconv.ParseUint(m[1], 10, 32)
		s.Links = uint32(l)
	}
	if m := reFast.FindStringSubmatch(out); m != nil {
		s.FastLink = m[1]
	}
	return s, nil
}

// Cat returns a file's contents as debugfs reads them.
func Cat(t testing.TB, img, path string) []byte {
	t.Helper()
	return []byte(Debugfs(t, img, fmt.Sprintf("cat %q", path)))
}
