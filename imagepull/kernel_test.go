//go:build linux

package imagepull

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger/ext4kit/internal/testimg"
)

// compareMounted walks the kernel's view of the image mounted at dir and
// compares every inode with the model: type, mode, owner, size, content,
// symlink target, device numbers, mtime, xattrs, and hard links.
func compareMounted(t *testing.T, dir string, m *model) {
	t.Helper()
	seen := map[string]bool{}
	inodeOf := map[*mnode]uint64{}
	nodeOf := map[uint64]*mnode{}
	errs := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if errs++; errs <= 40 {
			t.Errorf(format, args...)
		}
	}
	err := filepath.WalkDir(dir, func(hp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		p := "/" + strings.TrimPrefix(strings.TrimPrefix(hp, dir), "/")
		if p == "/lost+found" {
			return filepath.SkipDir
		}
		seen[p] = true
		n := m.nodes[p]
		if n == nil {
			fail("%s: in the image, not in the layers", p)
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(hp, &st); err != nil {
			return err
		}
		typ := map[uint32]byte{syscall.S_IFREG: tar.TypeReg, syscall.S_IFDIR: tar.TypeDir, syscall.S_IFLNK: tar.TypeSymlink,
			syscall.S_IFCHR: tar.TypeChar, syscall.S_IFBLK: tar.TypeBlock, syscall.S_IFIFO: tar.TypeFifo}[st.Mode&syscall.S_IFMT]
		if typ != n.typ {
			fail("%s: type %q, want %q", p, typ, n.typ)
			return nil
		}
		if int64(st.Mode&0o7777) != n.mode {
			fail("%s: mode %04o, want %04o", p, st.Mode&0o7777, n.mode)
		}
		if int(st.Uid) != n.uid || int(st.Gid) != n.gid {
			fail("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, n.uid, n.gid)
		}
		if mt := time.Unix(st.Mtim.Sec, st.Mtim.Nsec); !mt.Equal(n.mtime) {
			fail("%s: mtime %v, want %v", p, mt.UTC(), n.mtime.UTC())
		}
		if n.typ != tar.TypeDir {
			if prev, ok := inodeOf[n]; ok && prev != st.Ino {
				fail("%s: inode %d, want the hard link's %d", p, st.Ino, prev)
			}
			if other, ok := nodeOf[st.Ino]; ok && other != n {
				fail("%s: shares inode %d with an unrelated path", p, st.Ino)
			}
			inodeOf[n], nodeOf[st.Ino] = st.Ino, n
		}
		switch n.typ {
		case tar.TypeReg:
			data, err := os.ReadFile(hp)
			if err != nil {
				return err
			}
			if !bytes.Equal(data, n.data) {
				fail("%s: content differs (%d bytes, want %d)", p, len(data), len(n.data))
			}
		case tar.TypeSymlink:
			if tgt, err := os.Readlink(hp); err != nil || tgt != n.target {
				fail("%s: symlink to %q (%v), want %q", p, tgt, err, n.target)
			}
		case tar.TypeChar, tar.TypeBlock:
			if ma, mi := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)); int64(ma) != n.major || int64(mi) != n.minor {
				fail("%s: device %d:%d, want %d:%d", p, ma, mi, n.major, n.minor)
			}
		}
		got := lxattrs(t, hp)
		for k, v := range n.xattrs {
			g, ok := got[k]
			if strings.HasPrefix(k, "system.posix_acl_") {
				g, v = normACL(g), normACL(v)
			}
			if !ok || !bytes.Equal(g, v) {
				fail("%s: xattr %s = %x (%v), want %x", p, k, g, ok, v)
			}
		}
		for k := range got {
			if _, ok := n.xattrs[k]; !ok {
				fail("%s: unexpected xattr %s", p, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.paths() {
		if !seen[p] {
			fail("%s: in the layers, not in the image", p)
		}
	}
	// Link counts: the kernel's nlink equals the names the model has.
	names := map[*mnode]int{}
	for _, n := range m.nodes {
		names[n]++
	}
	for n, ino := range inodeOf {
		_ = ino
		if n.typ == tar.TypeDir {
			continue
		}
		for p, nn := range m.nodes {
			if nn != n {
				continue
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, p), &st); err == nil && int(st.Nlink) != names[n] {
				fail("%s: %d links, want %d", p, st.Nlink, names[n])
			}
			break
		}
	}
}

func lxattrs(t *testing.T, p string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return out
		}
		t.Fatalf("llistxattr %s: %v", p, err)
	}
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		v := make([]byte, 64<<10)
		vn, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("lgetxattr %s %s: %v", p, name, err)
		}
		out[name] = v[:vn]
	}
	return out
}

// The kernel mounts what BuildExt4 made and sees the layers' tree.
func TestKernelMountMatchesLayers(t *testing.T) {
	testimg.RequireKernelMount(t)
	testimg.Require(t, "e2fsck")
	for _, c := range []struct {
		name   string
		layers func(t testing.TB) [][]byte
	}{
		{"semantics", semanticLayers},
		{"synthetic", func(t testing.TB) [][]byte {
			var out [][]byte
			var bufs []*bytes.Buffer
			if err := synthLayers(smallSynth, func(int) io.Writer { b := &bytes.Buffer{}; bufs = append(bufs, b); return b }); err != nil {
				t.Fatal(err)
			}
			for _, b := range bufs {
				out = append(out, b.Bytes())
			}
			return out
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			layers := c.layers(t)
			bt := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
			p := build(t, BuildOptions{Time: bt}, layers...)
			m := newModel(bt)
			for _, l := range layers {
				m.apply(t, l)
			}
			dir, unmount := testimg.Mount(t, p, true)
			defer unmount()
			compareMounted(t, dir, m)
		})
	}
}
