package imagepull

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

func TestFinalizeRunsStepsInOrder(t *testing.T) {
	imgPath := testimg.Mkfs(t, t.TempDir(), "root.img", "32M")
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	var ran []string
	step := func(name string, err error) FinalizeStep {
		return func(got *ext4edit.Image) error {
			require.Same(t, img, got)
			ran = append(ran, name)
			return err
		}
	}
	require.NoError(t, Finalize(img, step("a", nil), nil, step("b", nil)))
	require.Equal(t, []string{"a", "b"}, ran)

	ran = nil
	boom := errors.New("boom")
	err = Finalize(img, step("a", nil), step("b", boom), step("c", nil))
	require.ErrorIs(t, err, boom)
	require.Equal(t, "finalize: boom", err.Error())
	require.Equal(t, []string{"a", "b"}, ran, "stops at the first error")
	require.NoError(t, Finalize(img))
	require.NoError(t, img.Close())
}

// TestFinalizeCustomSteps is what callers without a real agent do: their
// own steps, one session, one commit by their Close.
func TestFinalizeCustomSteps(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	imgPath, layers := ownershipFixture(t)
	table, err := OwnershipFromLayers(readers(layers...)...)
	require.NoError(t, err)
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.NoError(t, Finalize(img, OwnershipStep(table), func(img *ext4edit.Image) error {
		return img.WriteFile("/etc/stub-agent", []byte("stub\n"), 0o644)
	}))
	require.NoError(t, img.Close())
	require.Equal(t, "stub\n", string(testimg.Cat(t, imgPath, "/etc/stub-agent")))
	require.Equal(t, uint32(33), testimg.DebugfsStat(t, imgPath, "/var/www").UID)
	testimg.RequireClean(t, imgPath)
}

func TestOwnershipStepEmptyTable(t *testing.T) {
	imgPath := testimg.Mkfs(t, t.TempDir(), "root.img", "32M")
	sum := testimg.SHA256File(t, imgPath)
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.NoError(t, Finalize(img, OwnershipStep(nil), OwnershipStep(OwnershipTable{})))
	require.NoError(t, img.Close())
	require.Equal(t, sum, testimg.SHA256File(t, imgPath))
}

func TestDefaultFinalize(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	agent := testimg.AgentBinary(t)
	imgPath, layers := ownershipFixture(t)
	table, err := OwnershipFromLayers(readers(layers...)...)
	require.NoError(t, err)

	t.Run("bad agent: nothing is written, ownership included", func(t *testing.T) {
		sum := testimg.SHA256File(t, imgPath)
		img, err := ext4edit.Open(imgPath, nil)
		require.NoError(t, err)
		err = Finalize(img, DefaultFinalize(table, InjectOptions{AgentPath: filepath.Join(t.TempDir(), "banger-vsock-agent"), Init: InitSystemd}))
		require.ErrorIs(t, err, fs.ErrNotExist)
		require.NoError(t, img.Close())
		require.Equal(t, sum, testimg.SHA256File(t, imgPath))
	})

	t.Run("ownership then agents, one commit", func(t *testing.T) {
		img, err := ext4edit.Open(imgPath, nil)
		require.NoError(t, err)
		require.NoError(t, Finalize(img, DefaultFinalize(table, InjectOptions{AgentPath: agent, Init: InitSystemd})))
		require.NoError(t, img.Close())
		expectAssets(t, imgPath, agent, func(p string) string { return p })
		for _, w := range wantOwnership {
			st := testimg.DebugfsStat(t, imgPath, w.path)
			require.Equal(t, []uint32{w.uid, w.gid, w.mode}, []uint32{st.UID, st.GID, st.Mode}, w.path)
		}
		st := testimg.DebugfsStat(t, imgPath, guestassets.UnitDir)
		require.Zero(t, st.UID)
	})
}
