package imagepull

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// capNetRaw is a VFS_CAP_REVISION_2 security.capability value granting
// cap_net_raw (effective, permitted).
var capNetRaw = []byte{0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}

// aclUser1000 is a POSIX ACL in the xattr format (version 2): u::rw-,
// u:1000:rwx, g::r--, m::rwx, o::r--.
func aclUser1000() []byte {
	b := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct {
		tag, perm uint16
		id        uint32
	}{{aclUserObj, 6, 0xffffffff}, {aclUser, 7, 1000}, {aclGroupObj, 4, 0xffffffff}, {aclMask, 7, 0xffffffff}, {aclOther, 4, 0xffffffff}} {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// normACL zeroes the ids of the *_OBJ, MASK and OTHER entries, which
// readers report as 0 or -1.
func normACL(v []byte) []byte {
	v = append([]byte(nil), v...)
	for off := 4; off+8 <= len(v); off += 8 {
		switch binary.LittleEndian.Uint16(v[off:]) {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			binary.LittleEndian.PutUint32(v[off+4:], 0)
		}
	}
	return v
}

var (
	longName = strings.Repeat("n", 255)
	longLink = strings.Repeat("t", 120) + "/target"
	bigXattr = bytes.Repeat([]byte("x"), 300)
)

func deepPath(levels int) string {
	var parts []string
	for i := 0; i < levels; i++ {
		parts = append(parts, fmt.Sprintf("d%02d", i))
	}
	return strings.Join(parts, "/")
}

// semanticLayers exercise every entry type and the layer rules.
func semanticLayers(t testing.TB) [][]byte {
	l1 := tarOf(t,
		tDir("./", 0o755, mtime(t1)),
		tDir("etc/", 0o755),
		tFile("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		tFile("etc/xfile", "with xattr", 0o644, xattr("user.a", []byte("1"))),
		tFile("etc/replaced-by-dir", "file", 0o644),
		tDir("etc/dir-replaced-by-file/", 0o755),
		tFile("etc/dir-replaced-by-file/child1", "c1", 0o644),
		tFile("etc/dir-replaced-by-file/sub/child2", "c2", 0o644),
		tSym("etc/link-replaced-by-file", "passwd"),
		tFile("etc/file-replaced-by-link", "file", 0o644),
		tDir("usr/", 0o755),
		tDir("usr/bin/", 0o755),
		tFile("usr/bin/su", "su binary", 0o4755, mtime(t2)),
		tLink("usr/bin/su2", "usr/bin/su"),
		tFile("usr/bin/wall", "wall", 0o2755, owner(0, 5)),
		tFile("usr/bin/ping", "ping", 0o755,
			xattr("security.capability", capNetRaw),
			xattr("user.comment", []byte("hello")),
			xattr("trusted.overlay.x", []byte{0, 1, 2, 255}),
			xattr("com.example.unknown", []byte("skip me"))),
		tFile("usr/bin/bigx", "big xattr", 0o755, xattr("user.big", bigXattr)),
		tFile("usr/bin/acl", "acl", 0o664, xattr("system.posix_acl_access", aclUser1000())),
		tDir("usr/local/", 0o755),
		tFile("usr/local/bin/tool", "tool", 0o755),
		tSym("bin", "usr/bin"),
		tSym("longlink", longLink),
		tSym("escape", "../../../../../"),
		tSym("abs-escape", "/"),
		tDir("tmp/", 0o1777),
		tDir("var/empty/", 0o711, owner(5, 6), mtime(t2), atime(t1)),
		tDev("dev/null", tar.TypeChar, 1, 3, 0o666),
		tDev("dev/sda", tar.TypeBlock, 8, 0, 0o660, owner(0, 6)),
		tDev("dev/big", tar.TypeChar, 300, 70000, 0o600),
		tDev("run/fifo", tar.TypeFifo, 0, 0, 0o600),
		tDev("run/thing", tar.TypeFifo, 0, 0, 0o644),
		tDir("opt/", 0o755),
		tFile("opt/gone/a", "a", 0o644),
		tFile("opt/gone/b", "b", 0o644),
		tFile("opt/keep", "keep", 0o644),
		tFile("opt/again/old", "old", 0o644),
		tFile("srv/data/old1", "o1", 0o644),
		tFile("srv/data/old2", "o2", 0o644),
		tFile("srv/data/sub/old3", "o3", 0o644),
		tFile("data/target", "v1", 0o644, owner(7, 8)),
		tLink("data/link", "data/target"),
		tFile(deepPath(60)+"/leaf", "deep", 0o644),
		tFile("names/"+longName, "long name", 0o644),
		tFile("gnu/"+strings.Repeat("g", 150)+"/file", "gnu long name", 0o644, gnu()),
		tFile("times/f", "times", 0o644, mtime(t2), atime(t1)),
		tSparse("sparse/file", 3<<20, map[int64]string{4096: "first", 2 << 20: "second"}),
		tFile("implicit/a/b/file", "no parents listed", 0o600),
		tFile("empty", "", 0o644),
	)
	l2 := tarOf(t,
		tDir("etc/", 0o750, owner(3, 4), mtime(t2)),
		tFile("../../../../etc/escaped", "escaped?", 0o644),
		tFile("/abs/x", "absolute", 0o644),
		tFile("./rel/./y", "relative", 0o644),
		tFile("bin/through-link", "via /bin", 0o755),
		tFile("escape/etc/evil", "evil", 0o644),
		tFile("abs-escape/etc/evil2", "evil2", 0o644),
		tFile("etc/xfile", "replaced", 0o600),
		tDir("etc/replaced-by-dir/", 0o700),
		tFile("etc/replaced-by-dir/inner", "inner", 0o644),
		tFile("etc/dir-replaced-by-file", "now a file", 0o644),
		tFile("etc/link-replaced-by-file", "not through the link", 0o644),
		tSym("etc/file-replaced-by-link", "passwd"),
		tDev("run/thing", tar.TypeChar, 1, 5, 0o666),
		tWh("opt/.wh.gone"),
		tWh("opt/.wh.never-existed"),
		tWh("opt/.wh.again"),
		tFile("opt/again", "again as a file", 0o644),
		tWh("usr/.wh.local"),
		tDir("srv/data/", 0o755),
		tFile("srv/data/new2", "added before the marker", 0o644),
		tWh("srv/data/.wh..wh..opq"),
		tFile("srv/data/new", "new", 0o644),
		tFile("data/target", "v2", 0o644),
		tLink("usr/bin/su3", "usr/bin/su"),
		tLink("hl/passwd", "../../etc/passwd"),
	)
	l3 := tarOf(t,
		tWh("usr/bin/.wh.su2"),
		tFile("l3/file", "third layer", 0o644),
	)
	return [][]byte{l1, l2, l3}
}

func TestBuildSemantics(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	var w warnings
	hostDir := t.TempDir()
	p := build(t, BuildOptions{Size: 64 << 20, Warnf: w.f}, semanticLayers(t)...)
	_ = hostDir

	type want struct {
		typ        string
		mode       uint32
		uid, gid   uint32
		links      uint32
		content    string // regular files (checked when not "")
		target     string // symlinks
		noContent  bool
		major, min uint32
	}
	checks := map[string]want{
		"/":                          {typ: "directory", mode: 0o755},
		"/etc":                       {typ: "directory", mode: 0o750, uid: 3, gid: 4},
		"/etc/passwd":                {typ: "regular", mode: 0o644, links: 2, content: "root:x:0:0::/root:/bin/sh\n"},
		"/etc/xfile":                 {typ: "regular", mode: 0o600, links: 1, content: "replaced"},
		"/etc/replaced-by-dir":       {typ: "directory", mode: 0o700},
		"/etc/replaced-by-dir/inner": {typ: "regular", mode: 0o644, content: "inner"},
		"/etc/dir-replaced-by-file":  {typ: "regular", mode: 0o644, content: "now a file"},
		"/etc/link-replaced-by-file": {typ: "regular", mode: 0o644, content: "not through the link"},
		"/etc/file-replaced-by-link": {typ: "symlink", target: "passwd"},
		"/etc/escaped":               {typ: "regular", content: "escaped?", mode: 0o644},
		"/etc/evil":                  {typ: "regular", content: "evil", mode: 0o644},
		"/etc/evil2":                 {typ: "regular", content: "evil2", mode: 0o644},
		"/abs/x":                     {typ: "regular", content: "absolute", mode: 0o644},
		"/rel/y":                     {typ: "regular", content: "relative", mode: 0o644},
		"/usr/bin/through-link":      {typ: "regular", content: "via /bin", mode: 0o755},
		"/usr/bin/su":                {typ: "regular", mode: 0o4755, links: 2, content: "su binary"},
		"/usr/bin/su3":               {typ: "regular", mode: 0o4755, links: 2, content: "su binary"},
		"/usr/bin/wall":              {typ: "regular", mode: 0o2755, gid: 5, content: "wall"},
		"/usr/bin/ping":              {typ: "regular", mode: 0o755, content: "ping"},
		"/bin":                       {typ: "symlink", target: "usr/bin"},
		"/longlink":                  {typ: "symlink", target: longLink},
		"/tmp":                       {typ: "directory", mode: 0o1777},
		"/var/empty":                 {typ: "directory", mode: 0o711, uid: 5, gid: 6},
		"/dev/null":                  {typ: "character special", mode: 0o666, major: 1, min: 3},
		"/dev/sda":                   {typ: "block special", mode: 0o660, gid: 6, major: 8, min: 0},
		"/dev/big":                   {typ: "character special", mode: 0o600, major: 300, min: 70000},
		"/run/fifo":                  {typ: "FIFO", mode: 0o600},
		"/run/thing":                 {typ: "character special", mode: 0o666, major: 1, min: 5},
		"/opt/keep":                  {typ: "regular", content: "keep", mode: 0o644},
		"/opt/again":                 {typ: "regular", content: "again as a file", mode: 0o644},
		"/srv/data/new":              {typ: "regular", content: "new", mode: 0o644},
		"/srv/data/new2":             {typ: "regular", content: "added before the marker", mode: 0o644},
		"/data/target":               {typ: "regular", content: "v2", links: 1, mode: 0o644},
		"/data/link":                 {typ: "regular", content: "v1", links: 1, uid: 7, gid: 8, mode: 0o644},
		"/hl/passwd":                 {typ: "regular", links: 2, mode: 0o644},
		"/" + deepPath(60) + "/leaf": {typ: "regular", content: "deep", mode: 0o644},
		"/names/" + longName:         {typ: "regular", content: "long name", mode: 0o644},
		"/gnu/" + strings.Repeat("g", 150) + "/file": {typ: "regular", content: "gnu long name", mode: 0o644},
		"/implicit/a/b":      {typ: "directory", mode: 0o755},
		"/implicit/a/b/file": {typ: "regular", content: "no parents listed", mode: 0o600},
		"/empty":             {typ: "regular", mode: 0o644, noContent: true},
		"/l3/file":           {typ: "regular", content: "third layer", mode: 0o644},
	}
	for path, w := range checks {
		s := testimg.DebugfsStat(t, p, path)
		if s.Type != w.typ {
			t.Errorf("%s: type %q, want %q", path, s.Type, w.typ)
			continue
		}
		if w.typ != "symlink" && s.Mode != w.mode {
			t.Errorf("%s: mode %04o, want %04o", path, s.Mode, w.mode)
		}
		if s.UID != w.uid || s.GID != w.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", path, s.UID, s.GID, w.uid, w.gid)
		}
		if w.links != 0 && s.Links != w.links {
			t.Errorf("%s: %d links, want %d", path, s.Links, w.links)
		}
		if w.content != "" {
			if got := string(testimg.Cat(t, p, path)); got != w.content {
				t.Errorf("%s: content %q, want %q", path, got, w.content)
			}
		}
		if w.noContent && s.Size != 0 {
			t.Errorf("%s: size %d, want 0", path, s.Size)
		}
		if w.typ == "symlink" {
			// debugfs shows a fast link's target; a slow one's is its data.
			got := s.FastLink
			if got == "" {
				got = strings.TrimRight(string(testimg.Cat(t, p, path)), "\x00")
			}
			if got != w.target {
				t.Errorf("%s: symlink to %q, want %q", path, got, w.target)
			}
		}
		if strings.HasSuffix(w.typ, "special") {
			ma, mi, ok := testimg.StatDevice(s)
			if !ok || ma != w.major || mi != w.min {
				t.Errorf("%s: device %d:%d (%v), want %d:%d", path, ma, mi, ok, w.major, w.min)
			}
		}
	}

	// Hard links: one inode where the layers linked, a new one where a
	// later layer replaced the target.
	ino := func(path string) uint64 { return testimg.DebugfsStat(t, p, path).Inode }
	if ino("/usr/bin/su") != ino("/usr/bin/su3") {
		t.Errorf("su and su3 are different inodes")
	}
	if ino("/hl/passwd") != ino("/etc/passwd") {
		t.Errorf("/hl/passwd is not a hard link of /etc/passwd")
	}
	if ino("/data/target") == ino("/data/link") {
		t.Errorf("replacing /data/target changed the linked inode")
	}

	// Removed by whiteouts, opaque directories and replacements.
	for _, gone := range []string{
		"/opt/gone", "/opt/gone/a", "/opt/again/old", "/usr/local", "/usr/bin/su2",
		"/srv/data/old1", "/srv/data/old2", "/srv/data/sub",
		"/etc/dir-replaced-by-file/child1", "/opt/.wh.gone", "/srv/data/.wh..wh..opq",
		"/usr/.wh.local", "/sparse/GNUSparseFile.0",
	} {
		if testimg.DebugfsExists(t, p, gone) {
			t.Errorf("%s exists; a whiteout or replacement should have removed it", gone)
		}
	}
	if !testimg.DebugfsExists(t, p, "/escape") {
		t.Errorf("/escape (a symlink to ../../..) is missing")
	}

	// Times: files get theirs at once, directories after the last layer.
	times := func(path string) map[string]time.Time { return testimg.StatTimes(testimg.DebugfsStat(t, p, path)) }
	for path, wt := range map[string][2]time.Time{
		"/times/f":    {t1, t2}, // atime, mtime
		"/usr/bin/su": {t2, t2},
		"/etc":        {t2, t2}, // changed in layer 2, entries added after
		"/var/empty":  {t1, t2},
		"/":           {t1, t1},
		"/etc/passwd": {t0, t0},
		"/bin":        {t0, t0}, // symlinks too
		"/dev/null":   {t0, t0},
	} {
		got := times(path)
		if !got["atime"].Equal(wt[0]) || !got["mtime"].Equal(wt[1]) {
			t.Errorf("%s: atime %v mtime %v, want %v %v", path, got["atime"], got["mtime"], wt[0], wt[1])
		}
	}

	// Extended attributes.
	for path, xs := range map[string]map[string][]byte{
		"/usr/bin/ping": {"security.capability": capNetRaw, "user.comment": []byte("hello")},
		"/usr/bin/bigx": {"user.big": bigXattr},
	} {
		for name, v := range xs {
			got, ok := testimg.DebugfsXattr(t, p, path, name)
			if !ok || !bytes.Equal(got, v) {
				t.Errorf("%s: xattr %s = %x (%v), want %x", path, name, got, ok, v)
			}
		}
	}
	names := testimg.DebugfsXattrNames(t, p, "/usr/bin/ping")
	if j := strings.Join(names, " "); strings.Contains(j, "com.example") || strings.Contains(j, "trusted.") {
		t.Errorf("/usr/bin/ping: unknown or trusted. namespace stored: %v", names)
	}
	if !w.has("com.example.unknown") {
		t.Errorf("no warning about the skipped xattr: %q", w.msgs)
	}
	if got, ok := testimg.DebugfsXattr(t, p, "/usr/bin/acl", "system.posix_acl_access"); !ok || !bytes.Equal(normACL(got), normACL(aclUser1000())) {
		t.Errorf("/usr/bin/acl: ACL %x (%v), want %x", got, ok, aclUser1000())
	}
	if names := testimg.DebugfsXattrNames(t, p, "/etc/xfile"); len(names) != 0 {
		t.Errorf("/etc/xfile was replaced but kept xattrs %v", names)
	}

	// A sparse file reads back whole (its holes are written as zeros).
	img := openRO(t, p)
	sp, err := img.ReadFile("/sparse/file")
	if err != nil {
		t.Fatal(err)
	}
	wantSp := make([]byte, 3<<20)
	copy(wantSp[4096:], "first")
	copy(wantSp[2<<20:], "second")
	if !bytes.Equal(sp, wantSp) {
		t.Errorf("/sparse/file differs from its tar entry")
	}

	// Nothing landed on the host.
	for _, h := range []string{"/etc/escaped", "/etc/evil", "/etc/evil2", "/abs/x"} {
		mustNotExist(t, h)
	}
}

func TestBuildErrors(t *testing.T) {
	testimg.Require(t, "e2fsck")
	cases := []struct {
		name   string
		layers [][]byte
		want   string
		is     error
	}{
		{"hardlink to a missing target", [][]byte{tarOf(t, tLink("a", "nowhere"))}, "target not in the image", nil},
		{"hardlink to a directory", [][]byte{tarOf(t, tDir("d/", 0o755), tLink("a", "d"))}, "target is a directory", nil},
		{"name too long", [][]byte{tarOf(t, tFile(strings.Repeat("x", 256), "", 0o644))}, "", ext4edit.ErrNameTooLong},
		{"file in place of a parent", [][]byte{tarOf(t, tFile("f", "x", 0o644), tFile("f/g", "y", 0o644))}, "", ext4edit.ErrNotDir},
		{"truncated tar", [][]byte{tarOf(t, tFile("f", "0123456789", 0o644))[:520]}, "unexpected EOF", nil},
		{"too small", [][]byte{tarOf(t, tFile("big", strings.Repeat("z", 40<<20), 0o644))}, "too small", ext4edit.ErrNoSpace},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "img")
			img, _, err := BuildExt4(context.Background(), p, memLayers(c.layers...), BuildOptions{Size: 32 << 20})
			if err == nil {
				img.Close()
				t.Fatalf("no error")
			}
			var le *LayerError
			if c.name != "too small" && !errors.As(err, &le) {
				t.Errorf("error %v is not a *LayerError", err)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if _, serr := os.Stat(p); !errors.Is(serr, fs.ErrNotExist) {
				t.Errorf("the failed image was left at %s", p)
			}
		})
	}
}

// A later layer replacing a hard link's target, or the link itself,
// never changes the other name's inode.
func TestHardlinkReplacement(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	l1 := tarOf(t, tFile("a", "one", 0o644), tLink("b", "a"), tLink("c", "a"))
	l2 := tarOf(t, tFile("b", "two", 0o600), tDir("c/", 0o755))
	p := build(t, BuildOptions{Size: 32 << 20}, l1, l2)
	a := testimg.DebugfsStat(t, p, "/a")
	b := testimg.DebugfsStat(t, p, "/b")
	if a.Links != 1 || b.Links != 1 || a.Inode == b.Inode {
		t.Errorf("a: %d links ino %d, b: %d links ino %d", a.Links, a.Inode, b.Links, b.Inode)
	}
	if string(testimg.Cat(t, p, "/a")) != "one" || string(testimg.Cat(t, p, "/b")) != "two" {
		t.Errorf("contents changed: a %q b %q", testimg.Cat(t, p, "/a"), testimg.Cat(t, p, "/b"))
	}
	if s := testimg.DebugfsStat(t, p, "/c"); s.Type != "directory" {
		t.Errorf("/c is a %s", s.Type)
	}

	// In one layer: a name reached through the layer's own symlink
	// replaces the entry it aliases, and the hard link keeps the old one.
	p = build(t, BuildOptions{Size: 32 << 20}, tarOf(t,
		tDir("usr/lib/", 0o755),
		tSym("lib", "usr/lib"),
		tFile("usr/lib/x", "one", 0o644),
		tLink("keep", "usr/lib/x"),
		tFile("lib/x", "two", 0o600),
	))
	if string(testimg.Cat(t, p, "/usr/lib/x")) != "two" || string(testimg.Cat(t, p, "/keep")) != "one" {
		t.Errorf("aliased replacement: /usr/lib/x %q /keep %q", testimg.Cat(t, p, "/usr/lib/x"), testimg.Cat(t, p, "/keep"))
	}
}

// Whiteouts and opaque directories remove what layers made, never the
// filesystem's own lost+found.
func TestWhiteoutKeepsLostFound(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	p := build(t, BuildOptions{Size: 32 << 20},
		tarOf(t, tFile("a", "a", 0o644)),
		tarOf(t, tWh(".wh..wh..opq"), tWh(".wh.lost+found"), tFile("b", "b", 0o644)))
	if !testimg.DebugfsExists(t, p, "/lost+found") || testimg.DebugfsExists(t, p, "/a") || !testimg.DebugfsExists(t, p, "/b") {
		t.Errorf("root opaque: lost+found %v, a %v, b %v", testimg.DebugfsExists(t, p, "/lost+found"), testimg.DebugfsExists(t, p, "/a"), testimg.DebugfsExists(t, p, "/b"))
	}
}

func TestACLConversion(t *testing.T) {
	d, err := aclToDisk(aclUser1000())
	if err != nil {
		t.Fatal(err)
	}
	// version 1, then 4-byte short entries except ACL_USER (8 bytes).
	want := []byte{1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 7, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 0x10, 0, 7, 0, 0x20, 0, 4, 0}
	if !bytes.Equal(d, want) {
		t.Errorf("aclToDisk = %x, want %x", d, want)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0, 0, 1}, {1, 0, 0, 0}, append(binary.LittleEndian.AppendUint32(nil, 2), 0x40, 0, 0, 0, 0, 0, 0, 0)} {
		if _, err := aclToDisk(bad); err == nil {
			t.Errorf("aclToDisk(%x) accepted", bad)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"etc/x": "/etc/x", "./etc/x": "/etc/x", "/etc/x": "/etc/x", "../../etc/x": "/etc/x",
		"a/../../b": "/b", "./": "/", "": "/", "a//b/./c/": "/a/b/c", "..": "/",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}
