package imagepull

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// Names of what a pull leaves in OUTDIR.
const (
	RootfsName   = "rootfs.ext4"
	MetadataName = "image.json"
	KernelName   = "kernel"
	InitrdName   = "initrd"
)

// ErrNoKernel: boot artifacts were asked for but the image has no kernel
// in /boot.
var ErrNoKernel = errors.New("no kernel in the image's /boot")

// ImageMetadata is OUTDIR/image.json: where the image came from, what it
// runs, and what the pull made of it.
type ImageMetadata struct {
	Source            string            `json:"source"`
	Kind              string            `json:"kind"`
	Reference         string            `json:"reference,omitempty"`
	IndexDigest       string            `json:"indexDigest,omitempty"`
	ManifestDigest    string            `json:"manifestDigest,omitempty"`
	ManifestMediaType string            `json:"manifestMediaType,omitempty"`
	ConfigDigest      string            `json:"configDigest"`
	Platform          string            `json:"platform"`
	Created           *time.Time        `json:"created,omitempty"`
	Entrypoint        []string          `json:"entrypoint,omitempty"`
	Cmd               []string          `json:"cmd,omitempty"`
	Env               []string          `json:"env,omitempty"`
	WorkingDir        string            `json:"workingDir,omitempty"`
	User              string            `json:"user,omitempty"`
	StopSignal        string            `json:"stopSignal,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Layers            []LayerMetadata   `json:"layers"`
	Rootfs            RootfsMetadata    `json:"rootfs"`
	Kernel            *BootArtifact     `json:"kernel,omitempty"`
	Initrd            *BootArtifact     `json:"initrd,omitempty"`
	// Init is the init system the guest agents were installed for
	// (systemd, sysvinit, openrc, busybox) when Pull's Finalize step ran
	// InjectGuestAgents; empty when no agents were injected.
	Init string `json:"init,omitempty"`
	// Verity describes the dm-verity hash tree that seals rootfs.ext4
	// (PullOptions.Verity); absent when the image is not sealed.
	Verity *VerityMetadata `json:"verity,omitempty"`
}

// LayerMetadata describes one layer as the source stored it.
type LayerMetadata struct {
	Digest    string `json:"digest,omitempty"` // "" for docker-archive
	DiffID    string `json:"diffID"`
	MediaType string `json:"mediaType"`
	Size      int64  `json:"size"` // bytes as stored, -1 unknown
}

// RootfsMetadata describes OUTDIR/rootfs.ext4.
type RootfsMetadata struct {
	File          string `json:"file"`
	Size          int64  `json:"size"`          // bytes
	SizeEstimated bool   `json:"sizeEstimated"` // chosen from the layers, not given
	InodeRatio    uint64 `json:"inodeRatio,omitempty"`
	Entries       int64  `json:"entries,omitempty"`
	FileBytes     int64  `json:"fileBytes,omitempty"`
}

// BootArtifact is a kernel or initrd copied out of the image.
type BootArtifact struct {
	File      string `json:"file"`      // name in OUTDIR
	ImagePath string `json:"imagePath"` // where it was in the image
	Version   string `json:"version,omitempty"`
	Size      int64  `json:"size"`
}

// StageOptions control StageBootArtifacts.
type StageOptions struct {
	// BootArtifacts copies the newest kernel (and its initrd) out of the
	// image's /boot; without a kernel the stage fails with ErrNoKernel.
	BootArtifacts bool
}

// StageBootArtifacts publishes a finished image: kernel and initrd copied
// out of it when asked (into OUTDIR/kernel and OUTDIR/initrd), tmpImage
// renamed to OUTDIR/rootfs.ext4, then OUTDIR/image.json written from
// meta (completed with the image and artifact fields). Every file is
// written beside its final name and renamed into place; image.json is
// removed before and written last, so its presence marks a complete pull.
// tmpImage must be a regular file in outdir (a rename does not cross
// filesystems; a symlink is refused, never published or read through).
// Like Pull, it holds OUTDIR/.imagepull.lock while it runs and fails at
// once with an error wrapping ErrOutdirBusy when a Pull (or another
// stage) into OUTDIR holds it. The files it writes are created mode
// OutputPerm less the umask; tmpImage keeps the mode it has.
//
// OUTDIR/kernel and OUTDIR/initrd are a pull's when image.json says so:
// a stage without boot artifacts (or of an image without an initrd)
// removes the ones an earlier pull staged, which would not describe this
// image, and leaves alone files of those names that the user put there.
func StageBootArtifacts(tmpImage, outdir string, meta *ImageMetadata, opts StageOptions) error {
	// OUTDIR's lock, as Pull holds it: a Pull running into OUTDIR would
	// otherwise interleave its renames with these.
	unlock, err := lockOutdir(outdir)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	defer unlock()
	fi, err := os.Lstat(tmpImage)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("stage: %s is not a regular file (%v)", tmpImage, fi.Mode().Type())
	}
	var arts []stagedArtifact
	if opts.BootArtifacts {
		img, err := ext4edit.Open(tmpImage, &ext4edit.Options{ReadOnly: true})
		if err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		arts, err = copyBootArtifacts(img, outdir)
		if cerr := img.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			removeStaged(arts)
			return fmt.Errorf("stage: boot artifacts: %w", err)
		}
	}
	return publish(tmpImage, fi, outdir, meta, opts.BootArtifacts, arts)
}

// stagedArtifact is a boot artifact copied beside its final name.
type stagedArtifact struct {
	tmp, name string
	art       *BootArtifact
}

// copyBootArtifacts copies img's kernel and initrd (FindBootArtifacts)
// into temporaries in outdir.
func copyBootArtifacts(img *ext4edit.Image, outdir string) ([]stagedArtifact, error) {
	kernel, initrd, err := FindBootArtifacts(img)
	if err != nil {
		return nil, err
	}
	var out []stagedArtifact
	for _, a := range []struct {
		art  *BootArtifact
		name string
	}{{kernel, KernelName}, {initrd, InitrdName}} {
		if a.art == nil {
			continue
		}
		tmp, err := copyOut(img, a.art.ImagePath, outdir, a.name)
		if err != nil {
			removeStaged(out)
			return nil, err
		}
		a.art.File = a.name
		out = append(out, stagedArtifact{tmp: tmp, name: a.name, art: a.art})
	}
	return out, nil
}

func removeStaged(arts []stagedArtifact) {
	for _, a := range arts {
		os.Remove(a.tmp)
	}
}

// removeIfSame removes name if it still holds the file fi describes.
func removeIfSame(name string, fi os.FileInfo) {
	if cur, err := os.Lstat(name); err == nil && os.SameFile(cur, fi) {
		os.Remove(name)
	}
}

// publish renames the image (which must still be the file want
// describes), the staged artifacts and image.json into place; it removes
// the artifacts' temporaries it did not publish.
func publish(tmpImage string, want os.FileInfo, outdir string, meta *ImageMetadata, boot bool, arts []stagedArtifact) error {
	defer func() { removeStaged(arts) }()
	if filepath.Clean(filepath.Dir(tmpImage)) != filepath.Clean(outdir) {
		return fmt.Errorf("stage: %s is not in %s", tmpImage, outdir)
	}
	fi, err := checkSame(tmpImage, want)
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	meta.Rootfs.File = RootfsName
	meta.Rootfs.Size = fi.Size()
	meta.Kernel, meta.Initrd = nil, nil
	staged := map[string]bool{}
	for _, a := range arts {
		staged[a.name] = true
		if a.name == KernelName {
			meta.Kernel = a.art
		} else {
			meta.Initrd = a.art
		}
	}
	prev := previousArtifacts(outdir)

	js, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	jtmp, err := writeTemp(outdir, MetadataName, bytes.NewReader(append(js, '\n')))
	if err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	arts = append(arts, stagedArtifact{tmp: jtmp, name: MetadataName})

	// Publish: image.json goes first and comes back last.
	if err := os.Remove(filepath.Join(outdir, MetadataName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("stage: %w", err)
	}
	for _, n := range []string{KernelName, InitrdName} {
		// An earlier pull's artifact would not describe this image; a
		// file the user put there is not ours to remove.
		if staged[n] || !prev[n] {
			continue
		}
		if err := os.Remove(filepath.Join(outdir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("stage: %w", err)
		}
	}
	syncDir(outdir) // the removals are durable before the image changes
	if _, err := checkSame(tmpImage, want); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	if err := os.Rename(tmpImage, filepath.Join(outdir, RootfsName)); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	for len(arts) > 0 {
		s := arts[0]
		syncDir(outdir) // each rename is durable before the next: image.json last
		if err := os.Rename(s.tmp, filepath.Join(outdir, s.name)); err != nil {
			return fmt.Errorf("stage: %w", err)
		}
		arts = arts[1:]
	}
	syncDir(outdir)
	return nil
}

// checkSame Lstats name and requires the regular file want describes.
func checkSame(name string, want os.FileInfo) (os.FileInfo, error) {
	fi, err := os.Lstat(name)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, want) {
		return nil, fmt.Errorf("%s is no longer the image that was built (replaced, or a symlink): not publishing it", name)
	}
	return fi, nil
}

// previousArtifacts says which of OUTDIR/kernel and OUTDIR/initrd the
// image.json there (an earlier pull's) records as staged by that pull.
// An unreadable, oversized or missing image.json claims none.
func previousArtifacts(outdir string) map[string]bool {
	out := map[string]bool{}
	f, err := openNoFollow(filepath.Join(outdir, MetadataName), os.O_RDONLY, 0)
	if err != nil {
		return out
	}
	defer f.Close()
	raw, err := readCapped(f, MaxConfigBytes, MetadataName)
	if err != nil {
		return out
	}
	var m struct {
		Kernel, Initrd *BootArtifact
	}
	if json.Unmarshal(raw, &m) != nil {
		return out
	}
	out[KernelName] = m.Kernel != nil && m.Kernel.File == KernelName
	out[InitrdName] = m.Initrd != nil && m.Initrd.File == InitrdName
	return out
}

// writeTemp writes src to a new hidden file beside OUTDIR/name, synced,
// and returns its path; on error the file is removed.
func writeTemp(outdir, name string, src io.Reader) (string, error) {
	f, err := createTemp(outdir, name)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, src)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// copyOut copies the regular file p of img to a new temp file beside
// OUTDIR/name.
func copyOut(img *ext4edit.Image, p, outdir, name string) (string, error) {
	src, err := img.FS().Open(strings.TrimPrefix(p, "/"))
	if err != nil {
		return "", err
	}
	defer src.Close()
	tmp, err := writeTemp(outdir, name, src)
	if err != nil {
		return "", fmt.Errorf("copy %s: %w", p, err)
	}
	return tmp, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // not supported everywhere (Windows); best effort
		d.Close()
	}
}

// Kernel and initrd names in /boot, with the version after the prefix.
var (
	kernelPrefixes = []string{"vmlinuz-", "vmlinux-"}
	initrdNames    = []struct{ prefix, suffix string }{
		{"initrd.img-", ""}, {"initramfs-", ".img"}, {"initrd-", ""}, {"initrd.img-", ".img"},
	}
	// Symlinks distributions keep to the default kernel, followed inside
	// the image when /boot has no versioned kernel.
	kernelLinks = []string{"/vmlinuz", "/boot/vmlinuz", "/vmlinux", "/boot/vmlinux"}
	initrdLinks = []string{"/initrd.img", "/boot/initrd.img", "/boot/initrd", "/boot/initramfs.img"}
)

// FindBootArtifacts finds the kernel in img's /boot: the newest
// vmlinuz-VERSION (or vmlinux-VERSION) by version sort, symlinks followed
// inside the image, else what /vmlinuz or /boot/vmlinuz points at. The
// initrd is the one of the same version (initrd.img-VERSION,
// initramfs-VERSION.img, initrd-VERSION) or, for a kernel found through a
// symlink, what /initrd.img points at; it may be nil. The artifacts'
// File fields are left empty.
func FindBootArtifacts(img *ext4edit.Image) (kernel, initrd *BootArtifact, err error) {
	regular := func(p string) (fs.FileInfo, bool) {
		fi, err := img.Stat(p)
		return fi, err == nil && fi.Mode().IsRegular()
	}
	ents, err := img.ReadDir("/boot")
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ext4edit.ErrNotDir) {
		return nil, nil, err
	}
	var best string
	for _, e := range ents {
		n := e.Name()
		for _, pre := range kernelPrefixes {
			v, ok := strings.CutPrefix(n, pre)
			if !ok || v == "" || strings.HasSuffix(v, ".old") {
				continue
			}
			fi, ok := regular("/boot/" + n)
			if !ok || fi.Size() == 0 {
				continue
			}
			if kernel == nil || versionLess(best, v) {
				best = v
				kernel = &BootArtifact{ImagePath: "/boot/" + n, Version: v, Size: fi.Size()}
			}
		}
	}
	if kernel != nil {
		for _, in := range initrdNames {
			p := "/boot/" + in.prefix + kernel.Version + in.suffix
			if fi, ok := regular(p); ok {
				initrd = &BootArtifact{ImagePath: p, Version: kernel.Version, Size: fi.Size()}
				break
			}
		}
		return kernel, initrd, nil
	}
	for _, l := range kernelLinks {
		if fi, ok := regular(l); ok {
			kernel = &BootArtifact{ImagePath: l, Size: fi.Size()}
			if t, err := img.Readlink(l); err == nil {
				for _, pre := range kernelPrefixes {
					if v, ok := strings.CutPrefix(path.Base(t), pre); ok {
						kernel.Version = v
					}
				}
			}
			break
		}
	}
	if kernel == nil {
		return nil, nil, ErrNoKernel
	}
	for _, l := range initrdLinks {
		if fi, ok := regular(l); ok {
			initrd = &BootArtifact{ImagePath: l, Version: kernel.Version, Size: fi.Size()}
			break
		}
	}
	return kernel, initrd, nil
}

// versionLess orders version strings the way `sort -V` does for kernel
// versions: runs of digits compare as numbers, other runs as strings.
func versionLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := versionDigit(a[0]), versionDigit(b[0])
		if da != db {
			return !da // other characters sort before digits
		}
		ra, rb := versionRun(a, da), versionRun(b, db)
		a, b = a[len(ra):], b[len(rb):]
		if da {
			na, nb := strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			continue
		}
		if ra != rb {
			return ra < rb
		}
	}
	return len(a) < len(b)
}

func versionDigit(c byte) bool { return c >= '0' && c <= '9' }

func versionRun(s string, digits bool) string {
	i := 0
	for i < len(s) && versionDigit(s[i]) == digits {
		i++
	}
	return s[:i]
}
