package testimg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
)

// MkfsLazy formats a sparse file of size bytes with the mkfs binary at
// mkfs; the lazy options keep even a 1 TiB image to a few MiB of written
// blocks, cheap to copy. It returns errors (benchmarks call it outside a
// test's control flow).
func MkfsLazy(mkfs, img string, size int64) error {
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	out, err := exec.Command(mkfs, "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4: %v\n%s", err, out)
	}
	return nil
}

// SparseCopySynced copies src to dst keeping holes (sharing blocks where
// the filesystem can reflink) and flushes dst, so that a timed fsync
// writes only what the tool under test wrote. A system-wide sync follows
// (best effort): the host filesystem's own work left by the previous
// iteration (freeing the replaced copy's extents, its journal commits)
// is then done before the timer starts instead of landing in the next
// tool's fsync.
func SparseCopySynced(src, dst string) error {
	_ = os.Remove(dst)
	out, err := exec.Command("cp", "--sparse=always", "--reflink=auto", src, dst).CombinedOutput()
	if err != nil {
		return fmt.Errorf("cp --sparse=always %s: %v: %s", src, err, bytes.TrimSpace(out))
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_ = exec.Command("sync").Run()
	}
	return err
}
