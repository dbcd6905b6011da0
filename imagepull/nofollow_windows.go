//go:build windows

package imagepull

// oNoFollow: Windows has no O_NOFOLLOW; openNoFollow's check after the
// open (the name must hold the very file opened, a regular one) does the
// work there.
const oNoFollow = 0
