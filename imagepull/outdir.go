package imagepull

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OutputPerm is the mode a pull's outputs (rootfs.ext4, image.json, the
// boot artifacts) are created with, less the umask: as readable as any
// file the user makes, so a VMM running as another user of their group
// can open them (os.CreateTemp's 0600 would hide them).
const OutputPerm = 0o644

// createTemp makes a new hidden file beside OUTDIR/name, named
// "."+name+".tmp-" and a random suffix (what removeStaleTemps looks for).
// It is made with O_EXCL and never through a symlink (openNoFollow), and
// with OutputPerm: the kernel applies the umask at creation, which
// reading the umask (syscall.Umask sets it, racing other goroutines)
// could not do safely.
func createTemp(outdir, name string) (*os.File, error) {
	for range 16 {
		p := filepath.Join(outdir, "."+name+".tmp-"+rand.Text())
		f, err := openNoFollow(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, OutputPerm)
		if errors.Is(err, fs.ErrExist) {
			continue // a name taken already: draw another
		}
		return f, err
	}
	return nil, fmt.Errorf("%s: no free temporary name for %s", outdir, name)
}

// openNoFollow opens a file in OUTDIR that must be a regular file reached
// without a symlink: OUTDIR may be writable by others than the puller, and
// a symlink planted there must not make a pull create, write or read a
// file elsewhere. O_NOFOLLOW refuses a final symlink where the system has
// it; the check after the open (the name holds the very file opened, and
// it is regular) covers the rest, FIFOs and devices included.
func openNoFollow(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag|oNoFollow, perm)
	if err != nil {
		if fi, lerr := os.Lstat(name); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: is a symlink; refusing to open it", name)
		}
		return nil, err
	}
	if err := sameRegular(name, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sameRegular checks that name holds f (not a symlink to it, not another
// file put there since), and that f is a regular file.
func sameRegular(name string, f *os.File) error {
	ffi, err := f.Stat()
	if err != nil {
		return err
	}
	lfi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if !lfi.Mode().IsRegular() || !os.SameFile(lfi, ffi) {
		return fmt.Errorf("%s: not the regular file opened (a symlink, or replaced); refusing it", name)
	}
	return nil
}
