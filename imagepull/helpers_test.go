package imagepull

import (
	"crypto/sha256"
	"encoding/hex"
	_ "github.com/banger/ext4kit/internal/checkhook"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testimg.CleanupBuilds()
	os.Exit(code)
}

// entry is one path of an image as the io/fs view shows it.
type entry struct {
	Path     string
	Mode     fs.FileMode
	UID, GID uint32
	Links    uint16
	Size     int64
	Sum      string // sha256 of a regular file
	Target   string // symlink target
}

// listTree walks the whole image through FS(): paths, types, modes,
// owners, link counts, sizes, contents and symlink targets.
func listTree(t testing.TB, img *ext4edit.Image) []entry {
	t.Helper()
	fsys := img.FS()
	var out []entry
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		ii := fi.Sys().(*ext4edit.InodeInfo)
		e := entry{Path: "/" + p, Mode: fi.Mode(), UID: ii.UID, GID: ii.GID, Links: ii.LinksCount, Size: fi.Size()}
		if p == "." {
			e.Path = "/"
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			e.Sum = hex.EncodeToString(s[:])
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.Target, err = fs.ReadLink(fsys, p); err != nil {
				return err
			}
		}
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// listImage opens path read-only and lists it.
func listImage(t testing.TB, path string) []entry {
	t.Helper()
	img, err := ext4edit.Open(path, &ext4edit.Options{ReadOnly: true})
	require.NoError(t, err)
	defer img.Close()
	return listTree(t, img)
}

// hostTree builds a host directory from a spec: "dir/" makes a directory,
// "name -> target" a symlink, anything else a file with the given content.
func hostTree(t testing.TB, spec map[string]string) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(root, 0o755))
	keys := make([]string, 0, len(spec))
	for k := range spec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := spec[k]
		p := filepath.Join(root, filepath.FromSlash(k))
		switch {
		case k[len(k)-1] == '/':
			require.NoError(t, os.MkdirAll(p, 0o755))
		case len(v) > 3 && v[:3] == "-> ":
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.Symlink(v[3:], p))
		default:
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(v), 0o644))
		}
	}
	return root
}

// chownTree gives a host tree to uid:gid (as root), so that mkfs.ext4 -d
// records that owner the way a rootless unpack would.
func chownTree(t testing.TB, root string, uid, gid int) {
	t.Helper()
	if os.Geteuid() != 0 {
		return // mkfs -d records the current user anyway
	}
	require.NoError(t, filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	}))
}
