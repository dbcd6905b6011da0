package testimg

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// RawLayer is one layer of a hand-made image: the blob as stored and the
// diff ID the config claims for it ("" is the sha256 of Tar, or of Blob
// when Tar is nil).
type RawLayer struct {
	Blob      []byte
	Tar       []byte // the uncompressed tar, for the default diff ID
	MediaType string // default: OCI gzip layer
	DiffID    string
}

// Digest is "sha256:HEX" of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func (l RawLayer) diffID() string {
	switch {
	case l.DiffID != "":
		return l.DiffID
	case l.Tar != nil:
		return Digest(l.Tar)
	}
	return Digest(l.Blob)
}

// RawConfig is a linux/amd64 image config for layers, passed through mut
// (when set) before it is encoded.
func RawConfig(layers []RawLayer, mut func(map[string]any)) []byte {
	ids := []string{}
	for _, l := range layers {
		ids = append(ids, l.diffID())
	}
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux", "created": "2024-02-03T04:05:06Z",
		"config": map[string]any{"Cmd": []string{"/bin/true"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": ids},
	}
	if mut != nil {
		mut(cfg)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err)
	}
	return b
}

// RawOCILayout writes, under a new directory in t.TempDir(), an OCI image
// layout holding one image made of exactly the given bytes: layer blobs
// as given (digests and sizes computed from them, diff IDs as RawLayer
// says) and config (nil: RawConfig(layers, nil)). No library checks or
// rewrites anything, so tests can hand it what a hostile layout holds.
// It returns the layout directory.
func RawOCILayout(t testing.TB, layers []RawLayer, config []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if config == nil {
		config = RawConfig(layers, nil)
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, "application/vnd.oci.image.manifest.v1+json", desc{"application/vnd.oci.image.config.v1+json", WriteBlob(t, dir, config), int64(len(config))}, []desc{}}
	for _, l := range layers {
		mt := l.MediaType
		if mt == "" {
			mt = "application/vnd.oci.image.layer.v1.tar+gzip"
		}
		m.Layers = append(m.Layers, desc{mt, WriteBlob(t, dir, l.Blob), int64(len(l.Blob))})
	}
	mb, _ := json.Marshal(m)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": m.MediaType, "digest": WriteBlob(t, dir, mb), "size": len(mb),
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "v1"},
		}},
	})
	WriteFile(t, filepath.Join(dir, "index.json"), idx)
	WriteFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return dir
}

// WriteBlob stores b under dir/blobs/sha256/ and returns its digest.
func WriteBlob(t testing.TB, dir string, b []byte) string {
	t.Helper()
	d := Digest(b)
	WriteFile(t, filepath.Join(dir, "blobs", "sha256", d[len("sha256:"):]), b)
	return d
}

// WriteFile writes b to name, making its directory.
func WriteFile(t testing.TB, name string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// RawDockerArchive writes a docker save archive (file name in
// t.TempDir()) of one image tagged test/raw:latest: layer members
// N/layer.tar holding the blobs as given, the config (nil:
// RawConfig(layers, nil)) at HEX.json, manifest.json (nil: the one naming
// them) last. It returns the archive's path.
func RawDockerArchive(t testing.TB, layers []RawLayer, config, manifest []byte) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "image.tar")
	if config == nil {
		config = RawConfig(layers, nil)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	var paths []string
	for i, l := range layers {
		p := fmt.Sprintf("%d/layer.tar", i+1)
		add(p, l.Blob)
		paths = append(paths, p)
	}
	cname := Digest(config)[len("sha256:"):] + ".json"
	add(cname, config)
	if manifest == nil {
		manifest, _ = json.Marshal([]map[string]any{{"Config": cname, "RepoTags": []string{"test/raw:latest"}, "Layers": paths}})
	}
	add("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, file, b.Bytes())
	return file
}
