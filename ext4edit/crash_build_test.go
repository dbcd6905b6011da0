//go:build linux

package ext4edit_test

// TestCrashBuildStage sweeps crash points across a whole pull: the real
// imagepull.Pull (fetch from an OCI layout, BuildExt4 with its mkfs,
// a finalize edit, the commit, StageBootArtifacts) into an OUTDIR that
// already holds an older pull. The image file Pull builds (OUTDIR/
// .rootfs.ext4.tmp-*) goes through crDev from Create's first write on
// (ext4edit.SetDeviceHook), in two models:
//
//   - die: the process dies before write N: writes 0..N-1 reached the
//     file, nothing after;
//   - drop: writes sit in a volatile cache until a Sync; at the crash
//     every write not yet flushed is lost.
//
// At the crash the test freezes OUTDIR as the disk holds it (hard links
// of every file): what the process does after the crash (its error paths
// remove the temp image) never happened. Besides every device event,
// two points lie past the last one:
//
//   - "pre-stage": the process dies after its last write or Sync, before
//     StageBootArtifacts renames anything;
//   - "post-stage": Pull has returned (rename and directory fsync done)
//     and then the power fails: in the drop model every write not yet
//     flushed is lost, so the published image must already be durable.
//
// The stage's own steps (image.json removed, the rename, image.json
// renamed back) are directory operations, not device writes: a crash
// between them leaves the old or the new rootfs.ext4 with no image.json,
// which the pre- and post-stage points bracket.
//
// For every point OUTDIR/rootfs.ext4 must be exactly the old image file
// (the same inode, its bytes unchanged) or exactly the new one (the clean
// run's bytes); image.json, when present, must describe that image; the
// rest of OUTDIR may only be hidden temp names. Each distinct published
// image is judged once: its tree (jtSnap) is the old or the new tree, and
// after our replay (read-write Open and Close), e2fsck -fy and the kernel's
// mount (where testimg.Mount works), each on a copy, e2fsck -fn is clean
// and the tree is unchanged. Then a later pull runs into the crashed
// OUTDIR and must publish the new image and clear the temp files the
// crash left: afterwards OUTDIR holds the rootfs, image.json and Pull's
// lock file, nothing else.
//
// The crashed temp image is never published; how it reads (read-only
// Open, journal replayed in memory) is only counted, and it must not
// panic.

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull"
	"github.com/banger/ext4kit/internal/testimg"
)

// cbTmpPrefix starts the name of the image file Pull builds in OUTDIR.
const cbTmpPrefix = "." + imagepull.RootfsName + ".tmp-"

// cbMaxPoints bounds the device events tried per model; past it the
// sweep samples (every Sync boundary ±1 included).
const cbMaxPoints = 600

type cbEntry struct {
	hdr  tar.Header
	body []byte
}

func cbDir(name string) cbEntry {
	return cbEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func cbFile(name string, body []byte, mode int64, uid, gid int) cbEntry {
	return cbEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: uid, Gid: gid, Size: int64(len(body))}, body: body}
}

func cbSymlink(name, target string) cbEntry {
	return cbEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func cbHardlink(name, target string) cbEntry {
	return cbEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o755}}
}

func cbTar(t testing.TB, entries ...cbEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1690000000, 0)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = mtime
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// cbLayers are the two layers of the new image; the old image is the
// lower one alone.
func cbLayers(t testing.TB) (lower, upper []byte) {
	tool := cbFile("usr/bin/tool", jtPattern(3*4096+517, 31), 0o755, 0, 0) // > 1 block
	tool.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.origin": "lower"}
	lower = cbTar(t,
		cbDir("etc/"),
		cbFile("etc/hostname", []byte("old-host\n"), 0o644, 0, 0),
		cbFile("etc/old.conf", jtPattern(700, 32), 0o640, 0, 0),
		cbDir("usr/"), cbDir("usr/bin/"),
		tool,
		cbHardlink("usr/bin/tool-hard", "usr/bin/tool"),
		cbSymlink("usr/bin/alias", "tool"),
		cbDir("var/"), cbDir("var/cache/"), cbDir("var/cache/app/"),
		cbFile("var/cache/app/a", jtPattern(5000, 33), 0o644, 0, 0),
		cbFile("var/cache/app/b", jtPattern(10, 34), 0o644, 0, 0),
		cbDir("home/"), cbDir("home/user/"),
		cbFile("home/user/.profile", []byte("export PS1='$ '\n"), 0o600, 1000, 1000),
	)
	upper = cbTar(t,
		cbDir("etc/"),
		cbFile("etc/.wh.old.conf", nil, 0o644, 0, 0),
		cbFile("etc/hostname", []byte("new-host\n"), 0o644, 0, 0),
		cbSymlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
		cbDir("var/cache/app/"),
		cbFile("var/cache/app/.wh..wh..opq", nil, 0o644, 0, 0),
		cbFile("var/cache/app/c", jtPattern(9000, 35), 0o644, 0, 0),
		cbDir("opt/"), cbDir("opt/app/"), cbDir("opt/app/bin/"),
		cbFile("opt/app/bin/run", jtPattern(2*4096, 36), 0o755, 0, 0),
		cbHardlink("opt/app/bin/run-hard", "opt/app/bin/run"),
	)
	return lower, upper
}

// cbLayout writes an OCI layout holding one linux/amd64 image of layers
// and returns the Pull source naming it.
func cbLayout(t testing.TB, dir string, layers ...[]byte) string {
	t.Helper()
	img := testimg.OCIImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, time.Unix(1700000000, 0).UTC(),
		v1.Config{Cmd: []string{"/usr/bin/tool"}}, layers...)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"})); err != nil {
		t.Fatal(err)
	}
	return "oci:" + dir + ":v1"
}

// cbPoint is one crash point.
type cbPoint struct {
	mode    crMode
	crashAt int    // device event; -1: none
	stage   string // "", "pre-stage" or "post-stage"
}

func (p cbPoint) String() string {
	if p.stage != "" {
		return p.mode.String() + "@" + p.stage
	}
	return fmt.Sprintf("%s@%d", p.mode, p.crashAt)
}

// cbSession is one pull through a crash device.
type cbSession struct {
	t           *testing.T
	outdir      string
	dev         *crDev
	calls       int // device calls (writes and syncs) so far
	freezeAfter int // freeze after this many calls; -1: not by count
	snap        string
	frozen      bool
	wraps       int
}

// cbDev is the device the hook hands the editor: crDev's fault model,
// plus the freeze of OUTDIR at the crash.
type cbDev struct{ s *cbSession }

func (d cbDev) ReadAt(p []byte, off int64) (int, error) { return d.s.dev.ReadAt(p, off) }

func (d cbDev) WriteAt(p []byte, off int64) (int, error) {
	n, err := d.s.dev.WriteAt(p, off)
	d.s.after()
	return n, err
}

func (d cbDev) Sync() error {
	err := d.s.dev.Sync()
	d.s.after()
	return err
}

func (s *cbSession) after() {
	s.calls++
	if !s.frozen && (s.dev.crashed || s.calls == s.freezeAfter) {
		s.freeze()
	}
}

// freeze records OUTDIR as the disk holds it now: every file hard-linked
// into s.snap (the files are never written in place after a crash: the
// device refuses, and the old rootfs is never opened), directories made.
func (s *cbSession) freeze() {
	s.frozen = true
	err := filepath.WalkDir(s.outdir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(s.outdir, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(s.snap, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		return os.Link(p, dst)
	})
	if err != nil {
		s.t.Errorf("freezing %s: %v", s.outdir, err)
	}
}

// cbRunner holds the sweep.
type cbRunner struct {
	t          *testing.T
	dir        string
	src        string // the new image's Pull source
	master     string // the old pull's OUTDIR
	masterFI   fs.FileInfo
	masterSum  string
	oldTree    jtTree
	newTree    jtTree
	oldMeta    string // manifest digests in image.json
	newMeta    string
	newSum     string
	clean      *crDev
	cleanCalls int
	kernel     bool
	cur        *cbSession // the session the device hook serves
	npoints    int
	judged     map[string]string // published image digest -> verdict
	stats      map[string]int
	leftovers  map[string]int
	tmpReads   map[string]int
	nextPulls  int
	leftBefore int // OUTDIR entries the next pulls found (temps included)
}

func (r *cbRunner) hook(p string, d ext4edit.Device) ext4edit.Device {
	s := r.cur
	if s == nil || filepath.Dir(p) != s.outdir || !strings.HasPrefix(filepath.Base(p), cbTmpPrefix) {
		return d
	}
	s.wraps++
	s.dev.under = d // mkfs's scratch image, then Open's: one file, one after the other
	return cbDev{s}
}

func cbFinalize(img *ext4edit.Image) error {
	if err := img.WriteFile("/etc/finalized", []byte("yes\n"), 0o644); err != nil {
		return err
	}
	return img.Lchown("/home/user", 1000, 1000)
}

func cbPull(src, outdir string) (*imagepull.PullResult, error) {
	return imagepull.Pull(context.Background(), src, outdir, imagepull.PullOptions{
		Platform: &v1.Platform{OS: "linux", Architecture: "amd64"},
		Finalize: cbFinalize,
	})
}

func cbManifest(t testing.TB, outdir string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(outdir, imagepull.MetadataName))
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Errorf("image.json: %v", err)
		return "", false
	}
	var m imagepull.ImageMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		t.Errorf("image.json: %v", err)
		return "", false
	}
	return m.ManifestDigest, true
}

// run pulls the new image into a fresh copy of the old OUTDIR through a
// crash device and returns the frozen OUTDIR.
func (r *cbRunner) run(pt cbPoint) (s *cbSession, pullErr error) {
	t := r.t
	r.npoints++
	base := filepath.Join(r.dir, fmt.Sprintf("p%d", r.npoints))
	s = &cbSession{t: t, outdir: filepath.Join(base, "out"), snap: filepath.Join(base, "frozen"), freezeAfter: -1,
		dev: &crDev{mode: pt.mode, crashAt: pt.crashAt}}
	if err := os.MkdirAll(s.outdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{imagepull.RootfsName, imagepull.MetadataName} {
		if err := os.Link(filepath.Join(r.master, n), filepath.Join(s.outdir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if pt.stage == "pre-stage" {
		s.freezeAfter = r.cleanCalls
	}
	r.cur = s
	func() {
		defer func() {
			r.cur = nil
			if p := recover(); p != nil {
				t.Fatalf("%s: panic: %v", pt, p)
			}
		}()
		_, pullErr = cbPull(r.src, s.outdir)
	}()
	if s.wraps == 0 {
		t.Fatalf("%s: the device hook never saw the temp image", pt)
	}
	if !s.frozen {
		// Past every device event: Pull returned, then the power fails.
		s.dev.mu.Lock()
		if s.dev.volatile() {
			s.dev.crash() // unflushed writes are lost
		}
		s.dev.mu.Unlock()
		s.freeze()
	}
	if r.clean != nil {
		for i, w := range s.dev.writes {
			if i >= len(r.clean.writes) {
				t.Fatalf("%s: run issued write %d; the clean run made only %d", pt, i, len(r.clean.writes))
			}
			if c := r.clean.writes[i]; w.off != c.off || w.n != c.n || w.sum != c.sum {
				t.Fatalf("%s: write %d differs from the clean run's: runs are not deterministic", pt, i)
			}
		}
	}
	return s, pullErr
}

// judge checks a published image once per distinct content: the tree is
// the old or the new one, e2fsck -fn is clean, and so it stays after each
// recovery, on its own copy.
func (r *cbRunner) judge(img, what string) string {
	t := r.t
	sum := jtDigest(img)
	if v, ok := r.judged[sum]; ok {
		return v
	}
	which := func(tr jtTree) string {
		switch {
		case jtDiff(tr, r.oldTree, 1) == "":
			return "old"
		case jtDiff(tr, r.newTree, 1) == "":
			return "new"
		}
		return "neither"
	}
	verdict := "neither"
	if tr, err := jtSnap(img); err != nil {
		t.Errorf("%s: read-only open of the published image: %v", what, err)
	} else if verdict = which(tr); verdict == "neither" {
		t.Errorf("%s: the published tree is neither the old nor the new one:\nvs old:\n%s\nvs new:\n%s",
			what, jtDiff(tr, r.oldTree, 8), jtDiff(tr, r.newTree, 8))
	}
	if code, out := jtFsck(img, "-fn"); code != 0 {
		t.Errorf("%s: e2fsck -fn of the published image exit %d:\n%s", what, code, out)
	}
	after := func(how, p string) {
		if code, out := jtFsck(p, "-fn"); code != 0 {
			t.Errorf("%s: after %s e2fsck -fn exit %d:\n%s", what, how, code, out)
		}
		if tr, err := jtSnap(p); err != nil {
			t.Errorf("%s: after %s: %v", what, how, err)
		} else if w := which(tr); w != verdict {
			t.Errorf("%s: after %s the tree is %s, before it %s", what, how, w, verdict)
		}
	}
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.img")
	jtCopy(t, img, ours)
	if im, err := ext4edit.Open(ours, nil); err != nil {
		t.Errorf("%s: read-write open (our replay): %v", what, err)
	} else if err := im.Close(); err != nil {
		t.Errorf("%s: close after our replay: %v", what, err)
	} else {
		after("our replay", ours)
	}
	fsck := filepath.Join(dir, "fsck.img")
	jtCopy(t, img, fsck)
	if code, out := jtFsck(fsck, "-fy"); code > 1 {
		t.Errorf("%s: e2fsck -fy exit %d:\n%s", what, code, out)
	} else if fx := jtFixes(out); len(fx) > 0 {
		t.Errorf("%s: e2fsck -fy repaired: %v", what, fx)
	} else {
		after("e2fsck -fy", fsck)
	}
	if r.kernel {
		k := filepath.Join(dir, "kernel.img")
		jtCopy(t, img, k)
		if t.Run("kernel-"+strings.ReplaceAll(what, "@", "-"), func(t *testing.T) {
			_, unmount := testimg.Mount(t, k, false)
			unmount()
		}) {
			after("a kernel mount", k)
		} else {
			t.Errorf("%s: the kernel could not mount the published image", what)
		}
	}
	r.judged[sum] = verdict
	return verdict
}

// check judges the frozen OUTDIR of a crash point.
func (r *cbRunner) check(pt cbPoint, s *cbSession, pullErr error) {
	t := r.t
	if s.dev.crashed && pt.stage == "" && pullErr == nil {
		t.Errorf("%s: the pull reported success although the device failed", pt)
	}
	if !s.dev.crashed && pt.stage == "" {
		t.Errorf("%s: the crash never happened", pt)
	}
	if pt.stage != "" && pullErr != nil {
		t.Errorf("%s: the pull failed: %v", pt, pullErr)
	}
	// OUTDIR/rootfs.ext4: the old file untouched, or the new image.
	root := filepath.Join(s.snap, imagepull.RootfsName)
	fi, err := os.Stat(root)
	verdict := "missing"
	switch {
	case err != nil:
		t.Errorf("%s: %v", pt, err)
	case os.SameFile(fi, r.masterFI):
		verdict = "old" // the same inode; its bytes are checked at the end
	default:
		verdict = r.judge(root, pt.String())
		if verdict == "new" && jtDigest(root) != r.newSum {
			t.Errorf("%s: the published image has the new tree but not the clean run's bytes", pt)
		}
	}
	r.stats[pt.mode.String()+" "+verdict]++
	// image.json, when there, describes the rootfs beside it.
	if m, ok := cbManifest(t, s.snap); ok {
		want := map[string]string{"old": r.oldMeta, "new": r.newMeta}[verdict]
		if m != want {
			t.Errorf("%s: image.json names manifest %s beside the %s rootfs (want %s)", pt, m, verdict, want)
		}
	} else {
		r.stats[pt.mode.String()+" "+verdict+", no image.json"]++
	}
	// Everything else is a hidden temp name.
	ents, err := os.ReadDir(s.snap)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range ents {
		n := e.Name()
		if n == imagepull.RootfsName || n == imagepull.MetadataName || n == imagepull.LockName {
			continue
		}
		if !strings.HasPrefix(n, ".") || !strings.Contains(n, ".tmp-") {
			t.Errorf("%s: OUTDIR holds %q", pt, n)
		}
		kind := n[:strings.Index(n, ".tmp-")+len(".tmp-")] + "*"
		if e.IsDir() {
			kind += "/"
		}
		left = append(left, kind)
		if strings.HasPrefix(n, cbTmpPrefix) && !e.IsDir() {
			r.tmpReads[r.readTemp(pt, filepath.Join(s.snap, n))]++
		}
	}
	sort.Strings(left)
	r.leftovers[strings.Join(left, " ")]++
}

// readTemp says how the crashed temp image reads (read-only, journal
// replayed in memory): it is never published, so any outcome but a panic
// is accepted.
func (r *cbRunner) readTemp(pt cbPoint, p string) (how string) {
	defer func() {
		if e := recover(); e != nil {
			r.t.Errorf("%s: reading the crashed temp image panics: %v", pt, e)
			how = "panic"
		}
	}()
	tr, err := jtSnap(p)
	switch {
	case err != nil:
		return "unreadable"
	case len(tr) == 2 && tr["/lost+found"].Mode != 0:
		return "empty filesystem"
	case jtDiff(tr, r.newTree, 1) == "":
		return "new tree"
	}
	return "other tree"
}

// nextPull pulls again into the crashed OUTDIR: it must publish the new
// image and remove the crash's temp files, adding nothing but its lock.
func (r *cbRunner) nextPull(pt cbPoint, s *cbSession) {
	t := r.t
	r.nextPulls++
	before, err := os.ReadDir(s.snap)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cbPull(r.src, s.snap); err != nil {
		t.Errorf("%s: the next pull into the crashed OUTDIR: %v", pt, err)
		return
	}
	if sum := jtDigest(filepath.Join(s.snap, imagepull.RootfsName)); sum != r.newSum {
		t.Errorf("%s: the next pull did not publish the new image", pt)
	}
	if m, _ := cbManifest(t, s.snap); m != r.newMeta {
		t.Errorf("%s: after the next pull image.json names %q", pt, m)
	}
	r.leftBefore += len(before)
	want := map[string]bool{imagepull.RootfsName: true, imagepull.MetadataName: true, imagepull.LockName: true}
	after, _ := os.ReadDir(s.snap)
	for _, e := range after {
		if !want[e.Name()] {
			t.Errorf("%s: after the next pull OUTDIR still holds %q", pt, e.Name())
		}
	}
}

func TestCrashBuildStage(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "cp")
	kernel := false
	t.Run("kernel-available", func(t *testing.T) {
		testimg.RequireKernelMount(t)
		kernel = true
	})
	start := time.Now()
	dir := t.TempDir()
	r := &cbRunner{t: t, dir: dir, kernel: kernel, judged: map[string]string{}, stats: map[string]int{},
		leftovers: map[string]int{}, tmpReads: map[string]int{}}
	restore := ext4edit.SetDeviceHook(r.hook)
	defer restore()

	// The old pull: OUTDIR as an earlier, clean run left it.
	lower, upper := cbLayers(t)
	oldSrc := cbLayout(t, filepath.Join(dir, "old-layout"), lower)
	r.src = cbLayout(t, filepath.Join(dir, "new-layout"), lower, upper)
	r.master = filepath.Join(dir, "master")
	if _, err := cbPull(oldSrc, r.master); err != nil {
		t.Fatalf("the old pull: %v", err)
	}
	oldRoot := filepath.Join(r.master, imagepull.RootfsName)
	var err error
	if r.masterFI, err = os.Stat(oldRoot); err != nil {
		t.Fatal(err)
	}
	r.masterSum = jtDigest(oldRoot)
	if r.oldTree, err = jtSnap(oldRoot); err != nil {
		t.Fatal(err)
	}
	r.oldMeta, _ = cbManifest(t, r.master)

	// The clean run: its device log, bytes and tree.
	s, err := r.run(cbPoint{mode: crNone, crashAt: -1, stage: "clean"})
	if err != nil {
		t.Fatalf("the clean pull: %v", err)
	}
	r.clean, r.cleanCalls = s.dev, s.calls
	newRoot := filepath.Join(s.snap, imagepull.RootfsName)
	r.newSum = jtDigest(newRoot)
	if r.newTree, err = jtSnap(newRoot); err != nil {
		t.Fatal(err)
	}
	r.newMeta, _ = cbManifest(t, s.snap)
	if jtDiff(r.oldTree, r.newTree, 1) == "" || r.oldMeta == r.newMeta {
		t.Fatal("the new pull does not differ from the old one")
	}
	for p, want := range map[string]string{"/etc/old.conf": "", "/var/cache/app/a": "", "/var/cache/app/c": "f", "/etc/finalized": "f", "/usr/bin/tool-hard": "f"} {
		if _, ok := r.newTree[p]; ok != (want != "") {
			t.Fatalf("the new tree: %s present %v (whiteouts, opaque dir, hard link, finalize)", p, ok)
		}
	}
	if n := r.newTree["/usr/bin/tool"]; n.Links != 2 || n.Xattrs == "" {
		t.Fatalf("the new tree: /usr/bin/tool %+v: want 2 links and an xattr", n)
	}
	if r.judge(oldRoot, "old") != "old" || r.judge(newRoot, "new") != "new" {
		t.Fatal("the old and new images do not judge as themselves")
	}
	W, S := len(s.dev.writes), len(s.dev.syncAt)
	t.Logf("a clean pull makes %d device writes and %d syncs on its temp image (syncs after writes %v)", W, S, s.dev.syncAt)
	os.RemoveAll(filepath.Dir(s.snap))

	// Crash points per model: every device event, or a sample holding
	// every Sync boundary ±1 when there are too many.
	points := func(mode crMode) []int {
		events := W // die: writes
		bound := map[int]bool{0: true}
		for k, at := range s.dev.syncAt {
			e := at // die: the crash before the first write after the Sync
			if mode == crDrop {
				e = at + k // drop: the Sync's own event
			}
			for d := -1; d <= 1; d++ {
				bound[e+d] = true
			}
		}
		if mode == crDrop {
			events = W + S
		}
		stride := (events + cbMaxPoints - 1) / cbMaxPoints
		if testing.Short() {
			stride *= 5
		}
		var out []int
		for n := 0; n < events; n++ {
			if n%stride == 0 || bound[n] || jtExhaustive() {
				out = append(out, n)
			}
		}
		return out
	}
	tried := map[crMode]int{}
	for _, mode := range []crMode{crDie, crDrop} {
		var pts []cbPoint
		for _, n := range points(mode) {
			pts = append(pts, cbPoint{mode: mode, crashAt: n})
		}
		pts = append(pts, cbPoint{mode: mode, crashAt: -1, stage: "pre-stage"}, cbPoint{mode: mode, crashAt: -1, stage: "post-stage"})
		for _, pt := range pts {
			s, perr := r.run(pt)
			r.check(pt, s, perr)
			r.nextPull(pt, s)
			os.RemoveAll(filepath.Dir(s.snap))
			tried[mode]++
			if t.Failed() && r.stats["_failed"] == 0 {
				r.stats["_failed"]++
				t.Logf("first failure at %s", pt)
			}
		}
		t.Logf("%s: %d crash points tried (of %d device events, plus pre- and post-stage)", mode, tried[mode],
			map[crMode]int{crDie: W, crDrop: W + S}[mode])
	}
	if jtDigest(oldRoot) != r.masterSum {
		t.Errorf("the old rootfs.ext4 was written in place")
	}
	var parts []string
	for k, n := range r.stats {
		if !strings.HasPrefix(k, "_") {
			parts = append(parts, fmt.Sprintf("%s: %d", k, n))
		}
	}
	sort.Strings(parts)
	t.Logf("verdicts on OUTDIR/rootfs.ext4: %s; %d distinct published images judged", strings.Join(parts, ", "), len(r.judged))
	parts = nil
	for k, n := range r.leftovers {
		if k == "" {
			k = "(none)"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(parts)
	t.Logf("temp files a crash leaves in OUTDIR (the next pull removes them): %s", strings.Join(parts, ", "))
	parts = nil
	for k, n := range r.tmpReads {
		parts = append(parts, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(parts)
	t.Logf("the crashed temp image reads as: %s; %d later pulls into a crashed OUTDIR (%d entries found there in all) published the new image and left only rootfs, image.json and the lock", strings.Join(parts, ", "), r.nextPulls, r.leftBefore)
	t.Logf("crash build sweep: die %d, drop %d crash points tried in %v", tried[crDie], tried[crDrop], time.Since(start).Round(time.Second))
}
