//go:build linux

package ext4edit_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestCrashSecondCommit sweeps the crash points of a session that commits
// twice (a Sync between edits) into the same inode-table, bitmap and
// directory blocks. The first commit turns blocks that read as zeros (a
// lazily initialised inode table) into live metadata; a commit that still
// believed them zero on disk would pre-write zeros over them before its
// log is durable, and a crash there would lose what the first commit made.
// Every crash must recover to the pristine tree, the tree after the first
// commit ("mid") or the final one, and never before "mid" once the first
// commit has returned.
func TestCrashSecondCommit(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs", "cp")
	dir := t.TempDir()
	pristine := testimg.Mkfs(t, dir, "pristine.img", "64M", "-E", "lazy_itable_init=1")
	first := func(img *ext4edit.Image) error {
		if err := img.WriteFile("/a", jtPattern(3000, 1), 0o644); err != nil {
			return err
		}
		return img.Mkdir("/d", 0o755)
	}
	second := func(img *ext4edit.Image) error {
		if err := img.WriteFile("/b", jtPattern(5000, 2), 0o600); err != nil {
			return err
		}
		if err := img.WriteFile("/d/c", jtPattern(100, 3), 0o644); err != nil {
			return err
		}
		return img.Chmod("/a", 0o640)
	}
	edit := func(img *ext4edit.Image) error {
		if err := first(img); err != nil {
			return err
		}
		if err := img.Sync(); err != nil {
			return err
		}
		return second(img)
	}
	snap := func(img string) jtTree {
		tr, err := jtSnap(img)
		if err != nil {
			t.Fatalf("snapshot of %s: %v", img, err)
		}
		return tr
	}
	midImg := filepath.Join(dir, "mid.img")
	if err := crSession(t, pristine, midImg, &crDev{mode: crNone, crashAt: -1}, first); err != nil {
		t.Fatal(err)
	}
	cleanImg := filepath.Join(dir, "clean.img")
	clean := &crDev{mode: crNone, crashAt: -1}
	if err := crSession(t, pristine, cleanImg, clean, edit); err != nil {
		t.Fatal(err)
	}
	trees := []struct {
		name string
		tree jtTree
	}{{"old", snap(pristine)}, {"mid", snap(midImg)}, {"new", snap(cleanImg)}}
	W := len(clean.writes)
	// The first commit has returned once its last Sync is done; its syncs
	// are those up to the Sync() call, i.e. every sync before the second
	// commit's first write. The second commit starts after the session's
	// first len(firstSyncs) syncs: count them from a run of first alone.
	firstRun := &crDev{mode: crNone, crashAt: -1}
	if err := crSession(t, pristine, filepath.Join(dir, "first.img"), firstRun, func(img *ext4edit.Image) error {
		if err := first(img); err != nil {
			return err
		}
		return img.Sync()
	}); err != nil {
		t.Fatal(err)
	}
	firstWrites, firstSyncs := len(firstRun.writes), len(firstRun.syncAt)
	tried := map[string]int{}
	check := func(mode crMode, at, events int, afterFirst bool) {
		crashed := filepath.Join(t.TempDir(), "crashed.img")
		dev := &crDev{mode: mode, crashAt: at}
		if err := crSession(t, pristine, crashed, dev, edit); err == nil && at < events {
			t.Fatalf("%v crash at %d: the session did not see the crash", mode, at)
		}
		img, err := ext4edit.Open(crashed, nil)
		if err != nil {
			t.Fatalf("%v crash at %d: open (our replay): %v", mode, at, err)
		}
		if err := img.Close(); err != nil {
			t.Fatalf("%v crash at %d: close after replay: %v", mode, at, err)
		}
		if code, out := jtFsck(crashed, "-fn"); code != 0 {
			t.Fatalf("%v crash at %d: e2fsck -fn after our replay (exit %d):\n%s", mode, at, code, out)
		}
		got := snap(crashed)
		for i, c := range trees {
			if jtDiff(got, c.tree, 1) != "" {
				continue
			}
			if afterFirst && i == 0 {
				t.Fatalf("%v crash at %d, after the first commit returned: the pristine tree came back", mode, at)
			}
			tried[fmt.Sprintf("%v:%s", mode, c.name)]++
			return
		}
		t.Fatalf("%v crash at %d: the tree is none of old, mid, new:\nvs mid:\n%s\nvs new:\n%s", mode, at, jtDiff(got, trees[1].tree, 8), jtDiff(got, trees[2].tree, 8))
	}
	// die: the writes stop before write n.
	for n := 0; n <= W; n++ {
		check(crDie, n, W, n >= firstWrites)
	}
	// drop: at event e (writes and syncs interleaved) the unsynced writes
	// are lost.
	for e := 0; e <= W+len(clean.syncAt); e++ {
		check(crDrop, e, W+len(clean.syncAt), e >= firstWrites+firstSyncs)
	}
	t.Logf("%d writes, %d syncs (first commit: %d writes, %d syncs); outcomes %v", W, len(clean.syncAt), firstWrites, firstSyncs, tried)
}
