//go:build unix

package imagepull

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/internal/testimg"
)

// TestPullCacheCrash kills a pull (SIGKILL, in a child process) at every
// step of its cache fill: the cache then holds no entry for the image or
// a complete one, and the next pull publishes the right bytes (building
// again, and clearing the half-filled directory, where there was none).
func TestPullCacheCrash(t *testing.T) {
	testimg.Require(t, "e2fsck")
	if os.Getenv("IMAGEPULL_CACHE_CRASH_CHILD") != "" {
		cacheCrashChild(t)
		return
	}
	src := "oci:" + singleLayout(t, archLayers(t, "amd64")...) + ":v1"
	ref := filepath.Join(t.TempDir(), "ref")
	_, err := Pull(context.Background(), src, ref, PullOptions{})
	require.NoError(t, err)
	want := testimg.SHA256File(t, filepath.Join(ref, RootfsName))
	for _, step := range []string{"directory", RootfsName, MetadataName, "renamed"} {
		t.Run(step, func(t *testing.T) {
			cache := filepath.Join(t.TempDir(), "cache")
			cmd := exec.Command(os.Args[0], "-test.run=^TestPullCacheCrash$")
			cmd.Env = append(os.Environ(), "IMAGEPULL_CACHE_CRASH_CHILD="+step, "IMAGEPULL_CACHE_CRASH_SRC="+src,
				"IMAGEPULL_CACHE_CRASH_DIR="+cache, "IMAGEPULL_CACHE_CRASH_OUT="+filepath.Join(t.TempDir(), "out"))
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "the child was not killed: %s", out)
			require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)

			ents, err := os.ReadDir(cache)
			require.NoError(t, err)
			var complete []string
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					complete = append(complete, e.Name())
				}
			}
			if step == "renamed" {
				require.Len(t, complete, 1, "the fill finished before the kill: its entry must be there")
				require.Equal(t, want, testimg.SHA256File(t, filepath.Join(cache, complete[0], RootfsName)))
			} else {
				require.Empty(t, complete, "a half-filled entry is visible")
			}
			res, err := Pull(context.Background(), src, filepath.Join(t.TempDir(), "again"), PullOptions{Cache: &Cache{Dir: cache}})
			require.NoError(t, err)
			require.Equal(t, step == "renamed", res.Cached)
			require.Equal(t, want, testimg.SHA256File(t, res.Rootfs))
			left, _ := filepath.Glob(filepath.Join(cache, ".fill-*"))
			require.Empty(t, left, "the crashed fill's directory is still there")
		})
	}
}

func cacheCrashChild(t *testing.T) {
	step := os.Getenv("IMAGEPULL_CACHE_CRASH_CHILD")
	fillStep = func(s string) {
		if s == step {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	_, err := Pull(context.Background(), os.Getenv("IMAGEPULL_CACHE_CRASH_SRC"), os.Getenv("IMAGEPULL_CACHE_CRASH_OUT"),
		PullOptions{Cache: &Cache{Dir: os.Getenv("IMAGEPULL_CACHE_CRASH_DIR")}})
	t.Fatalf("the pull finished without reaching fill step %q: %v", step, err)
}
