package paths

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompanionBinaryPath(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "bin", "banger")
	require.NoError(t, os.MkdirAll(filepath.Dir(real), 0o755))
	require.NoError(t, os.WriteFile(real, nil, 0o755))
	link := filepath.Join(dir, "banger-link")
	require.NoError(t, os.Symlink(real, link))

	for _, tc := range []struct {
		name, exe, want string
		err             error
	}{
		{name: "plain", exe: real, want: filepath.Join(dir, "bin", "banger-vsock-agent")},
		{name: "symlinked executable resolves to its real directory", exe: link, want: filepath.Join(dir, "bin", "banger-vsock-agent")},
		{name: "unresolvable path is used as is", exe: filepath.Join(dir, "gone", "banger"), want: filepath.Join(dir, "gone", "banger-vsock-agent")},
		{name: "no executable", err: errors.New("boom")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := executable
			defer func() { executable = old }()
			executable = func() (string, error) { return tc.exe, tc.err }
			got, err := CompanionBinaryPath("banger-vsock-agent")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				require.Contains(t, err.Error(), "banger-vsock-agent")
				return
			}
			require.NoError(t, err)
			want, _ := filepath.EvalSymlinks(filepath.Dir(tc.want))
			if want == "" {
				want = filepath.Dir(tc.want)
			}
			require.Equal(t, filepath.Join(want, "banger-vsock-agent"), got)
		})
	}
}
