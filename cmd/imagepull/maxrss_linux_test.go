//go:build linux

package main

import (
	"os"
	"syscall"
)

// maxRSSMiB is a finished process's peak RSS (ru_maxrss is KiB on Linux).
func maxRSSMiB(ps *os.ProcessState) int64 {
	if ps == nil {
		return 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss >> 10
	}
	return 0
}
