package ext4edit_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/ext4edit/script"
	"github.com/banger/ext4kit/internal/testimg"
)

// TestReadFileHugeSize: ReadFile must not allocate what an on-disk i_size
// claims. A file whose size says 1 TiB (or more than any file here can
// map) is refused quickly, in bounded memory; a genuinely sparse file
// reads within the cap and streams beyond it.
func TestReadFileHugeSize(t *testing.T) {
	testimg.Require(t, "debugfs")
	data := []byte("a little data at the start\n")
	cases := []struct {
		name    string
		opts    []string
		size    uint64
		wantErr error // nil: ReadFile returns the file
	}{
		{"1TiB-claim", nil, 1 << 40, ext4edit.ErrFileTooLarge},
		{"1TiB-claim-no-csum", []string{"-O", "^metadata_csum"}, 1 << 40, ext4edit.ErrFileTooLarge},
		{"beyond-max-file-size", nil, 1 << 60, ext4edit.ErrCorrupt},
		{"beyond-max-block-mapped", []string{"-O", "^extent,^64bit"}, 1 << 50, ext4edit.ErrCorrupt},
		{"sparse-3GiB", nil, 3 << 30, ext4edit.ErrFileTooLarge},
		{"sparse-200MiB", nil, 200 << 20, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img := testimg.Mkfs(t, dir, "img", "64M", c.opts...)
			host := filepath.Join(dir, "src")
			require.NoError(t, os.WriteFile(host, data, 0o644))
			testimg.DebugfsWrite(t, img, fmt.Sprintf("write %s f\nsif f size %d\n", host, c.size))
			require.Contains(t, testimg.Debugfs(t, img, "stat f"), fmt.Sprintf("Size: %d", c.size))

			im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
			require.NoError(t, err)
			defer im.Close()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got, err := im.ReadFile("/f")
			runtime.ReadMemStats(&after)
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
				require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "refusal must not allocate the claimed size")
			} else {
				require.NoError(t, err)
				require.Equal(t, int(c.size), len(got))
				require.Equal(t, data, got[:len(data)])
				require.True(t, allZeros(got[len(data):]), "the hole reads as zeros")
			}
			if c.wantErr == ext4edit.ErrFileTooLarge {
				// Too large to return whole, but genuine: it streams.
				f, err := im.FS().Open("f")
				require.NoError(t, err)
				head := make([]byte, len(data))
				_, err = io.ReadFull(f, head)
				require.NoError(t, err)
				require.Equal(t, data, head)
				require.NoError(t, f.Close())
			}
		})
	}
}

func allZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestScriptCatHugeClaim: the debugfs-language cat of a file whose i_size
// lies does not die allocating it; a too-large genuine file streams.
func TestScriptCatHugeClaim(t *testing.T) {
	testimg.Require(t, "debugfs")
	dir := t.TempDir()
	img := testimg.Mkfs(t, dir, "img", "64M")
	host := filepath.Join(dir, "src")
	require.NoError(t, os.WriteFile(host, []byte("head"), 0o644))
	testimg.DebugfsWrite(t, img, fmt.Sprintf("write %s lie\nsif lie size %d\nwrite %s big\nsif big size %d\n", host, uint64(1)<<60, host, uint64(1100)<<20))
	im, err := ext4edit.Open(img, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer im.Close()

	var out bytes.Buffer
	r := &script.Runner{Img: im, Stdout: &out, Stderr: io.Discard}
	err = r.RunLine(1, "cat /lie")
	require.ErrorIs(t, err, ext4edit.ErrCorrupt)

	n := &countingWriter{}
	r = &script.Runner{Img: im, Stdout: n, Stderr: io.Discard}
	require.NoError(t, r.RunLine(1, "cat /big"))
	require.Equal(t, int64(1100)<<20, n.n)
	require.Equal(t, "head", string(n.head))
}

type countingWriter struct {
	n    int64
	head []byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if len(w.head) < 4 {
		w.head = append(w.head, p[:min(len(p), 4-len(w.head))]...)
	}
	w.n += int64(len(p))
	return len(p), nil
}
