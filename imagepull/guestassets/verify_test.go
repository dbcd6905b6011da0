package guestassets

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnitsVerify has systemd itself check the units (syntax, unknown
// keys, dependencies, executables) in a root holding the assets and the
// host's system units: `systemd-analyze verify --root`.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	var sysUnits string
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if _, err := os.Stat(filepath.Join(d, "sysinit.target")); err == nil {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Skip("no systemd system units on this host to verify against")
	}
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755))
	out, err := exec.Command("cp", "-a", sysUnits, filepath.Join(root, "usr/lib/systemd/system")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, f := range Files() {
		data := f.Data
		if f.Companion {
			data = []byte("#!/bin/sh\nexit 0\n") // any executable will do
		}
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, f.Mode))
	}
	cmd := exec.Command(sa, "verify", "--root="+root, NetworkUnitPath, AgentUnitPath)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=notice")
	out, err = cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "--root") && strings.Contains(string(out), "unrecognized") {
		t.Skipf("systemd-analyze too old for --root: %s", out)
	}
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd has remarks on the units")
}
