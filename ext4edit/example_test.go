package ext4edit_test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// Mkfs formats a new filesystem in a file and returns it open for editing.
// Equal options give byte-identical images: the UUID and hash seed derive
// from Seed, and Time stamps what mkfs writes.
func ExampleMkfs() {
	dir, err := os.MkdirTemp("", "ext4edit-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	img, err := ext4edit.Mkfs(filepath.Join(dir, "rootfs.ext4"), 64<<20, &ext4edit.MkfsOptions{
		Label: "rootfs",
		Seed:  []byte("sha256:0123..."), // e.g. the image digest
		Time:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := img.MkdirAll("/etc/ssh", 0o755); err != nil {
		log.Fatal(err)
	}
	if err := img.WriteFile("/etc/hostname", []byte("vm-1\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := img.Close(); err != nil { // one commit, then the file is closed
		log.Fatal(err)
	}

	img, err = ext4edit.Open(filepath.Join(dir, "rootfs.ext4"), &ext4edit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	ents, err := img.ReadDir("/")
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range ents {
		fmt.Println(e.Name(), e.IsDir())
	}
	// Output:
	// etc true
	// lost+found true
}

// An editing session: Open, any number of edits, Close. Each edit is all
// or nothing; Close commits them together (through the journal where the
// image has one), and Discard would drop them.
func ExampleOpen() {
	path := exampleImage()
	defer os.RemoveAll(filepath.Dir(path))

	img, err := ext4edit.Open(path, nil) // read-write, locked
	if err != nil {
		log.Fatal(err)
	}
	if err := img.MkdirAll("/usr/local/bin", 0o755); err != nil {
		log.Fatal(err)
	}
	// Stream a file in: whole blocks go straight to newly allocated ones.
	f, err := img.Create("/usr/local/bin/hello", 0o755)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := io.Copy(f, strings.NewReader("#!/bin/sh\necho hello\n")); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	if err := img.Symlink("/usr/local/bin/hello", "/usr/local/bin/hi"); err != nil {
		log.Fatal(err)
	}
	if err := img.Chown("/usr/local/bin/hello", 0, 0); err != nil {
		log.Fatal(err)
	}
	// Errors are *fs.PathError wrapping sentinels errors.Is can test.
	err = img.Mkdir("/usr/local/bin", 0o755)
	fmt.Println(errors.Is(err, fs.ErrExist), err)
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}

	// The io/fs view of a read-only open.
	img, err = ext4edit.Open(path, &ext4edit.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer img.Close()
	data, err := fs.ReadFile(img.FS(), "usr/local/bin/hi")
	if err != nil {
		log.Fatal(err)
	}
	fi, err := img.Lstat("/usr/local/bin/hello")
	if err != nil {
		log.Fatal(err)
	}
	info := fi.Sys().(*ext4edit.InodeInfo)
	fmt.Printf("%q %v uid=%d mode=%#o\n", data, fi.Mode(), info.UID, info.Mode&^ext4edit.IModeType)
	// Output:
	// true mkdir /usr/local/bin: file already exists
	// "#!/bin/sh\necho hello\n" -rwxr-xr-x uid=0 mode=0755
}

// exampleImage makes an empty filesystem to edit and returns its path.
func exampleImage() string {
	dir, err := os.MkdirTemp("", "ext4edit-example-")
	if err != nil {
		log.Fatal(err)
	}
	path := filepath.Join(dir, "disk.ext4")
	img, err := ext4edit.Mkfs(path, 32<<20, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := img.Close(); err != nil {
		log.Fatal(err)
	}
	return path
}
