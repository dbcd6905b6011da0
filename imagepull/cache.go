package imagepull

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/banger/ext4kit/internal/filelock"
)

// Cache keeps finished pulls (rootfs.ext4, image.json and the boot
// artifacts) in a directory, under a key made of the image's manifest
// digest and every pull option that changes the output's bytes, so a
// later pull of the same image with the same options publishes from it
// without reading a layer: Pull resolves the manifest (and config), then
// reflinks the cached files into OUTDIR where the host filesystem can,
// else copies them sparsely.
//
// Layout of Dir: KEY/ (a complete entry: the files and image.json),
// KEY.lock (held while a pull fills or publishes KEY), and .fill-KEY-*
// (an entry being filled: renamed to KEY when complete, so a crash leaves
// no half entry; the next fill of KEY removes it). Concurrent pulls of
// one key build it once: the second waits for the first's lock, then
// finds the entry.
type Cache struct {
	// Dir holds the entries (created when missing).
	Dir string
	// MaxBytes bounds the space the entries take on disk (their files'
	// allocated blocks); after a fill, the least recently used entries
	// are removed until they fit (the new one is kept even when it alone
	// is larger). Zero: no limit.
	MaxBytes int64
}

// cacheFormat versions the key and the entry layout.
const cacheFormat = 1

// cacheKey is every input that decides a pull's output bytes. Anything
// added to PullOptions that changes rootfs.ext4, image.json or the boot
// artifacts must be added here.
type cacheKey struct {
	Format   int      `json:"format"`
	Manifest string   `json:"manifest"` // manifest digest, or config digest (docker-archive)
	Config   string   `json:"config"`
	DiffIDs  []string `json:"diffIDs"` // the layers, uncompressed
	Platform string   `json:"platform"`
	Size     int64    `json:"size"`
	MaxSize  int64    `json:"maxSize"`
	Boot     bool     `json:"boot"`
	Finalize string   `json:"finalize"` // PullOptions.FinalizeID; "" without Finalize
	Verity   *string  `json:"verity"`   // nil unsealed; "" derived salt; else the salt in hex
}

// cacheKeyOf returns the cache key of a pull of f with opts: hex sha256 of the
// canonical JSON of cacheKey.
func (opts *PullOptions) cacheKeyOf(f *Fetched) (string, error) {
	if opts.Finalize != nil && opts.FinalizeID == "" {
		return "", errors.New("a pull cache with a Finalize step needs PullOptions.FinalizeID (what the step does), else it cannot tell its outputs apart")
	}
	k := cacheKey{Format: cacheFormat, Manifest: f.ManifestDigest, Config: f.ConfigDigest, Platform: f.Platform.String(),
		Size: opts.Size, MaxSize: opts.MaxSize, Boot: opts.BootArtifacts, DiffIDs: []string{}}
	if k.Manifest == "" {
		k.Manifest = f.ConfigDigest
	}
	for _, l := range f.Layers {
		k.DiffIDs = append(k.DiffIDs, l.DiffID)
	}
	if opts.Finalize != nil {
		k.Finalize = opts.FinalizeID
	}
	if v := opts.Verity; v != nil {
		s := ""
		if v.Salt != nil {
			s = "salt:" + hex.EncodeToString(v.Salt)
		}
		if v.UUID != nil {
			s += " uuid:" + hex.EncodeToString(v.UUID[:])
		}
		k.Verity = &s
	}
	b, err := json.Marshal(k)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// cacheEntry is one key's entry, locked.
type cacheEntry struct {
	c    *Cache
	key  string
	lock *os.File
}

// lock takes KEY's lock, waiting while another pull holds it (polling,
// until ctx ends).
func (c *Cache) lock(ctx context.Context, key string) (*cacheEntry, error) {
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("pull cache: %w", err)
	}
	f, err := openNoFollow(filepath.Join(c.Dir, key+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pull cache: %w", err)
	}
	wait := 10 * time.Millisecond
	for {
		err := filelock.Lock(f, true)
		if err == nil {
			return &cacheEntry{c: c, key: key, lock: f}, nil
		}
		if !errors.Is(err, filelock.ErrLocked) {
			f.Close()
			return nil, fmt.Errorf("pull cache: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

func (e *cacheEntry) unlock() {
	_ = filelock.Unlock(e.lock)
	e.lock.Close()
}

func (e *cacheEntry) dir() string { return filepath.Join(e.c.Dir, e.key) }

// meta reads the entry's image.json; ok is false when there is no
// complete entry.
func (e *cacheEntry) meta() (m *ImageMetadata, ok bool, err error) {
	f, err := openNoFollow(filepath.Join(e.dir(), MetadataName), os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	m = &ImageMetadata{}
	if err := json.NewDecoder(f).Decode(m); err != nil {
		return nil, false, fmt.Errorf("pull cache: %s: %w", f.Name(), err)
	}
	return m, true, nil
}

// touch records a use of the entry (eviction removes the least recent).
func (e *cacheEntry) touch() {
	now := time.Now()
	_ = os.Chtimes(filepath.Join(e.dir(), MetadataName), now, now)
}

// publishFrom publishes the entry into outdir: each file copied (a
// reflink where the host can) into a temporary there, then the usual
// stage. The image.json is the pull's (source and reference as this pull
// named them) with the build's results from the entry's.
func (e *cacheEntry) publishFrom(cached *ImageMetadata, fetched *Fetched, outdir string, boot bool) (*ImageMetadata, error) {
	meta := fetched.Metadata(nil)
	meta.Rootfs = cached.Rootfs
	meta.Init, meta.Verity = cached.Init, cached.Verity
	var arts []stagedArtifact
	defer func() { removeStaged(arts) }()
	for _, a := range []*BootArtifact{cached.Kernel, cached.Initrd} {
		if a == nil {
			continue
		}
		if a.File != KernelName && a.File != InitrdName {
			return nil, fmt.Errorf("pull cache: %s names boot artifact %q", e.dir(), a.File)
		}
		tmp, _, err := e.copyOut(a.File, outdir)
		if err != nil {
			return nil, err
		}
		art := *a
		arts = append(arts, stagedArtifact{tmp: tmp, name: a.File, art: &art})
	}
	tmp, fi, err := e.copyOut(RootfsName, outdir)
	if err != nil {
		return nil, err
	}
	err = publish(tmp, fi, outdir, meta, boot, arts)
	arts = nil
	if err != nil {
		removeIfSame(tmp, fi)
		return nil, err
	}
	e.touch()
	return meta, nil
}

// copyOut copies the entry's file name into a new temporary in outdir
// and returns its path and identity.
func (e *cacheEntry) copyOut(name, outdir string) (string, os.FileInfo, error) {
	in, err := openNoFollow(filepath.Join(e.dir(), name), os.O_RDONLY, 0)
	if err != nil {
		return "", nil, fmt.Errorf("pull cache: %w", err)
	}
	defer in.Close()
	out, err := createTemp(outdir, name)
	if err != nil {
		return "", nil, err
	}
	fi, err := copyFileInto(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(out.Name())
		return "", nil, fmt.Errorf("pull cache: copying %s: %w", name, err)
	}
	return out.Name(), fi, nil
}

// copyFileInto makes out a synced copy of in (a reflink where the host
// can, else its data extents) and returns out's identity.
func copyFileInto(out, in *os.File) (os.FileInfo, error) {
	st, err := in.Stat()
	if err != nil {
		return nil, err
	}
	if reflinkRange(out, in, st.Size()) != nil {
		if err := copySparse(out, in, st.Size()); err != nil {
			return nil, err
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		return nil, err
	}
	if err := out.Sync(); err != nil {
		return nil, err
	}
	return out.Stat()
}

// fill stores a finished pull in the entry: the committed image (tmpImage,
// which must still be the file want describes), the staged boot
// artifacts and meta, copied into a new directory that is renamed to the
// entry's name once complete and synced.
func (e *cacheEntry) fill(tmpImage string, want os.FileInfo, arts []stagedArtifact, meta *ImageMetadata) (err error) {
	// What a crashed fill of this key left.
	if old, _ := filepath.Glob(filepath.Join(e.c.Dir, ".fill-"+e.key+"-*")); len(old) > 0 {
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	tmpDir := filepath.Join(e.c.Dir, ".fill-"+e.key+"-"+rand.Text())
	if err := os.Mkdir(tmpDir, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmpDir)
		}
	}()
	fillStep("directory")
	files := []struct{ src, name string }{{tmpImage, RootfsName}}
	m := *meta
	m.Kernel, m.Initrd = nil, nil
	for _, a := range arts {
		files = append(files, struct{ src, name string }{a.tmp, a.name})
		if a.name == KernelName {
			m.Kernel = a.art
		} else {
			m.Initrd = a.art
		}
	}
	for i, f := range files {
		in, err := openNoFollow(f.src, os.O_RDONLY, 0)
		if err != nil {
			return err
		}
		if i == 0 {
			fi, err := in.Stat()
			if err != nil || !os.SameFile(fi, want) {
				in.Close()
				return fmt.Errorf("%s: replaced while the pull ran", f.src)
			}
		}
		out, err := openNoFollow(filepath.Join(tmpDir, f.name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			in.Close()
			return err
		}
		_, err = copyFileInto(out, in)
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fillStep(f.name)
	}
	js, err := json.MarshalIndent(&m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmpDir, MetadataName), js); err != nil {
		return err
	}
	syncDir(tmpDir)
	fillStep(MetadataName)
	if err := os.Rename(tmpDir, e.dir()); err != nil {
		return err
	}
	syncDir(e.c.Dir)
	fillStep("renamed")
	return nil
}

// fillStep marks the steps of a cache fill, for the crash test (which
// kills the process at each); nothing otherwise.
var fillStep = func(step string) {}

func writeSynced(path string, b []byte) error {
	f, err := openNoFollow(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// evict removes the least recently used entries (by their image.json's
// modification time, which every use touches) until the rest fit
// MaxBytes; keep (the entry just filled or used) and entries another pull
// holds locked stay. An entry goes by a rename first, so it is complete
// or absent to every reader.
func (c *Cache) evict(keep string) error {
	if c.MaxBytes <= 0 {
		return nil
	}
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return err
	}
	type entry struct {
		key  string
		used time.Time
		size int64
	}
	var all []entry
	var total int64
	for _, d := range ents {
		if !d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(c.Dir, d.Name(), MetadataName))
		if err != nil {
			continue // not a complete entry
		}
		sz := diskUsage(filepath.Join(c.Dir, d.Name()))
		all = append(all, entry{d.Name(), fi.ModTime(), sz})
		total += sz
	}
	sort.Slice(all, func(i, j int) bool { return all[i].used.Before(all[j].used) })
	for _, e := range all {
		if total <= c.MaxBytes {
			break
		}
		if e.key == keep {
			continue
		}
		l, err := openNoFollow(filepath.Join(c.Dir, e.key+".lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			continue
		}
		if filelock.Lock(l, true) != nil {
			l.Close()
			continue // in use by a pull now
		}
		gone := filepath.Join(c.Dir, ".evict-"+e.key+"-"+rand.Text())
		if os.Rename(filepath.Join(c.Dir, e.key), gone) == nil {
			os.RemoveAll(gone)
			total -= e.size
		}
		_ = filelock.Unlock(l)
		l.Close()
	}
	syncDir(c.Dir)
	return nil
}

// diskUsage is the space the files in dir take (allocated blocks where
// the system reports them, else their sizes).
func diskUsage(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, d := range ents {
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			n += diskBytes(fi)
		}
	}
	return n
}
