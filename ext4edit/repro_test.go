//go:build linux

package ext4edit_test

// Minimal reproductions of editor bugs found by the crash, replay,
// corrupt-image and fuzz tests (see also TestCrashJournalStartWithoutRecoverFlag
// and TestCrashNoJournalOrder in crash_test.go).

import (
	"bytes"
	"os"
	"path/filepath"
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
	img, err := ext4edit.Create(p, 16<<20, nil)
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
