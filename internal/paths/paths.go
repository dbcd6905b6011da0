// Package paths locates files that ship together with banger's binaries.
package paths

import (
	"fmt"
	"os"
	"path/filepath"
)

// executable is os.Executable, replaceable in tests.
var executable = os.Executable

// CompanionBinaryPath returns where the companion binary name is expected:
// in the directory of the running executable (symlinks to the executable
// resolved), the way a release installs banger's binaries side by side.
// It does not check that the file exists.
func CompanionBinaryPath(name string) (string, error) {
	exe, err := executable()
	if err != nil {
		return "", fmt.Errorf("locating %s: cannot find the running executable: %w", name, err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), name), nil
}
