package imagepull

import (
	"os"
	"syscall"
)

// maxRSSKiB is a finished process's peak resident set size (ru_maxrss is
// in KiB on Linux).
func maxRSSKiB(ps *os.ProcessState) int64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}
