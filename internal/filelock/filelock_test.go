//go:build unix && !aix

package filelock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
	if err := Lock(a, true); err != nil {
		t.Fatalf("first exclusive lock: %v", err)
	}
	if err := Lock(b, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: got %v, want ErrLocked", err)
	}
	if err := Lock(b, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock while exclusively held: got %v, want ErrLocked", err)
	}
	if err := Unlock(a); err != nil {
		t.Fatalf("unlock: %v", err)
	}
	if err := Lock(b, true); err != nil {
		t.Fatalf("exclusive lock after unlock: %v", err)
	}
	if err := Unlock(b); err != nil {
		t.Fatalf("unlock: %v", err)
	}

	// shared + shared, then exclusive is refused until both are gone
	if err := Lock(a, false); err != nil {
		t.Fatalf("first shared lock: %v", err)
	}
	if err := Lock(b, false); err != nil {
		t.Fatalf("second shared lock: %v", err)
	}
	c := open()
	if err := Lock(c, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock while shared: got %v, want ErrLocked", err)
	}
	if err := Unlock(a); err != nil {
		t.Fatal(err)
	}
	if err := Lock(c, true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock while one shared remains: got %v, want ErrLocked", err)
	}
	// Closing the file drops its lock.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Lock(c, true); err != nil {
		t.Fatalf("exclusive lock after the last holder closed: %v", err)
	}
	if err := Unlock(c); err != nil {
		t.Fatal(err)
	}
}
