//go:build linux

package ext4edit_test

// Minimal reproductions of editor bugs found by the crash, replay,
// corrupt-image and fuzz tests (see also TestCrashJournalStartWithoutRecoverFlag
// and TestCrashNoJournalOrder in crash_test.go).

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestReproOpenFileOutlivesItsInode: a File from Create keeps writing to
// its inode number after the name is removed; once another file reuses the
// inode, File.Close maps the stale extents and size into it. The other
// file's contents change and e2fsck finds i_blocks and bitmap errors.
func TestReproOpenFileOutlivesItsInode(t *testing.T) {
	testimg.Require(t, "e2fsck")
	p := filepath.Join(t.TempDir(), "i.img")
	img, err := ext4edit.Mkfs(p, 16<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	f, err := img.Create("/f", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := img.Remove("/f"); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteFile("/g", []byte("hello"), 0o644); err != nil { // reuses /f's inode
		t.Fatal(err)
	}
	closeErr := f.Close()
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if b, err := ro.ReadFile("/g"); err != nil || !bytes.Equal(b, []byte("hello")) {
		t.Errorf("/g holds %d bytes (%v) after closing a File whose name was removed (File.Close: %v); want \"hello\"", len(b), err, closeErr)
	}
	if ok, out := testimg.Fsck(t, p); !ok {
		t.Errorf("e2fsck -fn:\n%s", out)
	}
}

// TestReproReadOnlyReplayFileData: a read-only open of an image whose
// journal logs file data blocks (data=journal, or debugfs's jw) replays
// metadata into its in-memory overlay, but fileReader.ReadAt reads file
// data straight from the device (file.go), bypassing the overlay: the
// file shows its stale home blocks. A read-write open (replay written
// home) shows the logged data.
func TestReproReadOnlyReplayFileData(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "dumpe2fs", "cp")
	dir := t.TempDir()
	a := testimg.Mkfs(t, dir, "a.img", "64M")
	b := filepath.Join(dir, "b.img")
	jtCopy(t, a, b)
	data := filepath.Join(dir, "data")
	want := bytes.Repeat([]byte("journaled data "), 1000)
	if err := os.WriteFile(data, want, 0o644); err != nil {
		t.Fatal(err)
	}
	testimg.DebugfsWrite(t, b, "write "+data+" /f\n")
	rpLogDiff(t, a, b, "jo") // log every changed block, data included, into a's journal
	ro, err := ext4edit.Open(a, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ro.ReadFile("/f")
	ro.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("read-only open of the unreplayed image: /f has %d bytes, not the logged contents (first bytes %q)", len(got), got[:min(16, len(got))])
	}
	rw, err := ext4edit.Open(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err = rw.ReadFile("/f")
	rw.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("after a read-write replay /f is wrong too: %d bytes, %v", len(got), err)
	}
}

// TestReproReadFileHugeSize: ReadFile allocated the inode's i_size before
// reading, so a corrupt i_size (2^62 here) panicked with "makeslice: len
// out of range". Fixed with a bounds check in ReadFile (i_size beyond
// 2^32 blocks is ErrCorrupt). Sizes below that bound but beyond memory
// still make ReadFile fail to allocate, as os.ReadFile would.
func TestReproReadFileHugeSize(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := testimg.MkfsFromDir(t, dir, "i.img", "8M", src, "-b", "1024", "-O", "^metadata_csum")
	m := coReImap.FindStringSubmatch(testimg.Debugfs(t, img, "imap /f"))
	if m == nil {
		t.Fatal("debugfs imap /f: no location")
	}
	blk, _ := strconv.ParseInt(m[1], 10, 64)
	off, _ := strconv.ParseInt(m[2], 16, 64)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	coPut32(b[:], 0, 0)
	f.WriteAt(b[:], blk*1024+off+0x4) // i_size_lo
	coPut32(b[:], 0, 1<<30)
	f.WriteAt(b[:], blk*1024+off+0x6C) // i_size_high: 2^62 bytes
	f.Close()
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("ReadFile panics on a corrupt i_size: %v", p)
		}
	}()
	if _, err := im.ReadFile("/f"); !errors.Is(err, ext4edit.ErrCorrupt) {
		t.Errorf("ReadFile with i_size 2^62: %v; want ErrCorrupt", err)
	}
}

// TestReproFailedWriteOrphansOpenFile: WriteFile on a file that has an
// open File truncates it (orphaning the File: its data is to be dropped at
// Close), then fails with ErrNoSpace and is rolled back; the orphaning is
// not rolled back, so File.Close silently drops the data written through
// it (and returns nil). Found by FuzzEdits (seed orphan-rollback).
func TestReproFailedWriteOrphansOpenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "i.img")
	img, err := ext4edit.Mkfs(p, 4<<20, &ext4edit.MkfsOptions{BlockSize: 1024, NoJournal: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteFile("/b", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ { // fill the image
		if err := img.WriteFile("/fill"+strconv.Itoa(i), make([]byte, 256<<10), 0o644); err != nil {
			if !errors.Is(err, ext4edit.ErrNoSpace) {
				t.Fatal(err)
			}
			break
		}
	}
	f, err := img.Create("/b", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("x"), 5000)
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := img.WriteFile("/b", make([]byte, 1<<20), 0o644); !errors.Is(err, ext4edit.ErrNoSpace) {
		t.Fatalf("WriteFile on a full image: %v, want ErrNoSpace", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := img.ReadFile("/b")
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("/b holds %d bytes (%v) after a failed (rolled back) WriteFile; want the %d bytes written through the open File", len(got), err, len(want))
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
}
