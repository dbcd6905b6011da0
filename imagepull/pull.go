package imagepull

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/banger/ext4kit/imagepull/verity"
	"github.com/banger/ext4kit/internal/filelock"
	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// PullOptions control Pull.
type PullOptions struct {
	// Platform to pick from a multi-platform image; nil is linux on the
	// running architecture (see FetchOptions.Platform).
	Platform *v1.Platform
	// Size of the image in bytes; zero estimates it from the layers
	// (registry layers are then spooled in OUTDIR so they download once).
	Size int64
	// MaxSize caps an estimated size (BuildOptions.MaxSize; default
	// DefaultMaxAutoSize).
	MaxSize int64
	// BootArtifacts copies the image's kernel and initrd into OUTDIR.
	BootArtifacts bool
	// Finalize edits the built image before it is committed (in the same
	// session); nil skips the phase. DefaultFinalize is the usual one.
	// When a step runs InjectGuestAgents on the image Pull hands it, the
	// init system it installed for is recorded as image.json's init.
	Finalize FinalizeStep
	// Keychain and Transport for registry sources (nil: the docker config
	// keychain, remote.DefaultTransport).
	Keychain  authn.Keychain
	Transport http.RoundTripper
	// Insecure lets the registry the source names be reached over plain
	// HTTP or TLS without certificate checks (FetchOptions.Insecure).
	Insecure bool
	// Progress, when set, receives the layers' bytes as they are read and
	// the build's counts (see ProgressEvent). Nil reports nothing.
	Progress func(ProgressEvent)
	// Verity, when set, seals rootfs.ext4 with a dm-verity hash tree
	// after the filesystem (SealVerity) and records it in image.json's
	// "verity"; its zero value derives the salt from the image.
	Verity *verity.Options
	// Cache, when set, keeps the finished image and publishes later pulls
	// of the same image with the same options from it without reading a
	// layer (see Cache). With a Finalize step it needs FinalizeID.
	Cache *Cache
	// FinalizeID says what Finalize does, for Cache's key: two pulls
	// whose steps have equal IDs must finalize images identically
	// (InjectOptions.FinalizeID describes DefaultFinalize's injection).
	FinalizeID string
	// Warnf receives notes on layer entries skipped or changed; Logf
	// progress. Nil discards.
	Warnf, Logf func(format string, args ...any)
}

// ProgressPhase says what a ProgressEvent counts.
type ProgressPhase int

const (
	// ProgressFetch: a layer's blob (compressed, as stored) is being read
	// for the first time: downloaded from a registry (and spooled when the
	// size is estimated), or read from a layout or archive.
	ProgressFetch ProgressPhase = iota + 1
	// ProgressBuild: the layers are being applied to the image.
	ProgressBuild
)

// ProgressEvent is one report to PullOptions.Progress (or
// BuildOptions.Progress). Events come from the goroutines reading the
// layers, several at once: the callback must be safe for concurrent use
// and quick (it runs for every read; render on a timer, not per event).
type ProgressEvent struct {
	Phase  ProgressPhase
	Layer  int // 1-based; 0 for a build event between layers
	Layers int // how many the image has
	// Digest names the layer (its blob digest, or diff ID for a docker
	// archive); ProgressFetch only.
	Digest string
	// Bytes of the layer's blob read so far, of Total (-1 unknown);
	// ProgressFetch only.
	Bytes, Total int64
	// Entries made and file bytes written so far, over every layer
	// (BuildStats.Entries, BuildStats.FileBytes); ProgressBuild only.
	Entries, FileBytes int64
	// Done: the layer's blob was read to its end (ProgressFetch), or the
	// last layer was applied (ProgressBuild).
	Done bool
}

// PullResult is what Pull made.
type PullResult struct {
	Rootfs   string // OUTDIR/rootfs.ext4
	Metadata *ImageMetadata
	Stats    *BuildStats // zero when Cached
	// Cached: published from PullOptions.Cache; no layer was read.
	Cached bool
}

// Pull makes OUTDIR/rootfs.ext4 (and image.json, and the boot artifacts
// when asked) from source: fetch, BuildExt4, finalize, stage. The layers
// stream from the source into the image; nothing is written outside
// OUTDIR, and nothing but the temporary image (and, when sizing a
// registry image, its spooled layers) before the stage publishes.
// A crash at any point leaves OUTDIR/rootfs.ext4 the old image or the
// new one (TestCrashBuildStage). One Pull at a time publishes into OUTDIR:
// it holds an exclusive lock on OUTDIR/.imagepull.lock (a second Pull
// fails at once with an error wrapping ErrOutdirBusy), and under that lock
// removes the hidden temporaries (OUTDIR/.rootfs.ext4.tmp-*,
// .layers.tmp-*/, .image.json.tmp-*, ...) a crashed Pull left behind.
func Pull(ctx context.Context, source, outdir string, opts PullOptions) (res *PullResult, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(outdir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockOutdir(outdir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := removeStaleTemps(outdir, logf); err != nil {
		return nil, err
	}

	// Fetch: manifests and config now, layers as they are read.
	fopts := FetchOptions{Platform: opts.Platform, Keychain: opts.Keychain, Transport: opts.Transport, Insecure: opts.Insecure}
	if opts.Size == 0 {
		spool, err := os.MkdirTemp(outdir, ".layers.tmp-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(spool)
		fopts.SpoolDir = spool
	}
	fetched, err := Fetch(ctx, source, fopts)
	if err != nil {
		return nil, err
	}
	logf("fetched %s: %s, %d layers, manifest %s", source, fetched.Platform.String(), len(fetched.Layers), fetched.ManifestDigest)
	if opts.Progress != nil {
		reportFetch(fetched, opts.Progress)
	}

	// The cache: a complete entry for this image and these options is
	// published as it is; otherwise this pull fills it (holding its lock,
	// so a concurrent pull of the same key waits, then publishes it).
	var entry *cacheEntry
	if opts.Cache != nil {
		key, err := opts.cacheKeyOf(fetched)
		if err != nil {
			return nil, err
		}
		if entry, err = opts.Cache.lock(ctx, key); err != nil {
			return nil, err
		}
		defer entry.unlock()
		cached, ok, err := entry.meta()
		if err != nil {
			return nil, err
		}
		if ok {
			meta, err := entry.publishFrom(cached, fetched, outdir, opts.BootArtifacts)
			if err != nil {
				return nil, err
			}
			logf("staged %s from the pull cache (%s)", filepath.Join(outdir, RootfsName), key)
			return &PullResult{Rootfs: filepath.Join(outdir, RootfsName), Metadata: meta, Stats: &BuildStats{}, Cached: true}, nil
		}
	}

	// BuildExt4 into a temp file beside the final name, created with
	// O_EXCL (never through a symlink) and used through this descriptor
	// only: whoever else can write OUTDIR cannot redirect the image's
	// writes by swapping the name for a symlink. Its mode is the
	// published one (createTemp: OutputPerm less the umask).
	tmp, err := createTemp(outdir, RootfsName)
	if err != nil {
		return nil, err
	}
	tmpPath := tmp.Name()
	built, err := tmp.Stat()
	if err != nil {
		tmp.Close()
		os.Remove(tmpPath)
		return nil, err
	}
	defer func() {
		if err != nil {
			removeIfSame(tmpPath, built)
		}
	}()
	seed := fetched.ManifestDigest
	if seed == "" {
		seed = fetched.ConfigDigest
	}
	var created time.Time
	if fetched.Config != nil {
		created = fetched.Config.Created.Time
	}
	img, stats, err := BuildExt4File(ctx, tmp, fetched.LayerSources(), BuildOptions{
		Size:     opts.Size,
		MaxSize:  opts.MaxSize,
		Seed:     []byte(seed),
		Time:     created,
		Warnf:    opts.Warnf,
		Progress: opts.Progress,
	})
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", source, err)
	}
	logf("built %s: %d entries, %d MiB of files, image %d MiB", tmpPath, stats.Entries, stats.FileBytes>>20, stats.Size>>20)

	// Finalize in the same session; the boot artifacts are copied out of
	// the open image (never reopened by name); Close commits.
	var initSys InitSystem
	if opts.Finalize != nil {
		// The init InjectGuestAgents installs for, whichever step runs
		// it, comes back through watchInit for image.json.
		initFound := watchInit(img)
		ferr := opts.Finalize(img)
		initSys = initFound()
		if ferr != nil {
			return nil, errors.Join(fmt.Errorf("finalize: %w", ferr), img.Close())
		}
	}
	var arts []stagedArtifact
	defer func() { removeStaged(arts) }()
	if opts.BootArtifacts {
		if arts, err = copyBootArtifacts(img, outdir); err != nil {
			return nil, errors.Join(fmt.Errorf("stage: boot artifacts: %w", err), img.Close())
		}
	}
	fsSize := img.Size()
	if err := img.Close(); err != nil {
		return nil, fmt.Errorf("commit %s: %w", tmpPath, err)
	}
	var sealed *VerityMetadata
	if opts.Verity != nil {
		if sealed, err = sealTemp(tmpPath, built, fsSize, opts.Verity); err != nil {
			return nil, fmt.Errorf("seal %s: %w", tmpPath, err)
		}
		logf("sealed %s: dm-verity root hash %s", tmpPath, sealed.RootHash)
	}

	// Stage: publish rootfs.ext4, image.json and the boot artifacts.
	meta := fetched.Metadata(stats)
	meta.Init = string(initSys)
	meta.Verity = sealed
	if entry != nil {
		// The cache is a shortcut, not the product: a fill that fails
		// leaves no entry and the pull goes on.
		if err := entry.fill(tmpPath, built, arts, meta); err != nil {
			logf("warning: pull cache: not kept: %v", err)
		} else if err := opts.Cache.evict(entry.key); err != nil {
			logf("warning: pull cache: eviction: %v", err)
		}
	}
	err = publish(tmpPath, built, outdir, meta, opts.BootArtifacts, arts)
	arts = nil // published, or removed by publish
	if err != nil {
		return nil, err
	}
	logf("staged %s", filepath.Join(outdir, RootfsName))
	return &PullResult{Rootfs: filepath.Join(outdir, RootfsName), Metadata: meta, Stats: stats}, nil
}

// reportFetch makes the first read of each of f's layer blobs report its
// bytes to progress. Later reads (the build after a sizing scan reads
// the spooled copy) are not downloads and report nothing.
func reportFetch(f *Fetched, progress func(ProgressEvent)) {
	for i := range f.Layers {
		l := &f.Layers[i]
		open, opened := l.open, new(atomic.Bool)
		ev := ProgressEvent{Phase: ProgressFetch, Layer: i + 1, Layers: len(f.Layers), Digest: cmp.Or(l.Digest, l.DiffID), Total: l.Size}
		l.open = func() (io.ReadCloser, error) {
			rc, err := open()
			if err != nil || opened.Swap(true) {
				return rc, err
			}
			progress(ev)
			return &fetchProgress{rc: rc, ev: ev, progress: progress}, nil
		}
	}
}

// fetchProgress reports the bytes read through it.
type fetchProgress struct {
	rc       io.ReadCloser
	ev       ProgressEvent
	progress func(ProgressEvent)
}

func (p *fetchProgress) Read(b []byte) (int, error) {
	n, err := p.rc.Read(b)
	if n > 0 || err == io.EOF {
		p.ev.Bytes += int64(n)
		p.ev.Done = err == io.EOF
		p.progress(p.ev)
	}
	return n, err
}

func (p *fetchProgress) Close() error { return p.rc.Close() }

// Metadata is the image.json of f built into an image (stats from
// BuildExt4; nil leaves the build's counts out), for StageBootArtifacts,
// which completes it with the rootfs file and boot artifact fields.
func (f *Fetched) Metadata(st *BuildStats) *ImageMetadata {
	m := &ImageMetadata{
		Source:            f.Source,
		Kind:              f.Kind,
		Reference:         f.Reference,
		IndexDigest:       f.IndexDigest,
		ManifestDigest:    f.ManifestDigest,
		ManifestMediaType: f.ManifestMediaType,
		ConfigDigest:      f.ConfigDigest,
		Platform:          f.Platform.String(),
		Layers:            []LayerMetadata{},
	}
	if c := f.Config; c != nil {
		if !c.Created.Time.IsZero() {
			t := c.Created.Time.UTC()
			m.Created = &t
		}
		m.Entrypoint = c.Config.Entrypoint
		m.Cmd = c.Config.Cmd
		m.Env = c.Config.Env
		m.WorkingDir = c.Config.WorkingDir
		m.User = c.Config.User
		m.StopSignal = c.Config.StopSignal
		m.Labels = c.Config.Labels
	}
	for _, l := range f.Layers {
		m.Layers = append(m.Layers, LayerMetadata{Digest: l.Digest, DiffID: l.DiffID, MediaType: l.MediaType, Size: l.Size})
	}
	if st != nil {
		m.Rootfs.SizeEstimated = st.Estimated
		m.Rootfs.InodeRatio = st.InodeRatio
		m.Rootfs.Entries = st.Entries
		m.Rootfs.FileBytes = st.FileBytes
	}
	return m
}

// LockName is the lock file Pull holds in OUTDIR while it runs.
const LockName = ".imagepull.lock"

// ErrOutdirBusy: another Pull into the same OUTDIR is running.
var ErrOutdirBusy = errors.New("another pull into this directory is running")

// lockOutdir takes OUTDIR's lock without waiting and returns its release.
func lockOutdir(outdir string) (func(), error) {
	p := filepath.Join(outdir, LockName)
	f, err := openNoFollow(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := filelock.Lock(f, true); err != nil {
		f.Close()
		if errors.Is(err, filelock.ErrLocked) {
			return nil, fmt.Errorf("%s: %w", outdir, ErrOutdirBusy)
		}
		return nil, err
	}
	return func() { _ = filelock.Unlock(f); _ = f.Close() }, nil
}

// pullTemps are the names (before ".tmp-") of the hidden temporaries a
// Pull makes in OUTDIR: the image, the layer spool, the staged files.
var pullTemps = []string{"." + RootfsName, ".layers", "." + MetadataName, "." + KernelName, "." + InitrdName}

// removeStaleTemps removes what a crashed Pull left in OUTDIR; the caller
// holds OUTDIR's lock, so no running Pull owns them.
func removeStaleTemps(outdir string, logf func(string, ...any)) error {
	ents, err := os.ReadDir(outdir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		base, _, ok := strings.Cut(e.Name(), ".tmp-")
		if !ok || !slices.Contains(pullTemps, base) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(outdir, e.Name())); err != nil {
			return fmt.Errorf("removing a crashed pull's %s: %w", e.Name(), err)
		}
		logf("removed %s, left by a pull that did not finish", e.Name())
	}
	return nil
}
