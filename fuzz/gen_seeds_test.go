//go:build genseeds && linux

package fuzz

// The seed corpus generator. Regenerate the committed seeds with
//
//	go test -tags genseeds -run TestGenSeeds ./fuzz/
//
// (needs e2fsprogs: mke2fs, debugfs, e2fsck). Seeds found by fuzzing
// (crashers kept as regression tests) have names starting with "crash-"
// and are left alone.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func writeSeed(t *testing.T, target, name string, data []byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s/%s: %d bytes of input, %d of corpus text", target, name, len(data), len(body))
}

// seedTree writes the host tree mke2fs -d copies: files small, inline-sized
// and multi-block, a sparse file with many extents, a directory big enough
// to be indexed, symlinks fast and slow, a hard link and a FIFO.
func seedTree(t *testing.T, dir string, bigDir int) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/sub/deeper"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "usr/bin"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("seed\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/sub/deeper/mid"), bytes.Repeat([]byte("0123456789abcdef"), 70), 0o600))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/tool"), bytes.Repeat([]byte{0xC0, 0x3B, 0x39, 0x98, 1, 2, 3}, 400), 0o755))
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	for i := 0; i < 12; i++ {
		_, err := sp.WriteAt(bytes.Repeat([]byte{byte('A' + i)}, 32), int64(i)*8192)
		must(err)
	}
	must(sp.Close())
	must(os.Symlink("hostname", filepath.Join(dir, "etc/short")))
	must(os.Symlink("/"+strings.Repeat("long-target/", 8), filepath.Join(dir, "etc/long")))
	must(os.Link(filepath.Join(dir, "etc/hostname"), filepath.Join(dir, "usr/hostname-link")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(os.MkdirAll(filepath.Join(dir, "big"), 0o755))
	for i := 0; i < bigDir; i++ {
		must(os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("entry-with-a-long-name-%04d", i)), nil, 0o644))
	}
}

// seedImage makes a populated image with mke2fs -d, adds xattrs with
// debugfs, indexes big directories with e2fsck -fyD, and returns it.
func seedImage(t *testing.T, name, size string, opts ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	seedTree(t, src, 40)
	img := testimg.MkfsFromDir(t, dir, name, size, src, opts...)
	big := filepath.Join(dir, "xattr-value")
	if err := os.WriteFile(big, bytes.Repeat([]byte("v"), 300), 0o644); err != nil {
		t.Fatal(err)
	}
	testimg.DebugfsWrite(t, img, "ea_set /etc/hostname user.small hello\n"+
		"ea_set -f "+big+" /usr/bin/tool user.big\n"+
		"ea_set /big trusted.dir x\n")
	if out, err := exec.Command("e2fsck", "-fyD", img).CombinedOutput(); err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck -fyD %s: %v\n%s", name, err, out)
		}
	}
	testimg.RequireClean(t, img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// journalTxnImage returns an image whose journal holds committed
// transactions written by debugfs (jo/jw/jc) that replay it into the
// state a debugfs session produced: every block that session changed is
// logged, one block is logged twice, and a garbage block is logged and
// then revoked.
func journalTxnImage(t *testing.T, csum string, size string, opts ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	seedTree(t, src, 10)
	a := testimg.MkfsFromDir(t, dir, "a.img", size, src, opts...)
	b := filepath.Join(dir, "b.img")
	testimg.CopySparse(t, a, b)
	testimg.DebugfsWrite(t, b, "mkdir /journaled\nwrite /etc/hostname /journaled/copy\nrm /etc/short\nsymlink /journaled/link /etc\n")
	return journalDiff(t, a, b, csum)
}

// journalDiff logs into a's journal every block where b differs from a,
// as debugfs transactions, and returns a's bytes (needs_recovery set).
func journalDiff(t *testing.T, a, b, csum string) []byte {
	t.Helper()
	blocks, data, _, bs := testimg.BlockDiff(t, a, b)
	dir := filepath.Dir(a)
	if len(blocks) < 2 {
		t.Fatalf("only %d blocks differ", len(blocks))
	}
	half := len(blocks) / 2
	d1, d2, junk := filepath.Join(dir, "d1"), filepath.Join(dir, "d2"), filepath.Join(dir, "junk")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(d1, data[:half*bs], 0o644))
	must(os.WriteFile(d2, data[half*bs:], 0o644))
	must(os.WriteFile(junk, bytes.Repeat([]byte{0xEE}, bs), 0o644))
	// A free block far from everything, garbage logged then revoked.
	free := headerNum(t, a, "Block count") - 3
	script := fmt.Sprintf("jo %s\njw -b %s %s\njw -b %d %s\njw -r %d\njw -b %s %s\njc\n",
		csum, strings.Join(blocks[:half], ","), d1, free, junk, free, strings.Join(blocks[half:], ","), d2)
	testimg.DebugfsWrite(t, a, script)
	out, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func headerNum(t *testing.T, img, field string) uint64 {
	t.Helper()
	v, ok := testimg.HeaderField(testimg.Dumpe2fs(t, img, true), field)
	if !ok {
		t.Fatalf("dumpe2fs -h %s: no %q", img, field)
	}
	return v
}

// mbrDisk wraps a filesystem in an MBR disk image with one partition at
// 1 MiB.
func mbrDisk(fsImg []byte) []byte {
	const start = 1 << 20
	disk := make([]byte, start+len(fsImg))
	copy(disk[start:], fsImg)
	e := disk[446:]
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:], start/512)
	binary.LittleEndian.PutUint32(e[12:], uint32(len(fsImg)/512))
	disk[510], disk[511] = 0x55, 0xAA
	return disk
}

func TestGenSeeds(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck", "dumpe2fs")
	images := map[string][]byte{
		"ext4-1k":         seedImage(t, "ext4-1k", "1M", "-b", "1024", "-N", "128"),
		"ext4-1k-journal": seedImage(t, "ext4-1k-journal", "3M", "-b", "1024", "-N", "128"),
		"ext4-4k-journal": seedImage(t, "ext4-4k-journal", "8M", "-b", "4096", "-N", "128"),
		"ext3-1k":         seedImage(t, "ext3-1k", "2M", "-t", "ext3", "-b", "1024", "-N", "128"),
		"ext4-inline":     seedImage(t, "ext4-inline", "1M", "-b", "1024", "-N", "128", "-O", "inline_data"),
		"ext4-nocsum":     seedImage(t, "ext4-nocsum", "1M", "-b", "1024", "-N", "128", "-O", "^metadata_csum,^64bit,uninit_bg"),
		"ext2-1k":         seedImage(t, "ext2-1k", "1M", "-t", "ext2", "-b", "1024", "-N", "128"),
		"recover-v3":      journalTxnImage(t, "-c", "3M", "-b", "1024", "-N", "128"),
		"recover-nocsum":  journalTxnImage(t, "", "3M", "-b", "1024", "-N", "128", "-O", "^metadata_csum"),
		"recover-4k":      journalTxnImage(t, "-c", "8M", "-b", "4096", "-N", "128"),
	}
	// An image the editor made, edited through the public API.
	p := filepath.Join(t.TempDir(), "create.img")
	img, err := ext4edit.Mkfs(p, 16<<20, &ext4edit.MkfsOptions{Time: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		img.MkdirAll("/usr/local/bin", 0o755),
		img.WriteFile("/usr/local/bin/agent", bytes.Repeat([]byte("agent"), 400), 0o755),
		img.Symlink("/usr/local/bin/agent", "/agent"),
		img.SetXattr("/usr/local/bin/agent", "security.capability", []byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		img.Close(),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if images["create-4k"], err = os.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	for name, b := range images {
		writeSeed(t, "FuzzOpenWalk", name, encodeSparse(b))
	}
	writeSeed(t, "FuzzOpenWalk", "mbr-ext4-1k", encodeSparse(mbrDisk(images["ext4-1k"])))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(images["ext4-inline"])
	zw.Close()
	writeSeed(t, "FuzzOpenWalk", "gzip-ext4-inline", gz.Bytes())
	writeSeed(t, "FuzzOpenWalk", "raw-superblock-only", images["ext4-1k"][:4096])

	// FuzzEdits: op streams for each base image (first byte).
	type op []byte
	seq := func(base byte, ops ...op) []byte {
		out := []byte{base}
		for _, o := range ops {
			out = append(out, o...)
		}
		return out
	}
	// Path bytes: dir = b&3 ("/", "/a", "/a/b", "/c"), name = (b>>2)%5
	// ("a", "b", "c", "f", "g"). "/a" = 0, "/c" = 8, "/a/f" = 13,
	// "/c/f" = 15, "/a/b/g" = 18, "/f" = 12, "/g" = 16.
	mkdirAll := func(p, perm byte) op { return op{1, p, perm, 0} }
	write := func(p, perm, size, seed byte) op { return op{2, p, perm, size, seed} }
	stream := func(p, perm, size, seed byte) op { return op{15, p, perm, size, seed} }
	for base := byte(0); base < 4; base++ {
		writeSeed(t, "FuzzEdits", fmt.Sprintf("inject-%d", base), seq(base,
			mkdirAll(0, 0), op{1, 2, 0, 1, 4}, mkdirAll(8, 0),
			write(13, 1, 8, 7), write(15, 1, 2, 9), write(18, 3, 5, 1), stream(12, 1, 7, 3),
			op{8, 13, 3}, op{9, 13, 1, 1}, op{10, 15, 3, 2},
			op{6, 2, 16}, op{6, 3, 4}, op{7, 13, 4}, op{13},
			op{11, 13, 0, 2, 5}, op{11, 13, 1, 4, 6}, op{11, 15, 2, 5, 1}, op{16, 20, 0},
		))
		writeSeed(t, "FuzzEdits", fmt.Sprintf("churn-%d", base), seq(base,
			mkdirAll(2, 0), write(13, 1, 7, 1), write(16, 1, 6, 2), op{7, 16, 20},
			op{5, 13, 24}, op{5, 2, 8}, op{3, 16}, op{14}, op{4, 0, 0}, op{5, 20, 0},
			op{12, 0, 0}, op{16, 4, 1, 8, 9}, op{2, 0, 1, 3, 3}, op{6, 7, 4}, op{6, 0, 4},
			op{1, 4, 0, 1, 0}, op{0, 24, 4}, op{14},
		))
	}

	// FuzzBuildTar: a small root filesystem, and a stream of awkward
	// entries (replacements, traversal, long names, hard links to nothing).
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	mt := time.Unix(1700000000, 0)
	add := func(h *tar.Header, body []byte) {
		h.ModTime = mt
		h.Size = int64(len(body))
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	dirH := func(n string, mode int64) *tar.Header {
		return &tar.Header{Typeflag: tar.TypeDir, Name: n, Mode: mode}
	}
	add(dirH("./", 0o755), nil)
	add(dirH("usr/", 0o755), nil)
	add(dirH("usr/bin/", 0o755), nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/sh", Mode: 0o4755, Uid: 0, Gid: 0}, bytes.Repeat([]byte("#!sh\n"), 30000))
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin", Linkname: "usr/bin"}, nil)
	add(&tar.Header{Typeflag: tar.TypeLink, Name: "usr/bin/ash", Linkname: "usr/bin/sh"}, nil)
	add(dirH("etc/", 0o755), nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Mode: 0o644, Uid: 1000, Gid: 1000,
		PAXRecords: map[string]string{"SCHILY.xattr.user.note": "x", "SCHILY.xattr.security.selinux": "system_u:object_r:etc_t:s0"}}, []byte("root:x:0:0::/root:/bin/sh\n"))
	add(&tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}, nil)
	add(&tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}, nil)
	add(&tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda", Mode: 0o660, Devmajor: 8, Devminor: 0}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "tmp/inline", Mode: 0o1777}, []byte("small"))
	tw.Close()
	writeSeed(t, "FuzzBuildTar", "rootfs", tb.Bytes())

	tb.Reset()
	tw = tar.NewWriter(&tb)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o644}, []byte("first"))
	add(dirH("a/", 0o700), nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o600}, []byte("second"))
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "a", Linkname: "/nowhere"}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "a", Mode: 0o600}, []byte("third"))
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "../../escape", Mode: 0o600}, []byte("inside"))
	add(&tar.Header{Typeflag: tar.TypeLink, Name: "hl", Linkname: "missing"}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("d/", 40) + strings.Repeat("n", 200), Mode: 0o644}, []byte("deep"))
	add(&tar.Header{Typeflag: tar.TypeReg, Name: strings.Repeat("x", 300), Mode: 0o644}, []byte("too long"))
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "loop", Linkname: "loop"}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "loop/x", Mode: 0o644}, []byte("through a loop"))
	add(&tar.Header{Typeflag: tar.TypeSymlink, Name: "up", Linkname: "../.."}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "up/through", Mode: 0o644}, []byte("via symlink"))
	add(&tar.Header{Typeflag: tar.TypeLink, Name: "hl2", Linkname: "a"}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "hl2", Mode: 0o644}, []byte("replaces the link"))
	tw.Close()
	writeSeed(t, "FuzzBuildTar", "awkward", tb.Bytes())

}

// encodeSparse turns an image into the sparse input form: runs of 16 or
// more zero bytes are skipped.
func encodeSparse(img []byte) []byte {
	out := []byte(sparseMagic)
	out = binary.AppendUvarint(out, uint64(len(img)))
	last := 0
	for i := 0; i < len(img); {
		if img[i] == 0 {
			i++
			continue
		}
		start, j, zeros := i, i, 0
		for j < len(img) && zeros < 16 {
			if img[j] == 0 {
				zeros++
			} else {
				zeros = 0
			}
			j++
		}
		end := j - zeros
		out = binary.AppendUvarint(out, uint64(start-last))
		out = binary.AppendUvarint(out, uint64(end-start))
		out = append(out, img[start:end]...)
		last, i = end, j
	}
	return out
}
