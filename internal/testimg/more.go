package testimg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// DebugfsOutErr runs one read-only debugfs request and returns its stdout
// and its stderr with the version banner removed. debugfs reports most
// request errors on stderr while still exiting 0, so callers that judge
// a request's success look at errOut.
func DebugfsOutErr(t testing.TB, img, request string) (out, errOut string) {
	t.Helper()
	Require(t, "debugfs")
	cmd := exec.Command("debugfs", "-R", request, img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", request, err, stderr.String())
	}
	var keep []string
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "debugfs ") {
			continue
		}
		keep = append(keep, l)
	}
	return stdout.String(), strings.Join(keep, "\n")
}

// DebugfsDump copies the file at path inside img to the host file host
// with debugfs's dump request (for files too big to pass through a pipe
// comfortably). It fails t if debugfs reports an error or host is missing.
func DebugfsDump(t testing.TB, img, path, host string) {
	t.Helper()
	_ = os.Remove(host)
	_, errOut := DebugfsOutErr(t, img, fmt.Sprintf("dump %q %q", path, host))
	if errOut != "" {
		t.Fatalf("debugfs dump %s: %s", path, errOut)
	}
	if _, err := os.Stat(host); err != nil {
		t.Fatalf("debugfs dump %s produced no file: %v", path, err)
	}
}

// SHA256File returns the hex SHA-256 of a host file.
func SHA256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ImageDigest returns a SHA-256 digest of a host file's contents that is
// cheap on sparse multi-GiB images: it covers the file size and every
// 4 KiB block that is not all zeros, with its offset. Holes and written
// zeros digest alike, so two files have the same digest exactly when they
// have the same size and the same bytes. Data regions are found with
// SEEK_DATA/SEEK_HOLE where the OS has them; otherwise all is read.
func ImageDigest(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	h := sha256.New()
	var num [8]byte
	putNum := func(v int64) {
		for i := range num {
			num[i] = byte(uint64(v) >> (8 * i))
		}
		h.Write(num[:])
	}
	putNum(size)
	const blk = 4096
	buf := make([]byte, 1<<20)
	digestRange := func(start, end int64) {
		// Align to whole blocks so a block straddling a region edge is
		// digested the same way however the regions fall.
		start = start / blk * blk
		end = min((end+blk-1)/blk*blk, size)
		for off := start; off < end; {
			n := int(min(int64(len(buf)), end-off))
			if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
				t.Fatal(err)
			}
			for i := 0; i < n; i += blk {
				b := buf[i:min(i+blk, n)]
				if !allZero(b) {
					putNum(off + int64(i))
					putNum(int64(len(b)))
					h.Write(b)
				}
			}
			off += int64(n)
		}
	}
	const seekData, seekHole = 3, 4 // Linux, the BSDs and macOS agree
	last := int64(-1)               // end of the last digested range
	for off := int64(0); off < size; {
		data, err := f.Seek(off, seekData)
		if err != nil {
			if off == 0 {
				digestRange(0, size) // no SEEK_DATA: read it all
			}
			break // ENXIO: no data after off
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil {
			hole = size
		}
		if data/blk*blk < last {
			data = last // the aligned start was digested already
		}
		digestRange(data, hole)
		last = min((hole+blk-1)/blk*blk, size)
		off = hole
	}
	return hex.EncodeToString(h.Sum(nil))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// CopySparse copies src to dst with cp --sparse=always, so multi-GiB
// sparse images cost only their allocated bytes.
func CopySparse(t testing.TB, src, dst string) {
	t.Helper()
	Require(t, "cp")
	if out, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp --sparse=always %s %s: %v\n%s", src, dst, err, out)
	}
}

// Dumpe2fs runs dumpe2fs (-h when headerOnly) and returns its stdout.
func Dumpe2fs(t testing.TB, img string, headerOnly bool) string {
	t.Helper()
	Require(t, "dumpe2fs")
	args := []string{img}
	if headerOnly {
		args = []string{"-h", img}
	}
	cmd := exec.Command("dumpe2fs", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dumpe2fs %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// HeaderField returns the numeric value of a dumpe2fs -h field such as
// "Free blocks" or "Inodes per group", and whether it was present.
func HeaderField(out, field string) (uint64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(field) + `:\s+(\d+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseUint(m[1], 10, 64)
	return v, err == nil
}

// Group is one block group as dumpe2fs prints it.
type Group struct {
	N                      int
	First, Last            uint64 // block range
	Flags                  []string
	FreeBlocks, FreeInodes uint64
}

// HasFlag reports whether the group carries flag (INODE_UNINIT, ...).
func (g Group) HasFlag(flag string) bool {
	for _, f := range g.Flags {
		if f == flag {
			return true
		}
	}
	return false
}

var (
	reGroup     = regexp.MustCompile(`^Group (\d+): \(Blocks (\d+)-(\d+)\)(.*)$`)
	reGroupFree = regexp.MustCompile(`^\s+(\d+) free blocks?, (\d+) free inodes?`)
	reFlags     = regexp.MustCompile(`\[([^\]]*)\]`)
)

// ParseGroups parses the per-group part of full dumpe2fs output.
func ParseGroups(out string) []Group {
	var gs []Group
	for _, l := range strings.Split(out, "\n") {
		if m := reGroup.FindStringSubmatch(l); m != nil {
			var g Group
			g.N, _ = strconv.Atoi(m[1])
			g.First, _ = strconv.ParseUint(m[2], 10, 64)
			g.Last, _ = strconv.ParseUint(m[3], 10, 64)
			if f := reFlags.FindStringSubmatch(m[4]); f != nil {
				for _, s := range strings.Split(f[1], ",") {
					if s = strings.TrimSpace(s); s != "" {
						g.Flags = append(g.Flags, s)
					}
				}
			}
			gs = append(gs, g)
			continue
		}
		if m := reGroupFree.FindStringSubmatch(l); m != nil && len(gs) > 0 {
			g := &gs[len(gs)-1]
			g.FreeBlocks, _ = strconv.ParseUint(m[1], 10, 64)
			g.FreeInodes, _ = strconv.ParseUint(m[2], 10, 64)
		}
	}
	return gs
}

var reDevice = regexp.MustCompile(`Device major/minor number:\s+(\d+):(\d+)`)

// StatDevice returns the device numbers debugfs stat printed for a
// character or block special inode.
func StatDevice(s Stat) (major, minor uint32, ok bool) {
	m := reDevice.FindStringSubmatch(s.Raw)
	if m == nil {
		return 0, 0, false
	}
	a, _ := strconv.ParseUint(m[1], 10, 32)
	b, _ := strconv.ParseUint(m[2], 10, 32)
	return uint32(a), uint32(b), true
}

// DebugfsBlocks returns the physical data blocks of the file at path, as
// debugfs's blocks request lists them.
func DebugfsBlocks(t testing.TB, img, path string) []uint64 {
	t.Helper()
	out, errOut := DebugfsOutErr(t, img, fmt.Sprintf("blocks %q", path))
	if errOut != "" {
		t.Fatalf("debugfs blocks %s: %s", path, errOut)
	}
	var blks []uint64
	for _, f := range strings.Fields(out) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("debugfs blocks %s: unexpected %q", path, f)
		}
		blks = append(blks, v)
	}
	return blks
}

// DirEntry is one line of debugfs's "ls -l" output.
type DirEntry struct {
	Inode uint64
	Name  string
}

var reLsLong = regexp.MustCompile(`^\s*(\d+)\s+\d+\s+\(\d+\)\s+\d+\s+\d+\s+\d+(?:\s*,\s*\d+)?\s+\S+\s+\S+\s(.*)$`)

// DebugfsLs lists a directory with debugfs "ls -l" (one entry per line;
// names may contain spaces). Unused entries (inode 0) are left out.
func DebugfsLs(t testing.TB, img, dir string) []DirEntry {
	t.Helper()
	out, errOut := DebugfsOutErr(t, img, fmt.Sprintf("ls -l %q", dir))
	if errOut != "" {
		t.Fatalf("debugfs ls -l %s: %s", dir, errOut)
	}
	var ents []DirEntry
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if f := strings.Fields(l); len(f) > 0 && f[0] == "0" {
			continue // an unused entry (inode 0), e.g. a removed first entry of a block
		}
		m := reLsLong.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("debugfs ls -l %s: cannot parse line %q", dir, l)
		}
		ino, _ := strconv.ParseUint(m[1], 10, 64)
		ents = append(ents, DirEntry{Inode: ino, Name: m[2]})
	}
	return ents
}

// BlockDiff lists the blocks (as debugfs block numbers) where image b
// differs from image a, both of a's geometry, with b's contents of those
// blocks in order, and returns a's bytes and block size as well.
func BlockDiff(t testing.TB, a, b string) (blocks []string, newData, old []byte, bs int) {
	t.Helper()
	old, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	v, ok := HeaderField(Dumpe2fs(t, a, true), "Block size")
	if !ok || v == 0 {
		t.Fatalf("dumpe2fs -h %s: no block size", a)
	}
	bs = int(v)
	for off := 0; off+bs <= len(old) && off+bs <= len(bb); off += bs {
		if !bytes.Equal(old[off:off+bs], bb[off:off+bs]) {
			blocks = append(blocks, fmt.Sprint(off/bs))
			newData = append(newData, bb[off:off+bs]...)
		}
	}
	return blocks, newData, old, bs
}
