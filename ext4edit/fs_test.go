package ext4edit

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// mkfsImage builds a 32 MiB ext4 image from the tree described by files
// (name -> contents; a value starting with "->" makes a symlink to the rest)
// with mkfs.ext4 -d. It skips the test when mkfs.ext4 is missing.
func mkfsImage(t *testing.T, files map[string]string) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not on PATH (install e2fsprogs); skipping test against a real ext4 image")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	for name, body := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(body, "->"):
			err = os.Symlink(body[2:], p)
		default:
			err = os.WriteFile(p, []byte(body), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "fs.img")
	if out, err := exec.Command(mkfs, "-q", "-F", "-d", src, img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return img
}

func TestFS(t *testing.T) {
	longName := strings.Repeat("long-file-name-", 8) + ".txt" // a > 60 byte symlink target
	deep := strings.Repeat("0123456789abcdef", 20000)         // 320000 bytes: many blocks
	files := map[string]string{
		"hello.txt":             "hello, world\n",
		"empty":                 "",
		"emptydir/":             "",
		"dir/nested.txt":        "nested\n",
		"dir/sub/deep.bin":      deep,
		"dir/sub/" + longName:   "long\n",
		"dir/abslink":           "->/dir/sub/deep.bin",
		"dir/rellink":           "->../hello.txt",
		"link":                  "->hello.txt",
		"dirlink":               "->dir/sub",
		"longlink":              "->dir/sub/" + longName,
		"dir/sub/more/end.txt":  "end\n",
		"dir/sub/more/end2.txt": "end2\n",
	}
	imgPath := mkfsImage(t, files)
	img, err := Open(imgPath, &Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer img.Close()
	fsys := img.FS()

	expected := []string{"lost+found"}
	for name := range files {
		expected = append(expected, strings.TrimSuffix(name, "/"))
	}
	slices.Sort(expected)
	if err := fstest.TestFS(fsys, expected...); err != nil {
		t.Fatal(err)
	}

	// Contents through every path, symlinks followed.
	for name, want := range map[string]string{
		"hello.txt":        files["hello.txt"],
		"link":             files["hello.txt"],
		"dir/rellink":      files["hello.txt"],
		"dir/abslink":      deep,
		"dirlink/deep.bin": deep,
		"longlink":         "long\n",
		"empty":            "",
	} {
		got, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Errorf("fs.ReadFile(%s): %v", name, err)
		} else if string(got) != want {
			t.Errorf("fs.ReadFile(%s): got %d bytes, want %d", name, len(got), len(want))
		}
	}

	// Symlinks: ReadLink, and Lstat vs Stat.
	rl := fsys.(fs.ReadLinkFS)
	for name, body := range files {
		if !strings.HasPrefix(body, "->") {
			continue
		}
		if target, err := rl.ReadLink(name); err != nil || target != body[2:] {
			t.Errorf("ReadLink(%s) = %q, %v; want %q", name, target, err, body[2:])
		}
		if fi, err := rl.Lstat(name); err != nil || fi.Mode().Type() != fs.ModeSymlink || fi.Name() != filepath.Base(name) {
			t.Errorf("Lstat(%s) = %v, %v; want a symlink named %s", name, fi, err, filepath.Base(name))
		}
	}
	if fi, err := fs.Stat(fsys, "link"); err != nil || !fi.Mode().IsRegular() || fi.Size() != int64(len(files["hello.txt"])) || fi.Name() != "link" {
		t.Errorf("Stat(link) = %v, %v; want regular file \"link\" of %d bytes", fi, err, len(files["hello.txt"]))
	} else if _, ok := fi.Sys().(*InodeInfo); !ok {
		t.Errorf("Stat(link).Sys() is %T, want *InodeInfo", fi.Sys())
	}
	if fi, err := fs.Stat(fsys, "dirlink"); err != nil || !fi.IsDir() {
		t.Errorf("Stat(dirlink) = %v, %v; want a directory", fi, err)
	}
	if _, err := rl.ReadLink("hello.txt"); err == nil {
		t.Errorf("ReadLink of a regular file succeeded")
	}

	// Directory paging.
	f, err := fsys.Open("dir/sub")
	if err != nil {
		t.Fatalf("Open(dir/sub): %v", err)
	}
	d := f.(fs.ReadDirFile)
	var names []string
	for {
		list, err := d.ReadDir(1)
		for _, e := range list {
			names = append(names, e.Name())
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("ReadDir(1): %v", err)
		}
		if len(list) != 1 {
			t.Fatalf("ReadDir(1) returned %d entries", len(list))
		}
	}
	if want := []string{"deep.bin", longName, "more"}; !slices.Equal(names, want) {
		t.Errorf("dir/sub entries = %q, want %q", names, want)
	}
	if _, err := d.Read(make([]byte, 1)); err == nil {
		t.Errorf("Read of a directory succeeded")
	}
	d.Close()

	// Random access into a multi-block file.
	f, err = fsys.Open("dir/sub/deep.bin")
	if err != nil {
		t.Fatalf("Open(deep.bin): %v", err)
	}
	buf := make([]byte, 100)
	if _, err := f.(io.ReaderAt).ReadAt(buf, 250000); err != nil || !bytes.Equal(buf, []byte(deep[250000:250100])) {
		t.Errorf("ReadAt(250000) = %q, %v", buf, err)
	}
	if pos, err := f.(io.Seeker).Seek(-10, io.SeekEnd); err != nil || pos != int64(len(deep)-10) {
		t.Errorf("Seek(-10, end) = %d, %v", pos, err)
	}
	if rest, err := io.ReadAll(f); err != nil || string(rest) != deep[len(deep)-10:] {
		t.Errorf("read after Seek = %q, %v", rest, err)
	}
	f.Close()
	if _, err := f.Read(buf); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Read after Close: %v, want fs.ErrClosed", err)
	}

	// Errors.
	for _, bad := range []string{"/hello.txt", "dir/", "./hello.txt", "dir/../hello.txt", ""} {
		_, err := fsys.Open(bad)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Op != "open" || pe.Path != bad || !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("Open(%q) = %v; want PathError{open, %q, ErrInvalid}", bad, err, bad)
		}
	}
	if _, err := fsys.Open("nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open(nope) = %v, want fs.ErrNotExist", err)
	}
	if _, err := fsys.Open("hello.txt/x"); err == nil {
		t.Errorf("Open(hello.txt/x) succeeded")
	}
}
