//go:build unix && !aix

package ext4edit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func() *os.File {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open(), open()

	// exclusive vs exclusive and vs shared
	if err := lockFile(a, true); err != nil {
		t.Fatalf("first exclusive lock: %v", err)
	}
	if err := lockFile(b, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: got %v, want ErrLocked", err)
	}
	if err := lockFile(b, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock while exclusively held: got %v, want ErrLocked", err)
	}
	if err := unlockFile(a); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := lockFile(b, true); err != nil {
		t.Fatalf("exclusive lock after unlock: %v", err)
	}
	if err := unlockFile(b); err != nil {
		t.Fatalf("unlock: %v", err)
	}

	// shared + shared, then exclusive is refused until both are gone
	if err := lockFile(a, false); err != nil {
		t.Fatalf("first shared lock: %v", err)
	}
	if err := lockFile(b, false); err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	c := open()
	if err := lockFile(c, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock while shared: got %v, want ErrLocked", err)
	}
	if err := unlockFile(a); err != nil {
		t.Fatal(err)
	}
	if err := lockFile(c, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock while one shared remains: got %v, want ErrLocked", err)
	}
	// Closing the file drops its lock.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lockFile(c, true); err != nil {
		t.Fatalf("exclusive lock after the last holder closed: %v", err)
	}
	if err := unlockFile(c); err != nil {
		t.Fatal(err)
	}
}

func TestLockTimeout(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	require.NoError(t, os.WriteFile(p, nil, 0o644))
	a, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer a.Close()
	require.NoError(t, lockFile(a, true))
	b, err := os.OpenFile(p, os.O_RDWR, 0)
	require.NoError(t, err)
	defer b.Close()
	start := time.Now()
	err = lockWithin(b, true, 150*time.Millisecond)
	require.ErrorIs(t, err, ErrLocked)
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "waits for the timeout")
	go func() { time.Sleep(50 * time.Millisecond); unlockFile(a) }()
	require.NoError(t, lockWithin(b, true, 2*time.Second), "gets the lock once the holder lets go")
}
