package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/banger/ext4kit/internal/testimg"
)

func TestPullCommand(t *testing.T) {
	testimg.Require(t, "e2fsck")
	src := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(src, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	outdir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr bytes.Buffer
	if code := pull([]string{"--no-agent", "oci:" + src, "--size", "40M", outdir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	rootfs := filepath.Join(outdir, "rootfs.ext4")
	if !strings.Contains(stdout.String(), rootfs) {
		t.Errorf("stdout %q does not name %s", stdout.String(), rootfs)
	}
	fi, err := os.Stat(rootfs)
	if err != nil || fi.Size() != 40<<20 {
		t.Fatalf("rootfs: %v %v", fi, err)
	}
	testimg.RequireClean(t, rootfs)
	var meta map[string]any
	b, _ := os.ReadFile(filepath.Join(outdir, "image.json"))
	if err := json.Unmarshal(b, &meta); err != nil || meta["kind"] != "oci" {
		t.Errorf("image.json %s (%v)", b, err)
	}

	for _, args := range [][]string{
		{},
		{"oci:" + src},
		{"--size", "lots", "oci:" + src, outdir},
		{"--platform", "linux", "oci:" + src, outdir},
		{"a", "b", "c"},
	} {
		stderr.Reset()
		if code := pull(args, &stdout, &stderr); code != 2 {
			t.Errorf("pull %q: exit %d, want 2\n%s", args, code, stderr.String())
		}
	}
	stderr.Reset()
	if code := pull([]string{"--no-agent", "oci:" + filepath.Join(t.TempDir(), "missing"), outdir}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "missing") {
		t.Errorf("missing source: exit %d\n%s", code, stderr.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512M": 512 << 20, "2G": 2 << 30, "2GiB": 2 << 30, "1.5G": 3 << 29, "64k": 64 << 10, "1T": 1 << 40} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "x", "1Q", "9999999999T"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}
