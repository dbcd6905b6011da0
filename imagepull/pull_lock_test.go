package imagepull

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPullOutdirLock: one Pull at a time per OUTDIR, and the next Pull
// clears what a crashed one left (only its own temporaries).
func TestPullOutdirLock(t *testing.T) {
	out := t.TempDir()
	missing := "oci:" + filepath.Join(t.TempDir(), "no-such-layout")

	unlock, err := lockOutdir(out)
	require.NoError(t, err)
	_, err = Pull(context.Background(), missing, out, PullOptions{})
	require.ErrorIs(t, err, ErrOutdirBusy, "a second pull into a locked OUTDIR")
	unlock()

	stale := []string{".rootfs.ext4.tmp-123", ".image.json.tmp-7", ".kernel.tmp-1", ".initrd.tmp-2"}
	for _, n := range stale {
		require.NoError(t, os.WriteFile(filepath.Join(out, n), []byte("junk"), 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(out, ".layers.tmp-42", "sub"), 0o755))
	kept := []string{"keep.txt", ".other.tmp-1", RootfsName}
	for _, n := range kept {
		require.NoError(t, os.WriteFile(filepath.Join(out, n), []byte("mine"), 0o644))
	}
	_, err = Pull(context.Background(), missing, out, PullOptions{})
	require.Error(t, err, "the source does not exist")
	require.NotErrorIs(t, err, ErrOutdirBusy)
	var left []string
	ents, err := os.ReadDir(out)
	require.NoError(t, err)
	for _, e := range ents {
		left = append(left, e.Name())
	}
	require.ElementsMatch(t, append(kept, LockName), left, "the crashed pull's temporaries are gone, nothing else")
}
