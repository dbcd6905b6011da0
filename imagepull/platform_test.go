package imagepull

import (
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/require"
)

func TestParsePlatform(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *v1.Platform
	}{
		{"linux/amd64", &v1.Platform{OS: "linux", Architecture: "amd64"}},
		{"linux/arm64/v8", &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{"linux/arm/v7", &v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
		{"linux", nil},
		{"", nil},
		{"/amd64", nil},
	} {
		t.Run(c.in, func(t *testing.T) {
			got, err := ParsePlatform(c.in)
			if c.want == nil {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
}

// DefaultPlatform is what a pull picks without --platform: linux on the
// host's architecture, whatever the host's OS (the guest runs Linux).
func TestDefaultPlatform(t *testing.T) {
	require.Equal(t, v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, DefaultPlatform())
}
