//go:build !windows

package imagepull

import "syscall"

// oNoFollow makes an open fail (ELOOP) when the name is a symlink.
const oNoFollow = syscall.O_NOFOLLOW
