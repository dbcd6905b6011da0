package imagepull

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInsecureForOneHost: the unverified transport serves the named
// registry only; any other host (a token server, a blob store) keeps
// verified TLS.
func TestInsecureForOneHost(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	// Self-signed certificates: unverifiable. The refused handshake is
	// not logged.
	tlsServer := func() *httptest.Server {
		s := httptest.NewUnstartedServer(ok)
		s.Config.ErrorLog = log.New(io.Discard, "", 0)
		s.StartTLS()
		return s
	}
	reg, other := tlsServer(), tlsServer()
	t.Cleanup(reg.Close)
	t.Cleanup(other.Close)
	base := http.DefaultTransport.(*http.Transport).Clone()
	rt := insecureFor(strings.TrimPrefix(reg.URL, "https://"), base)
	get := func(url string) error {
		req, err := http.NewRequest("GET", url, nil)
		require.NoError(t, err)
		resp, err := rt.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.NoError(t, get(reg.URL+"/v2/"), "the named registry, certificate unchecked")
	err := get(other.URL + "/token")
	require.Error(t, err, "another host keeps verified TLS")
	require.Contains(t, err.Error(), "certificate")
	require.False(t, base.TLSClientConfig != nil && base.TLSClientConfig.InsecureSkipVerify, "the caller's transport is not changed")

	// A RoundTripper that is not an *http.Transport is the caller's.
	custom := roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, io.EOF })
	require.NotNil(t, insecureFor("h:1", custom))
	_, isRoute := insecureFor("h:1", custom).(hostRoute)
	require.False(t, isRoute)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestStageHoldsOutdirLock: StageBootArtifacts takes OUTDIR's lock as
// Pull does, and fails at once while another holder has it.
func TestStageHoldsOutdirLock(t *testing.T) {
	out := t.TempDir()
	tmp := filepath.Join(out, ".rootfs.ext4.tmp-x")
	require.NoError(t, os.WriteFile(tmp, []byte("not an image"), 0o644))
	unlock, err := lockOutdir(out)
	require.NoError(t, err)
	err = StageBootArtifacts(tmp, out, &ImageMetadata{}, StageOptions{})
	require.ErrorIs(t, err, ErrOutdirBusy)
	require.FileExists(t, tmp, "nothing published while locked")
	require.NoFileExists(t, filepath.Join(out, RootfsName))
	unlock()
	require.NoError(t, StageBootArtifacts(tmp, out, &ImageMetadata{}, StageOptions{}))
	require.FileExists(t, filepath.Join(out, RootfsName))
	require.FileExists(t, filepath.Join(out, MetadataName))
	// The lock was released: a Pull can take it.
	unlock, err = lockOutdir(out)
	require.NoError(t, err)
	unlock()
}

// TestPullProgressEvents: each layer's blob reports its bytes once (the
// build after a sizing scan reads the spool, no download), up to its
// size, and the build reports its counts, ending with the totals.
func TestPullProgressEvents(t *testing.T) {
	layers := [][]byte{
		tarOf(t, tFile("a", "one", 0o644), tDir("d/", 0o755)),
		tarOf(t, tFile("d/b", strings.Repeat("x", 100<<10), 0o644)),
	}
	src := "oci:" + singleLayout(t, layers...)
	for _, size := range []int64{0, 32 << 20} {
		var (
			mu     sync.Mutex
			events []ProgressEvent
		)
		res, err := Pull(context.Background(), src, t.TempDir(), PullOptions{Size: size, Progress: func(e ProgressEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		}})
		require.NoError(t, err)
		fetchDone := map[int]int{}
		var last ProgressEvent
		for _, e := range events {
			switch e.Phase {
			case ProgressFetch:
				require.Equal(t, 2, e.Layers)
				l := res.Metadata.Layers[e.Layer-1]
				require.Equal(t, l.Digest, e.Digest)
				require.Equal(t, l.Size, e.Total)
				require.LessOrEqual(t, e.Bytes, e.Total)
				if e.Done {
					fetchDone[e.Layer]++
					require.Equal(t, e.Total, e.Bytes)
				}
			case ProgressBuild:
				require.GreaterOrEqual(t, e.Entries, last.Entries, "counts only grow")
				last = e
			default:
				t.Fatalf("unknown phase in %+v", e)
			}
		}
		require.Equal(t, map[int]int{1: 1, 2: 1}, fetchDone, "size %d: each blob read to its end once, reported once", size)
		require.True(t, last.Done, "the build's last event is Done")
		require.Equal(t, res.Stats.Entries, last.Entries)
		require.Equal(t, res.Stats.FileBytes, last.FileBytes)
	}
}
