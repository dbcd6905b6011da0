package ext4edit_test

// TestMatrix judges the editor against e2fsprogs: every edit (a cell) runs
// on a fresh copy of every filesystem variant, then e2fsck -fn must find the
// image clean and debugfs must show what was written. A clean refusal (the
// error wraps ErrUnsupportedFeature or ErrReadOnly and the image is byte for
// byte unchanged) also passes. The table of outcomes is logged at the end
// (go test -v -run TestMatrix) and, when MATRIX_TABLE names a file,
// written there. MATRIX_PARALLEL sets how many cells run at once.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

const (
	mxKiB = 1 << 10
	mxMiB = 1 << 20

	mxFlagIndex  = 0x1000
	mxFlagInline = 0x10000000

	mxFixFile     = "fixture file contents\n"
	mxFixInl      = "inline a\n"
	mxFixRa       = "rename me\n"
	mxFixSub      = "s\n"
	mxFixXf       = "xattr fixture\n"
	mxLinearCount = 700  // FIFOs in /linear, with long names: >1 block at 64 KiB
	mxHtreeCount  = 3000 // empty files in /htree (variant htree)
)

var mxFixBig = mxData(99, 100*mxKiB)

// mxVariant is one filesystem layout. Its base image is built once per run
// (lazily, by the first cell that needs it) and copied for every cell.
type mxVariant struct {
	name       string
	size       string
	opts       []string
	bare       bool     // no fixture tree (too few inodes)
	htree      bool     // /htree: 3000 entries indexed by e2fsck -fyD
	nearlyFull bool     // filled to a few free blocks
	above4G    bool     // the low 4 GiB is allocated: new data lands above
	fragmented bool     // free space is single blocks: deep extent trees
	tune       []string // tune2fs options applied after the fixtures (quota: debugfs does not account)
	refuses    bool     // the editor is expected to refuse every write

	once       sync.Once
	base       string
	bs         uint64
	freeBlocks uint64
	freeInodes uint64
	ipg        uint64
	features   string
	groups     []testimg.Group
}

// extents reports whether mkfs gives the variant the extent feature.
func (v *mxVariant) extents() bool {
	for _, o := range v.opts {
		if o == "ext2" || o == "ext3" || strings.Contains(o, "^extent") {
			return false
		}
	}
	return true
}

func (v *mxVariant) hasFeature(f string) bool {
	return slices.Contains(strings.Fields(v.features), f)
}

func mxVariants() []*mxVariant {
	return []*mxVariant{
		{name: "default", size: "512M"},
		{name: "b1024", size: "512M", opts: []string{"-b", "1024"}},
		{name: "b2048", size: "512M", opts: []string{"-b", "2048"}},
		{name: "b65536", size: "1G", opts: []string{"-b", "65536", "-N", "40000"}},
		{name: "nocsum", size: "512M", opts: []string{"-O", "^metadata_csum"}},
		{name: "uninit_bg", size: "512M", opts: []string{"-O", "^metadata_csum,uninit_bg"}},
		{name: "no64bit", size: "512M", opts: []string{"-O", "^64bit"}},
		{name: "noflexbg", size: "512M", opts: []string{"-O", "^flex_bg"}},
		{name: "i128", size: "512M", opts: []string{"-I", "128"}},
		{name: "ext3", size: "512M", opts: []string{"-t", "ext3"}},
		{name: "ext2", size: "512M", opts: []string{"-t", "ext2"}},
		{name: "inline", size: "512M", opts: []string{"-O", "inline_data"}},
		{name: "htree", size: "512M", htree: true},
		{name: "nearlyfull", size: "16M", nearlyFull: true},
		{name: "fewinodes", size: "16M", opts: []string{"-N", "16"}, bare: true},
		{name: "6G", size: "6G", above4G: true},
		// Extras beyond the brief: block maps with triple indirection,
		// meta_bg descriptors, and ENOSPC with indirect-block overhead.
		{name: "ext2-b1024", size: "512M", opts: []string{"-t", "ext2", "-b", "1024"}},
		{name: "nearlyfull-ext2", size: "16M", opts: []string{"-t", "ext2"}, nearlyFull: true},
		{name: "fragmented", size: "64M", opts: []string{"-b", "1024"}, fragmented: true},
		{name: "metabg-b1024", size: "512M", opts: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}},
		{name: "noextent", size: "512M", opts: []string{"-O", "^extent,^64bit"}},
		{name: "nodirindex", size: "512M", opts: []string{"-O", "^dir_index"}},
		{name: "nofiletype", size: "512M", opts: []string{"-O", "^filetype"}},
		{name: "nosparse", size: "512M", opts: []string{"-O", "^sparse_super,^resize_inode"}},
		{name: "nojournal", size: "512M", opts: []string{"-O", "^has_journal"}},
		{name: "orphanfile", size: "512M", opts: []string{"-O", "orphan_file"}},
		{name: "g8192", size: "512M", opts: []string{"-g", "8192"}},
		// metadata_csum_seed, then a new UUID: checksums must use the
		// stored seed, not the UUID.
		{name: "csumseed", size: "512M", opts: []string{"-O", "metadata_csum_seed"}, tune: []string{"-U", "random"}},
		// quota is not a feature the editor writes: every edit must be a
		// clean refusal.
		{name: "quota", size: "512M", tune: []string{"-O", "quota"}, refuses: true},
		{name: "bigalloc", size: "512M", opts: []string{"-O", "bigalloc", "-C", "16384"}, refuses: true},
	}
}

// matrix holds what every cell shares.
type mxMatrix struct {
	dir      string // base images and fixture trees
	srcOnce  sync.Once
	src      string // fixture tree for mkfs -d
	srcH     string // the same plus htree/
	mu       sync.Mutex
	results  map[string]map[string]string
	phases   map[string]time.Duration
	variants []*mxVariant
	edits    []*mxEdit
}

func (m *mxMatrix) phase(name string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.phases[name] += d
}

func (m *mxMatrix) record(v, e, status string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.results[v] == nil {
		m.results[v] = map[string]string{}
	}
	m.results[v][e] = status
}

func (m *mxMatrix) table() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	ew := len("edit \\ variant")
	for _, e := range m.edits {
		ew = max(ew, len(e.name))
	}
	widths := make([]int, len(m.variants))
	for i, v := range m.variants {
		widths[i] = max(len(v.name), len("ok 00.00s"))
	}
	fmt.Fprintf(&b, "%-*s", ew, "edit \\ variant")
	for i, v := range m.variants {
		fmt.Fprintf(&b, " | %-*s", widths[i], v.name)
	}
	b.WriteString("\n")
	b.WriteString(strings.Repeat("-", ew))
	for i := range m.variants {
		b.WriteString("-+-" + strings.Repeat("-", widths[i]))
	}
	b.WriteString("\n")
	counts := map[string]int{}
	for _, e := range m.edits {
		fmt.Fprintf(&b, "%-*s", ew, e.name)
		for i, v := range m.variants {
			s, ok := m.results[v.name][e.name]
			if !ok {
				s = "."
			}
			counts[strings.Fields(s)[0]]++
			fmt.Fprintf(&b, " | %-*s", widths[i], s)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "ok=%d refused=%d unexpected refusals (refused*)=%d FAIL=%d skip=%d n/a=%d (not run: .)\n",
		counts["ok"], counts["refused"], counts["refused*"], counts["FAIL"], counts["skip"], counts["-"])
	fmt.Fprintf(&b, "cell time: copy+digest %v, edit %v, judge %v\n", m.phases["copy+digest"].Round(time.Millisecond),
		m.phases["edit"].Round(time.Millisecond), m.phases["judge"].Round(time.Millisecond))
	return b.String()
}

// edit is one column of the matrix.
type mxEdit struct {
	name     string
	fixtures bool     // needs the fixture tree
	inlineOK bool     // touches fixture dirs that inline_data makes inline: refusal expected there
	only     []string // variants it runs on (nil: all)
	long     bool     // skipped with -short
	// need is the free blocks and inodes the edit consumes at most.
	need func(bs uint64) (blocks, inodes uint64)
	// run performs the edit through the editor (sessions of Open..Close).
	// A non-nil error that wraps ErrUnsupportedFeature or ErrReadOnly is a
	// refusal; any other error fails the cell.
	run func(c *mxCell) error
	// check judges the image after a successful run (e2fsck has passed).
	check func(c *mxCell)
}

// cell is one variant x edit.
type mxCell struct {
	t         *testing.T
	v         *mxVariant
	img       string
	dir       string
	shaBefore string
}

func TestMatrix(t *testing.T) {
	testimg.Require(t, "mke2fs", "e2fsck", "debugfs", "dumpe2fs", "cp")
	dir, err := os.MkdirTemp("", "ext4matrix")
	require.NoError(t, err)
	m := &mxMatrix{dir: dir, results: map[string]map[string]string{}, phases: map[string]time.Duration{}, variants: mxVariants(), edits: mxEdits()}
	t.Cleanup(func() {
		tab := m.table()
		t.Log("\n" + tab)
		if p := os.Getenv("MATRIX_TABLE"); p != "" {
			if err := os.WriteFile(p, []byte(tab), 0o644); err != nil {
				t.Errorf("MATRIX_TABLE: %v", err)
			}
		}
		os.RemoveAll(dir)
	})
	// Cells mostly wait on e2fsck, debugfs and fsync, so more of them run
	// at once than -parallel (GOMAXPROCS) would allow: each cell is a
	// plain subtest started from its own goroutine, gated by sem.
	n := runtime.GOMAXPROCS(0) * 2
	if s := os.Getenv("MATRIX_PARALLEL"); s != "" {
		n, err = strconv.Atoi(s)
		require.NoError(t, err, "MATRIX_PARALLEL")
	}
	sem := make(chan struct{}, max(n, 1))
	var wg sync.WaitGroup
	for _, v := range m.variants {
		for _, e := range m.edits {
			wg.Add(1)
			go func() {
				defer wg.Done()
				t.Run(v.name+"/"+e.name, func(t *testing.T) {
					sem <- struct{}{}
					defer func() { <-sem }()
					m.runCell(t, v, e)
				})
			}()
		}
	}
	wg.Wait()
}

func (m *mxMatrix) runCell(t *testing.T, v *mxVariant, e *mxEdit) {
	if e.only != nil && !slices.Contains(e.only, v.name) {
		m.record(v.name, e.name, "-")
		t.Skipf("%s runs only on %v", e.name, e.only)
	}
	if e.fixtures && v.bare {
		m.record(v.name, e.name, "-")
		t.Skipf("variant %s has no fixture tree", v.name)
	}
	if e.long && testing.Short() {
		m.record(v.name, e.name, "skip")
		t.Skip("long cell skipped in -short mode")
	}
	status := "FAIL"
	defer func() {
		if t.Skipped() && status == "FAIL" {
			status = "skip"
		}
		m.record(v.name, e.name, status)
	}()

	m.ensureBase(t, v)
	if e.need != nil {
		nb, ni := e.need(v.bs)
		nb = nb + nb/50 + 4 // metadata slack: extent/indirect blocks, dir growth
		if nb > v.freeBlocks || ni > v.freeInodes {
			status = "skip"
			t.Skipf("needs %d blocks and %d inodes; %s has %d and %d free", nb, ni, v.name, v.freeBlocks, v.freeInodes)
		}
	}
	c := &mxCell{t: t, v: v, dir: t.TempDir()}
	c.img = filepath.Join(c.dir, "fs.img")
	t0 := time.Now()
	testimg.CopySparse(t, v.base, c.img)
	c.shaBefore = testimg.ImageDigest(t, c.img)

	start := time.Now()
	err := e.run(c)
	dur := time.Since(start)
	defer func() {
		m.phase("copy+digest", start.Sub(t0))
		m.phase("edit", dur)
		m.phase("judge", time.Since(start.Add(dur)))
	}()
	if err != nil {
		if mxRefusal(err) {
			t.Logf("refused: %v", err)
			require.Equal(t, c.shaBefore, testimg.ImageDigest(t, c.img), "a refused edit changed the image")
			testimg.RequireClean(t, c.img)
			status = "refused"
			if !v.refuses && !(e.inlineOK && v.hasFeature("inline_data")) {
				// A clean refusal passes, but this variant was expected
				// to be writable: flag it in the table.
				status = "refused*"
				t.Logf("UNEXPECTED refusal on %s (passes as a clean refusal)", v.name)
			}
			return
		}
		t.Fatalf("edit %s on %s: %v", e.name, v.name, err)
	}
	testimg.RequireClean(t, c.img)
	e.check(c)
	status = fmt.Sprintf("ok %.2fs", dur.Seconds())
}

// ---------------------------------------------------------------------------
// Base images.

func (m *mxMatrix) ensureSrc(t *testing.T) {
	m.srcOnce.Do(func() {
		src, srcH := filepath.Join(m.dir, "src"), filepath.Join(m.dir, "srcH")
		for _, root := range []string{src, srcH} {
			files := map[string][]byte{
				"fix_file": []byte(mxFixFile),
				"fix_big":  mxFixBig,
				"inl/a":    []byte(mxFixInl),
				"ra/file":  []byte(mxFixRa),
				"ra/sub/s": []byte(mxFixSub),
			}
			for name, data := range files {
				p := filepath.Join(root, name)
				require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
				require.NoError(t, os.WriteFile(p, data, 0o644))
			}
			require.NoError(t, os.MkdirAll(filepath.Join(root, "rb"), 0o755))
			require.NoError(t, os.Symlink("fix_file", filepath.Join(root, "fix_link")))
		}
		hd := filepath.Join(srcH, "htree")
		require.NoError(t, os.MkdirAll(hd, 0o755))
		for i := 1; i <= mxHtreeCount; i++ {
			require.NoError(t, os.WriteFile(filepath.Join(hd, fmt.Sprintf("f%04d", i)), nil, 0o644))
		}
		require.NoError(t, os.WriteFile(filepath.Join(m.dir, "xf.data"), []byte(mxFixXf), 0o644))
		m.src, m.srcH = src, srcH
	})
	require.NotEmpty(t, m.src, "fixture tree failed to build (see the first cell's log)")
}

func mxLinearName(i int) string {
	return fmt.Sprintf("%03d-%s", i, strings.Repeat("p", 190))
}

func (m *mxMatrix) ensureBase(t *testing.T, v *mxVariant) {
	v.once.Do(func() { m.buildBase(t, v) })
	if v.base == "" {
		t.Fatalf("base image of %s failed to build (see the first cell's log)", v.name)
	}
}

func (m *mxMatrix) buildBase(t *testing.T, v *mxVariant) {
	start := time.Now()
	img := filepath.Join(m.dir, v.name+".img")
	opts := append([]string(nil), v.opts...)
	if !v.bare {
		m.ensureSrc(t)
		src := m.src
		if v.htree {
			src = m.srcH
		}
		opts = append(opts, "-d", src)
	}
	testimg.Mkfs(t, m.dir, v.name+".img", v.size, opts...)
	if v.htree {
		out, err := mxExec("e2fsck", "-fyD", img)
		if err != nil && !strings.Contains(err.Error(), "exit status 1") {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
		s := testimg.DebugfsStat(t, img, "/htree")
		require.NotZero(t, s.Flags&mxFlagIndex, "e2fsck -fyD did not index /htree")
		mxRequireHtree(t, img, "/htree", true)
	}
	if !v.bare {
		var sc strings.Builder
		fmt.Fprintf(&sc, "write %s xf\nea_set xf user.test value\nmkdir linear\ncd linear\n", filepath.Join(m.dir, "xf.data"))
		for i := 0; i < mxLinearCount; i++ {
			fmt.Fprintf(&sc, "mknod %s p\n", mxLinearName(i))
		}
		testimg.DebugfsWrite(t, img, sc.String())
	}
	hdr := testimg.Dumpe2fs(t, img, true)
	bs, _ := testimg.HeaderField(hdr, "Block size")
	free, _ := testimg.HeaderField(hdr, "Free blocks")
	if v.nearlyFull {
		const leave = 50
		n := free - leave
		if !v.extents() {
			n -= n/(bs/4) + 3 // indirect blocks
		}
		data := mxData(7, int(n*bs))
		host := filepath.Join(m.dir, v.name+".filler")
		require.NoError(t, os.WriteFile(host, data, 0o644))
		testimg.DebugfsWrite(t, img, fmt.Sprintf("write %s filler\n", host))
		hdr = testimg.Dumpe2fs(t, img, true)
		free, _ = testimg.HeaderField(hdr, "Free blocks")
		require.True(t, free > 0 && free <= 64, "nearly full image has %d free blocks", free)
	}
	if v.fragmented {
		// Allocate all but 300 blocks, then free every other one of the
		// first 24000: new files get one extent per block.
		var sc strings.Builder
		fmt.Fprintf(&sc, "write /dev/null filler\nfallocate filler 0 %d\n", free-300)
		for i := 1; i < 24000; i += 2 {
			fmt.Fprintf(&sc, "punch filler %d %d\n", i, i)
		}
		testimg.DebugfsWrite(t, img, sc.String())
		hdr = testimg.Dumpe2fs(t, img, true)
		free, _ = testimg.HeaderField(hdr, "Free blocks")
		require.Greater(t, free, uint64(11000), "fragmented image")
	}
	if v.above4G {
		low := uint64(4<<30) / bs
		testimg.DebugfsWrite(t, img, fmt.Sprintf("write /dev/null filler\nfallocate filler 0 %d\n", low-1))
		for _, g := range testimg.ParseGroups(testimg.Dumpe2fs(t, img, false)) {
			if g.Last < low {
				require.Zero(t, g.FreeBlocks, "group %d below 4 GiB still has free blocks", g.N)
			}
		}
		hdr = testimg.Dumpe2fs(t, img, true)
		free, _ = testimg.HeaderField(hdr, "Free blocks")
	}
	if v.tune != nil {
		if out, err := mxExec("tune2fs", append(v.tune, img)...); err != nil {
			t.Fatalf("tune2fs %v: %v\n%s", v.tune, err, out)
		}
		hdr = testimg.Dumpe2fs(t, img, true)
		free, _ = testimg.HeaderField(hdr, "Free blocks")
	}
	testimg.RequireClean(t, img)
	if !v.bare {
		s := testimg.DebugfsStat(t, img, "/linear")
		require.Zero(t, s.Flags&mxFlagIndex, "/linear must not be indexed")
		require.Greater(t, s.Size, bs, "/linear must span several blocks")
	}
	v.bs = bs
	v.freeBlocks = free
	v.freeInodes, _ = testimg.HeaderField(hdr, "Free inodes")
	v.ipg, _ = testimg.HeaderField(hdr, "Inodes per group")
	v.features = mxFeatures(hdr)
	v.groups = testimg.ParseGroups(testimg.Dumpe2fs(t, img, false))
	v.base = img
	t.Logf("built base %s in %v: bs=%d free blocks=%d free inodes=%d groups=%d features=%s",
		v.name, time.Since(start).Round(time.Millisecond), bs, v.freeBlocks, v.freeInodes, len(v.groups), v.features)
}

func mxFeatures(hdr string) string {
	for _, l := range strings.Split(hdr, "\n") {
		if rest, ok := strings.CutPrefix(l, "Filesystem features:"); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// ---------------------------------------------------------------------------
// Cell helpers.

// session opens the cell's image, runs fn and closes it; the first error
// wins.
func (c *mxCell) session(fn func(img *ext4edit.Image) error) error {
	img, err := ext4edit.Open(c.img, nil)
	if err != nil {
		return err
	}
	err = fn(img)
	if cerr := img.Close(); err == nil {
		err = cerr
	}
	return err
}

// readOnly opens the image read-only for the editor's own view.
func (c *mxCell) readOnly(fn func(img *ext4edit.Image)) {
	c.t.Helper()
	img, err := ext4edit.Open(c.img, &ext4edit.Options{ReadOnly: true})
	require.NoError(c.t, err)
	defer img.Close()
	fn(img)
}

func (c *mxCell) stat(p string) testimg.Stat {
	c.t.Helper()
	return testimg.DebugfsStat(c.t, c.img, p)
}

func (c *mxCell) requireAbsent(p string) {
	c.t.Helper()
	out, _ := testimg.DebugfsOutErr(c.t, c.img, fmt.Sprintf("stat %q", p))
	require.NotContains(c.t, out, "Inode:", "%s should not exist", p)
}

func (c *mxCell) requireNode(p, typ string, mode uint32, uid, gid uint32) testimg.Stat {
	c.t.Helper()
	s := c.stat(p)
	require.Equal(c.t, typ, s.Type, "%s type", p)
	require.Equal(c.t, fmt.Sprintf("%04o", mode), fmt.Sprintf("%04o", s.Mode), "%s mode", p)
	require.Equal(c.t, uid, s.UID, "%s uid", p)
	require.Equal(c.t, gid, s.GID, "%s gid", p)
	return s
}

// requireContent compares a file's bytes as debugfs reads them.
func (c *mxCell) requireContent(p string, want []byte) {
	c.t.Helper()
	s := c.stat(p)
	require.Equal(c.t, uint64(len(want)), s.Size, "%s size", p)
	if len(want) <= 64*mxKiB {
		got := testimg.Cat(c.t, c.img, p)
		if s.Flags&mxFlagInline != 0 && len(got) > len(want) {
			// debugfs 1.47 cats the whole inline area (60 bytes and up)
			// of an inline_data file, not i_size bytes: the rest must be
			// zeros.
			require.Equal(c.t, make([]byte, len(got)-len(want)), got[len(want):], "%s: inline bytes past i_size", p)
			got = got[:len(want)]
		}
		require.Equal(c.t, string(want), string(got), "%s contents", p)
		return
	}
	c.requireSHA(p, mxSHA(want), uint64(len(want)))
}

func (c *mxCell) requireSHA(p, want string, size uint64) {
	c.t.Helper()
	host := filepath.Join(c.dir, "dump.bin")
	testimg.DebugfsDump(c.t, c.img, p, host)
	st, err := os.Stat(host)
	require.NoError(c.t, err)
	require.Equal(c.t, int64(size), st.Size(), "%s dumped size", p)
	require.Equal(c.t, want, testimg.SHA256File(c.t, host), "%s contents (sha256)", p)
	os.Remove(host)
}

// requireAbove4G checks, on the 6G variant, that a file's data blocks all
// lie above the first 4 GiB.
func (c *mxCell) requireAbove4G(p string) {
	c.t.Helper()
	if !c.v.above4G {
		return
	}
	low := uint64(4<<30) / c.v.bs
	blks := testimg.DebugfsBlocks(c.t, c.img, p)
	require.NotEmpty(c.t, blks, "%s has no blocks", p)
	for _, b := range blks {
		require.GreaterOrEqual(c.t, b, low, "%s has block %d below 4 GiB", p, b)
	}
	c.t.Logf("%s: %d blocks, first %d (4 GiB = block %d)", p, len(blks), blks[0], low)
}

func (c *mxCell) ls(dir string) map[string]uint64 {
	c.t.Helper()
	out := map[string]uint64{}
	for _, e := range testimg.DebugfsLs(c.t, c.img, dir) {
		out[e.Name] = e.Inode
	}
	return out
}

// mxRequireHtree checks debugfs's htree dump of dir: a root node and no
// complaint from debugfs. Without metadata_csum, debugfs 1.47 always says
// "Directory block does not have space for checksum while calculating
// checksum for htree root" (and "... for logical block N" for each interior
// node), also for trees e2fsck -D built: those lines are not complaints
// about the tree.
func mxRequireHtree(t testing.TB, img, dir string, csum bool) {
	t.Helper()
	out, errOut := testimg.DebugfsOutErr(t, img, fmt.Sprintf("htree %q", dir))
	if !csum {
		var keep []string
		for _, l := range strings.Split(errOut, "\n") {
			if !strings.Contains(l, "Directory block does not have space for checksum while calculating checksum for ") {
				keep = append(keep, l)
			}
		}
		errOut = strings.TrimSpace(strings.Join(keep, "\n"))
	}
	require.Empty(t, errOut, "debugfs htree %s complained", dir)
	require.Contains(t, out, "Root node dump:", "htree %s", dir)
	for _, l := range strings.Split(out, "\n") {
		for _, bad := range []string{"Corrupted", "Bad ", "corrupt", "Couldn't", "error", "while "} {
			require.NotContains(t, l, bad, "debugfs htree %s: %q", dir, l)
		}
	}
}

func mxData(seed uint64, n int) []byte {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func mxSHA(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func mxExec(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

func mxNeed(blocks, inodes uint64) func(uint64) (uint64, uint64) {
	return func(uint64) (uint64, uint64) { return blocks, inodes }
}

func mxNeedBytes(n, extra, inodes uint64) func(uint64) (uint64, uint64) {
	return func(bs uint64) (uint64, uint64) { return (n+bs-1)/bs + extra, inodes }
}

// ---------------------------------------------------------------------------
// The edits.

func mxEdits() []*mxEdit {
	deepPath := func(n int) string {
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "/d%02d", i)
		}
		return b.String()
	}
	const smallData = "small file written by ext4edit\n"
	big5 := mxData(5, 5*mxMiB+123)
	fastTarget := "some/relative/target"
	slowTarget := "/" + strings.Repeat("long-target/", 10) + "end"
	hgrowName := mxHgrowName
	linAdd := func(i int) string { return fmt.Sprintf("added-%03d-%s", i, strings.Repeat("n", 40)) }

	return []*mxEdit{
		{
			name: "read-fixtures", fixtures: true,
			run: func(c *mxCell) error {
				img, err := ext4edit.Open(c.img, &ext4edit.Options{ReadOnly: true})
				if err != nil {
					return err
				}
				defer img.Close()
				checks := []func() error{
					func() error { return mxExpectFile(img, "/fix_file", mxFixFile) },
					func() error { return mxExpectFile(img, "/fix_big", string(mxFixBig)) },
					func() error { return mxExpectFile(img, "/inl/a", mxFixInl) },
					func() error { return mxExpectFile(img, "/ra/sub/s", mxFixSub) },
					func() error { return mxExpectFile(img, "/xf", mxFixXf) },
					func() error {
						l, err := img.Readlink("/fix_link")
						if err == nil && l != "fix_file" {
							err = fmt.Errorf("readlink /fix_link = %q", l)
						}
						return err
					},
					func() error { return mxExpectFile(img, "/fix_link", mxFixFile) },
					func() error {
						v, err := img.GetXattr("/xf", "user.test")
						if err == nil && string(v) != "value" {
							err = fmt.Errorf("user.test = %q", v)
						}
						return err
					},
					func() error { return mxExpectDirLen(img, "/linear", mxLinearCount) },
					func() error { return mxExpectDirLen(img, "/inl", 1) },
					func() error {
						if !c.v.htree {
							return nil
						}
						if err := mxExpectDirLen(img, "/htree", mxHtreeCount); err != nil {
							return err
						}
						for _, i := range []int{1, 777, 1500, 2999, 3000} {
							if _, err := img.Stat(fmt.Sprintf("/htree/f%04d", i)); err != nil {
								return err
							}
						}
						return nil
					},
					func() error { return fs.WalkDir(img.FS(), ".", func(string, fs.DirEntry, error) error { return nil }) },
				}
				for _, ck := range checks {
					if err := ck(); err != nil {
						return fmt.Errorf("read check: %w", err)
					}
				}
				return nil
			},
			check: func(c *mxCell) {
				require.Equal(c.t, c.shaBefore, testimg.ImageDigest(c.t, c.img), "a read-only session changed the image")
			},
		},
		{
			name: "mkdir-deep", need: mxNeed(12, 12),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.MkdirAll(deepPath(12), 0o750) })
			},
			check: func(c *mxCell) {
				for i := 1; i <= 12; i++ {
					s := c.requireNode(deepPath(i), "directory", 0o750, 0, 0)
					want := uint32(3)
					if i == 12 {
						want = 2
					}
					require.Equal(c.t, want, s.Links, "%s links", deepPath(i))
				}
				ents := c.ls(deepPath(12))
				require.Equal(c.t, c.ls(deepPath(11))["d12"], ents["."])
				require.Equal(c.t, c.stat(deepPath(11)).Inode, ents[".."], "'..' of the leaf")
			},
		},
		{
			name: "small-file", need: mxNeed(1, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.WriteFile("/small.txt", []byte(smallData), 0o640) })
			},
			check: func(c *mxCell) {
				c.requireNode("/small.txt", "regular", 0o640, 0, 0)
				c.requireContent("/small.txt", []byte(smallData))
				c.requireAbove4G("/small.txt")
			},
		},
		{
			name: "file-5M", need: mxNeedBytes(uint64(len(big5)), 8, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.WriteFile("/f5m", big5, 0o644) })
			},
			check: func(c *mxCell) {
				c.requireNode("/f5m", "regular", 0o644, 0, 0)
				c.requireContent("/f5m", big5)
				c.requireAbove4G("/f5m")
				if out := testimg.Debugfs(c.t, c.img, "dump_extents /f5m"); out != "" {
					lines := strings.SplitN(out, "\n", 3)
					c.t.Logf("/f5m extent tree: %d lines; %s", strings.Count(out, "\n"), strings.Join(lines[:min(2, len(lines))], " | "))
				}
			},
		},
		{
			name: "stream-300M", long: true, only: []string{"default", "ext3", "b1024", "6G", "ext2-b1024"},
			need: mxNeedBytes(300*mxMiB, 64, 1),
			run: func(c *mxCell) error {
				h := sha256.New()
				err := c.session(func(img *ext4edit.Image) error {
					f, err := img.Create("/f300m", 0o600)
					if err != nil {
						return err
					}
					for i := range 300 {
						chunk := mxData(1000+uint64(i), mxMiB)
						h.Write(chunk)
						if _, err := f.Write(chunk); err != nil {
							f.Close()
							return err
						}
					}
					return f.Close()
				})
				c.t.Logf("300 MiB streamed; sha256 %x", h.Sum(nil))
				os.WriteFile(filepath.Join(c.dir, "want.sha"), []byte(hex.EncodeToString(h.Sum(nil))), 0o644)
				return err
			},
			check: func(c *mxCell) {
				want, err := os.ReadFile(filepath.Join(c.dir, "want.sha"))
				require.NoError(c.t, err)
				c.requireNode("/f300m", "regular", 0o600, 0, 0)
				c.requireSHA("/f300m", string(want), 300*mxMiB)
				c.requireAbove4G("/f300m")
			},
		},
		{
			name: "chmod", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Chmod("/fix_file", fs.ModeSetuid|0o751) })
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_file", "regular", 0o4751, 0, 0)
				c.requireContent("/fix_file", []byte(mxFixFile))
			},
		},
		{
			name: "chown", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Chown("/fix_file", 100000, 200000) })
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_file", "regular", 0o644, 100000, 200000)
				c.requireContent("/fix_file", []byte(mxFixFile))
			},
		},
		{
			name: "lchown-symlink", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Lchown("/fix_link", 4321, 8765) })
			},
			check: func(c *mxCell) {
				s := c.requireNode("/fix_link", "symlink", 0o777, 4321, 8765)
				require.Equal(c.t, "fix_file", s.FastLink)
				c.requireNode("/fix_file", "regular", 0o644, 0, 0)
			},
		},
		{
			name: "symlink-fast", need: mxNeed(0, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Symlink(fastTarget, "/fast") })
			},
			check: func(c *mxCell) {
				s := c.requireNode("/fast", "symlink", 0o777, 0, 0)
				require.Equal(c.t, uint64(len(fastTarget)), s.Size)
				require.Equal(c.t, fastTarget, s.FastLink)
				c.readOnly(func(img *ext4edit.Image) {
					l, err := img.Readlink("/fast")
					require.NoError(c.t, err)
					require.Equal(c.t, fastTarget, l)
				})
			},
		},
		{
			name: "symlink-slow", need: mxNeed(1, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Symlink(slowTarget, "/slow") })
			},
			check: func(c *mxCell) {
				s := c.requireNode("/slow", "symlink", 0o777, 0, 0)
				require.Equal(c.t, uint64(len(slowTarget)), s.Size)
				if s.FastLink != "" {
					require.Equal(c.t, slowTarget, s.FastLink)
				}
				require.Equal(c.t, slowTarget, string(testimg.Cat(c.t, c.img, "/slow")))
				c.readOnly(func(img *ext4edit.Image) {
					l, err := img.Readlink("/slow")
					require.NoError(c.t, err)
					require.Equal(c.t, slowTarget, l)
				})
			},
		},
		{
			name: "linear+500", fixtures: true,
			need: func(bs uint64) (uint64, uint64) { return 500 + 500*64/bs + 4, 500 },
			run: func(c *mxCell) error {
				s := c.stat("/linear")
				require.Zero(c.t, s.Flags&mxFlagIndex, "/linear is indexed before the edit")
				require.Greater(c.t, s.Size, c.v.bs, "/linear is one block before the edit")
				return c.session(func(img *ext4edit.Image) error {
					for i := range 500 {
						if err := img.WriteFile("/linear/"+linAdd(i), []byte(linAdd(i)), 0o644); err != nil {
							return err
						}
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				ents := c.ls("/linear")
				require.Len(c.t, ents, mxLinearCount+500+2)
				for i := range 500 {
					require.Contains(c.t, ents, linAdd(i))
				}
				for i := range mxLinearCount {
					require.Contains(c.t, ents, mxLinearName(i))
				}
				for _, i := range []int{0, 250, 499} {
					c.requireContent("/linear/"+linAdd(i), []byte(linAdd(i)))
				}
				c.t.Logf("/linear flags after: 0x%x", c.stat("/linear").Flags)
			},
		},
		{
			name: "htree+500", fixtures: true,
			need: func(bs uint64) (uint64, uint64) { return 500 + 500*192/bs + 8, 501 },
			run: func(c *mxCell) error {
				dir := "/hgrow"
				if c.v.htree {
					dir = "/htree"
					require.NotZero(c.t, c.stat(dir).Flags&mxFlagIndex, "/htree is not indexed before the edit")
					mxRequireHtree(c.t, c.img, dir, c.v.hasFeature("metadata_csum"))
				}
				return c.session(func(img *ext4edit.Image) error {
					if !c.v.htree {
						if err := img.Mkdir(dir, 0o755); err != nil {
							return err
						}
					}
					for i := range 500 {
						if err := img.WriteFile(dir+"/"+hgrowName(i), []byte{byte(i)}, 0o644); err != nil {
							return err
						}
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				dir, base := "/hgrow", 0
				if c.v.htree {
					dir, base = "/htree", mxHtreeCount
				}
				s := c.stat(dir)
				require.Greater(c.t, s.Size, c.v.bs, "%s did not grow past one block", dir)
				if c.v.hasFeature("dir_index") {
					require.NotZero(c.t, s.Flags&mxFlagIndex, "%s is not indexed", dir)
					mxRequireHtree(c.t, c.img, dir, c.v.hasFeature("metadata_csum"))
				}
				ents := c.ls(dir)
				require.Len(c.t, ents, base+500+2)
				for i := range 500 {
					require.Contains(c.t, ents, hgrowName(i))
				}
				c.requireContent(dir+"/"+hgrowName(321), []byte{byte(321 % 256)})
				c.readOnly(func(img *ext4edit.Image) {
					for _, i := range []int{0, 123, 499} {
						fi, err := img.Stat(dir + "/" + hgrowName(i))
						require.NoError(c.t, err)
						require.Equal(c.t, int64(1), fi.Size())
					}
					if c.v.htree {
						_, err := img.Stat("/htree/f1234")
						require.NoError(c.t, err)
					}
					de, err := img.ReadDir(dir)
					require.NoError(c.t, err)
					require.Len(c.t, de, base+500)
				})
			},
		},
		{
			name: "remove-create-1", fixtures: true, need: mxNeed(1, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					if err := img.Remove("/fix_file"); err != nil {
						return err
					}
					return img.WriteFile("/fix_file", []byte("recreated in one session\n"), 0o600)
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_file", "regular", 0o600, 0, 0)
				c.requireContent("/fix_file", []byte("recreated in one session\n"))
			},
		},
		{
			name: "remove-create-2", fixtures: true, need: mxNeed(1, 1),
			run: func(c *mxCell) error {
				if err := c.session(func(img *ext4edit.Image) error { return img.Remove("/fix_file") }); err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				c.requireAbsent("/fix_file")
				return c.session(func(img *ext4edit.Image) error {
					return img.WriteFile("/fix_file", []byte("recreated in a second session\n"), 0o600)
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_file", "regular", 0o600, 0, 0)
				c.requireContent("/fix_file", []byte("recreated in a second session\n"))
			},
		},
		{
			name: "removeall-recreate", fixtures: true, need: mxNeed(2, 2),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					if err := img.RemoveAll("/linear"); err != nil {
						return err
					}
					if c.v.htree {
						if err := img.RemoveAll("/htree"); err != nil {
							return err
						}
					}
					if err := img.Mkdir("/linear", 0o700); err != nil {
						return err
					}
					return img.WriteFile("/linear/x", []byte("x\n"), 0o644)
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/linear", "directory", 0o700, 0, 0)
				ents := c.ls("/linear")
				require.Len(c.t, ents, 3)
				require.Contains(c.t, ents, "x")
				c.requireContent("/linear/x", []byte("x\n"))
				if c.v.htree {
					c.requireAbsent("/htree")
				}
			},
		},
		{
			name: "overwrite-shorter", fixtures: true, need: mxNeed(1, 0),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.WriteFile("/fix_big", []byte("short now\n"), 0o600) })
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_big", "regular", 0o644, 0, 0) // an existing file keeps its mode
				c.requireContent("/fix_big", []byte("short now\n"))
			},
		},
		{
			name: "overwrite-longer", fixtures: true, need: mxNeedBytes(mxMiB, 4, 0),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.WriteFile("/fix_file", mxData(11, mxMiB+5), 0o600) })
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_file", "regular", 0o644, 0, 0)
				c.requireContent("/fix_file", mxData(11, mxMiB+5))
				c.requireAbove4G("/fix_file")
			},
		},
		{
			name: "files-9000", long: true, need: mxNeed(9000+64, 9004),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					for d := range 4 {
						if err := img.Mkdir(fmt.Sprintf("/m%d", d), 0o755); err != nil {
							return err
						}
					}
					for i := range 9000 {
						if err := img.WriteFile(fmt.Sprintf("/m%d/f%05d", i%4, i), fmt.Appendf(nil, "file %05d\n", i), 0o644); err != nil {
							return err
						}
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				for d := range 4 {
					ents := c.ls(fmt.Sprintf("/m%d", d))
					require.Len(c.t, ents, 9000/4+2, "/m%d", d)
				}
				for _, i := range []int{0, 1, 4097, 8191, 8192, 8999} {
					c.requireContent(fmt.Sprintf("/m%d/f%05d", i%4, i), fmt.Appendf(nil, "file %05d\n", i))
				}
				after := testimg.ParseGroups(testimg.Dumpe2fs(c.t, c.img, false))
				require.Len(c.t, after, len(c.v.groups))
				var wasUninit, crossedI, crossedB []int
				for i, g := range c.v.groups {
					if g.HasFlag("INODE_UNINIT") {
						wasUninit = append(wasUninit, g.N)
						if after[i].FreeInodes < c.v.ipg {
							crossedI = append(crossedI, g.N)
						}
					}
					if g.HasFlag("BLOCK_UNINIT") && after[i].FreeBlocks < g.FreeBlocks {
						crossedB = append(crossedB, g.N)
					}
				}
				c.t.Logf("groups INODE_UNINIT before: %v; now holding inodes: %v; BLOCK_UNINIT groups now holding blocks: %v",
					wasUninit, crossedI, crossedB)
				if c.v.hasFeature("uninit_bg") || c.v.hasFeature("metadata_csum") {
					if len(c.v.groups) == 1 {
						c.t.Logf("one block group only: no uninit group to cross into")
						return
					}
					require.NotEmpty(c.t, wasUninit, "no INODE_UNINIT group in the base image")
					require.NotEmpty(c.t, crossedI, "9000 files never used an INODE_UNINIT group")
				}
			},
		},
		{
			name: "hardlink", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Link("/fix_file", "/hl") })
			},
			check: func(c *mxCell) {
				a, b := c.stat("/fix_file"), c.stat("/hl")
				require.Equal(c.t, a.Inode, b.Inode)
				require.Equal(c.t, uint32(2), b.Links)
				c.requireContent("/hl", []byte(mxFixFile))
			},
		},
		{
			name: "mknod", need: mxNeed(0, 4),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					return errors.Join(
						img.Mknod("/chr", fs.ModeDevice|fs.ModeCharDevice|0o620, 1, 3),
						img.Mknod("/blk", fs.ModeDevice|0o660, 8, 0),
						img.Mknod("/chr2", fs.ModeDevice|fs.ModeCharDevice|0o600, 300, 70000),
						img.Mknod("/fifo", fs.ModeNamedPipe|0o644, 0, 0),
					)
				})
			},
			check: func(c *mxCell) {
				for _, d := range []struct {
					p, typ       string
					mode         uint32
					major, minor uint32
				}{
					{"/chr", "character special", 0o620, 1, 3},
					{"/blk", "block special", 0o660, 8, 0},
					{"/chr2", "character special", 0o600, 300, 70000},
				} {
					s := c.requireNode(d.p, d.typ, d.mode, 0, 0)
					maj, mnr, ok := testimg.StatDevice(s)
					require.True(c.t, ok, "%s: no device line\n%s", d.p, s.Raw)
					require.Equal(c.t, [2]uint32{d.major, d.minor}, [2]uint32{maj, mnr}, "%s device", d.p)
				}
				c.requireNode("/fifo", "FIFO", 0o644, 0, 0)
				c.readOnly(func(img *ext4edit.Image) {
					fi, err := img.Lstat("/chr2")
					require.NoError(c.t, err)
					info := fi.Sys().(*ext4edit.InodeInfo)
					require.Equal(c.t, [2]uint32{300, 70000}, [2]uint32{info.Major, info.Minor})
				})
			},
		},
		{
			name: "rename-file", fixtures: true, inlineOK: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Rename("/ra/file", "/rb/moved") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/ra/file")
				c.requireContent("/rb/moved", []byte(mxFixRa))
			},
		},
		{
			name: "rename-dir", fixtures: true, inlineOK: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Rename("/ra/sub", "/rb/sub2") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/ra/sub")
				rb := c.stat("/rb")
				require.Equal(c.t, rb.Inode, c.ls("/rb/sub2")[".."], "'..' of the moved directory")
				require.Equal(c.t, uint32(2), c.stat("/ra").Links)
				require.Equal(c.t, uint32(3), rb.Links)
				c.requireContent("/rb/sub2/s", []byte(mxFixSub))
			},
		},
		{
			name: "rename-ours", need: mxNeed(8, 6),
			run: func(c *mxCell) error {
				err := c.session(func(img *ext4edit.Image) error {
					return errors.Join(
						img.Mkdir("/x1", 0o755), img.Mkdir("/x2", 0o755), img.Mkdir("/x1/d", 0o755),
						img.WriteFile("/x1/f", []byte("f data\n"), 0o644),
						img.WriteFile("/x1/d/g", []byte("g data\n"), 0o644),
						img.WriteFile("/x2/victim", []byte("to be replaced\n"), 0o644),
					)
				})
				if err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				return c.session(func(img *ext4edit.Image) error {
					if err := img.Rename("/x1/f", "/x2/f2"); err != nil {
						return err
					}
					if err := img.Rename("/x1/d", "/x2/d2"); err != nil {
						return err
					}
					return img.Rename("/x2/f2", "/x2/victim")
				})
			},
			check: func(c *mxCell) {
				c.requireAbsent("/x1/f")
				c.requireAbsent("/x1/d")
				c.requireAbsent("/x2/f2")
				require.Len(c.t, c.ls("/x1"), 2)
				c.requireContent("/x2/victim", []byte("f data\n"))
				c.requireContent("/x2/d2/g", []byte("g data\n"))
				x2 := c.stat("/x2")
				require.Equal(c.t, x2.Inode, c.ls("/x2/d2")[".."], "'..' of the moved directory")
				require.Equal(c.t, uint32(2), c.stat("/x1").Links)
				require.Equal(c.t, uint32(3), x2.Links)
			},
		},
		{
			name: "xattr-chmod", fixtures: true,
			run: func(c *mxCell) error {
				out, errOut := testimg.DebugfsOutErr(c.t, c.img, "ea_get /xf user.test")
				require.Contains(c.t, out, "value", "fixture xattr missing before the edit: %s", errOut)
				return c.session(func(img *ext4edit.Image) error { return img.Chmod("/xf", 0o600) })
			},
			check: func(c *mxCell) {
				c.requireNode("/xf", "regular", 0o600, 0, 0)
				out, errOut := testimg.DebugfsOutErr(c.t, c.img, "ea_get /xf user.test")
				require.Empty(c.t, errOut)
				require.Contains(c.t, out, `"value"`)
				c.requireContent("/xf", []byte(mxFixXf))
				c.readOnly(func(img *ext4edit.Image) {
					v, err := img.GetXattr("/xf", "user.test")
					require.NoError(c.t, err)
					require.Equal(c.t, "value", string(v))
				})
			},
		},
		{
			name: "inline-dir", fixtures: true, inlineOK: true, need: mxNeed(2, 3),
			run: func(c *mxCell) error {
				inline := c.stat("/inl").Flags&mxFlagInline != 0
				require.Equal(c.t, c.v.hasFeature("inline_data"), inline, "/inl inline_data flag")
				var errs []error
				err := c.session(func(img *ext4edit.Image) error {
					errs = []error{
						img.WriteFile("/inl/new", []byte("new\n"), 0o644),
						img.Mkdir("/inl/d", 0o755),
						img.Symlink("a", "/inl/sl"),
						img.Link("/fix_file", "/inl/hl"),
						img.Remove("/inl/a"),
						img.Rename("/fix_big", "/inl/moved"),
						img.RemoveAll("/ra"), // /ra and /ra/sub are inline too
					}
					return nil
				})
				if err != nil {
					return err
				}
				if !inline {
					return errors.Join(errs...)
				}
				for i, e := range errs {
					if !errors.Is(e, ext4edit.ErrUnsupportedFeature) {
						return fmt.Errorf("edit %d into an inline directory: want ErrUnsupportedFeature, got %v", i, e)
					}
				}
				return errs[0] // all refused: the image must be unchanged
			},
			check: func(c *mxCell) {
				c.requireContent("/inl/new", []byte("new\n"))
				c.requireNode("/inl/d", "directory", 0o755, 0, 0)
				require.Equal(c.t, "a", c.stat("/inl/sl").FastLink)
				require.Equal(c.t, uint32(2), c.stat("/fix_file").Links)
				c.requireAbsent("/inl/a")
				c.requireAbsent("/fix_big")
				c.requireContent("/inl/moved", mxFixBig)
				c.requireAbsent("/ra")
			},
		},
		{
			name: "enospc-blocks", only: []string{"nearlyfull", "nearlyfull-ext2"},
			run: func(c *mxCell) error {
				err := c.session(func(img *ext4edit.Image) error {
					werr := img.WriteFile("/toobig", make([]byte, (c.v.freeBlocks+1)*c.v.bs), 0o644)
					if !errors.Is(werr, ext4edit.ErrNoSpace) {
						return fmt.Errorf("WriteFile beyond free space: want ErrNoSpace, got %v", werr)
					}
					werr = img.WriteFile("/fix_file", make([]byte, (c.v.freeBlocks+8)*c.v.bs), 0o644)
					if !errors.Is(werr, ext4edit.ErrNoSpace) {
						return fmt.Errorf("overwrite beyond free space: want ErrNoSpace, got %v", werr)
					}
					return nil
				})
				if err != nil {
					return err
				}
				require.Equal(c.t, c.shaBefore, testimg.ImageDigest(c.t, c.img), "a failed ENOSPC write changed the image")
				return nil
			},
			check: func(c *mxCell) {
				c.requireAbsent("/toobig")
				c.requireContent("/fix_file", []byte(mxFixFile))
			},
		},
		{
			name: "enospc-stream", only: []string{"nearlyfull", "nearlyfull-ext2"},
			run: func(c *mxCell) error {
				var werr error
				err := c.session(func(img *ext4edit.Image) error {
					f, err := img.Create("/stream", 0o644)
					if err != nil {
						return err
					}
					limit := int((c.v.freeBlocks+1)*c.v.bs) + 2*mxMiB
					for n := 0; n < limit && werr == nil; n += 64 * mxKiB {
						_, werr = f.Write(mxData(uint64(n), 64*mxKiB))
					}
					if cerr := f.Close(); werr == nil {
						werr = cerr
					}
					return nil
				})
				if err != nil {
					return err
				}
				if !errors.Is(werr, ext4edit.ErrNoSpace) {
					return fmt.Errorf("streaming past free space: want ErrNoSpace, got %v", werr)
				}
				return nil
			},
			check: func(c *mxCell) {
				s := c.requireNode("/stream", "regular", 0o644, 0, 0)
				c.t.Logf("/stream kept %d bytes", s.Size)
			},
		},
		{
			// Extra: Sync in the middle of a session must leave a clean
			// image (judged while the session is still open), and later
			// edits must not clobber what the synced state references.
			name: "sync-midway", need: mxNeedBytes(700*mxKiB, 16, 7),
			run: func(c *mxCell) error {
				img, err := ext4edit.Open(c.img, nil)
				if err != nil {
					return err
				}
				defer img.Close()
				steps := []func() error{
					func() error { return img.WriteFile("/s1", mxData(21, 100*mxKiB), 0o644) },
					img.Sync,
					func() error { return img.WriteFile("/s2", mxData(22, 200*mxKiB), 0o644) },
					func() error { return img.Remove("/s1") },
					img.Sync,
					func() error { return img.WriteFile("/s3", mxData(23, 300*mxKiB), 0o644) },
					func() error { return img.MkdirAll("/sd/a/b", 0o755) },
					func() error { return img.WriteFile("/sd/a/b/f", mxData(24, 50*mxKiB), 0o644) },
					img.Sync,
					func() error { return img.RemoveAll("/sd") },
					func() error { return img.WriteFile("/s4", mxData(25, 50*mxKiB), 0o644) },
					img.Sync,
				}
				for i, st := range steps {
					if err := st(); err != nil {
						return fmt.Errorf("step %d: %w", i, err)
					}
					if ok, out := testimg.Fsck(c.t, c.img); !ok {
						return fmt.Errorf("after step %d (session still open) e2fsck -fn is not clean:\n%s", i, out)
					}
				}
				return img.Close()
			},
			check: func(c *mxCell) {
				c.requireAbsent("/s1")
				c.requireAbsent("/sd")
				c.requireContent("/s2", mxData(22, 200*mxKiB))
				c.requireContent("/s3", mxData(23, 300*mxKiB))
				c.requireContent("/s4", mxData(25, 50*mxKiB))
			},
		},
		{
			// Extra: one file rewritten five times in one session.
			name: "overwrite-repeat", fixtures: true, need: mxNeedBytes(1500*mxKiB, 16, 0),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					for i, n := range []int{300 * mxKiB, 10, mxMiB, 0, 77777} {
						if err := img.WriteFile("/fix_big", mxData(uint64(30+i), n), 0o600); err != nil {
							return err
						}
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/fix_big", "regular", 0o644, 0, 0)
				c.requireContent("/fix_big", mxData(34, 77777))
			},
		},
		{
			// Extra: a File left open is finished by the image's Close.
			name: "stream-unclosed", need: mxNeedBytes(3*mxMiB, 16, 1),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					f, err := img.Create("/su", 0o640)
					if err != nil {
						return err
					}
					data := mxData(40, 3*mxMiB+5)
					for off := 0; off < len(data); off += 100 * mxKiB {
						if _, err := f.Write(data[off:min(off+100*mxKiB, len(data))]); err != nil {
							return err
						}
					}
					return nil // no f.Close: img.Close must finish it
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/su", "regular", 0o640, 0, 0)
				c.requireContent("/su", mxData(40, 3*mxMiB+5))
			},
		},
		{
			// Extra: the second link survives the removal of the first.
			name: "hardlink-remove", fixtures: true,
			run: func(c *mxCell) error {
				err := c.session(func(img *ext4edit.Image) error {
					return errors.Join(img.Link("/fix_big", "/hl2"), img.Remove("/fix_big"))
				})
				if err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				s := c.stat("/hl2")
				require.Equal(c.t, uint32(1), s.Links)
				c.requireContent("/hl2", mxFixBig)
				return c.session(func(img *ext4edit.Image) error { return img.Remove("/hl2") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/hl2")
				c.requireAbsent("/fix_big")
			},
		},
		{
			// Extra: 255-byte names work; 256 bytes fail without a change.
			name: "name-255", need: mxNeed(4, 3),
			run: func(c *mxCell) error {
				long := strings.Repeat("n", 256)
				err := c.session(func(img *ext4edit.Image) error {
					for _, e := range []error{
						img.WriteFile("/"+long, nil, 0o644),
						img.Mkdir("/"+long, 0o755),
						img.Symlink("x", "/"+long),
					} {
						if mxRefusal(e) {
							return e
						}
						if !errors.Is(e, ext4edit.ErrNameTooLong) {
							return fmt.Errorf("256-byte name: want ErrNameTooLong, got %v", e)
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				require.Equal(c.t, c.shaBefore, testimg.ImageDigest(c.t, c.img), "a refused 256-byte name changed the image")
				return c.session(func(img *ext4edit.Image) error {
					return errors.Join(
						img.Mkdir("/"+long[:255], 0o755),
						img.WriteFile("/"+long[:255]+"/"+long[:255], []byte("deep\n"), 0o644),
						img.Symlink(long[:255], "/l"+long[:254]),
					)
				})
			},
			check: func(c *mxCell) {
				long := strings.Repeat("n", 255)
				c.requireNode("/"+long, "directory", 0o755, 0, 0)
				c.requireContent("/"+long+"/"+long, []byte("deep\n"))
				require.Equal(c.t, long, string(testimg.Cat(c.t, c.img, "/l"+long[:254])))
			},
		},
		{
			// Extra: Chtimes lands in the inode as debugfs reads it.
			name: "chtimes", fixtures: true,
			run: func(c *mxCell) error {
				at := time.Unix(1000000000, 123456789)
				mt := time.Unix(1234567890, 987654321)
				return c.session(func(img *ext4edit.Image) error { return img.Chtimes("/fix_file", at, mt) })
			},
			check: func(c *mxCell) {
				s := c.stat("/fix_file")
				aSec, aExtra, aHas := mxStatTime(s.Raw, "atime")
				mSec, mExtra, mHas := mxStatTime(s.Raw, "mtime")
				require.Equal(c.t, uint64(1000000000), aSec, "atime seconds\n%s", s.Raw)
				require.Equal(c.t, uint64(1234567890), mSec, "mtime seconds\n%s", s.Raw)
				require.Equal(c.t, aHas, mHas)
				if aHas {
					require.Equal(c.t, uint64(123456789<<2), aExtra, "atime nanoseconds")
					require.Equal(c.t, uint64(987654321<<2), mExtra, "mtime nanoseconds")
				}
				c.requireContent("/fix_file", []byte(mxFixFile))
			},
		},
		{
			// Extra: an image opened read-only refuses every edit and is
			// left byte-identical.
			name: "readonly-write", fixtures: true,
			run: func(c *mxCell) error {
				img, err := ext4edit.Open(c.img, &ext4edit.Options{ReadOnly: true})
				if err != nil {
					return err
				}
				_, cerr := img.Create("/c", 0o644)
				errs := []error{
					img.WriteFile("/w", []byte("w"), 0o644),
					img.Mkdir("/m", 0o755),
					img.Chmod("/fix_file", 0o600),
					img.Remove("/fix_file"),
					img.Rename("/fix_file", "/r"),
					img.Symlink("x", "/s"),
					cerr,
				}
				if err := img.Close(); err != nil {
					return err
				}
				for i, e := range errs {
					if !errors.Is(e, ext4edit.ErrReadOnly) {
						return fmt.Errorf("read-only edit %d: want ErrReadOnly, got %v", i, e)
					}
				}
				require.Equal(c.t, c.shaBefore, testimg.ImageDigest(c.t, c.img), "a read-only session changed the image")
				return nil
			},
			check: func(c *mxCell) { c.requireAbsent("/w") },
		},
		{
			// Extra: a directory that must grow when no block is free. The
			// image is filled first; then empty files go into / until the
			// directory cannot grow; the name that failed must fail again
			// in a new session without changing the image.
			name: "enospc-dir", only: []string{"nearlyfull", "nearlyfull-ext2"},
			run: func(c *mxCell) error {
				free, bs := c.v.freeBlocks, c.v.bs
				filled := false
				for n := free; n+10 > free && n > 0 && !filled; n-- {
					err := c.session(func(img *ext4edit.Image) error { return img.WriteFile("/fill", make([]byte, n*bs), 0o644) })
					if err == nil {
						filled = true
					} else if !errors.Is(err, ext4edit.ErrNoSpace) {
						return err
					}
				}
				require.True(c.t, filled, "could not fill the image")
				var failed string
				err := c.session(func(img *ext4edit.Image) error {
					for i := range 3000 {
						name := fmt.Sprintf("/empty-%04d-%s", i, strings.Repeat("e", 60))
						if err := img.WriteFile(name, nil, 0o644); err != nil {
							if !errors.Is(err, ext4edit.ErrNoSpace) {
								return fmt.Errorf("%s: want ErrNoSpace, got %w", name, err)
							}
							failed = name
							return nil
						}
					}
					return fmt.Errorf("3000 names went into / without ENOSPC")
				})
				if err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				full := testimg.ImageDigest(c.t, c.img)
				err = c.session(func(img *ext4edit.Image) error { return img.WriteFile(failed, nil, 0o644) })
				if !errors.Is(err, ext4edit.ErrNoSpace) {
					return fmt.Errorf("%s again: want ErrNoSpace, got %v", failed, err)
				}
				require.Equal(c.t, full, testimg.ImageDigest(c.t, c.img), "the failed creation changed the image")
				c.t.Logf("/ full after %s", failed)
				return nil
			},
			check: func(c *mxCell) {
				ents := c.ls("/")
				require.Contains(c.t, ents, "empty-0000-"+strings.Repeat("e", 60))
			},
		},
		{
			// Extra: remove the filler (a huge, deep or uninitialized-extent
			// tree, or indirect blocks), then use the space.
			name: "remove-filler", only: []string{"nearlyfull", "nearlyfull-ext2", "fragmented", "6G"},
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					if err := img.Remove("/filler"); err != nil {
						return err
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				c.requireAbsent("/filler")
				// The space is usable again in a new session.
				err := c.session(func(img *ext4edit.Image) error { return img.WriteFile("/after", mxData(50, 3*mxMiB), 0o644) })
				require.NoError(c.t, err)
				testimg.RequireClean(c.t, c.img)
				c.requireContent("/after", mxData(50, 3*mxMiB))
			},
		},
		{
			// Extra: a 70 MiB file (triple indirection at 1 KiB blocks on
			// ext2) written in one session and removed in the next.
			name: "remove-big", long: true, only: []string{"default", "b1024", "ext3", "ext2-b1024"},
			need: mxNeedBytes(70*mxMiB, 64, 1),
			run: func(c *mxCell) error {
				if err := c.session(func(img *ext4edit.Image) error { return img.WriteFile("/big", mxData(60, 70*mxMiB), 0o644) }); err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				c.requireContent("/big", mxData(60, 70*mxMiB))
				return c.session(func(img *ext4edit.Image) error { return img.Remove("/big") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/big")
				hdr := testimg.Dumpe2fs(c.t, c.img, true)
				free, _ := testimg.HeaderField(hdr, "Free blocks")
				require.Equal(c.t, c.v.freeBlocks, free, "free blocks after write+remove")
			},
		},
		{
			// Extra: a directory replaces an empty one; replacing a
			// non-empty directory or a directory by a file fails without
			// a change.
			name: "rename-replace-dir", need: mxNeed(8, 8),
			run: func(c *mxCell) error {
				err := c.session(func(img *ext4edit.Image) error {
					return errors.Join(
						img.MkdirAll("/y1/d", 0o755), img.WriteFile("/y1/d/g", []byte("g\n"), 0o644),
						img.WriteFile("/y1/f", []byte("f\n"), 0o644),
						img.MkdirAll("/y2/e", 0o755), img.MkdirAll("/y2/full/x", 0o755),
					)
				})
				if err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				mid := testimg.ImageDigest(c.t, c.img)
				err = c.session(func(img *ext4edit.Image) error {
					if e := img.Rename("/y1/d", "/y2/full"); e == nil {
						return fmt.Errorf("rename onto a non-empty directory succeeded")
					}
					if e := img.Rename("/y1/f", "/y2/e"); e == nil {
						return fmt.Errorf("rename of a file onto a directory succeeded")
					}
					if e := img.Rename("/y1/d", "/y1/f"); e == nil {
						return fmt.Errorf("rename of a directory onto a file succeeded")
					}
					if e := img.Rename("/y1", "/y1/d/inside"); e == nil {
						return fmt.Errorf("rename of a directory into itself succeeded")
					}
					return nil
				})
				if err != nil {
					return err
				}
				require.Equal(c.t, mid, testimg.ImageDigest(c.t, c.img), "failed renames changed the image")
				return c.session(func(img *ext4edit.Image) error { return img.Rename("/y1/d", "/y2/e") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/y1/d")
				c.requireContent("/y2/e/g", []byte("g\n"))
				y2 := c.stat("/y2")
				require.Equal(c.t, y2.Inode, c.ls("/y2/e")[".."])
				require.Equal(c.t, uint32(2), c.stat("/y1").Links)
				require.Equal(c.t, uint32(4), y2.Links)
			},
		},
		{
			// Extra: fast/slow symlink boundary (i_block holds 59 bytes and
			// a NUL) and a target longer than a 1 KiB block, which ext4
			// cannot hold: refused with an error and no change there.
			name: "symlink-boundary", need: mxNeed(3, 4),
			run: func(c *mxCell) error {
				err := c.session(func(img *ext4edit.Image) error {
					for _, n := range []int{59, 60, 61} {
						if err := img.Symlink(strings.Repeat("t", n), fmt.Sprintf("/sl%d", n)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				testimg.RequireClean(c.t, c.img)
				before := testimg.ImageDigest(c.t, c.img)
				long := strings.Repeat("L", 1500)
				err = c.session(func(img *ext4edit.Image) error { return img.Symlink(long, "/sllong") })
				if uint64(len(long)) >= c.v.bs {
					if err == nil {
						return fmt.Errorf("a %d-byte symlink target with %d-byte blocks was accepted", len(long), c.v.bs)
					}
					if mxRefusal(err) {
						return err
					}
					c.t.Logf("long target refused: %v", err)
					require.Equal(c.t, before, testimg.ImageDigest(c.t, c.img), "a failed symlink changed the image")
					return nil
				}
				return err
			},
			check: func(c *mxCell) {
				for _, n := range []int{59, 60, 61} {
					p := fmt.Sprintf("/sl%d", n)
					s := c.requireNode(p, "symlink", 0o777, 0, 0)
					require.Equal(c.t, uint64(n), s.Size, p)
					if n < 60 {
						// debugfs cat prints nothing for a fast symlink.
						require.Equal(c.t, strings.Repeat("t", n), s.FastLink, "%s should be a fast symlink", p)
					} else if s.FastLink != "" { // inline_data: kept inline
						require.Equal(c.t, strings.Repeat("t", n), s.FastLink, p)
					} else {
						require.Equal(c.t, strings.Repeat("t", n), string(testimg.Cat(c.t, c.img, p)), p)
					}
				}
				if c.v.bs > 1500 {
					require.Equal(c.t, strings.Repeat("L", 1500), string(testimg.Cat(c.t, c.img, "/sllong")))
				} else {
					c.requireAbsent("/sllong")
				}
			},
		},
		{
			// Extra: inode-only changes on (possibly inline) directories.
			name: "chmod-dirs", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					return errors.Join(img.Chmod("/inl", 0o700|fs.ModeSticky), img.Chown("/ra", 5, 6), img.Chmod("/", 0o711))
				})
			},
			check: func(c *mxCell) {
				c.requireNode("/inl", "directory", 0o1700, 0, 0)
				c.requireNode("/ra", "directory", 0o755, 5, 6)
				c.requireNode("/", "directory", 0o711, 0, 0)
				c.requireContent("/inl/a", []byte(mxFixInl))
			},
		},
		{
			// Extra: paths through symlinks, and names with spaces and
			// UTF-8.
			name: "via-symlink", fixtures: true, need: mxNeed(6, 6),
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error {
					return errors.Join(
						img.WriteFile("/fix_link", []byte("written through the link\n"), 0o600),
						img.Mkdir("/real", 0o755),
						img.Symlink("real", "/sdir"),
						img.MkdirAll("/sdir/x/y", 0o755),
						img.WriteFile("/sdir/x/y/f", []byte("f\n"), 0o644),
						img.WriteFile("/with space", []byte("space\n"), 0o644),
						img.WriteFile("/ünïcødé", []byte("utf8\n"), 0o644),
					)
				})
			},
			check: func(c *mxCell) {
				s := c.requireNode("/fix_link", "symlink", 0o777, 0, 0)
				require.Equal(c.t, "fix_file", s.FastLink)
				c.requireContent("/fix_file", []byte("written through the link\n"))
				c.requireNode("/real/x/y", "directory", 0o755, 0, 0)
				c.requireContent("/real/x/y/f", []byte("f\n"))
				c.requireContent("/with space", []byte("space\n"))
				c.requireContent("/ünïcødé", []byte("utf8\n"))
			},
		},
		{
			// Extra: files of free-9 .. free+2 blocks, each in its own
			// session. The ones that do not fit must fail with ErrNoSpace
			// and leave the image unchanged; one of them must fit.
			name: "enospc-boundary", only: []string{"nearlyfull", "nearlyfull-ext2"},
			run: func(c *mxCell) error {
				free, bs := c.v.freeBlocks, c.v.bs
				for n := free + 2; n+10 > free && n > 0; n-- {
					before := testimg.ImageDigest(c.t, c.img)
					data := mxData(n, int(n*bs))
					err := c.session(func(img *ext4edit.Image) error { return img.WriteFile("/edge", data, 0o644) })
					if err == nil {
						c.t.Logf("%d free blocks: a %d-block file fits", free, n)
						return os.WriteFile(filepath.Join(c.dir, "edge.sha"), []byte(mxSHA(data)), 0o644)
					}
					if !errors.Is(err, ext4edit.ErrNoSpace) {
						return fmt.Errorf("%d-block file with %d free: want ErrNoSpace, got %w", n, free, err)
					}
					require.Equal(c.t, before, testimg.ImageDigest(c.t, c.img), "a %d-block file that did not fit changed the image", n)
				}
				return fmt.Errorf("no file of %d..%d blocks fit in %d free blocks", free-9, free+2, free)
			},
			check: func(c *mxCell) {
				want, err := os.ReadFile(filepath.Join(c.dir, "edge.sha"))
				require.NoError(c.t, err)
				size := c.stat("/edge").Size
				c.requireSHA("/edge", string(want), size)
			},
		},
		{
			// Extra: removing a file whose xattr lives in a block (-I 128)
			// must free that block.
			name: "remove-xattr-file", fixtures: true,
			run: func(c *mxCell) error {
				return c.session(func(img *ext4edit.Image) error { return img.Remove("/xf") })
			},
			check: func(c *mxCell) {
				c.requireAbsent("/xf")
			},
		},
		{
			// Extra: removals from a hash-indexed directory, then more
			// additions, in a second session.
			name: "htree-remove-add", fixtures: true,
			need: func(bs uint64) (uint64, uint64) { return 900 + 900*192/bs + 8, 901 },
			run: func(c *mxCell) error {
				if !c.v.htree {
					err := c.session(func(img *ext4edit.Image) error {
						if err := img.Mkdir("/hgrow", 0o755); err != nil {
							return err
						}
						for i := range 600 {
							if err := img.WriteFile("/hgrow/"+hgrowName(i), nil, 0o644); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						return err
					}
				}
				dir, names := mxHtreeNames(c.v)
				return c.session(func(img *ext4edit.Image) error {
					for i := 0; i < len(names); i += 2 {
						if err := img.Remove(dir + "/" + names[i]); err != nil {
							return err
						}
					}
					for i := range 300 {
						if err := img.WriteFile(fmt.Sprintf("%s/new-%04d-%s", dir, i, strings.Repeat("z", 100)), nil, 0o644); err != nil {
							return err
						}
					}
					return nil
				})
			},
			check: func(c *mxCell) {
				dir, names := mxHtreeNames(c.v)
				ents := c.ls(dir)
				require.Len(c.t, ents, len(names)/2+300+2)
				for i, n := range names {
					if i%2 == 0 {
						require.NotContains(c.t, ents, n)
					} else {
						require.Contains(c.t, ents, n)
					}
				}
				for i := range 300 {
					require.Contains(c.t, ents, fmt.Sprintf("new-%04d-%s", i, strings.Repeat("z", 100)))
				}
				if c.v.hasFeature("dir_index") {
					require.NotZero(c.t, c.stat(dir).Flags&mxFlagIndex, "%s is not indexed", dir)
					mxRequireHtree(c.t, c.img, dir, c.v.hasFeature("metadata_csum"))
				}
				c.readOnly(func(img *ext4edit.Image) {
					for i, n := range names {
						_, err := img.Stat(dir + "/" + n)
						if i%2 == 0 {
							require.ErrorIs(c.t, err, fs.ErrNotExist, "%s", n)
						} else {
							require.NoError(c.t, err, "%s", n)
						}
					}
				})
			},
		},
		{
			name: "enospc-inodes", only: []string{"fewinodes"},
			run: func(c *mxCell) error {
				created := 0
				err := c.session(func(img *ext4edit.Image) error {
					for i := 0; ; i++ {
						err := img.WriteFile(fmt.Sprintf("/e%d", i), []byte("e\n"), 0o644)
						if err != nil {
							if !errors.Is(err, ext4edit.ErrNoSpace) {
								return fmt.Errorf("file %d: want ErrNoSpace, got %v", i, err)
							}
							return nil
						}
						created++
						if uint64(created) > c.v.freeInodes {
							return fmt.Errorf("created %d files with %d free inodes", created, c.v.freeInodes)
						}
					}
				})
				if err != nil {
					return err
				}
				require.Equal(c.t, c.v.freeInodes, uint64(created), "files created before ENOSPC")
				testimg.RequireClean(c.t, c.img)
				full := testimg.ImageDigest(c.t, c.img)
				err = c.session(func(img *ext4edit.Image) error {
					for _, e := range []error{
						img.WriteFile("/extra", []byte("x"), 0o644),
						img.Mkdir("/extradir", 0o755),
						img.Symlink("target", "/extralink"),
						img.Mknod("/extrafifo", fs.ModeNamedPipe|0o644, 0, 0),
					} {
						if !errors.Is(e, ext4edit.ErrNoSpace) {
							return fmt.Errorf("with no free inode: want ErrNoSpace, got %v", e)
						}
					}
					return nil
				})
				if err != nil {
					return err
				}
				require.Equal(c.t, full, testimg.ImageDigest(c.t, c.img), "failed creations changed the image")
				return nil
			},
			check: func(c *mxCell) {
				for i := range int(c.v.freeInodes) {
					c.requireContent(fmt.Sprintf("/e%d", i), []byte("e\n"))
				}
				c.requireAbsent("/extra")
			},
		},
	}
}

// mxStatTime parses debugfs stat's "NAME: 0xSECS[:EXTRA]" line.
func mxStatTime(raw, name string) (sec, extra uint64, hasExtra bool) {
	re := regexp.MustCompile(`(?m)^\s*` + name + `:\s+0x([0-9a-f]+)(?::([0-9a-f]+))?`)
	m := re.FindStringSubmatch(raw)
	if m == nil {
		return 0, 0, false
	}
	sec, _ = strconv.ParseUint(m[1], 16, 64)
	if m[2] != "" {
		extra, _ = strconv.ParseUint(m[2], 16, 64)
		hasExtra = true
	}
	return sec, extra, hasExtra
}

func mxRefusal(err error) bool {
	return errors.Is(err, ext4edit.ErrUnsupportedFeature) || errors.Is(err, ext4edit.ErrReadOnly)
}

func mxHgrowName(i int) string { return fmt.Sprintf("entry-%04d-%s", i, strings.Repeat("h", 140)) }

// mxHtreeNames is the indexed directory htree-remove-add works on and the
// names it held before: /htree's on the htree variant, else /hgrow's.
func mxHtreeNames(v *mxVariant) (string, []string) {
	var names []string
	if v.htree {
		for i := 1; i <= mxHtreeCount; i++ {
			names = append(names, fmt.Sprintf("f%04d", i))
		}
		return "/htree", names
	}
	for i := range 600 {
		names = append(names, mxHgrowName(i))
	}
	return "/hgrow", names
}

func mxExpectFile(img *ext4edit.Image, name, want string) error {
	got, err := img.ReadFile(name)
	if err != nil {
		return err
	}
	if string(got) != want {
		return fmt.Errorf("%s: read %d bytes, want %d (contents differ)", name, len(got), len(want))
	}
	return nil
}

func mxExpectDirLen(img *ext4edit.Image, name string, n int) error {
	de, err := img.ReadDir(name)
	if err != nil {
		return err
	}
	if len(de) != n {
		return fmt.Errorf("ReadDir %s: %d entries, want %d", name, len(de), n)
	}
	return nil
}

// TestMatrixDigest checks testimg.ImageDigest, the matrix's "image
// unchanged" judge: equal for a sparse copy and for zeros written into a
// hole, different for any changed byte.
func TestMatrixDigest(t *testing.T) {
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
	d := testimg.ImageDigest(t, a)

	b := filepath.Join(dir, "b")
	testimg.CopySparse(t, a, b)
	if got := testimg.ImageDigest(t, b); got != d {
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
	if got := testimg.ImageDigest(t, b); got != d {
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
		if got := testimg.ImageDigest(t, b); got == d {
			t.Fatalf("a byte at %d left the digest unchanged", off)
		}
		if _, err := g.WriteAt(old, off); err != nil {
			t.Fatal(err)
		}
		if got := testimg.ImageDigest(t, b); got != d {
			t.Fatalf("restoring the byte at %d did not restore the digest", off)
		}
	}
	g.Close()
}
