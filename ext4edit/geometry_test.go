package ext4edit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/internal/testimg"
)

// dumpe2fsLayout is, per group, the block range and the superblock,
// descriptor and reserved GDT blocks dumpe2fs lists for it.
type dumpe2fsLayout struct {
	first, last uint64
	super       bool
	blocks      []uint64 // superblock, descriptor and reserved GDT blocks
}

var (
	reDGroup = regexp.MustCompile(`^Group (\d+): \(Blocks (\d+)-(\d+)\)`)
	reDRange = regexp.MustCompile(`(superblock|Group descriptors?|Reserved GDT blocks) at (\d+)(?:-(\d+))?`)
)

func parseDumpe2fsLayout(t *testing.T, out string) []dumpe2fsLayout {
	t.Helper()
	var gs []dumpe2fsLayout
	for _, l := range strings.Split(out, "\n") {
		if m := reDGroup.FindStringSubmatch(l); m != nil {
			f, _ := strconv.ParseUint(m[2], 10, 64)
			e, _ := strconv.ParseUint(m[3], 10, 64)
			gs = append(gs, dumpe2fsLayout{first: f, last: e})
			continue
		}
		if len(gs) == 0 || strings.Contains(l, "bitmap") || strings.Contains(l, "Inode table") {
			continue
		}
		for _, m := range reDRange.FindAllStringSubmatch(l, -1) {
			a, _ := strconv.ParseUint(m[2], 10, 64)
			b := a
			if m[3] != "" {
				b, _ = strconv.ParseUint(m[3], 10, 64)
			}
			g := &gs[len(gs)-1]
			if m[1] == "superblock" {
				g.super = true
			}
			for x := a; x <= b; x++ {
				g.blocks = append(g.blocks, x)
			}
		}
	}
	return gs
}

// TestGeometryMatchesDumpe2fs: the group layout the geometry derives
// (group ranges, short last group, which groups hold backups under
// sparse_super, sparse_super2 or none, backup and meta_bg descriptor
// blocks, reserved GDT blocks) is the one e2fsprogs reads.
func TestGeometryMatchesDumpe2fs(t *testing.T) {
	testimg.Require(t, "mke2fs", "dumpe2fs")
	cases := []struct {
		name, size string
		opts       []string
	}{
		{"4k-default", "300M", nil},
		{"1k-short-last-group", "70M", []string{"-b", "1024"}},
		{"1k-sparse_super2", "64M", []string{"-b", "1024", "-O", "sparse_super2"}},
		{"1k-no-sparse_super", "40M", []string{"-b", "1024", "-O", "^sparse_super,^resize_inode"}},
		{"1k-meta_bg", "300M", []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}},
		{"1k-32-byte-descriptors", "300M", []string{"-b", "1024", "-O", "^64bit"}},
		{"2k-many-groups", "600M", []string{"-b", "2048", "-g", "1024"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := testimg.Mkfs(t, t.TempDir(), "img", c.size, c.opts...)
			out, err := exec.Command("dumpe2fs", img).Output()
			require.NoError(t, err)
			want := parseDumpe2fsLayout(t, string(out))
			b, err := os.ReadFile(img)
			require.NoError(t, err)
			g, err := newGeometry(superblock{b: b[superblockOffset : superblockOffset+superblockSize]})
			require.NoError(t, err)
			require.Equal(t, len(want), int(g.groupCount))
			for n, w := range want {
				grp := uint32(n)
				require.Equal(t, w.first, g.groupFirstBlock(grp), "group %d first block", n)
				require.Equal(t, w.last-w.first+1, uint64(g.groupBlocks(grp)), "group %d blocks", n)
				require.Equal(t, grp, g.blockGroup(w.last), "group of block %d", w.last)
				require.Equal(t, w.super, g.hasSuper(grp), "group %d superblock backup", n)
				var got []uint64
				g.superAndDescBlocks(grp, func(blk uint64) { got = append(got, blk) })
				sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
				require.Equal(t, w.blocks, got, "group %d superblock and descriptor blocks", n)
				if w.super && n > 0 && !g.incompat.has(incompatMetaBG) {
					require.Equal(t, w.blocks[1], g.backupDescBlock(grp), "group %d backup descriptors", n)
				}
			}
			for i := uint32(0); i < g.gdtBlocks; i++ {
				// Descriptor-table block i is among its group's listed blocks.
				blk := g.descBlock(i)
				require.Contains(t, want[g.blockGroup(blk)].blocks, blk, "descriptor block %d at %d", i, blk)
			}
		})
	}
}

// TestNewGeometryCorrupt: a superblock with any field out of range is
// ErrCorrupt, never a panic or a wrapped product.
func TestNewGeometryCorrupt(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "img")
	im, err := Mkfs(p, 64<<20, &MkfsOptions{NoJournal: true})
	require.NoError(t, err)
	require.NoError(t, im.Close())
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	base := b[superblockOffset : superblockOffset+superblockSize]
	_, err = newGeometry(superblock{b: base})
	require.NoError(t, err)
	cases := []struct {
		name string
		mut  func(sb []byte)
	}{
		{"log block size", func(sb []byte) { put32(sb, sbLogBlockSize, 7) }},
		{"log block size huge", func(sb []byte) { put32(sb, sbLogBlockSize, 1<<31) }},
		{"first data block", func(sb []byte) { put32(sb, sbFirstDataBlock, 1) }},
		{"zero blocks per group", func(sb []byte) { put32(sb, sbBlocksPerGroup, 0) }},
		{"blocks per group beyond a bitmap", func(sb []byte) { put32(sb, sbBlocksPerGroup, 8*4096+8) }},
		{"zero inodes per group", func(sb []byte) { put32(sb, sbInodesPerGroup, 0) }},
		{"inode size not a power of 2", func(sb []byte) { put16(sb, sbInodeSize, 300) }},
		{"inode size beyond the block", func(sb []byte) { put16(sb, sbInodeSize, 8192) }},
		{"desc size", func(sb []byte) { put16(sb, sbDescSize, 48) }},
		{"desc size below 64 with 64bit", func(sb []byte) { put16(sb, sbDescSize, 32) }},
		{"zero blocks", func(sb []byte) { put32(sb, sbBlocksCountLo, 0); put32(sb, sbBlocksCountHi, 0) }},
		{"blocks beyond 2^48", func(sb []byte) { put32(sb, sbBlocksCountHi, 1<<17) }},
		{"bytes beyond 2^63", func(sb []byte) {
			put32(sb, sbLogBlockSize, 6)
			put32(sb, sbBlocksCountLo, 0)
			put32(sb, sbBlocksCountHi, 1<<16)
		}},
		{"inodes count", func(sb []byte) { put32(sb, sbInodesCount, le32(sb, sbInodesCount)+8) }},
		{"first ino", func(sb []byte) { put32(sb, sbFirstIno, 3) }},
		{"first ino beyond the inodes", func(sb []byte) { put32(sb, sbFirstIno, le32(sb, sbInodesCount)) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sb := append([]byte(nil), base...)
			c.mut(sb)
			_, err := newGeometry(superblock{b: sb})
			require.True(t, errors.Is(err, ErrCorrupt), "got %v", err)
		})
	}
}

func TestFeatureString(t *testing.T) {
	require.Equal(t, "has_journal,dir_index", (compatHasJournal | compatDirIndex).String())
	require.Equal(t, "extent,64bit,unknown(0x80000000)", (incompatExtents | incompat64bit | 1<<31).String())
	require.Equal(t, "metadata_csum", roCompatMetadataCsum.String())
	require.True(t, (roCompatMetadataCsum | roCompatHugeFile).has(roCompatHugeFile))
	require.False(t, compatFeatures(0).has(compatHasJournal))
}
