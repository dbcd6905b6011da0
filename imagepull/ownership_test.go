package imagepull

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
	"github.com/stretchr/testify/require"
)

// tarEntry describes one layer entry; names ending in "/" are directories,
// a non-empty link makes a symlink.
type tarEntry struct {
	name     string
	uid, gid int
	mode     int64 // permission bits with c_ISUID (04000) & co, as tar stores them
	link     string
	hardlink string
}

func layerTar(t testing.TB, gz bool, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(&buf)
		w = zw
	}
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Uid: e.uid, Gid: e.gid, Mode: e.mode, Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(e.name, "/"):
			h.Typeflag = tar.TypeDir
		case e.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case e.hardlink != "":
			h.Typeflag, h.Linkname = tar.TypeLink, e.hardlink
		default:
			h.Typeflag = tar.TypeReg
		}
		require.NoError(t, tw.WriteHeader(h))
	}
	require.NoError(t, tw.Close())
	if zw != nil {
		require.NoError(t, zw.Close())
	}
	return buf.Bytes()
}

func readers(layers ...[]byte) []io.Reader {
	var out []io.Reader
	for _, l := range layers {
		out = append(out, bytes.NewReader(l))
	}
	return out
}

func TestOwnershipFromLayers(t *testing.T) {
	d := func(name string, uid, gid int, mode int64) tarEntry {
		return tarEntry{name: name, uid: uid, gid: gid, mode: mode}
	}
	for _, tc := range []struct {
		name   string
		layers [][]byte
		want   OwnershipTable
		err    string
	}{
		{
			name: "names are cleaned and rooted; modes keep setuid, setgid, sticky",
			layers: [][]byte{layerTar(t, false,
				d("./", 0, 0, 0o755), d("./etc/", 0, 0, 0o755), d("usr/bin/x", 0, 42, 0o2755),
				d("/tmp/", 0, 0, 0o1777), d("usr/bin/su", 0, 0, 0o4755), d("a//b/../c", 1, 2, 0o600),
				d("../../escape", 3, 3, 0o644),
				tarEntry{name: "usr/bin/l", uid: 5, gid: 5, mode: 0o777, link: "x"},
				tarEntry{name: "usr/bin/h", uid: 0, gid: 42, mode: 0o2755, hardlink: "usr/bin/x"},
			)},
			want: OwnershipTable{
				"/":           {0, 0, 0o755},
				"/etc":        {0, 0, 0o755},
				"/usr/bin/x":  {0, 42, fs.ModeSetgid | 0o755},
				"/tmp":        {0, 0, fs.ModeSticky | 0o777},
				"/usr/bin/su": {0, 0, fs.ModeSetuid | 0o755},
				"/a/c":        {1, 2, 0o600},
				"/escape":     {3, 3, 0o644},
				"/usr/bin/l":  {5, 5, 0o777},
				"/usr/bin/h":  {0, 42, fs.ModeSetgid | 0o755},
			},
		},
		{
			name: "gzip detected; later layer wins",
			layers: [][]byte{
				layerTar(t, true, d("etc/", 0, 0, 0o755), d("etc/shadow", 0, 0, 0o644)),
				layerTar(t, false, d("etc/shadow", 0, 42, 0o640)),
				layerTar(t, true, d("etc/", 0, 0, 0o700)),
			},
			want: OwnershipTable{"/etc": {0, 0, 0o700}, "/etc/shadow": {0, 42, 0o640}},
		},
		{
			name: "whiteout removes the path and everything under it",
			layers: [][]byte{
				layerTar(t, false, d("opt/", 0, 0, 0o755), d("opt/app/", 1, 1, 0o755), d("opt/app/bin", 1, 1, 0o755), d("opt/apple", 2, 2, 0o644), d("opt/keep", 3, 3, 0o644)),
				layerTar(t, true, d("opt/.wh.app", 0, 0, 0o644), d("opt/.wh.apple", 0, 0, 0o644)),
			},
			want: OwnershipTable{"/opt": {0, 0, 0o755}, "/opt/keep": {3, 3, 0o644}},
		},
		{
			name: "opaque directory drops what lower layers put below it, not itself, not its own layer",
			layers: [][]byte{
				layerTar(t, false, d("srv/", 0, 0, 0o755), d("srv/a", 7, 7, 0o644), d("srv/sub/", 7, 7, 0o755), d("srv/sub/b", 7, 7, 0o644), d("srvx", 9, 9, 0o644)),
				layerTar(t, false, d("srv/c", 8, 8, 0o640), d("srv/.wh..wh..opq", 0, 0, 0o644)),
			},
			want: OwnershipTable{"/srv": {0, 0, 0o755}, "/srv/c": {8, 8, 0o640}, "/srvx": {9, 9, 0o644}},
		},
		{
			name: "whiteout and re-creation in the same layer: the new entry stays",
			layers: [][]byte{
				layerTar(t, false, d("etc/", 0, 0, 0o755), d("etc/conf/", 0, 0, 0o755), d("etc/conf/old", 0, 0, 0o644)),
				layerTar(t, false, d("etc/.wh.conf", 0, 0, 0o644), d("etc/conf", 4, 4, 0o600)),
			},
			want: OwnershipTable{"/etc": {0, 0, 0o755}, "/etc/conf": {4, 4, 0o600}},
		},
		{
			name: "opaque root",
			layers: [][]byte{
				layerTar(t, false, d("./", 0, 0, 0o755), d("a", 1, 1, 0o644)),
				layerTar(t, false, d(".wh..wh..opq", 0, 0, 0o644), d("b", 2, 2, 0o644)),
			},
			want: OwnershipTable{"/": {0, 0, 0o755}, "/b": {2, 2, 0o644}},
		},
		{name: "no layers", want: OwnershipTable{}},
		{name: "empty stream", layers: [][]byte{{}}, want: OwnershipTable{}},
		{name: "zstd is named", layers: [][]byte{{0x28, 0xb5, 0x2f, 0xfd, 0, 0}}, err: "layer 1: zstd-compressed layer"},
		{name: "truncated gzip", layers: [][]byte{layerTar(t, true, d("a", 0, 0, 0o644))[:20]}, err: "layer 1:"},
		{name: "not a tar", layers: [][]byte{layerTar(t, false), bytes.Repeat([]byte("x"), 1024)}, err: "layer 2: tar:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := OwnershipFromLayers(readers(tc.layers...)...)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestMissingPathsError(t *testing.T) {
	e := &MissingPathsError{Paths: []string{"/a"}}
	require.Equal(t, "1 recorded path missing in the image: /a", e.Error())
	require.ErrorIs(t, e, fs.ErrNotExist)
	var many []string
	for i := 0; i < 60; i++ {
		many = append(many, "/p")
	}
	msg := (&MissingPathsError{Paths: many}).Error()
	require.True(t, strings.HasPrefix(msg, "60 recorded paths missing in the image: /p, /p"))
	require.True(t, strings.HasSuffix(msg, "/p ... and 10 more"), msg)
}

// ownershipFixture is a rootless unpack (every file the unpacker's) made
// into an ext4 by mkfs.ext4 -d, and the layers it came from.
func ownershipFixture(t *testing.T) (img string, layers [][]byte) {
	t.Helper()
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	root := hostTree(t, map[string]string{
		"etc/passwd":         "root:x:0:0::/root:/bin/sh\n",
		"var/www/index.html": "<p>hi</p>\n",
		"usr/bin/x":          "#!/bin/sh\n",
		"usr/bin/link":       "-> x",
		"opt/":               "",
		"srv/c":              "c\n",
		"home/user/.profile": "PATH=/bin\n",
	})
	require.NoError(t, os.Chmod(filepath.Join(root, "usr/bin/x"), 0o755))
	chownTree(t, root, 1000, 1000)
	img = testimg.MkfsFromDir(t, t.TempDir(), "root.img", "32M", root)
	d := func(name string, uid, gid int, mode int64) tarEntry {
		return tarEntry{name: name, uid: uid, gid: gid, mode: mode}
	}
	layers = [][]byte{
		layerTar(t, true,
			d("./", 0, 0, 0o755),
			d("etc/", 0, 0, 0o755), d("etc/passwd", 0, 0, 0o644),
			d("var/", 0, 0, 0o755), d("var/www/", 33, 33, 0o750), d("var/www/index.html", 33, 33, 0o644),
			d("usr/", 0, 0, 0o755), d("usr/bin/", 0, 0, 0o755), d("usr/bin/x", 0, 42, 0o2755),
			tarEntry{name: "usr/bin/link", uid: 5, gid: 5, mode: 0o777, link: "x"},
			d("opt/", 0, 0, 0o755), d("opt/gone/", 0, 0, 0o755), d("opt/gone/f", 0, 0, 0o644),
			d("srv/", 0, 0, 0o755), d("srv/a", 7, 7, 0o644), d("srv/b", 7, 7, 0o644),
			d("home/", 0, 0, 0o755), d("home/user/", 1000, 1000, 0o700), d("home/user/.profile", 1000, 1000, 0o600),
		),
		layerTar(t, false,
			d("var/www/index.html", 33, 33, 0o600),
			d("opt/.wh.gone", 0, 0, 0o644),
			d("srv/.wh..wh..opq", 0, 0, 0o644), d("srv/c", 8, 8, 0o640),
		),
	}
	return img, layers
}

// want is what debugfs must show after ApplyOwnership.
var wantOwnership = []struct {
	path     string
	typ      string
	uid, gid uint32
	mode     uint32
}{
	{"/", "directory", 0, 0, 0o755},
	{"/etc", "directory", 0, 0, 0o755},
	{"/etc/passwd", "regular", 0, 0, 0o644},
	{"/var/www", "directory", 33, 33, 0o750},
	{"/var/www/index.html", "regular", 33, 33, 0o600},
	{"/usr/bin/x", "regular", 0, 42, 0o2755},
	{"/usr/bin/link", "symlink", 5, 5, 0o777},
	{"/opt", "directory", 0, 0, 0o755},
	{"/srv/c", "regular", 8, 8, 0o640},
	{"/home/user", "directory", 1000, 1000, 0o700},
	{"/home/user/.profile", "regular", 1000, 1000, 0o600},
}

func TestApplyOwnershipRealExt4(t *testing.T) {
	imgPath, layers := ownershipFixture(t)
	if os.Geteuid() == 0 {
		st := testimg.DebugfsStat(t, imgPath, "/etc/passwd")
		require.Equal(t, uint32(1000), st.UID, "mkfs -d recorded the unpacking user")
	}
	table, err := OwnershipFromLayers(readers(layers...)...)
	require.NoError(t, err)
	require.NotContains(t, table, "/opt/gone")
	require.NotContains(t, table, "/srv/a")

	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.NoError(t, ApplyOwnership(img, table))
	// Again in the same session: nothing left to change.
	before := listTree(t, img)
	require.NoError(t, ApplyOwnership(img, table))
	require.Equal(t, before, listTree(t, img))
	require.NoError(t, img.Close())

	for _, w := range wantOwnership {
		st := testimg.DebugfsStat(t, imgPath, w.path)
		require.Equal(t, w.typ, st.Type, w.path)
		require.Equal(t, w.uid, st.UID, "%s uid", w.path)
		require.Equal(t, w.gid, st.GID, "%s gid", w.path)
		require.Equal(t, w.mode, st.Mode, "%s mode %o", w.path, st.Mode)
	}
	require.Equal(t, "x", testimg.DebugfsStat(t, imgPath, "/usr/bin/link").FastLink)
	testimg.RequireClean(t, imgPath)
}

func TestApplyOwnershipMissingPaths(t *testing.T) {
	imgPath, layers := ownershipFixture(t)
	d := func(name string, uid, gid int, mode int64) tarEntry {
		return tarEntry{name: name, uid: uid, gid: gid, mode: mode}
	}
	layers = append(layers, layerTar(t, true,
		d("missing/two", 1, 1, 0o644), d("missing/one", 1, 1, 0o644),
		d("etc/passwd/oops", 1, 1, 0o644), // below a file
	))
	table, err := OwnershipFromLayers(readers(layers...)...)
	require.NoError(t, err)
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	err = ApplyOwnership(img, table)
	require.NoError(t, img.Close())

	require.ErrorIs(t, err, fs.ErrNotExist)
	var mp *MissingPathsError
	require.True(t, errors.As(err, &mp))
	require.Equal(t, []string{"/etc/passwd/oops", "/missing/one", "/missing/two"}, mp.Paths)
	require.Equal(t, "apply ownership: 3 recorded paths missing in the image: /etc/passwd/oops, /missing/one, /missing/two", err.Error())
	// Every present path was applied all the same.
	for _, w := range wantOwnership {
		st := testimg.DebugfsStat(t, imgPath, w.path)
		require.Equal(t, []uint32{w.uid, w.gid, w.mode}, []uint32{st.UID, st.GID, st.Mode}, w.path)
	}
	testimg.RequireClean(t, imgPath)
}

func TestApplyOwnershipFollowsIntermediateSymlinks(t *testing.T) {
	testimg.Require(t, "mke2fs", "debugfs", "e2fsck")
	root := hostTree(t, map[string]string{"usr/lib/libc.so": "elf", "lib": "-> usr/lib", "usr/lib/l": "-> libc.so"})
	chownTree(t, root, 1000, 1000)
	imgPath := testimg.MkfsFromDir(t, t.TempDir(), "root.img", "32M", root)
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.NoError(t, ApplyOwnership(img, OwnershipTable{
		"/lib":         {0, 0, 0o777}, // the symlink itself: owner only
		"/lib/libc.so": {0, 0, 0o755}, // through /lib -> usr/lib
		"/usr/lib/l":   {2, 2, 0o600}, // a symlink: its mode stays
	}))
	require.NoError(t, img.Close())
	for _, w := range []struct {
		path           string
		uid, gid, mode uint32
	}{
		{"/lib", 0, 0, 0o777},
		{"/usr/lib/libc.so", 0, 0, 0o755},
		{"/usr/lib/l", 2, 2, 0o777},
	} {
		st := testimg.DebugfsStat(t, imgPath, w.path)
		require.Equal(t, []uint32{w.uid, w.gid, w.mode}, []uint32{st.UID, st.GID, st.Mode}, w.path)
	}
	testimg.RequireClean(t, imgPath)
}

func TestApplyOwnershipRejectsOutOfRange(t *testing.T) {
	imgPath := testimg.Mkfs(t, t.TempDir(), "root.img", "32M")
	sum := testimg.SHA256File(t, imgPath)
	img, err := ext4edit.Open(imgPath, nil)
	require.NoError(t, err)
	require.ErrorContains(t, ApplyOwnership(img, OwnershipTable{"/": {UID: -1}}), "out of range")
	require.NoError(t, img.Close())
	require.Equal(t, sum, testimg.SHA256File(t, imgPath))
}
