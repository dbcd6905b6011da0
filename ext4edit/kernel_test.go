//go:build linux

package ext4edit_test

// The kernel agrees: images the editor wrote are mounted by the Linux
// ext4 driver through a loop device and read back with plain system
// calls; then the kernel writes into them, and the editor reads and
// extends what the kernel wrote. Runs only as root with loop devices
// (testimg.RequireKernelMount says why it skips otherwise).

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// kObserve walks a mounted tree with lstat(2), readlink(2), read(2)
// and the xattr system calls.
func kObserve(t *testing.T, root string) map[string]rdSeen {
	t.Helper()
	out := map[string]rdSeen{}
	var walk func(p string)
	walk = func(p string) {
		full := filepath.Join(root, filepath.FromSlash(p))
		fi, err := os.Lstat(full)
		require.NoError(t, err, "kernel lstat %s", p)
		st, ok := fi.Sys().(*syscall.Stat_t)
		require.True(t, ok, "kernel: %s Sys() is %T", p, fi.Sys())
		s := rdSeen{
			Type: fi.Mode().Type(), Perm: fi.Mode() & rdPermBits,
			UID: st.Uid, GID: st.Gid, Nlink: uint32(st.Nlink),
			Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Ino: st.Ino, Blocks: uint64(st.Blocks),
		}
		switch s.Type {
		case 0:
			data, err := os.ReadFile(full)
			require.NoError(t, err, "kernel read %s", p)
			s.SHA = rdSHA(data)
		case fs.ModeSymlink:
			s.Target, err = os.Readlink(full)
			require.NoError(t, err, "kernel readlink %s", p)
		case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
			s.Major, s.Minor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		}
		s.Xattrs = kXattrs(t, full, p)
		out[p] = s
		if s.Type == fs.ModeDir {
			ents, err := os.ReadDir(full)
			require.NoError(t, err, "kernel readdir %s", p)
			for _, e := range ents {
				walk(path.Join(p, e.Name()))
			}
		}
	}
	walk(".")
	return out
}

// kXattrs returns the user.* and trusted.* attributes of full (nil
// when there are none), not following a symlink.
func kXattrs(t *testing.T, full, p string) map[string]string {
	t.Helper()
	n, err := unix.Llistxattr(full, nil)
	require.NoError(t, err, "kernel listxattr %s", p)
	if n == 0 {
		return nil
	}
	buf := make([]byte, n)
	n, err = unix.Llistxattr(full, buf)
	require.NoError(t, err, "kernel listxattr %s", p)
	var out map[string]string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if !rdXattrChecked(name) {
			continue
		}
		sz, err := unix.Lgetxattr(full, name, nil)
		require.NoError(t, err, "kernel getxattr %s %s", p, name)
		v := make([]byte, sz)
		sz, err = unix.Lgetxattr(full, name, v)
		require.NoError(t, err, "kernel getxattr %s %s", p, name)
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v[:sz])
	}
	return out
}

// kBuildTree writes the tree the kernel reads back: nested
// directories, small files with known contents, a 5 MiB file in several
// extents, fast and slow symlinks, a hard link, device nodes (old and new
// dev_t encodings), a FIFO, a socket, xattrs in the inode and in a block,
// owners, modes (setuid, sticky), a fixed mtime, a 2000-entry directory
// (an htree), removals and renames.
func kBuildTree(t *testing.T, b *rdBuilder) {
	b.mkdirAll("a/b/c", 0o755)
	b.mkdir("etc", 0o755)
	b.writeFile("etc/hostname", []byte("ext4kit\n"), 0o644)
	b.writeFile("etc/motd", []byte(strings.Repeat("welcome to a kernel-checked image\n", 200)), 0o644)
	b.writeFile("a/b/c/deep.txt", []byte("deep down\n"), 0o640)
	b.writeFile("empty", nil, 0o600)
	for i, n := range []int{1, 1023, 1024, 1025, 4095, 4096, 4097, 12345, 70000} {
		b.writeFile(fmt.Sprintf("a/b/size-%d", n), rdPattern(uint64(1000+i), n), 0o644)
	}
	// Fragment the free space before streaming the big file into it.
	b.mkdir("frag", 0o755)
	for i := range 30 {
		b.writeFile(fmt.Sprintf("frag/f%02d", i), rdPattern(uint64(2000+i), 40<<10), 0o644)
	}
	for i := 0; i < 30; i += 2 {
		b.remove(fmt.Sprintf("frag/f%02d", i))
	}
	require.NoError(t, b.img.Sync())
	b.create("a/big.bin", rdPattern(3000, 5<<20), 0o644)

	b.symlink("../etc/hostname", "a/hostname-link")
	b.symlink("/"+strings.Repeat("a-long-path-component/", 5)+"target", "a/b/slow-link")
	b.symlink("c", "a/b/c-link")
	b.link("etc/hostname", "a/hostname-hard")
	b.mkdir("dev", 0o755)
	b.mknod("dev/null", fs.ModeDevice|fs.ModeCharDevice|0o666, 1, 3)
	b.mknod("dev/sda1", fs.ModeDevice|0o660, 8, 1)
	b.mknod("dev/bignum", fs.ModeDevice|fs.ModeCharDevice|0o600, 511, 70000) // new dev_t encoding
	b.mknod("dev/fifo", fs.ModeNamedPipe|0o644, 0, 0)
	b.mknod("dev/sock", fs.ModeSocket|0o755, 0, 0)

	b.setXattr("etc/hostname", "user.k", "v")
	b.setXattr("etc/hostname", "trusted.t", "trusted value")
	b.setXattr("a/b/c/deep.txt", "user.big", strings.Repeat("x", 700)) // needs an xattr block
	b.setXattr("a", "user.dir", "on a directory")

	b.chown("etc/hostname", 1000, 1000)
	b.chown("a/hostname-link", 123, 456)
	b.chown("a/b", 65534, 65534)
	b.chown("dev/sda1", 0, 6)
	b.chmod("a/b", 0o750)
	b.chmod("a/b/size-1", fs.ModeSetuid|fs.ModeSetgid|0o755)
	b.mkdir("tmp", 0o755)
	b.chmod("tmp", fs.ModeSticky|0o777)
	b.chtimes("etc/motd", time.Date(2001, 2, 3, 4, 5, 6, 789000000, time.UTC))

	b.mkdir("many", 0o755)
	for i := range 2000 {
		b.writeFile(fmt.Sprintf("many/file-%04d", i), []byte(fmt.Sprintf("entry %d\n", i)), 0o644)
	}
	for i := 0; i < 2000; i += 7 {
		b.remove(fmt.Sprintf("many/file-%04d", i))
	}
	for i := 1; i < 2000; i += 97 {
		if i%7 == 0 {
			continue // removed above
		}
		b.rename(fmt.Sprintf("many/file-%04d", i), fmt.Sprintf("many/renamed-%04d", i))
	}

	b.mkdirAll("old/x/y", 0o755)
	b.writeFile("old/x/y/z.txt", []byte("moved with its directory\n"), 0o644)
	b.rename("old/x", "a/b/c/x") // a directory changes parent
	b.remove("old")
	b.writeFile("tmp/scratch", []byte("scratch\n"), 0o644)
	b.rename("tmp/scratch", "etc/motd-replaced")
	b.writeFile("etc/victim", []byte("will be replaced\n"), 0o644)
	b.rename("etc/motd-replaced", "etc/victim") // replaces an existing file
	b.link("a/b/size-4096", "tmp/hard-then-gone")
	b.remove("tmp/hard-then-gone")
	b.remove("frag/f01")

	// Rewrites: a file shrinks, another grows, one is truncated by Create.
	b.writeFile("a/shrink.bin", rdPattern(3100, 300<<10), 0o644)
	b.writeFile("a/shrink.bin", []byte("small now\n"), 0o644)
	b.writeFile("a/grow.bin", []byte("small at first\n"), 0o644)
	b.create("a/grow.bin", rdPattern(3200, 2<<20+5), 0o644)
	b.writeFile("a/recreated", rdPattern(3300, 90<<10), 0o644)
	b.create("a/recreated", []byte("recreated\n"), 0o644)
	// Xattrs replaced and removed.
	b.setXattr("etc/hostname", "user.k2", "first")
	b.setXattr("etc/hostname", "user.k2", "second, longer value")
	b.setXattr("a/b/c/deep.txt", "user.gone", "soon")
	b.removeXattr("a/b/c/deep.txt", "user.gone")
	// Long names, deep nesting, a whole tree removed, a directory renamed
	// inside the htree.
	b.writeFile("etc/"+strings.Repeat("n", 255), []byte("longest name\n"), 0o644)
	deep := "deep"
	for i := range 30 {
		deep += fmt.Sprintf("/level-%02d", i)
	}
	b.mkdirAll(deep, 0o755)
	b.writeFile(deep+"/bottom.txt", []byte("bottom\n"), 0o644)
	b.mkdirAll("doomed/tree/with/levels", 0o755)
	for i := range 20 {
		b.writeFile(fmt.Sprintf("doomed/tree/f%02d", i), rdPattern(uint64(3400+i), 5000), 0o644)
	}
	b.symlink("../nowhere", "doomed/tree/with/link")
	b.removeAll("doomed")
	// Long names fill leaves fast: with 1 KiB blocks this directory needs
	// a second index level.
	b.mkdir("wide", 0o755)
	for i := range 1500 {
		b.writeFile(kWideName(i), nil, 0o644)
	}
	for i := 0; i < 1500; i += 11 {
		b.remove(kWideName(i))
	}
	b.mkdir("many/a-subdir", 0o755)
	b.writeFile("many/a-subdir/inside", []byte("inside\n"), 0o644)
	b.rename("many/a-subdir", "many/z-subdir")
}

func kWideName(i int) string {
	return fmt.Sprintf("wide/a-rather-long-file-name-that-fills-leaf-blocks-quickly-%05d", i)
}

// TestKernelAgrees: per mkfs variant, the kernel reads the tree the editor
// wrote exactly as the model and the editor's own FS() view say; the
// kernel then adds 1000 files (and removes and renames some), e2fsck
// stays clean, the editor reads the kernel's files and adds 100 entries,
// e2fsck stays clean, and the kernel reads the final tree again.
func TestKernelAgrees(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs")
	testimg.RequireKernelMount(t)
	variants := []struct {
		name string
		opts []string
	}{
		{"default", nil},
		{"1k-blocks", []string{"-b", "1024"}},
		{"no-metadata_csum", []string{"-O", "^metadata_csum"}},
		{"ext3", []string{"-t", "ext3"}},
		{"no-64bit", []string{"-O", "^64bit"}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			img := testimg.Mkfs(t, t.TempDir(), "fs.img", rdImageSize, v.opts...)

			// Phase 1: the editor builds the tree; the kernel reads it.
			e, err := ext4edit.Open(img, nil)
			require.NoError(t, err)
			b := newRDBuilder(t, e)
			kBuildTree(t, b)
			fi, err := e.Lstat("/many")
			require.NoError(t, err)
			require.NotZero(t, fi.Sys().(*ext4edit.InodeInfo).Flags&0x1000, "many/ should be an htree (EXT4_INDEX_FL)")
			require.NoError(t, e.Close())
			testimg.RequireClean(t, img)
			if n := rdLeafExtents(t, img, "/a/big.bin"); n >= 0 {
				require.GreaterOrEqual(t, n, 2, "a/big.bin was written into fragmented free space")
				t.Logf("a/big.bin (5 MiB) has %d extents", n)
			}
			for _, d := range []string{"/many", "/wide"} {
				levels := kHtreeLevels(t, img, d)
				t.Logf("%s is an htree with %d index level(s) below the root", d, levels)
			}

			editorView := kEditorView(t, img)
			rdCheckWant(t, "ext4edit", b.want, editorView)
			mnt, unmount := testimg.Mount(t, img, true)
			kernelView := kObserve(t, mnt)
			unmount()
			t.Logf("the kernel read %d paths the editor wrote", len(kernelView))
			rdCheckWant(t, "kernel", b.want, kernelView)
			rdCheckSame(t, "ext4edit", editorView, "kernel", kernelView)
			testimg.RequireClean(t, img)

			// Phase 2: the kernel writes into directories the editor made.
			mnt, unmount = testimg.Mount(t, img, false)
			kernelFiles := kKernelWrites(t, b, mnt)
			unmount()
			testimg.RequireClean(t, img)

			// Phase 3: the editor reads the kernel's files and extends the tree.
			// The editor now creates inodes owned by 4242:4343.
			e, err = ext4edit.Open(img, &ext4edit.Options{UID: 4242, GID: 4343})
			require.NoError(t, err)
			b.uid, b.gid = 4242, 4343
			for _, p := range kernelFiles {
				data, err := e.ReadFile(rdAbs(p))
				require.NoError(t, err, "editor reading the kernel's %s", p)
				require.Equal(t, b.want[p].data, data, "editor reading the kernel's %s", p)
			}
			b.img = e
			rdCheckWant(t, "ext4edit after the kernel wrote", b.want, rdObserveEditor(t, e))
			kEditorWrites(b)
			require.NoError(t, e.Close())
			testimg.RequireClean(t, img)

			// Phase 4: the kernel reads the final tree.
			editorView = kEditorView(t, img)
			rdCheckWant(t, "ext4edit (final)", b.want, editorView)
			mnt, unmount = testimg.Mount(t, img, true)
			kernelView = kObserve(t, mnt)
			unmount()
			rdCheckWant(t, "kernel (final)", b.want, kernelView)
			rdCheckSame(t, "ext4edit (final)", editorView, "kernel (final)", kernelView)
			testimg.RequireClean(t, img)
		})
	}
}

// kHtreeLevels returns the indirect_levels of directory dir's htree root as
// debugfs reports it.
func kHtreeLevels(t *testing.T, img, dir string) int {
	t.Helper()
	out := testimg.Debugfs(t, img, "htree_dump "+dir)
	i := strings.Index(out, "Indirect levels: ")
	require.GreaterOrEqual(t, i, 0, "debugfs htree_dump %s:\n%s", dir, out)
	var n int
	_, err := fmt.Sscanf(out[i:], "Indirect levels: %d", &n)
	require.NoError(t, err)
	return n
}

// kEditorView opens img read-only and observes it through FS().
func kEditorView(t *testing.T, img string) map[string]rdSeen {
	t.Helper()
	e, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer e.Close()
	return rdObserveEditor(t, e)
}

// kKernelWrites has the kernel add 1000 files to the mounted image, spread
// over directories the editor created (the htree among them) and two it
// creates itself, and remove and rename some of the editor's files. It
// records everything in the model and returns the files it wrote.
func kKernelWrites(t *testing.T, b *rdBuilder, mnt string) []string {
	t.Helper()
	host := func(p string) string { return filepath.Join(mnt, filepath.FromSlash(p)) }
	for _, d := range []string{"kdir", "kdir/sub"} {
		require.NoError(t, os.Mkdir(host(d), 0o755))
		require.NoError(t, os.Chmod(host(d), 0o755)) // whatever the umask
		b.want[d] = &rdWant{typ: fs.ModeDir, perm: 0o755}
	}
	dirs := []struct {
		dir string
		n   int
	}{{"many", 400}, {"wide", 100}, {"a/b/c", 100}, {"etc", 100}, {"a/b/c/x/y", 50}, {"kdir", 150}, {"kdir/sub", 100}}
	var files []string
	for _, d := range dirs {
		for i := range d.n {
			p := fmt.Sprintf("%s/kernel-%04d", d.dir, i)
			data := []byte(strings.Repeat(fmt.Sprintf("kernel wrote %s\n", p), 1+i%9))
			require.NoError(t, os.WriteFile(host(p), data, 0o644))
			require.NoError(t, os.Chmod(host(p), 0o644))
			b.want[p] = &rdWant{perm: 0o644, data: data, nlink: 1}
			files = append(files, p)
		}
	}
	require.Len(t, files, 1000)
	// The kernel also removes and renames entries the editor made.
	for i := 3; i < 2000; i += 50 {
		p := fmt.Sprintf("many/file-%04d", i)
		if b.want[p] == nil {
			continue
		}
		require.NoError(t, os.Remove(host(p)))
		b.forget(p)
	}
	for i := 5; i < 2000; i += 150 {
		p := fmt.Sprintf("many/file-%04d", i)
		if b.want[p] == nil {
			continue
		}
		q := fmt.Sprintf("kdir/from-editor-%04d", i)
		require.NoError(t, os.Rename(host(p), host(q)))
		b.want[q] = b.want[p]
		delete(b.want, p)
	}
	return files
}

// kEditorWrites adds 100 entries with the editor, into the htree, into the
// directories the kernel made and next to the kernel's files.
func kEditorWrites(b *rdBuilder) {
	for i := range 50 {
		b.writeFile(fmt.Sprintf("many/editor-again-%03d", i), []byte(fmt.Sprintf("editor again %d\n", i)), 0o644)
	}
	for i := range 20 {
		b.writeFile(fmt.Sprintf("kdir/editor-%03d", i), rdPattern(uint64(5000+i), 100*i), 0o600)
	}
	for i := range 10 {
		b.mkdir(fmt.Sprintf("kdir/sub/editor-dir-%02d", i), 0o700)
	}
	for i := range 10 {
		b.symlink(fmt.Sprintf("../kernel-%04d", i), fmt.Sprintf("kdir/sub/editor-link-%02d", i))
	}
	for i := range 5 {
		b.link(fmt.Sprintf("etc/kernel-%04d", i), fmt.Sprintf("a/b/c/editor-hard-%02d", i))
	}
	for i := range 5 {
		b.writeFile(fmt.Sprintf("a/b/c/x/y/editor-%02d", i), []byte("next to the kernel's files\n"), 0o644)
	}
}
