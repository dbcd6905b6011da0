package ext4edit_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// checkVariants are the mkfs.ext4 feature mixes the editor matrix opens.
var checkVariants = []struct {
	name string
	args []string
}{
	{"default", nil},
	{"b1024", []string{"-b", "1024"}},
	{"b2048", []string{"-b", "2048"}},
	{"no-metadata-csum", []string{"-O", "^metadata_csum"}},
	{"uninit-bg", []string{"-O", "^metadata_csum,uninit_bg"}},
	{"no-64bit", []string{"-O", "^64bit"}},
	{"no-flex-bg", []string{"-O", "^flex_bg"}},
	{"no-resize-inode", []string{"-O", "^resize_inode"}},
	{"inode128", []string{"-I", "128"}},
	{"ext3", []string{"-t", "ext3"}},
	{"ext2", []string{"-t", "ext2"}},
	{"meta-bg", []string{"-O", "^resize_inode,meta_bg"}},
	{"no-journal-many-groups", []string{"-O", "^has_journal", "-g", "1024", "-N", "4096"}},
}

// checkTree is a small rootfs-like tree: an htree directory of 400
// entries, files of several sizes (a sparse one, one needing an extent
// index block), symlinks fast and slow, hard links, an xattr.
func checkTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	mk := func(p, body string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(body), 0o644))
	}
	for i := 0; i < 400; i++ {
		mk(fmt.Sprintf("usr/share/many/file-with-a-long-name-%04d", i), strings.Repeat("x", i*13))
	}
	mk("etc/hostname", "checker\n")
	mk("usr/bin/big", strings.Repeat("0123456789abcdef", 200_000))
	// Fragmented: many small extents force an index block.
	f, err := os.Create(filepath.Join(root, "usr/bin/holes"))
	require.NoError(t, err)
	for i := int64(0); i < 40; i++ {
		_, err := f.WriteAt([]byte("data"), i*3*65536)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	require.NoError(t, os.Symlink(strings.Repeat("long/", 30)+"target", filepath.Join(root, "slow-link")))
	require.NoError(t, os.Link(filepath.Join(root, "etc/hostname"), filepath.Join(root, "etc/hostname.hard")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "var/empty"), 0o755))
	_ = exec.Command("setfattr", "-n", "user.test", "-v", strings.Repeat("v", 300), filepath.Join(root, "etc/hostname")).Run()
	return root
}

// TestCheckCleanImages: every variant, empty and populated, and after the
// editor's own edits: e2fsck -fn calls them clean, and so must Check.
func TestCheckCleanImages(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck")
	tree := checkTree(t)
	for _, v := range checkVariants {
		for _, populated := range []bool{false, true} {
			name := v.name + map[bool]string{false: "/empty", true: "/populated"}[populated]
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				var img string
				if populated {
					img = testimg.MkfsFromDir(t, dir, "img", "64M", tree, v.args...)
				} else {
					img = testimg.Mkfs(t, dir, "img", "64M", v.args...)
				}
				requireCheckAgrees(t, img)
				// The editor's edits keep it clean for both judges.
				e, err := ext4edit.Open(img, nil)
				require.NoError(t, err)
				require.NoError(t, e.MkdirAll("/srv/a/b", 0o755))
				require.NoError(t, e.WriteFile("/srv/a/b/f", []byte(strings.Repeat("y", 70000)), 0o644))
				require.NoError(t, e.Symlink("/srv/a", "/srv/link"))
				if populated {
					require.NoError(t, e.Remove("/usr/share/many/file-with-a-long-name-0007"))
				}
				require.NoError(t, e.Close())
				requireCheckAgrees(t, img)
			})
		}
	}
}

// requireCheckAgrees runs both judges and fails unless they agree; it
// returns the report.
func requireCheckAgrees(t *testing.T, img string) *ext4edit.CheckReport {
	t.Helper()
	clean, out := testimg.Fsck(t, img)
	rep, err := ext4edit.Check(img, nil)
	require.NoError(t, err)
	var lines []string
	for _, p := range rep.Problems {
		lines = append(lines, p.String())
	}
	require.Equal(t, clean, rep.Clean, "e2fsck -fn clean=%v:\n%s\nCheck clean=%v:\n%s", clean, out, rep.Clean, strings.Join(lines, "\n"))
	return rep
}

// TestCheckCorruptions: one corruption at a time with debugfs; e2fsck
// -fn calls each dirty, and Check must too, with the kind named.
func TestCheckCorruptions(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := checkTree(t)
	cases := []struct {
		name    string
		request string
		kinds   []ext4edit.ProblemKind
	}{
		{"free a block in use", "freeb 0", []ext4edit.ProblemKind{ext4edit.KindBlockBitmap}},
		{"mark a free block used", "setb 12000", []ext4edit.ProblemKind{ext4edit.KindBlockBitmap}},
		{"free an inode in use", "freei /etc/hostname", []ext4edit.ProblemKind{ext4edit.KindInodeBitmap}},
		{"mark a free inode used", "seti <3000>", []ext4edit.ProblemKind{ext4edit.KindInodeBitmap}},
		{"clear an inode", "clri /etc/hostname", []ext4edit.ProblemKind{ext4edit.KindDirEntryInode}},
		{"unlink a file", "unlink /etc/hostname.hard", []ext4edit.ProblemKind{ext4edit.KindLinkCount}},
		{"link a file twice", "link /usr/bin/big /usr/bin/big2", []ext4edit.ProblemKind{ext4edit.KindLinkCount}},
		{"unlink a directory", "unlink /var/empty", []ext4edit.ProblemKind{ext4edit.KindUnconnected}},
		{"links count", "sif /usr/bin/big links_count 5", []ext4edit.ProblemKind{ext4edit.KindLinkCount}},
		{"size of a directory", "sif /var/empty size 8192", []ext4edit.ProblemKind{ext4edit.KindInodeSize}},
		{"i_blocks", "sif /usr/bin/big blocks 8", []ext4edit.ProblemKind{ext4edit.KindInodeBlocks}},
		{"bad mode", "sif /usr/bin/big mode 0170644", []ext4edit.ProblemKind{ext4edit.KindInodeMode}},
		{"dtime on a live inode", "sif /usr/bin/big dtime 12345", []ext4edit.ProblemKind{ext4edit.KindInodeDtime}},
		{"group free blocks", "set_bg 1 free_blocks_count 7\nset_bg 1 checksum calc", []ext4edit.ProblemKind{ext4edit.KindFreeCount}},
		{"group free inodes", "set_bg 0 free_inodes_count 9\nset_bg 0 checksum calc", []ext4edit.ProblemKind{ext4edit.KindFreeCount}},
		{"group dirs", "set_bg 0 used_dirs_count 1\nset_bg 0 checksum calc", []ext4edit.ProblemKind{ext4edit.KindFreeCount}},
		{"two files share a block", "sif /usr/bin/holes block[2] 0", nil},
		{"lost+found removed (clean to e2fsck -n)", "rmdir /lost+found", nil},
		{"directory file type", "sif /etc/hostname mode 0120644", []ext4edit.ProblemKind{ext4edit.KindDirFileType}},
		{"descriptor checksum (a count without checksums)", "set_bg 1 free_blocks_count 7", []ext4edit.ProblemKind{ext4edit.KindGroupDesc, ext4edit.KindFreeCount}},
		{"block bitmap moved", "set_bg 2 block_bitmap 5\nset_bg 2 checksum calc", nil},
		{"inode table moved", "set_bg 1 inode_table 100\nset_bg 1 checksum calc", nil},
		{"extent pointer", "sif /usr/bin/big block[2] 99999999", nil},
		{"superblock free blocks (e2fsck fixes silently)", "ssv free_blocks_count 12", nil},
		{"superblock inode count", "ssv inodes_count 100", nil},
		{"root not a directory", "sif <2> mode 0100644", []ext4edit.ProblemKind{ext4edit.KindRoot}},
		{"dirty bit", "dirty", nil},
		{"journal superblock", "sif <8> block[0] 0", nil},
		{"link count of root", "sif <2> links_count 9", []ext4edit.ProblemKind{ext4edit.KindLinkCount}},
		{"xattr block refcount", "sif /etc/hostname file_acl 0", nil},
		// Found against e2fsprogs' own test images (tests/f_clear_xattr):
		// an attribute block without the ext_attr feature.
		{"attribute block without ext_attr", "feature -ext_attr", []ext4edit.ProblemKind{ext4edit.KindXattrBlock}},
	}
	for _, v := range []string{"default", "no-metadata-csum", "ext3"} {
		var args []string
		for _, cv := range checkVariants {
			if cv.name == v {
				args = cv.args
			}
		}
		for _, tc := range cases {
			t.Run(v+"/"+tc.name, func(t *testing.T) {
				img := testimg.MkfsFromDir(t, t.TempDir(), "img", "64M", tree, args...)
				cmd := exec.Command("debugfs", "-w", "-f", "-", img)
				cmd.Stdin = strings.NewReader(tc.request + "\n")
				out, err := cmd.CombinedOutput()
				require.NoError(t, err, "debugfs -w -R %q: %s", tc.request, out)
				clean, fsckOut := testimg.Fsck(t, img)
				out = []byte(fsckOut)
				rep, err := ext4edit.Check(img, nil)
				require.NoError(t, err)
				if clean {
					require.True(t, rep.Clean, "e2fsck calls it clean, Check found: %v", rep.Problems)
					return
				}
				require.False(t, rep.Clean, "e2fsck -fn found problems Check did not:\n%s", out)
				if len(tc.kinds) > 0 {
					found := false
					for _, k := range tc.kinds {
						for _, p := range rep.Problems {
							found = found || p.Kind == k
						}
					}
					require.True(t, found, "none of %v among %v\ne2fsck:\n%s", tc.kinds, rep.Problems, out)
				}
			})
		}
	}
}

// TestCheckDuplicateName: a name twice in one directory block (found
// against e2fsprogs' tests/f_dup_de; debugfs cannot make one): e2fsck -fn
// and Check both call it dirty, Check naming the duplicate.
func TestCheckDuplicateName(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	for _, n := range []string{"hostname", "hostnamf"} {
		require.NoError(t, os.WriteFile(filepath.Join(tree, "etc", n), []byte(n+"\n"), 0o644))
	}
	for _, v := range checkVariants {
		t.Run(v.name, func(t *testing.T) {
			img := testimg.MkfsFromDir(t, t.TempDir(), "img", "16M", tree, v.args...)
			patchFirstBlock(t, img, "/etc", func(buf []byte) {
				i := bytes.Index(buf, []byte("hostnamf"))
				require.GreaterOrEqual(t, i, 0, "the name in /etc's first block")
				buf[i+7] = 'e'
			})
			requireBothDirty(t, img, ext4edit.KindDirEntry, `duplicate entry "hostname"`)
		})
	}
}

// TestCheckJournalSuperblockFields: the journal superblock's version
// fields, judged as e2fsck_journal_load judges them (found against
// e2fsprogs' tests/d_corrupt_journal_nr_users and f_bad_local_jnl): a V1
// superblock with features or users (clean to e2fsck -n, which offers to
// clear them and reads the journal as V1), an internal journal with
// several users, unknown features, mixed checksum versions (dirty: Check
// must name a journal problem).
func TestCheckJournalSuperblockFields(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "debugfs")
	be32 := func(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }
	cases := []struct {
		name  string
		edit  func(jsb []byte)
		dirty bool
	}{
		{"internal journal with two users", func(b []byte) { be32(b, 0x40, 2) }, true},
		{"V1 superblock with a feature", func(b []byte) { be32(b, 0x4, 3); be32(b, 0x28, 1) }, false},
		{"V1 superblock with a user", func(b []byte) { be32(b, 0x4, 3); be32(b, 0x40, 1) }, false},
		{"unknown incompatible feature", func(b []byte) { be32(b, 0x28, 0x1000) }, true},
		{"read-only feature", func(b []byte) { be32(b, 0x2C, 1) }, true},
		{"checksum v2 and v3", func(b []byte) { be32(b, 0x28, 0x8|0x10) }, true},
		{"checksum v1 and v2", func(b []byte) { be32(b, 0x24, 1); be32(b, 0x28, 0x8) }, true},
	}
	tree := checkTree(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Without metadata_csum the journal has no superblock
			// checksum for the edit to break.
			img := testimg.MkfsFromDir(t, t.TempDir(), "img", "64M", tree, "-O", "^metadata_csum")
			patchFirstBlock(t, img, "<8>", tc.edit)
			if tc.dirty {
				requireBothDirty(t, img, ext4edit.KindJournal, "")
				return
			}
			rep := requireCheckAgrees(t, img)
			require.True(t, rep.Clean, "Check: %v", rep.Problems)
		})
	}
}

// TestCheckEncryptedNames: a directory flagged encrypted whose names are
// plain (found against e2fsprogs' tests/f_short_encrypted_dirent): fscrypt
// names take at least one 16-byte block. e2fsck -fn and Check both call
// it dirty, Check naming the short entry.
func TestCheckEncryptedNames(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "d"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "d", "motd"), []byte("hi\n"), 0o644))
	img := testimg.MkfsFromDir(t, t.TempDir(), "img", "16M", tree, "-O", "encrypt")
	testimg.DebugfsWrite(t, img, "sif /d flags 0x80800\n") // extents | encrypt
	requireBothDirty(t, img, ext4edit.KindDirEntry, `encrypted entry "motd" is too short`)
}

// patchFirstBlock rewrites the first block of the file at path (a path
// or <ino>, as debugfs takes it) in the image file img through edit.
func patchFirstBlock(t *testing.T, img, path string, edit func(b []byte)) {
	t.Helper()
	blocks := testimg.DebugfsBlocks(t, img, path)
	require.NotEmpty(t, blocks)
	bs, ok := testimg.HeaderField(testimg.Dumpe2fs(t, img, true), "Block size")
	require.True(t, ok)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	buf := make([]byte, bs)
	off := int64(blocks[0]) * int64(bs)
	_, err = f.ReadAt(buf, off)
	require.NoError(t, err)
	edit(buf)
	_, err = f.WriteAt(buf, off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}

// requireBothDirty: e2fsck -fn finds problems in img, and Check finds one
// of kind whose message holds msg.
func requireBothDirty(t *testing.T, img string, kind ext4edit.ProblemKind, msg string) {
	t.Helper()
	clean, out := testimg.Fsck(t, img)
	require.False(t, clean, "e2fsck -fn calls it clean:\n%s", out)
	rep, err := ext4edit.Check(img, nil)
	require.NoError(t, err)
	found := false
	for _, p := range rep.Problems {
		found = found || (p.Kind == kind && strings.Contains(p.Message, msg))
	}
	require.True(t, found, "Check: %v\ne2fsck:\n%s", rep.Problems, out)
}

// TestCheckCasefoldNames: a name that is not UTF-8 in a casefolded
// directory of a filesystem whose encoding is strict (found against
// e2fsprogs' tests/f_bad_fname): e2fsck -fn and Check both call it dirty;
// without strict mode both call it clean.
func TestCheckCasefoldNames(t *testing.T) {
	testimg.Require(t, "mkfs.ext4", "e2fsck", "debugfs")
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "ci"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "ci", "Ax"), []byte("hi\n"), 0o644))
	for _, strict := range []bool{true, false} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			ext := "encoding=utf8"
			if strict {
				ext += ",encoding_flags=strict"
			}
			// Without metadata_csum: the patched name breaks no checksum.
			img := testimg.MkfsFromDir(t, t.TempDir(), "img", "16M", tree, "-O", "casefold,^metadata_csum", "-E", ext)
			testimg.DebugfsWrite(t, img, "sif /ci flags 0x40080000\n") // extents | casefold
			patchFirstBlock(t, img, "/ci", func(buf []byte) {
				i := bytes.Index(buf, []byte("Ax"))
				require.GreaterOrEqual(t, i, 0)
				buf[i+1] = 0xff
			})
			if strict {
				requireBothDirty(t, img, ext4edit.KindDirEntry, "illegal UTF-8")
			} else {
				rep := requireCheckAgrees(t, img)
				require.True(t, rep.Clean, "Check: %v", rep.Problems)
			}
		})
	}
}
