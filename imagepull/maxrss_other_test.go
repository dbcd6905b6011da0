//go:build !linux

package imagepull

import "os"

// maxRSSKiB is not measured outside Linux (ru_maxrss units differ).
func maxRSSKiB(*os.ProcessState) int64 { return 0 }
