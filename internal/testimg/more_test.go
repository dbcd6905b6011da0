package testimg

import (
	"os"
	"path/filepath"
	"testing"
)

func TestImageDigest(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	f, err := os.Create(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 5000, 1 << 20, 40<<20 + 17, 64<<20 - 3} {
		if _, err := f.WriteAt([]byte("xyz"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	d := ImageDigest(t, a)

	b := filepath.Join(dir, "b")
	CopySparse(t, a, b)
	if got := ImageDigest(t, b); got != d {
		t.Fatalf("sparse copy digests differently")
	}
	// Zeros written into a hole change nothing.
	g, err := os.OpenFile(b, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt(make([]byte, 1<<20), 20<<20); err != nil {
		t.Fatal(err)
	}
	if got := ImageDigest(t, b); got != d {
		t.Fatalf("zeros written into a hole changed the digest")
	}
	// One byte anywhere does.
	for _, off := range []int64{4095, 30 << 20, 64<<20 - 1} {
		old := make([]byte, 1)
		if _, err := g.ReadAt(old, off); err != nil {
			t.Fatal(err)
		}
		if _, err := g.WriteAt([]byte{old[0] + 1}, off); err != nil {
			t.Fatal(err)
		}
		if got := ImageDigest(t, b); got == d {
			t.Fatalf("a byte at %d left the digest unchanged", off)
		}
		if _, err := g.WriteAt(old, off); err != nil {
			t.Fatal(err)
		}
		if got := ImageDigest(t, b); got != d {
			t.Fatalf("restoring the byte at %d did not restore the digest", off)
		}
	}
	g.Close()
}
