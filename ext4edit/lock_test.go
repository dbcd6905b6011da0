//go:build unix && !aix

package ext4edit

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/banger/ext4kit/internal/filelock"
	"github.com/stretchr/testify/require"
)

func TestLockTimeout(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	a, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, filelock.Lock(a, true))
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer b.Close()
	start := time.Now()
	err = lockWithin(b, true, 150*time.Millisecond)
	require.ErrorIs(t, err, ErrLocked)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "waits for the timeout")
	go func() { time.Sleep(50 * time.Millisecond); filelock.Unlock(a) }()
	require.NoError(t, lockWithin(b, true, 2*time.Second), "gets the lock once the holder lets go")
}
