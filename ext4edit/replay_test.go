//go:build linux

package ext4edit_test

// Journal replay cross-checks. Transactions written by the kernel (an
// image copied while mounted, after sync: needs_recovery set and a live
// log) and by debugfs's journal commands (jo/jw/jc) are replayed by a
// read-write ext4edit.Open on one copy and by e2fsck -fy on a twin copy;
// the trees and the block and inode bitmaps (dumpe2fs, per group) must be
// equal, and e2fsck -fn must find our replay clean. A read-only open of
// the unreplayed image must show the same tree without changing the file.
// Images the editor must not write are refused: an external journal, a
// journal with unknown incompat features.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// rpBitmaps returns every group's free block and free inode ranges as
// dumpe2fs prints them.
func rpBitmaps(t *testing.T, img string) string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(testimg.Dumpe2fs(t, img, false), "\n") {
		// Per-group lines only: the superblock's free totals lag behind
		// after a kernel session (e2fsck updates them, a replay need not).
		indented := strings.HasPrefix(l, " ")
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "Group ") || indented && (strings.HasPrefix(l, "Free blocks: ") || strings.HasPrefix(l, "Free inodes: ")) {
			if i := strings.Index(l, " ["); strings.HasPrefix(l, "Group ") && i > 0 {
				l = l[:i] // flags (ITABLE_ZEROED, ...) may differ harmlessly
			}
			if i := strings.Index(l, " csum "); i > 0 {
				l = l[:i]
			}
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func rpLineDiff(a, b string, max int) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, fmt.Sprintf("  ours:   %s\n  e2fsck: %s", x, y))
			if len(out) == max {
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// rpNeedsRecovery reports whether img has needs_recovery set and a
// non-empty log.
func rpNeedsRecovery(t *testing.T, img string) bool {
	t.Helper()
	h := testimg.Dumpe2fs(t, img, true)
	start, _ := testimg.HeaderField(h, "Journal start")
	return strings.Contains(h, "needs_recovery") && start != 0
}

// rpCrossCheck replays img three ways and compares: read-only open (in
// memory), read-write open (ours), e2fsck -fy. want, when non-nil, is the
// tree every replay must produce.
func rpCrossCheck(t *testing.T, img string, want jtTree) {
	t.Helper()
	if !rpNeedsRecovery(t, img) {
		t.Fatalf("%s: no needs_recovery or an empty log; nothing to replay", img)
	}
	// Read-only: replayed in memory, the file untouched.
	before := jtDigest(img)
	roTree, err := jtSnap(img)
	if err != nil {
		t.Fatalf("read-only open of the unreplayed image: %v", err)
	}
	if jtDigest(img) != before {
		t.Errorf("a read-only open changed the image file")
	}
	ours, theirs := img+".ours", img+".e2fsck"
	jtCopy(t, img, ours)
	jtCopy(t, img, theirs)
	im, err := ext4edit.Open(ours, nil)
	if err != nil {
		t.Fatalf("read-write open (our replay): %v", err)
	}
	if err := im.Close(); err != nil {
		t.Fatalf("close after our replay: %v", err)
	}
	if rpNeedsRecovery(t, ours) {
		t.Errorf("our replay left needs_recovery or a log behind")
	}
	if code, out := jtFsck(ours, "-fn"); code != 0 {
		t.Errorf("e2fsck -fn after our replay (exit %d):\n%s", code, out)
	}
	if code, out := jtFsck(theirs, "-fy"); code > 1 {
		t.Fatalf("e2fsck -fy (exit %d):\n%s", code, out)
	} else if fx := jtFixes(out); len(fx) > 0 {
		t.Logf("e2fsck -fy repaired after its replay (applies to both copies): %v", fx)
	}
	oursTree, err := jtSnap(ours)
	if err != nil {
		t.Fatalf("snapshot after our replay: %v", err)
	}
	theirTree, err := jtSnap(theirs)
	if err != nil {
		t.Fatalf("snapshot after e2fsck: %v", err)
	}
	if d := jtDiff(oursTree, theirTree, 10); d != "" {
		t.Errorf("our replay and e2fsck's give different trees:\n%s", d)
	}
	if d := jtDiff(roTree, oursTree, 10); d != "" {
		t.Errorf("the read-only (in-memory) replay differs from the written one:\n%s", d)
	}
	if want != nil {
		if d := jtDiff(oursTree, want, 10); d != "" {
			t.Errorf("our replay differs from the expected tree:\n%s", d)
		}
	}
	if a, b := rpBitmaps(t, ours), rpBitmaps(t, theirs); a != b {
		t.Errorf("block/inode bitmaps differ after our replay and e2fsck's:\n%s", rpLineDiff(a, b, 8))
	}
	t.Logf("%s: replayed alike by us and e2fsck: %d names", filepath.Base(img), len(oursTree))
}

// rpSnapHost snapshots a mounted tree with system calls, in jtTree form.
func rpSnapHost(root string) (jtTree, error) {
	tr := jtTree{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(p, root)), "/")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := jtNode{Mode: uint16(st.Mode), UID: st.Uid, GID: st.Gid, Size: uint64(st.Size), Links: uint16(st.Nlink)}
		buf := make([]byte, 4096)
		sz, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		var names, xs []string
		for _, x := range strings.Split(string(buf[:sz]), "\x00") {
			if x != "" {
				names = append(names, x)
			}
		}
		sort.Strings(names)
		for _, x := range names {
			v := make([]byte, 65536)
			vn, err := unix.Lgetxattr(p, x, v)
			if err != nil {
				return err
			}
			xs = append(xs, x+"="+jtSHA(v[:vn]))
		}
		n.Xattrs = strings.Join(xs, ",")
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.SHA = jtSHA(b)
		case unix.S_IFLNK:
			if n.Target, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			n.Dev = fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		}
		tr[rel] = n
		return nil
	})
	return tr, err
}

// rpKernelPhase is one batch of work done through the mounted kernel.
type rpKernelPhase struct {
	name string
	do   func(t *testing.T, mnt string)
}

func rpKernelPhases() []rpKernelPhase {
	must := func(t *testing.T, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	return []rpKernelPhase{
		{"create", func(t *testing.T, mnt string) {
			for d := 0; d < 8; d++ {
				dir := filepath.Join(mnt, fmt.Sprintf("dir%d", d), "sub")
				must(t, os.MkdirAll(dir, 0o755))
				for f := 0; f < 25; f++ {
					size := (f * f * 997) % (300 << 10)
					p := filepath.Join(dir, fmt.Sprintf("file%02d", f))
					must(t, os.WriteFile(p, jtPattern(size, byte(d*31+f)), 0o644))
				}
				must(t, os.Symlink(fmt.Sprintf("sub/file%02d", d), filepath.Join(mnt, fmt.Sprintf("dir%d", d), "link")))
				must(t, os.Symlink("/"+strings.Repeat("slow/", 20), filepath.Join(mnt, fmt.Sprintf("dir%d", d), "slowlink")))
				must(t, os.Link(filepath.Join(dir, "file03"), filepath.Join(mnt, fmt.Sprintf("dir%d", d), "hard")))
				must(t, unix.Lsetxattr(filepath.Join(dir, "file01"), "user.k", bytes.Repeat([]byte("x"), 300+d), 0))
				must(t, os.Chmod(filepath.Join(dir, "file02"), 0o4750))
				must(t, os.Lchown(filepath.Join(dir, "file04"), 1000+d, 100))
			}
			must(t, syscall.Mkfifo(filepath.Join(mnt, "fifo"), 0o600))
			must(t, syscall.Mknod(filepath.Join(mnt, "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		}},
		{"churn", func(t *testing.T, mnt string) {
			for d := 0; d < 8; d += 2 {
				must(t, os.RemoveAll(filepath.Join(mnt, fmt.Sprintf("dir%d", d), "sub")))
			}
			for d := 1; d < 8; d += 2 {
				must(t, os.Rename(filepath.Join(mnt, fmt.Sprintf("dir%d", d)), filepath.Join(mnt, fmt.Sprintf("moved%d", d))))
				must(t, os.WriteFile(filepath.Join(mnt, fmt.Sprintf("moved%d", d), "sub", "file05"), jtPattern(12345, byte(d)), 0o600))
				must(t, os.Truncate(filepath.Join(mnt, fmt.Sprintf("moved%d", d), "sub", "file20"), 1000))
			}
			big := filepath.Join(mnt, "bigdir")
			must(t, os.Mkdir(big, 0o755))
			for i := 0; i < 600; i++ {
				must(t, os.WriteFile(filepath.Join(big, fmt.Sprintf("entry-with-a-long-name-%05d", i)), nil, 0o644))
			}
		}},
		{"reuse", func(t *testing.T, mnt string) {
			// Freed blocks reused at once: the kernel logs revoke records.
			for i := 0; i < 600; i += 3 {
				must(t, os.Remove(filepath.Join(mnt, "bigdir", fmt.Sprintf("entry-with-a-long-name-%05d", i))))
			}
			must(t, os.RemoveAll(filepath.Join(mnt, "moved1")))
			for i := 0; i < 40; i++ {
				must(t, os.WriteFile(filepath.Join(mnt, "bigdir", fmt.Sprintf("new%02d", i)), jtPattern(20000+i*100, byte(i)), 0o644))
			}
		}},
	}
}

// TestReplayKernelTransactions: the kernel writes, an image copy taken
// while mounted (after sync) holds a live log; our replay and e2fsck's
// must agree, and give the tree the kernel showed at the copy.
func TestReplayKernelTransactions(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "dumpe2fs", "cp")
	testimg.RequireKernelMount(t)
	for _, v := range []struct {
		name string
		opts []string
	}{
		{"1k-csum", nil},
		{"4k-csum", []string{"-b", "4096"}},
		{"1k-nocsum", []string{"-O", "^metadata_csum"}},
		{"ext3", []string{"-t", "ext3"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			img := testimg.Mkfs(t, dir, "k.img", "64M", v.opts...)
			mnt, unmount := testimg.Mount(t, img, false)
			defer unmount()
			for i, ph := range rpKernelPhases() {
				ph.do(t, mnt)
				syscall.Sync()
				cp := filepath.Join(dir, fmt.Sprintf("copy%d-%s.img", i, ph.name))
				jtCopy(t, img, cp)
				want, err := rpSnapHost(mnt)
				if err != nil {
					t.Fatal(err)
				}
				t.Run(ph.name, func(t *testing.T) {
					if !rpNeedsRecovery(t, cp) {
						t.Skip("the kernel left no live log in the copy")
					}
					t.Logf("journal: %s", rpJournalSummary(t, cp))
					rpCrossCheck(t, cp, want)
				})
			}
		})
	}
}

var rpLogdumpTxn = regexp.MustCompile(`(?m)type 2 \(commit block\)`)
var rpLogdumpRevoke = regexp.MustCompile(`(?m)type 5 \(revoke table\)`)

// rpJournalSummary counts the committed transactions and revoke blocks
// debugfs's logdump sees.
func rpJournalSummary(t *testing.T, img string) string {
	out := testimg.Debugfs(t, img, "logdump")
	feat := ""
	for _, l := range strings.Split(testimg.Dumpe2fs(t, img, true), "\n") {
		if strings.HasPrefix(l, "Journal features:") {
			feat = strings.TrimSpace(strings.TrimPrefix(l, "Journal features:"))
		}
	}
	return fmt.Sprintf("%d commits, %d revoke blocks, features %s",
		len(rpLogdumpTxn.FindAllString(out, -1)), len(rpLogdumpRevoke.FindAllString(out, -1)), feat)
}

// TestReplayDebugfsTransactions: debugfs logs, in several transactions,
// every block a debugfs edit session changed (one block twice, and a
// garbage block that a later transaction revokes). Replays must give the
// edited tree and leave the revoked block alone.
func TestReplayDebugfsTransactions(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "dumpe2fs", "debugfs", "cp")
	for _, v := range []struct {
		name string
		jo   string
		opts []string
	}{
		{"1k-nocsum", "jo", nil},
		{"1k-csum-v2", "jo -c -v 2", nil},
		{"1k-csum-v3", "jo -c", nil},
		{"4k-csum-v3", "jo -c", []string{"-b", "4096"}},
		{"4k-nocsum-no64bit", "jo", []string{"-b", "4096", "-O", "^metadata_csum,^64bit"}},
	} {
		t.Run(v.name, func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "src")
			for i := 0; i < 20; i++ {
				p := filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d", i))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, jtPattern(i*3000, byte(i)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			a := testimg.MkfsFromDir(t, dir, "a.img", "64M", src, v.opts...)
			b := filepath.Join(dir, "b.img")
			jtCopy(t, a, b)
			testimg.DebugfsWrite(t, b, "mkdir /journaled\nwrite "+filepath.Join(src, "d1/f05")+" /journaled/copy\n"+
				"rm /d0/f00\nrm /d2/f10\nsymlink /journaled/link /d3/f11\nmkdir /journaled/sub\n"+
				"ea_set /d3/f15 user.note journaled\nsif /d1/f09 mode 0100600\nsif /d1/f09 uid 1234\n")
			testimg.RequireClean(t, b)
			want, err := jtSnap(b)
			if err != nil {
				t.Fatal(err)
			}
			revoked := rpLogDiff(t, a, b, v.jo)
			t.Logf("journal: %s", rpJournalSummary(t, a))
			rpCrossCheck(t, a, want)
			// The revoked garbage must not have reached its home.
			bs, _ := testimg.HeaderField(testimg.Dumpe2fs(t, a, true), "Block size")
			blk := make([]byte, bs)
			f, err := os.Open(a + ".ours")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ReadAt(blk, int64(revoked*bs)); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(blk, bytes.Repeat([]byte{0xEE}, int(bs))) {
				t.Errorf("block %d was revoked by a later transaction but our replay wrote it", revoked)
			}
		})
	}
}

// rpLogDiff logs into a's journal, with debugfs, every block where b
// differs from a: two transactions with a revoked garbage block between
// them, the first block logged in both. It returns the revoked block.
func rpLogDiff(t *testing.T, a, b, jo string) uint64 {
	t.Helper()
	blocks, data, ab, bs := testimg.BlockDiff(t, a, b)
	count, _ := testimg.HeaderField(testimg.Dumpe2fs(t, a, true), "Block count")
	if len(blocks) < 4 {
		t.Fatalf("only %d blocks differ", len(blocks))
	}
	dir := filepath.Dir(a)
	half := len(blocks) / 2
	first := filepath.Join(dir, "first")
	// Transaction 1 logs the first half plus a stale copy (a's) of the
	// first block of the second half; transaction 3 logs the second half,
	// so the newer copy must win.
	stale := blocks[half]
	var staleOff int
	fmt.Sscan(stale, &staleOff)
	t1 := append(append([]byte(nil), data[:half*bs]...), ab[staleOff*bs:(staleOff+1)*bs]...)
	second, junk := filepath.Join(dir, "second"), filepath.Join(dir, "junk")
	for _, w := range []struct {
		p string
		b []byte
	}{{first, t1}, {second, data[half*bs:]}, {junk, bytes.Repeat([]byte{0xEE}, bs)}} {
		if err := os.WriteFile(w.p, w.b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	garbage := count - 2
	script := fmt.Sprintf("%s\njw -b %s %s\njw -b %d %s\njw -r %d\njw -b %s %s\njc\n",
		jo, strings.Join(append(append([]string(nil), blocks[:half]...), stale), ","), first,
		garbage, junk, garbage, strings.Join(blocks[half:], ","), second)
	out := testimg.DebugfsWrite(t, a, script)
	if strings.Contains(out, "rror") {
		t.Fatalf("debugfs journal writes:\n%s", out)
	}
	return garbage
}

// TestReplayRefusals: an external journal and a journal with unknown
// incompat features must not be written.
func TestReplayRefusals(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs", "cp")
	t.Run("external-journal", func(t *testing.T) {
		dir := t.TempDir()
		img := rpExternalJournalImage(t, dir)
		before := jtDigest(img)
		im, err := ext4edit.Open(img, nil)
		if err == nil {
			err = im.Mkdir("/x", 0o755)
			if cerr := im.Close(); err == nil {
				err = cerr
			}
		}
		if !errors.Is(err, ext4edit.ErrUnsupportedFeature) || !strings.Contains(err.Error(), "external journal") {
			t.Errorf("writing an image with an external journal: %v; want ErrUnsupportedFeature naming the external journal", err)
		}
		if jtDigest(img) != before {
			t.Errorf("the refused image changed")
		}
		// Reading is fine.
		if _, err := jtSnap(img); err != nil {
			t.Errorf("read-only open of an image with an external journal: %v", err)
		}
	})
	t.Run("journal-device", func(t *testing.T) {
		dir := t.TempDir()
		jdev := testimg.Mkfs(t, dir, "jdev.img", "8M", "-O", "journal_dev", "-b", "4096")
		for _, ro := range []bool{true, false} {
			if _, err := ext4edit.Open(jdev, &ext4edit.Options{ReadOnly: ro}); !errors.Is(err, ext4edit.ErrUnsupportedFeature) {
				t.Errorf("open (read-only %v) of a journal device: %v; want ErrUnsupportedFeature", ro, err)
			}
		}
	})
	t.Run("unknown-journal-incompat", func(t *testing.T) {
		dir := t.TempDir()
		img := testimg.Mkfs(t, dir, "u.img", "64M")
		rpPatchJournalSB(t, img, func(jsb []byte) {
			jsb[0x28+3] |= 0x80 // s_feature_incompat: bit 7, unknown
		})
		before := jtDigest(img)
		im, err := ext4edit.Open(img, nil)
		stage := "open"
		if err == nil {
			stage = "mkdir"
			if err = im.Mkdir("/x", 0o755); err == nil {
				stage = "close"
			}
			if cerr := im.Close(); err == nil {
				err = cerr
			}
		}
		if !errors.Is(err, ext4edit.ErrUnsupportedFeature) {
			t.Errorf("writing with unknown journal incompat features: %v; want ErrUnsupportedFeature", err)
		} else {
			t.Logf("refused at %s: %v", stage, err)
		}
		if jtDigest(img) != before {
			t.Errorf("the refused image changed")
		}
		// The same journal with a log to replay: the open must fail.
		testimg.DebugfsWrite(t, img, "feature needs_recovery\n")
		rpPatchJournalSB(t, img, func(jsb []byte) { jsb[0x1C+3] = 1 }) // s_start = 1
		for _, ro := range []bool{true, false} {
			_, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: ro})
			if err == nil {
				t.Errorf("open (read-only %v) of an image whose journal needs replay with unknown features succeeded", ro)
			} else if !errors.Is(err, ext4edit.ErrUnsupportedFeature) {
				t.Logf("open (read-only %v) refused, but the error does not wrap ErrUnsupportedFeature: %v", ro, err)
			}
		}
	})
}

// rpPatchJournalSB edits the journal superblock (journal inode block 0)
// of an image whose journal has no checksums.
func rpPatchJournalSB(t *testing.T, img string, edit func([]byte)) {
	t.Helper()
	blks := testimg.DebugfsBlocks(t, img, "<8>")
	bs, _ := testimg.HeaderField(testimg.Dumpe2fs(t, img, true), "Block size")
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	jsb := make([]byte, 1024)
	off := int64(blks[0] * bs)
	if _, err := f.ReadAt(jsb, off); err != nil {
		t.Fatal(err)
	}
	if jsb[0] != 0xC0 || jsb[1] != 0x3B {
		t.Fatalf("no journal superblock at block %d", blks[0])
	}
	edit(jsb)
	if _, err := f.WriteAt(jsb, off); err != nil {
		t.Fatal(err)
	}
}

// rpExternalJournalImage makes an image whose journal lives on another
// device: with mke2fs -J device= on a loop device where possible, else by
// pointing the superblock at an external journal with debugfs.
func rpExternalJournalImage(t *testing.T, dir string) string {
	t.Helper()
	jdev := testimg.Mkfs(t, dir, "jdev.img", "8M", "-O", "journal_dev", "-b", "4096")
	if os.Geteuid() == 0 {
		if out, err := exec.Command("losetup", "-f", "--show", jdev).CombinedOutput(); err == nil {
			loop := strings.TrimSpace(string(out))
			defer exec.Command("losetup", "-d", loop).Run()
			img := testimg.Mkfs(t, dir, "ext.img", "64M", "-b", "4096", "-J", "device="+loop)
			return img
		}
	}
	img := testimg.Mkfs(t, dir, "ext.img", "64M", "-b", "4096", "-O", "^has_journal")
	testimg.DebugfsWrite(t, img, "feature has_journal\nssv journal_dev 0x0701\nssv journal_uuid 01234567-89ab-cdef-0123-456789abcdef\n")
	return img
}
