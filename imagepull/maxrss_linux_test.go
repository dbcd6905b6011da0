package imagepull

import (
	"os"
	"syscall"
	"testing"
)

// maxRSSKiB is a finished process's peak resident set size (ru_maxrss is
// in KiB on Linux).
func maxRSSKiB(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}

// allocatedBytes is the disk space a file takes (st_blocks).
func allocatedBytes(t testing.TB, name string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(name, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
