package imagepull

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

func listDir(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func readMeta(t testing.TB, outdir string) *ImageMetadata {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(outdir, MetadataName))
	if err != nil {
		t.Fatal(err)
	}
	var m ImageMetadata
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// singleLayout writes an OCI layout holding one amd64 image of layers
// under tag "v1".
func singleLayout(t testing.TB, layers ...[]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}, layers...)
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{refNameAnnotation: "v1"})); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPullOCILayout(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	src := singleLayout(t, archLayers(t, "amd64")...)
	parent := t.TempDir()
	outdir := filepath.Join(parent, "out")
	// Nothing may use the system temp dir.
	t.Setenv("TMPDIR", filepath.Join(parent, "no-such-tmp"))
	finalized := false
	res, err := Pull(context.Background(), "oci:"+src+":v1", outdir, PullOptions{
		Finalize: func(img *ext4edit.Image) error {
			finalized = true
			return img.WriteFile("/etc/finalized", []byte("yes"), 0o644)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !finalized {
		t.Error("Finalize was not called")
	}
	if got := listDir(t, parent); strings.Join(got, ",") != "out" {
		t.Errorf("pull wrote beside OUTDIR: %v", got)
	}
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName+",image.json,rootfs.ext4" {
		t.Errorf("OUTDIR holds %v", got)
	}
	p := filepath.Join(outdir, RootfsName)
	if res.Rootfs != p {
		t.Errorf("Rootfs %q", res.Rootfs)
	}
	checkArchImage(t, p, "amd64")
	if string(testimg.Cat(t, p, "/etc/finalized")) != "yes" {
		t.Errorf("the finalize edit is missing")
	}
	m := readMeta(t, outdir)
	fi, _ := os.Stat(p)
	if m.Kind != SourceOCILayout || m.Source != "oci:"+src+":v1" || m.ManifestDigest == "" || m.ConfigDigest == "" ||
		m.Platform != "linux/amd64" || m.WorkingDir != "/srv" || m.User != "1000:1000" ||
		strings.Join(m.Entrypoint, " ") != "/bin/sh -c" || strings.Join(m.Cmd, " ") != "echo hi" || len(m.Env) != 2 ||
		m.Created == nil || !m.Created.Equal(imgCreated) || len(m.Layers) != 2 ||
		m.Rootfs.File != RootfsName || m.Rootfs.Size != fi.Size() || !m.Rootfs.SizeEstimated || m.Kernel != nil {
		js, _ := json.MarshalIndent(m, "", "  ")
		t.Errorf("image.json:\n%s", js)
	}
	for i, l := range m.Layers {
		if l.Digest == "" || l.DiffID == "" || l.Size <= 0 || l.MediaType == "" {
			t.Errorf("layer %d: %+v", i, l)
		}
	}
	// Reproducible: the same source gives the same bytes.
	out2 := filepath.Join(t.TempDir(), "out2")
	if _, err := Pull(context.Background(), "oci:"+src+":v1", out2, PullOptions{Finalize: func(img *ext4edit.Image) error {
		return img.WriteFile("/etc/finalized", []byte("yes"), 0o644)
	}}); err != nil {
		t.Fatal(err)
	}
	if a, b := testimg.SHA256File(t, p), testimg.SHA256File(t, filepath.Join(out2, RootfsName)); a != b {
		t.Errorf("two pulls of one image differ: %s vs %s", a, b)
	}
}

// A registry image sized by estimate downloads each layer once (the
// spool in OUTDIR serves the second read) and leaves no spool behind.
func TestPullRegistrySpool(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	var mu sync.Mutex
	gets := map[string]int{}
	host := serveRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				mu.Lock()
				gets[r.URL.Path]++
				mu.Unlock()
			}
			next.ServeHTTP(w, r)
		})
	})
	ref, _ := name.ParseReference(host + "/test/multi:v1")
	if err := remote.WriteIndex(ref, testIndex(t)); err != nil {
		t.Fatal(err)
	}
	outdir := filepath.Join(t.TempDir(), "out")
	arm := &v1.Platform{OS: "linux", Architecture: "arm64"}
	if _, err := Pull(context.Background(), ref.String(), outdir, PullOptions{Platform: arm}); err != nil {
		t.Fatal(err)
	}
	checkArchImage(t, filepath.Join(outdir, RootfsName), "arm64")
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName+",image.json,rootfs.ext4" {
		t.Errorf("OUTDIR holds %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	layerGets := 0
	for p, n := range gets {
		if n > 1 {
			t.Errorf("%s downloaded %d times", p, n)
		}
		layerGets++
	}
	if layerGets < 2 {
		t.Errorf("only %d blobs fetched: %v", layerGets, gets)
	}
	m := readMeta(t, outdir)
	if m.Kind != SourceRegistry || m.IndexDigest == "" || !strings.Contains(m.Reference, "@sha256:") || m.Platform != "linux/arm64" {
		t.Errorf("image.json %+v", m)
	}
}

func bootLayers(t testing.TB) [][]byte {
	return [][]byte{
		tarOf(t,
			tDir("boot/", 0o755),
			tFile("boot/vmlinuz-6.1.0-9-amd64", "kernel 9", 0o644),
			tFile("boot/initrd.img-6.1.0-9-amd64", "initrd 9", 0o644),
			tFile("boot/vmlinuz-6.1.0-18-amd64", "kernel 18", 0o644),
			tFile("boot/config-6.1.0-18-amd64", "config", 0o644),
			tSym("vmlinuz", "boot/vmlinuz-6.1.0-9-amd64"),
		),
		tarOf(t, tFile("boot/initrd.img-6.1.0-18-amd64", "initrd 18", 0o644)),
	}
}

func TestPullBootArtifacts(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	outdir := filepath.Join(t.TempDir(), "out")
	src := singleLayout(t, bootLayers(t)...)
	if _, err := Pull(context.Background(), "oci:"+src, outdir, PullOptions{BootArtifacts: true, Size: 48 << 20}); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName+",image.json,initrd,kernel,rootfs.ext4" {
		t.Errorf("OUTDIR holds %v", got)
	}
	for f, want := range map[string]string{KernelName: "kernel 18", InitrdName: "initrd 18"} {
		if b, _ := os.ReadFile(filepath.Join(outdir, f)); string(b) != want {
			t.Errorf("%s = %q, want %q (newest by version, not by name)", f, b, want)
		}
	}
	m := readMeta(t, outdir)
	if m.Kernel == nil || m.Kernel.ImagePath != "/boot/vmlinuz-6.1.0-18-amd64" || m.Kernel.Version != "6.1.0-18-amd64" || m.Kernel.File != KernelName ||
		m.Initrd == nil || m.Initrd.ImagePath != "/boot/initrd.img-6.1.0-18-amd64" || m.Rootfs.SizeEstimated || m.Rootfs.Size != 48<<20 {
		js, _ := json.MarshalIndent(m, "", "  ")
		t.Errorf("image.json:\n%s", js)
	}

	// Pulled again without boot artifacts: the old ones go.
	if _, err := Pull(context.Background(), "oci:"+src, outdir, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName+",image.json,rootfs.ext4" {
		t.Errorf("OUTDIR holds %v", got)
	}

	// Asked for, absent: ErrNoKernel, and the earlier pull stays whole.
	before := testimg.SHA256File(t, filepath.Join(outdir, RootfsName))
	nokernel := singleLayout(t, tarOf(t, tFile("etc/hostname", "x", 0o644)))
	_, err := Pull(context.Background(), "oci:"+nokernel, outdir, PullOptions{BootArtifacts: true})
	if !errors.Is(err, ErrNoKernel) {
		t.Fatalf("error %v, want ErrNoKernel", err)
	}
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName+",image.json,rootfs.ext4" {
		t.Errorf("a failed pull left %v", got)
	}
	if after := testimg.SHA256File(t, filepath.Join(outdir, RootfsName)); after != before {
		t.Errorf("a failed pull changed rootfs.ext4")
	}
}

func TestFindBootArtifactsSymlinks(t *testing.T) {
	testimg.Require(t, "e2fsck")
	// Only the distribution's symlinks name the kernel.
	p := build(t, BuildOptions{Size: 32 << 20}, tarOf(t,
		tFile("boot/kernel-custom", "custom kernel", 0o644),
		tFile("boot/initramfs-custom", "custom initrd", 0o644),
		tSym("vmlinuz", "boot/kernel-custom"),
		tSym("initrd.img", "/boot/../boot/initramfs-custom"),
		tSym("boot/vmlinuz-broken", "nowhere"),
	))
	k, i, err := FindBootArtifacts(openRO(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if k.ImagePath != "/vmlinuz" || k.Size != int64(len("custom kernel")) || i == nil || i.ImagePath != "/initrd.img" {
		t.Errorf("kernel %+v initrd %+v", k, i)
	}
	p = build(t, BuildOptions{Size: 32 << 20}, tarOf(t, tDir("boot/", 0o755), tSym("vmlinuz", "boot/nothing")))
	if _, _, err := FindBootArtifacts(openRO(t, p)); !errors.Is(err, ErrNoKernel) {
		t.Errorf("error %v, want ErrNoKernel", err)
	}
}

func TestVersionLess(t *testing.T) {
	sorted := []string{"4.19.0-1-amd64", "5.10.0-9-amd64", "5.10.0-10-amd64", "6.1.0-9-amd64", "6.1.0-18-amd64", "6.1.0-18-cloud-amd64", "6.10.0-1-amd64"}
	for i := range sorted {
		for j := range sorted {
			if got := versionLess(sorted[i], sorted[j]); got != (i < j) {
				t.Errorf("versionLess(%q, %q) = %v", sorted[i], sorted[j], got)
			}
		}
	}
}

func TestPullTooSmall(t *testing.T) {
	outdir := filepath.Join(t.TempDir(), "out")
	src := singleLayout(t, tarOf(t, tFile("big", strings.Repeat("b", 20<<20), 0o644)))
	_, err := Pull(context.Background(), "oci:"+src, outdir, PullOptions{Size: 16 << 20})
	if !errors.Is(err, ext4edit.ErrNoSpace) || !strings.Contains(err.Error(), "too small") {
		t.Fatalf("error %v, want ErrNoSpace saying the image is too small", err)
	}
	if got := listDir(t, outdir); strings.Join(got, ",") != LockName {
		t.Errorf("a failed pull left %v", got)
	}
}

func TestEstimateSize(t *testing.T) {
	testimg.Require(t, "e2fsck")
	// Many empty files: inodes, not blocks, decide.
	var ents []tent
	for i := 0; i < 20000; i++ {
		ents = append(ents, tFile("many/"+strings.Repeat("x", 40)+"-"+strconv.Itoa(i), "", 0o644))
	}
	small := tarOf(t, ents...)
	for _, layers := range [][][]byte{{small}, {tarOf(t, tFile("one", strings.Repeat("1", 30<<20), 0o644))}} {
		p := filepath.Join(t.TempDir(), "img")
		img, st, err := BuildExt4(context.Background(), p, memLayers(layers...), BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		img.Close()
		testimg.RequireClean(t, p)
		var content int64
		for _, l := range layers {
			content += int64(len(l))
		}
		if !st.Estimated || st.Size > 3*content+64<<20 {
			t.Errorf("estimated %d MiB for %d MiB of layers", st.Size>>20, content>>20)
		}
	}
}
