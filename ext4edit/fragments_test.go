package ext4edit_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// A file of many small fragments (one data block, one hole, and so on:
// what a hostile sparse tar entry of a few hundred KiB declares) costs
// time linear in its fragments: the space check before each allocation
// must not walk every fragment written so far. Its mapping is exact: the
// extent tree or the pointer blocks counted in i_blocks, e2fsck clean.
func TestFileManyFragments(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "mke2fs")
	for _, v := range hlVariants(t, "b1024", "ext3", "ext2-b1024") {
		t.Run(v.name, func(t *testing.T) {
			img, p := v.image(t)
			bs := int64(v.bs)
			// As many fragments as a third of the image holds.
			n := int(64 << 20 / 3 / bs)
			block := make([]byte, bs)
			alloc := make([]bool, 2*n)
			start := time.Now()
			f, err := img.CreateExcl("/frag", 0o644)
			require.NoError(t, err)
			f.SetSparse(true)
			for i := 0; i < n; i++ {
				copy(block, fmt.Sprintf("fragment %d", i))
				_, err := f.Write(block)
				require.NoError(t, err)
				alloc[2*i] = true
				require.NoError(t, f.Hole(bs))
			}
			require.NoError(t, f.Close())
			require.NoError(t, img.Close())
			took := time.Since(start)
			t.Logf("%s: %d fragments of %d bytes written and committed in %v", v.name, n, bs, took)
			require.Less(t, took, 3*time.Second, "writing fragments costs more than linear time")

			testimg.RequireClean(t, p)
			st := testimg.DebugfsStat(t, p, "/frag")
			require.Equal(t, uint64(2*n)*uint64(bs), st.Size)
			blocks := hlStatBlocks(t, p, "/frag") / uint64(bs/512)
			if v.extents {
				// n extents: one leaf block per (bs-12)/12 of them, and
				// an index level above when the root cannot hold the leaves.
				per := uint64(bs-12) / 12
				leaves := (uint64(n) + per - 1) / per
				tree := leaves
				if leaves > 4 {
					tree += (leaves + per - 1) / per
				}
				require.Equal(t, uint64(n)+tree, blocks)
			} else {
				require.Equal(t, uint64(n+hlPointerBlocks(alloc, bs)), blocks)
			}

			ro, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer ro.Close()
			fh, err := ro.FS().Open("frag")
			require.NoError(t, err)
			defer fh.Close()
			ra := fh.(io.ReaderAt)
			buf := make([]byte, 2*bs)
			for _, i := range []int{0, 1, n / 2, n - 1} {
				_, err := ra.ReadAt(buf, int64(2*i)*bs)
				require.True(t, err == nil || err == io.EOF, "%v", err)
				want := make([]byte, 2*bs)
				copy(want, fmt.Sprintf("fragment %d", i))
				require.Equal(t, want, buf, "fragment %d and the hole after it", i)
			}
		})
	}
}
