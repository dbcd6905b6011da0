package ext4edit_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// The concurrency contract (doc.go): an Image is used from several
// goroutines at once, each writing its own Files and making its own
// directories while others read through the Image and its fs.FS view;
// Close then commits all of it. Run with -race (cgo) to check the
// locking; without it the test still checks that nothing is lost.
func TestConcurrentUse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	img, err := ext4edit.Mkfs(p, 128<<20, nil)
	require.NoError(t, err)
	const writers, files = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := fmt.Sprintf("/w%d/sub", w)
			if err := img.MkdirAll(dir, 0o755); err != nil {
				errs <- err
				return
			}
			for i := 0; i < files; i++ {
				f, err := img.Create(fmt.Sprintf("%s/f%d", dir, i), 0o644)
				if err != nil {
					errs <- err
					return
				}
				if _, err := f.Write(bytes.Repeat([]byte{byte(w), byte(i)}, 20000)); err != nil {
					errs <- err
					return
				}
				if err := f.Close(); err != nil {
					errs <- err
					return
				}
				if err := img.Chown(fmt.Sprintf("%s/f%d", dir, i), w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				_ = fs.WalkDir(img.FS(), ".", func(name string, d fs.DirEntry, err error) error {
					if err != nil {
						return nil // a name may go away between ReadDir and Stat
					}
					if d.Type().IsRegular() {
						_, _ = fs.ReadFile(img.FS(), name)
					}
					return nil
				})
				if _, err := img.Stat("/lost+found"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, img.Close())
	require.ErrorIs(t, img.Close(), ext4edit.ErrClosed)

	ro, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	for w := 0; w < writers; w++ {
		for i := 0; i < files; i++ {
			name := fmt.Sprintf("/w%d/sub/f%d", w, i)
			data, err := ro.ReadFile(name)
			require.NoError(t, err)
			require.Equal(t, bytes.Repeat([]byte{byte(w), byte(i)}, 20000), data, name)
			fi, err := ro.Stat(name)
			require.NoError(t, err)
			in := fi.Sys().(*ext4edit.InodeInfo)
			require.Equal(t, [2]uint32{uint32(w), uint32(i)}, [2]uint32{in.UID, in.GID}, name)
		}
	}
	if testimg.LookTool("e2fsck") != "" {
		testimg.RequireClean(t, p)
	}
}
