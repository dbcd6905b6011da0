//go:build linux

package ext4edit_test

// TestCorruptImages feeds the editor generated corrupt images: small mkfs
// variants (4k, 1k, no metadata_csum, ext3, inline_data, and one whose
// journal holds transactions) with a populated tree (files, an indexed
// directory, a file with an extent tree block or indirect blocks,
// symlinks, a hard link, a FIFO, in-inode and block xattrs) get bit flips,
// random bytes, zeroed and 0xFF ranges and targeted bad fields in one
// structure each, located with dumpe2fs and debugfs: the superblock, group
// descriptors, bitmaps, inode table, file and directory inodes, extent
// tree and indirect blocks, directory blocks, htree root and leaf blocks,
// the journal superblock and log blocks, an xattr block.
//
// For each image: Open read-only and read-write, walk the whole tree
// (ReadDir, Lstat, ReadFile, Readlink, ListXattr/GetXattr), and where the
// read-write open succeeds do a few edits and Close. Required: no panic
// (reported with its stack), no hang (10 s per image, named), no write
// outside the image file (a Device wrapper checks every WriteAt; the file
// size must not change), and an image e2fsck -fn called clean before the
// edits is still clean after them. Errors should wrap ErrCorrupt; the
// ones that wrap no sentinel at all are counted and logged, not failed.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

type coVariant struct {
	name    string
	size    string
	opts    []string
	recover bool // log transactions into the journal (needs_recovery)
}

func coVariants() []coVariant {
	return []coVariant{
		{name: "ext4-4k", size: "16M", opts: []string{"-b", "4096"}},
		{name: "ext4-1k", size: "8M", opts: []string{"-b", "1024"}},
		{name: "nocsum", size: "8M", opts: []string{"-b", "1024", "-O", "^metadata_csum"}},
		{name: "ext3", size: "8M", opts: []string{"-t", "ext3", "-b", "1024"}},
		{name: "inline", size: "8M", opts: []string{"-b", "1024", "-O", "inline_data"}},
		{name: "recover", size: "8M", opts: []string{"-b", "1024", "-O", "^metadata_csum"}, recover: true},
	}
}

// coTree writes the host tree the variants are populated from.
func coTree(t *testing.T, dir string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc/sub/deeper", "usr/bin", "big", "var/empty"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("corrupt\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/inline"), jtPattern(50, 1), 0o644))
	must(os.WriteFile(filepath.Join(dir, "etc/sub/deeper/mid"), jtPattern(5000, 2), 0o600))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/tool"), jtPattern(30000, 3), 0o755))
	sp, err := os.Create(filepath.Join(dir, "sparse"))
	must(err)
	for i := 0; i < 12; i++ { // 12 extents: more than the inode holds
		_, err := sp.WriteAt(jtPattern(64, byte(i)), int64(i)*8192)
		must(err)
	}
	must(sp.Close())
	must(os.Symlink("hostname", filepath.Join(dir, "etc/short")))
	must(os.Symlink("/"+strings.Repeat("long-target/", 8), filepath.Join(dir, "etc/long")))
	must(os.Link(filepath.Join(dir, "etc/hostname"), filepath.Join(dir, "usr/hostname-link")))
	must(syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	for i := 0; i < 80; i++ {
		must(os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("entry-with-a-long-name-%04d", i)), nil, 0o644))
	}
}

// coStruct is a located on-disk structure.
type coStruct struct {
	name string
	off  int64
	n    int
	kind string // "sb", "inode", "extent", "dirent", "" (generic only)
}

var (
	coReETB  = regexp.MustCompile(`\((?:ETB\d+|IND|DIND)\):(\d+)`)
	coReACL  = regexp.MustCompile(`File ACL: (\d+)`)
	coReImap = regexp.MustCompile(`located at block (\d+), offset 0x([0-9a-f]+)`)
	coReBB   = regexp.MustCompile(`Block bitmap at (\d+)`)
	coReIB   = regexp.MustCompile(`Inode bitmap at (\d+)`)
	coReIT   = regexp.MustCompile(`Inode table at (\d+)-`)
	coReGDT  = regexp.MustCompile(`Group descriptors at (\d+)-`)
)

// coLocate finds the structures of img.
func coLocate(t *testing.T, img string, bs int64, inodeSize int) []coStruct {
	t.Helper()
	dump := testimg.Dumpe2fs(t, img, false)
	first := func(re *regexp.Regexp, s string) int64 {
		m := re.FindStringSubmatch(s)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseInt(m[1], 10, 64)
		return v
	}
	blk := func(name string, b int64, kind string) coStruct {
		return coStruct{name: name, off: b * bs, n: int(bs), kind: kind}
	}
	out := []coStruct{{name: "superblock", off: 1024, n: 1024, kind: "sb"}}
	for _, s := range []struct {
		name string
		re   *regexp.Regexp
	}{{"group-descriptors", coReGDT}, {"block-bitmap", coReBB}, {"inode-bitmap", coReIB}, {"inode-table", coReIT}} {
		if b := first(s.re, dump); b >= 0 {
			out = append(out, blk(s.name, b, ""))
		}
	}
	inode := func(name, p string) {
		m := coReImap.FindStringSubmatch(testimg.Debugfs(t, img, fmt.Sprintf("imap %q", p)))
		if m == nil {
			return
		}
		b, _ := strconv.ParseInt(m[1], 10, 64)
		o, _ := strconv.ParseInt(m[2], 16, 64)
		out = append(out, coStruct{name: name, off: b*bs + o, n: inodeSize, kind: "inode"})
	}
	inode("inode-root", "/")
	inode("inode-file", "/usr/bin/tool")
	inode("inode-dir", "/etc")
	inode("inode-symlink", "/etc/long")
	inode("inode-inline", "/etc/inline")
	inode("inode-journal", "<8>")
	if b := first(coReETB, testimg.Debugfs(t, img, "stat /sparse")); b > 0 {
		out = append(out, blk("extent-tree-block", b, "extent"))
	}
	if b := first(coReETB, testimg.Debugfs(t, img, "stat /usr/bin/tool")); b > 0 {
		out = append(out, blk("tool-map-block", b, "extent"))
	}
	if b := first(coReACL, testimg.Debugfs(t, img, "stat /usr/bin/tool")); b > 0 {
		out = append(out, blk("xattr-block", b, ""))
	}
	for _, d := range []struct{ name, p string }{{"dir-block-root", "/"}, {"dir-block-etc", "/etc"}} {
		if bl := testimg.DebugfsBlocks(t, img, d.p); len(bl) > 0 {
			out = append(out, blk(d.name, int64(bl[0]), "dirent"))
		}
	}
	if bl := testimg.DebugfsBlocks(t, img, "/big"); len(bl) > 1 {
		out = append(out, blk("htree-root", int64(bl[0]), ""), blk("htree-leaf", int64(bl[1]), "dirent"))
	}
	if bl := testimg.DebugfsBlocks(t, img, "<8>"); len(bl) > 4 {
		out = append(out, blk("journal-superblock", int64(bl[0]), ""))
		out = append(out, blk("journal-log-1", int64(bl[1]), ""), blk("journal-log-2", int64(bl[2]), ""),
			blk("journal-log-3", int64(bl[3]), ""))
	}
	return out
}

// coMutation changes one structure's bytes in place.
type coMutation struct {
	name  string
	kinds string // structure kinds it applies to; "" = every structure
	apply func(b []byte, rng *rand.Rand)
}

func coPut32(b []byte, off int, v uint32) {
	if off+4 <= len(b) {
		b[off], b[off+1], b[off+2], b[off+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
}

func coPut16(b []byte, off int, v uint16) {
	if off+2 <= len(b) {
		b[off], b[off+1] = byte(v), byte(v>>8)
	}
}

func coMutations() []coMutation {
	return []coMutation{
		{"zero", "", func(b []byte, _ *rand.Rand) { clear(b) }},
		{"ff64", "", func(b []byte, r *rand.Rand) {
			o := r.IntN(max(1, len(b)-64))
			for i := o; i < min(len(b), o+64); i++ {
				b[i] = 0xFF
			}
		}},
		{"flip1", "", func(b []byte, r *rand.Rand) { i := r.IntN(len(b) * 8); b[i/8] ^= 1 << (i % 8) }},
		{"flip1b", "", func(b []byte, r *rand.Rand) { i := r.IntN(len(b) * 8); b[i/8] ^= 1 << (i % 8) }},
		{"flip8", "", func(b []byte, r *rand.Rand) {
			for k := 0; k < 8; k++ {
				i := r.IntN(len(b) * 8)
				b[i/8] ^= 1 << (i % 8)
			}
		}},
		{"rand16", "", func(b []byte, r *rand.Rand) {
			for k := 0; k < 16; k++ {
				b[r.IntN(len(b))] = byte(r.Uint32())
			}
		}},
		{"randall", "", func(b []byte, r *rand.Rand) {
			for i := range b {
				b[i] = byte(r.Uint32())
			}
		}},
		// Targeted fields. Superblock offsets are from the start of the
		// 1024-byte superblock.
		{"sb-blocks-huge", "sb", func(b []byte, _ *rand.Rand) { coPut32(b, 0x4, 0xFFFFFFF0) }},
		{"sb-logbs-7", "sb", func(b []byte, _ *rand.Rand) { coPut32(b, 0x18, 7) }},
		{"sb-ipg-0", "sb", func(b []byte, _ *rand.Rand) { coPut32(b, 0x28, 0) }},
		{"sb-first-ino", "sb", func(b []byte, _ *rand.Rand) { coPut32(b, 0x54, 0xFFFFFF00) }},
		{"sb-inode-size", "sb", func(b []byte, _ *rand.Rand) { coPut16(b, 0x58, 4096) }},
		{"sb-desc-size", "sb", func(b []byte, _ *rand.Rand) { coPut16(b, 0xFE, 0x8000) }},
		{"sb-journal-inum", "sb", func(b []byte, _ *rand.Rand) { coPut32(b, 0xE0, 2) }},
		{"sb-rootdir-hash", "sb", func(b []byte, _ *rand.Rand) { b[0xFC] = 0x7F }},
		{"inode-size-huge", "inode", func(b []byte, _ *rand.Rand) { coPut32(b, 0x4, 0xFFFFFFFF); coPut32(b, 0x6C, 0x7FFFFFFF) }},
		{"inode-links-0", "inode", func(b []byte, _ *rand.Rand) { coPut16(b, 0x1A, 0) }},
		{"inode-mode-dir", "inode", func(b []byte, _ *rand.Rand) { coPut16(b, 0x0, 0x41ED) }},
		{"inode-flags", "inode", func(b []byte, r *rand.Rand) { coPut32(b, 0x20, r.Uint32()) }},
		{"inode-extra-isize", "inode", func(b []byte, _ *rand.Rand) { coPut16(b, 0x80, 0xFFF0) }},
		{"inode-iblock-loop", "inode", func(b []byte, _ *rand.Rand) {
			// An extent header whose one entry points at block 1 for
			// 32768 blocks (or an indirect map of 1s).
			for i := 0x28; i < 0x64; i += 4 {
				coPut32(b, i, 1)
			}
			coPut16(b, 0x28, 0xF30A)
			coPut16(b, 0x2A, 1)
			coPut16(b, 0x2C, 4)
			coPut16(b, 0x2E, 0)
			coPut32(b, 0x34, 0)
			coPut16(b, 0x38, 32768)
		}},
		{"extent-entries-ffff", "extent", func(b []byte, _ *rand.Rand) { coPut16(b, 2, 0xFFFF) }},
		{"extent-depth-5", "extent", func(b []byte, _ *rand.Rand) { coPut16(b, 6, 5) }},
		{"extent-self", "extent", func(b []byte, _ *rand.Rand) {
			coPut16(b, 6, 1) // claim to be an index node pointing at itself
		}},
		{"dirent-reclen-0", "dirent", func(b []byte, _ *rand.Rand) { coPut16(b, 4, 0) }},
		{"dirent-namelen-255", "dirent", func(b []byte, _ *rand.Rand) { b[6] = 255 }},
		{"dirent-reclen-huge", "dirent", func(b []byte, _ *rand.Rand) { coPut16(b, 4, 0xFFFC) }},
		{"dirent-inode-huge", "dirent", func(b []byte, _ *rand.Rand) { coPut32(b, 0, 0xFFFFFFF0) }},
	}
}

// coDev records every write and refuses those outside the image file.
type coDev struct {
	under ext4edit.Device
	size  int64
	mu    sync.Mutex
	bad   []string
	n     int
}

func (d *coDev) ReadAt(p []byte, off int64) (int, error) { return d.under.ReadAt(p, off) }
func (d *coDev) Sync() error                             { return d.under.Sync() }
func (d *coDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	d.n++
	if off < 0 || off+int64(len(p)) > d.size {
		d.bad = append(d.bad, fmt.Sprintf("%d+%d", off, len(p)))
		d.mu.Unlock()
		return 0, errors.New("corrupt test: write outside the image refused")
	}
	d.mu.Unlock()
	return d.under.WriteAt(p, off)
}

// coErrs classifies the errors the editor returned.
type coErrs struct {
	mu      sync.Mutex
	byClass map[string]int
	odd     map[string]int // errors wrapping no sentinel, by message shape
}

var coSentinels = []struct {
	name string
	err  error
}{
	{"ErrCorrupt", ext4edit.ErrCorrupt}, {"ErrUnsupportedFeature", ext4edit.ErrUnsupportedFeature},
	{"ErrNeedsRecovery", ext4edit.ErrNeedsRecovery}, {"ErrNoSpace", ext4edit.ErrNoSpace},
	{"ErrReadOnly", ext4edit.ErrReadOnly}, {"fs.ErrNotExist", fs.ErrNotExist}, {"fs.ErrExist", fs.ErrExist},
	{"ErrNotDir", ext4edit.ErrNotDir}, {"ErrIsDir", ext4edit.ErrIsDir}, {"ErrNotEmpty", ext4edit.ErrNotEmpty},
	{"ErrLoop", ext4edit.ErrLoop}, {"ErrInvalidPath", ext4edit.ErrInvalidPath}, {"fs.ErrInvalid", fs.ErrInvalid},
	{"ErrTooManyLinks", ext4edit.ErrTooManyLinks}, {"ErrNameTooLong", ext4edit.ErrNameTooLong},
}

func (c *coErrs) add(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range coSentinels {
		if errors.Is(err, s.err) {
			c.byClass[s.name]++
			return
		}
	}
	c.byClass["no sentinel"]++
	msg := jtNum.ReplaceAllString(err.Error(), "#")
	if i := strings.Index(msg, ": "); i > 0 && strings.HasPrefix(msg, "open /") {
		msg = msg[i+2:]
	}
	if len(msg) > 120 {
		msg = msg[:120]
	}
	c.odd[msg]++
}

// coWalk reads everything in img; errors go to errs.
func coWalk(img *ext4edit.Image, errs *coErrs) {
	fsys := img.FS()
	entries := 0
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := img.ReadDir(dir)
		errs.add(err)
		for _, e := range ents {
			if entries++; entries > 3000 {
				return
			}
			p := path.Join(dir, e.Name())
			fi, err := img.Lstat(p)
			errs.add(err)
			if err != nil {
				continue
			}
			names, err := img.ListXattr(p)
			errs.add(err)
			for _, n := range names {
				_, err := img.GetXattr(p, n)
				errs.add(err)
			}
			switch m := fi.Mode(); {
			case m.IsDir():
				if depth < 24 {
					walk(p, depth+1)
				}
			case m&fs.ModeSymlink != 0:
				_, err := img.Readlink(p)
				errs.add(err)
			case m.IsRegular():
				if fi.Size() <= 4<<20 || fi.Size() < 0 || fi.Size() > 1<<48 { // absurd sizes must be refused
					_, err := img.ReadFile(p)
					errs.add(err)
				}
				if f, err := fsys.Open(strings.TrimPrefix(p, "/")); err != nil {
					errs.add(err)
				} else {
					_, err := io.CopyN(io.Discard, f, 1<<20)
					errs.add(err)
					f.Close()
				}
			}
		}
	}
	walk("/", 0)
}

// coBase is a populated, fsck-clean image of one variant.
type coBase struct {
	v       coVariant
	path    string
	bs      int64
	structs []coStruct
}

func coMakeBase(t *testing.T, dir string, v coVariant) *coBase {
	t.Helper()
	src := filepath.Join(dir, "src")
	coTree(t, src)
	img := testimg.MkfsFromDir(t, dir, v.name+".img", v.size, src, v.opts...)
	big := filepath.Join(dir, "xattr-value")
	if err := os.WriteFile(big, jtPattern(700, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	testimg.DebugfsWrite(t, img, "ea_set /etc/hostname user.small hello\nea_set -f "+big+" /usr/bin/tool user.big\n")
	if code, out := jtFsck(img, "-fyD"); code > 1 {
		t.Fatalf("e2fsck -fyD: exit %d\n%s", code, out)
	}
	testimg.RequireClean(t, img)
	h := testimg.Dumpe2fs(t, img, true)
	bs, _ := testimg.HeaderField(h, "Block size")
	isz, _ := testimg.HeaderField(h, "Inode size")
	b := &coBase{v: v, path: img, bs: int64(bs)}
	b.structs = coLocate(t, img, b.bs, int(isz))
	if v.recover {
		edited := filepath.Join(dir, "edited.img")
		jtCopy(t, img, edited)
		testimg.DebugfsWrite(t, edited, "mkdir /logged\nwrite "+big+" /logged/f\nrm /etc/short\n")
		rpLogDiff(t, img, edited, "jo")
	}
	return b
}

func TestCorruptImages(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs", "dumpe2fs", "cp")
	start := time.Now()
	short, exhaustive := testing.Short(), jtExhaustive()
	seeds := 1
	if exhaustive {
		seeds = 4
	}
	errs := &coErrs{byClass: map[string]int{}, odd: map[string]int{}}
	type job struct {
		base *coBase
		st   coStruct
		mut  coMutation
		seed int
	}
	var jobs []job
	for _, v := range coVariants() {
		dir := t.TempDir()
		base := coMakeBase(t, dir, v)
		var names []string
		for _, s := range base.structs {
			names = append(names, s.name)
		}
		t.Logf("%s: corrupting %s", v.name, strings.Join(names, ", "))
		for _, st := range base.structs {
			for _, m := range coMutations() {
				if m.kinds != "" && m.kinds != st.kind {
					continue
				}
				switch {
				case exhaustive:
				case short && m.kinds == "" && m.name != "flip1",
					short && m.kinds != "" && m.kinds != "sb" && m.kinds != "inode":
					continue
				case m.kinds == "" && m.name != "flip1" && m.name != "rand16" && m.name != "zero":
					continue
				}
				for s := 0; s < seeds; s++ {
					jobs = append(jobs, job{base, st, m, s})
				}
			}
		}
	}
	var (
		mu                               sync.Mutex
		opened, openedRW, edited, closed int
		cleanBefore, hung                int
		replays                          = map[string]int{}
	)
	work := make(chan job)
	var wg sync.WaitGroup
	for w := 0; w < crWorkers(); w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			scratch := t.TempDir()
			for j := range work {
				name := fmt.Sprintf("%s/%s/%s#%d", j.base.v.name, j.st.name, j.mut.name, j.seed)
				img := filepath.Join(scratch, "c.img")
				os.Remove(img)
				if err := jtCopyErr(j.base.path, img); err != nil {
					t.Error(err)
					continue
				}
				if err := coCorrupt(img, j.st, j.mut, j.seed); err != nil {
					t.Error(err)
					continue
				}
				fi, _ := os.Stat(img)
				size := fi.Size()
				// e2fsck -fn does not replay a journal: its verdict on an image
				// that needs recovery says nothing about what replay brings.
				wasClean := false
				if !j.base.v.recover {
					if code, _ := jtFsck(img, "-fn"); code == 0 {
						wasClean = true
					}
				} else if r := coReplayVsDebugfs(img, j.base.bs); r != "" {
					mu.Lock()
					replays[r]++
					mu.Unlock()
					if strings.HasPrefix(r, "DIFFER") {
						t.Errorf("%s: our replay and debugfs's journal_run wrote different blocks: %s", name, r)
					}
				}
				res := coRun(img, size, errs)
				switch {
				case res.panic != "":
					t.Errorf("%s: panic: %s", name, res.panic)
				case res.hung:
					t.Errorf("%s: no result after 10s (hang); goroutines:\n%s", name, res.stacks)
					mu.Lock()
					hung++
					mu.Unlock()
					// The hung goroutine still holds this file: move on.
					scratch = t.TempDir()
					continue
				}
				if len(res.badWrites) > 0 {
					t.Errorf("%s: writes outside the %d-byte image: %v", name, size, res.badWrites)
				}
				if fi, err := os.Stat(img); err != nil {
					t.Error(err)
				} else if fi.Size() != size {
					t.Errorf("%s: the image file changed size (%d -> %d)", name, size, fi.Size())
				}
				if wasClean {
					if code, out := jtFsck(img, "-fn"); code != 0 {
						t.Errorf("%s: e2fsck -fn called the corrupted image clean, but not after our edits (open %v, close %v):\n%s",
							name, res.rwErr, res.closeErr, out)
					}
				}
				mu.Lock()
				if res.roOK {
					opened++
				}
				if res.rwOK {
					openedRW++
				}
				if res.editsOK {
					edited++
				}
				if res.closeErr == nil && res.rwOK {
					closed++
				}
				if wasClean {
					cleanBefore++
				}
				mu.Unlock()
			}
		}(w)
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	var classes []string
	for k, n := range errs.byClass {
		classes = append(classes, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(classes)
	t.Logf("corrupt images: %d tried in %v; read-only opens %d, read-write opens %d, all edits succeeded %d, clean closes %d; "+
		"e2fsck -fn clean before our edits %d; hangs %d", len(jobs), time.Since(start).Round(time.Second),
		opened, openedRW, edited, closed, cleanBefore, hung)
	if len(replays) > 0 {
		var rs []string
		for k, n := range replays {
			if strings.HasPrefix(k, "DIFFER") {
				k = "differ"
			}
			rs = append(rs, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(rs)
		t.Logf("corrupted logs, our replay vs debugfs journal_run: %s", strings.Join(rs, ", "))
	}
	t.Logf("errors returned, by the sentinel they wrap: %s", strings.Join(classes, ", "))
	if len(errs.odd) > 0 {
		var odd []string
		for k, n := range errs.odd {
			odd = append(odd, fmt.Sprintf("%5d× %s", n, k))
		}
		sort.Sort(sort.Reverse(sort.StringSlice(odd)))
		if len(odd) > 25 {
			odd = odd[:25]
		}
		t.Logf("errors wrapping no sentinel (not ErrCorrupt), most frequent first:\n%s", strings.Join(odd, "\n"))
	}
}

// coCorrupt applies mutation m to structure st of img.
func coCorrupt(img string, st coStruct, m coMutation, seed int) error {
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, st.n)
	if _, err := f.ReadAt(b, st.off); err != nil {
		return fmt.Errorf("read %s at %d: %v", st.name, st.off, err)
	}
	h := uint64(0)
	for _, c := range st.name + "/" + m.name {
		h = h*131 + uint64(c)
	}
	m.apply(b, rand.New(rand.NewPCG(h, uint64(seed))))
	_, err = f.WriteAt(b, st.off)
	return err
}

type coResult struct {
	panic, stacks       string
	hung                bool
	roOK, rwOK, editsOK bool
	rwErr, closeErr     error
	badWrites           []string
}

// coRun opens, walks and edits img in a goroutine bounded by 10 s.
func coRun(img string, size int64, errs *coErrs) coResult {
	done := make(chan coResult, 1)
	go func() {
		var res coResult
		defer func() {
			if p := recover(); p != nil {
				res.panic = fmt.Sprintf("%v\n%s", p, debug.Stack())
			}
			done <- res
		}()
		if im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true, NoLock: true}); err != nil {
			errs.add(err)
		} else {
			res.roOK = true
			coWalk(im, errs)
			errs.add(im.Close())
		}
		im, err := ext4edit.Open(img, &ext4edit.Options{NoLock: true, Now: crNow})
		res.rwErr = err
		if err != nil {
			errs.add(err)
			return
		}
		res.rwOK = true
		dev := &coDev{size: size}
		ext4edit.WrapDevice(im, func(d ext4edit.Device) ext4edit.Device { dev.under = d; return dev })
		coWalk(im, errs)
		res.editsOK = true
		for _, e := range []error{
			im.MkdirAll("/new/dir", 0o755),
			im.WriteFile("/new/dir/f", jtPattern(10000, 7), 0o644),
			im.WriteFile("/etc/hostname", []byte("rewritten\n"), 0o644),
			im.Remove("/etc/short"),
			im.Rename("/usr/bin/tool", "/usr/bin/tool2"),
			im.SetXattr("/etc/sub", "user.x", []byte("y")),
			im.Symlink("/new/dir/f", "/big/link"),
		} {
			if e != nil {
				res.editsOK = false
			}
			errs.add(e)
		}
		res.closeErr = im.Close()
		errs.add(res.closeErr)
		dev.mu.Lock()
		res.badWrites = dev.bad
		dev.mu.Unlock()
	}()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		return coResult{hung: true, stacks: string(buf[:n])}
	}
}

// coReplayVsDebugfs replays img's journal twice, on copies: by a
// read-write ext4edit.Open+Close and by debugfs's journal_run. When both
// replay, every block but the superblock's and the journal superblock's
// must come out equal. It returns the verdict ("same", "ours refused",
// "debugfs refused", "both refused", "DIFFER: blocks ...").
func coReplayVsDebugfs(img string, bs int64) string {
	ours, theirs := img+".ours", img+".jr"
	defer os.Remove(ours)
	defer os.Remove(theirs)
	if jtCopyErr(img, ours) != nil || jtCopyErr(img, theirs) != nil {
		return ""
	}
	oursOK := false
	done := make(chan bool, 1)
	go func() {
		defer func() {
			if recover() != nil {
				done <- false
			}
		}()
		im, err := ext4edit.Open(ours, &ext4edit.Options{NoLock: true})
		if err == nil {
			err = im.Close()
		}
		done <- err == nil
	}()
	select {
	case oursOK = <-done:
	case <-time.After(10 * time.Second):
		return "ours hung"
	}
	cmd := exec.Command(jtTool("debugfs"), "-w", "-R", "jr", theirs)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	theirOK := cmd.Run() == nil
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			theirOK = false
		}
	}
	if theirOK {
		h, _ := exec.Command(jtTool("dumpe2fs"), "-h", theirs).Output()
		if bytes.Contains(h, []byte("needs_recovery")) {
			theirOK = false
		}
	}
	switch {
	case !oursOK && !theirOK:
		return "both refused"
	case !oursOK:
		return "ours refused"
	case !theirOK:
		return "debugfs refused"
	}
	a, err1 := os.ReadFile(ours)
	b, err2 := os.ReadFile(theirs)
	if err1 != nil || err2 != nil || len(a) != len(b) {
		return "DIFFER: unreadable"
	}
	jsb := int64(-1)
	if out, err := exec.Command(jtTool("debugfs"), "-R", "blocks <8>", img).Output(); err == nil {
		if f := strings.Fields(string(out)); len(f) > 0 {
			jsb, _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	var diff []string
	for off := int64(0); off < int64(len(a)); off += bs {
		blk := off / bs
		if blk == jsb || off <= 1024 && 1024 < off+bs {
			continue
		}
		if !bytes.Equal(a[off:off+bs], b[off:off+bs]) {
			diff = append(diff, strconv.FormatInt(blk, 10))
		}
	}
	if len(diff) > 0 {
		if len(diff) > 10 {
			diff = append(diff[:10], "...")
		}
		return "DIFFER: blocks " + strings.Join(diff, " ")
	}
	return "same"
}
