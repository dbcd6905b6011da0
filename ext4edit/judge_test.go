package ext4edit_test

// Shared by the crash, replay and corrupt-image tests: a snapshot of a
// whole tree as the editor reads it, tool runners that return their
// verdict instead of failing the test, and the exhaustive-mode switch.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
)

// jtExhaustive reports whether the long versions of the crash and
// corrupt-image sweeps run: go test without -short and with
// EXT4EDIT_EXHAUSTIVE=1.
func jtExhaustive() bool {
	return !testing.Short() && os.Getenv("EXT4EDIT_EXHAUSTIVE") == "1"
}

// jtNode is what a tree snapshot records of one name.
type jtNode struct {
	Mode     uint16 // raw i_mode, type included
	UID, GID uint32
	Size     uint64
	Links    uint16
	SHA      string // regular files: sha256 of the contents
	Target   string // symlinks
	Xattrs   string // sorted name=sha256(value) list, system.data left out
	Dev      string // device nodes: major:minor
}

// jtTree maps every path below the root ("/" itself included) to its node,
// and jtFilesystemKey to the filesystem's size (Size): a resize changes
// what a reader sees too.
type jtTree map[string]jtNode

// jtFilesystemKey is the tree entry holding the filesystem's size: no path
// starts with '#'.
const jtFilesystemKey = "#filesystem"

func jtSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:8])
}

// jtSnap opens the image read-only and records the whole tree.
func jtSnap(img string) (jtTree, error) {
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true, NoLock: true})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	return jtSnapImage(im)
}

// jtSnapImage walks the tree through the image's fs.FS view (fs.WalkDir,
// fs.Lstat, fs.ReadFile, fs.ReadLink); xattrs, which fs.FS does not carry,
// come from ListXattr/GetXattr.
func jtSnapImage(im *ext4edit.Image) (jtTree, error) {
	fsys := im.FS()
	t := jtTree{jtFilesystemKey: {Size: uint64(im.Size())}}
	err := fs.WalkDir(fsys, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		p := "/"
		if name != "." {
			p = "/" + name
		}
		if strings.Count(p, "/") > 64 {
			return fmt.Errorf("%s: tree deeper than 64", p)
		}
		fi, err := fs.Lstat(fsys, name)
		if err != nil {
			return err
		}
		ii, ok := fi.Sys().(*ext4edit.InodeInfo)
		if !ok {
			return fmt.Errorf("%s: Sys() is %T", p, fi.Sys())
		}
		n := jtNode{Mode: ii.Mode, UID: ii.UID, GID: ii.GID, Size: ii.Size, Links: ii.LinksCount}
		names, err := im.ListXattr(p)
		if err != nil {
			return err
		}
		var xs []string
		for _, x := range names {
			if x == "system.data" {
				continue
			}
			v, err := im.GetXattr(p, x)
			if err != nil {
				return err
			}
			xs = append(xs, x+"="+jtSHA(v))
		}
		n.Xattrs = strings.Join(xs, ",")
		switch {
		case fi.Mode().IsRegular():
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				return err
			}
			n.SHA = jtSHA(b)
		case fi.Mode()&fs.ModeSymlink != 0:
			if n.Target, err = fs.ReadLink(fsys, name); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeDevice != 0:
			n.Dev = fmt.Sprintf("%d:%d", ii.Major, ii.Minor)
		}
		t[p] = n
		return nil
	})
	return t, err
}

// jtDiff lists up to max differences between two trees ("" when equal).
func jtDiff(got, want jtTree, max int) string {
	var out []string
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case k == jtFilesystemKey && (!gok || !wok):
			// A tree observed through the kernel has no size entry.
		case !gok:
			out = append(out, "missing "+k)
		case !wok:
			out = append(out, "extra "+k)
		case g != w:
			out = append(out, fmt.Sprintf("%s: %+v, want %+v", k, g, w))
		}
	}
	if len(out) > max {
		out = append(out[:max], fmt.Sprintf("... %d more", len(out)-max))
	}
	return strings.Join(out, "\n")
}

// jtTool finds an e2fsprogs tool on PATH or in the sbin directories.
func jtTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// jtFsck runs e2fsck with args on img and returns its exit code and output.
func jtFsck(img string, args ...string) (int, string) {
	out, err := exec.Command(jtTool("e2fsck"), append(args, img)...).CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		return -1, err.Error()
	}
	return 0, string(out)
}

// jtFixes returns what e2fsck -fy repaired: its "...? yes" questions and
// the messages leading to them, numbers replaced by #, one per problem
// kind.
var jtNum = regexp.MustCompile(`[0-9]+`)

func jtFixes(out string) []string {
	var fixes []string
	seen := map[string]bool{}
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasSuffix(strings.TrimSpace(l), "? yes") && !strings.Contains(l, "? yes") {
			continue
		}
		msg := strings.TrimSpace(l)
		if strings.HasPrefix(msg, "Fix? yes") || strings.HasPrefix(msg, "Clear? yes") || strings.HasPrefix(msg, "Connect to /lost+found? yes") || len(msg) < 12 {
			// The problem is on the line(s) before the question.
			for j := i - 1; j >= 0; j-- {
				if s := strings.TrimSpace(lines[j]); s != "" {
					msg = s + " / " + msg
					break
				}
			}
		}
		msg = jtNum.ReplaceAllString(msg, "#")
		if len(msg) > 140 {
			msg = msg[:140]
		}
		if !seen[msg] {
			seen[msg] = true
			fixes = append(fixes, msg)
		}
	}
	return fixes
}

// jtCopy copies a (sparse) image file, keeping holes.
func jtCopy(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v\n%s", src, dst, err, out)
	}
}

// jtCopyErr is jtCopy for goroutines other than the test's.
func jtCopyErr(src, dst string) error {
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s %s: %v\n%s", src, dst, err, out)
	}
	return nil
}

// jtDigest hashes a sparse file's size and data regions (SEEK_DATA /
// SEEK_HOLE), "" on error: cheap on 64 MiB images with little data.
func jtDigest(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%d;", st.Size())
	buf := make([]byte, 1<<20)
	for off := int64(0); off < st.Size(); {
		data, err := f.Seek(off, 3) // SEEK_DATA
		if err != nil {
			break
		}
		hole, err := f.Seek(data, 4) // SEEK_HOLE
		if err != nil {
			hole = st.Size()
		}
		for o := data; o < hole; {
			n, err := f.ReadAt(buf[:min(int64(len(buf)), hole-o)], o)
			if n == 0 || (err != nil && n == 0) {
				return ""
			}
			fmt.Fprintf(h, "%d:", o)
			h.Write(buf[:n])
			o += int64(n)
		}
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil))
}

// jtPattern is deterministic file content.
func jtPattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*int(seed|1)+i>>10) ^ seed
	}
	return b
}
