//go:build !linux

package main

import "os"

// maxRSSMiB is not measured outside Linux (ru_maxrss units differ).
func maxRSSMiB(*os.ProcessState) int64 { return 0 }
