package ext4edit_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// staleGroupFlags reads the raw descriptors of img and returns, per group,
// bg_flags and bg_itable_unused (dumpe2fs hides both once the filesystem
// has no group checksums).
func staleGroupFlags(t *testing.T, img string) (flags []uint16, unused []uint32) {
	t.Helper()
	b, err := os.ReadFile(img)
	require.NoError(t, err)
	sb := b[1024:2048]
	le32 := binary.LittleEndian.Uint32
	bs := uint64(1024) << le32(sb[0x18:])
	first := uint64(le32(sb[0x14:]))
	bpg := uint64(le32(sb[0x20:]))
	blocks := uint64(le32(sb[0x04:]))
	descSize := uint64(32)
	if le32(sb[0x60:])&0x80 != 0 {
		descSize = uint64(binary.LittleEndian.Uint16(sb[0xFE:]))
	}
	groups := (blocks - first + bpg - 1) / bpg
	table := (first + 1) * bs
	for g := uint64(0); g < groups; g++ {
		d := b[table+g*descSize:]
		flags = append(flags, binary.LittleEndian.Uint16(d[0x12:]))
		unused = append(unused, uint32(binary.LittleEndian.Uint16(d[0x1C:])))
	}
	return flags, unused
}

// TestStaleUninitFlags: with uninit_bg turned off after mkfs, the
// descriptors still say INODE_UNINIT/BLOCK_UNINIT and carry
// bg_itable_unused (e2fsprogs' f_uninit_disable). Neither the kernel nor
// we may honour them, and what we write must not let e2fsck take our new
// inodes for ones in a group's unused area.
func TestStaleUninitFlags(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	cases := []struct {
		name string
		size string
		opts []string
	}{
		{"1k-2-groups", "16M", []string{"-b", "1024", "-N", "512", "-O", "uninit_bg,^metadata_csum,^has_journal"}},
		{"4k-4-groups-journal", "32M", []string{"-b", "4096", "-g", "2048", "-N", "1024", "-O", "uninit_bg,^metadata_csum"}},
		{"no-flex-no-64bit", "16M", []string{"-b", "1024", "-N", "512", "-O", "uninit_bg,^metadata_csum,^flex_bg,^64bit,^has_journal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := testimg.Mkfs(t, t.TempDir(), "img", c.size, c.opts...)
			testimg.DebugfsWrite(t, img, "feature -uninit_bg\n")
			require.NotContains(t, testimg.Debugfs(t, img, "stats"), "uninit_bg")
			flags, unused := staleGroupFlags(t, img)
			require.NotZero(t, flags[1]&0x1, "group 1 must still say INODE_UNINIT for the test to mean anything")
			require.NotZero(t, unused[1], "group 1 must still carry bg_itable_unused")

			im, err := ext4edit.Open(img, nil)
			require.NoError(t, err)
			// Enough inodes to fill group 0 and spill into the groups
			// flagged INODE_UNINIT.
			n := 0
			var maxIno uint32
			for i := 0; n < 400; i++ {
				d := fmt.Sprintf("/d%d", i)
				require.NoError(t, im.Mkdir(d, 0o755))
				require.NoError(t, im.WriteFile(d+"/f", []byte(d), 0o644))
				n += 2
				for _, p := range []string{d, d + "/f"} {
					fi, err := im.Lstat(p)
					require.NoError(t, err)
					maxIno = max(maxIno, fi.Sys().(*ext4edit.InodeInfo).Ino)
				}
			}
			ipg, ok := testimg.HeaderField(testimg.Dumpe2fs(t, img, true), "Inodes per group")
			require.True(t, ok)
			require.Greater(t, uint64(maxIno), ipg, "new inodes must reach a group flagged INODE_UNINIT")
			require.NoError(t, im.Close())
			testimg.RequireClean(t, img)
			require.Equal(t, "/d199", string(testimg.Cat(t, img, "/d199/f")))
			flags, unused = staleGroupFlags(t, img)
			for g := range flags {
				require.Zero(t, flags[g]&0x3, "group %d: UNINIT flags without group checksums", g)
				require.Zero(t, unused[g], "group %d: bg_itable_unused without group checksums", g)
			}
		})
	}
}
