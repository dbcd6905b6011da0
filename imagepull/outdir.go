package imagepull

import (
	"fmt"
	"os"
)

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
