package ext4edit_test

// The builder's fast paths (CreateExcl, attributes set at File.Close,
// Options.NoUndo, Options.Scratch), judged by e2fsck and debugfs on images
// our mkfs and e2fsprogs' make.

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// builderImage makes an image the way variant says and opens it with o.
func builderImage(t *testing.T, variant string, o ext4edit.Options) (*ext4edit.Image, string) {
	t.Helper()
	dir := t.TempDir()
	switch variant {
	case "create":
		p := filepath.Join(dir, "img")
		img, err := ext4edit.Mkfs(p, 64<<20, &ext4edit.MkfsOptions{Open: o})
		require.NoError(t, err)
		return img, p
	case "create-nojournal":
		p := filepath.Join(dir, "img")
		img, err := ext4edit.Mkfs(p, 64<<20, &ext4edit.MkfsOptions{NoJournal: true, Open: o})
		require.NoError(t, err)
		return img, p
	}
	opts := map[string][]string{
		"mkfs-1k-nocsum": {"-b", "1024", "-O", "^metadata_csum"},
		"mkfs-ext3":      {"-t", "ext3"},
		"mkfs-nojournal": {"-O", "^has_journal"},
	}[variant]
	p := testimg.Mkfs(t, dir, "img", "64M", opts...)
	img, err := ext4edit.Open(p, &o)
	require.NoError(t, err)
	return img, p
}

var builderVariants = []string{"create", "create-nojournal", "mkfs-1k-nocsum", "mkfs-ext3", "mkfs-nojournal"}

func TestCreateExcl(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	mt := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	at := mt.Add(time.Hour)
	for _, variant := range builderVariants {
		for _, o := range []ext4edit.Options{{}, {NoUndo: true, Scratch: true}} {
			name := variant
			if o.NoUndo {
				name += "-noundo-scratch"
			}
			t.Run(name, func(t *testing.T) {
				img, p := builderImage(t, variant, o)
				require.NoError(t, img.MkdirAll("/a/b", 0o755))
				require.NoError(t, img.WriteFile("/a/f", []byte("old\n"), 0o644))
				require.NoError(t, img.Symlink("/nowhere", "/a/dl"))
				require.NoError(t, img.Symlink("b", "/a/l"))

				// Taken in any form: refused before anything changes, so
				// even without undo the image stays usable.
				for _, q := range []string{"/a/f", "/a/b", "/a/dl", "/a/l", "/"} {
					_, err := img.CreateExcl(q, 0o644)
					require.ErrorIs(t, err, fs.ErrExist, q)
				}
				_, err := img.CreateExcl("/a/missing/x", 0o644)
				require.ErrorIs(t, err, fs.ErrNotExist)
				_, err = img.CreateExcl("/a/f/x", 0o644)
				require.ErrorIs(t, err, ext4edit.ErrNotDir)

				// Intermediate symlinks are followed.
				f, err := img.CreateExcl("/a/l/viaLink", 0o600)
				require.NoError(t, err)
				_, err = f.Write([]byte("through the link\n"))
				require.NoError(t, err)
				require.NoError(t, f.Close())

				// Attributes and xattrs recorded on the File land at Close.
				data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16+7) // 1 MiB + a partial block
				f, err = img.CreateExcl("/a/b/x", 0o640)
				require.NoError(t, err)
				mode, uid, gid := uint16(0o100750), uint32(1000), uint32(1001)
				require.NoError(t, f.SetAttr(ext4edit.Attr{Mode: &mode, UID: &uid}))
				require.NoError(t, f.SetAttr(ext4edit.Attr{GID: &gid, Atime: &at, Mtime: &mt}))
				require.NoError(t, f.SetXattr("user.k", []byte("v")))
				require.NoError(t, f.SetXattr("security.capability", []byte{1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))
				bad := uint16(0o040755)
				require.ErrorIs(t, f.SetAttr(ext4edit.Attr{Mode: &bad}), fs.ErrInvalid)
				_, err = f.ReadFrom(bytes.NewReader(data))
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.ErrorIs(t, f.SetAttr(ext4edit.Attr{UID: &uid}), fs.ErrClosed)
				require.ErrorIs(t, f.SetXattr("user.z", nil), fs.ErrClosed)

				// A small file: one partial block, no attributes.
				f, err = img.CreateExcl("/a/small", 0o644)
				require.NoError(t, err)
				_, err = f.Write([]byte("tiny"))
				require.NoError(t, err)
				require.NoError(t, f.Close())
				require.NoError(t, img.Sync())
				// An empty one after a Sync.
				f, err = img.CreateExcl("/a/empty", 0o644)
				require.NoError(t, err)
				require.NoError(t, f.Close())

				got, err := img.ReadFile("/a/b/x")
				require.NoError(t, err)
				require.True(t, bytes.Equal(got, data))
				v, err := img.GetXattr("/a/b/x", "user.k")
				require.NoError(t, err)
				require.Equal(t, "v", string(v))
				require.NoError(t, img.Close())

				testimg.RequireClean(t, p)
				s := testimg.DebugfsStat(t, p, "/a/b/x")
				require.Equal(t, "regular", s.Type)
				require.Equal(t, uint32(0o750), s.Mode)
				require.Equal(t, uid, s.UID)
				require.Equal(t, gid, s.GID)
				require.Equal(t, uint64(len(data)), s.Size)
				times := testimg.StatTimes(s)
				require.Equal(t, mt.Unix(), times["mtime"].Unix())
				require.Equal(t, at.Unix(), times["atime"].Unix())
				require.True(t, bytes.Equal(data, testimg.Cat(t, p, "/a/b/x")))
				require.ElementsMatch(t, []string{"user.k", "security.capability"}, testimg.DebugfsXattrNames(t, p, "/a/b/x"))
				require.Equal(t, "through the link\n", string(testimg.Cat(t, p, "/a/b/viaLink")))
				require.Equal(t, "tiny", string(testimg.Cat(t, p, "/a/small")))
				require.Equal(t, uint64(0), testimg.DebugfsStat(t, p, "/a/empty").Size)
				require.Equal(t, "old\n", string(testimg.Cat(t, p, "/a/f")))
				require.False(t, testimg.DebugfsExists(t, p, "/nowhere"))
			})
		}
	}
}

// failingDevice fails every write once armed.
type failingDevice struct {
	ext4edit.Device
	armed bool
	syncs int
}

var errInjected = errors.New("injected write failure")

func (d *failingDevice) WriteAt(p []byte, off int64) (int, error) {
	if d.armed {
		return 0, errInjected
	}
	return d.Device.WriteAt(p, off)
}

func (d *failingDevice) Sync() error {
	d.syncs++
	return d.Device.Sync()
}

// An edit that fails part way: with undo the image rolls back and goes on;
// with NoUndo it refuses every later edit and the commit, and the file
// keeps the last commit.
func TestNoUndoPartialEdit(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	for _, noUndo := range []bool{false, true} {
		t.Run(map[bool]string{false: "undo", true: "noundo"}[noUndo], func(t *testing.T) {
			img, p := builderImage(t, "create", ext4edit.Options{NoUndo: noUndo})
			require.NoError(t, img.MkdirAll("/keep", 0o755))
			require.NoError(t, img.Sync())
			// Failures found before any change leave the image usable.
			require.ErrorIs(t, img.Mkdir("/keep", 0o755), fs.ErrExist)
			require.ErrorIs(t, img.Symlink("x", "/missing/l"), fs.ErrNotExist)
			require.ErrorIs(t, img.WriteFile("/big", make([]byte, 1<<30), 0o644), ext4edit.ErrNoSpace)
			require.NoError(t, img.Mkdir("/after", 0o755))

			var dev *failingDevice
			ext4edit.WrapDevice(img, func(d ext4edit.Device) ext4edit.Device {
				dev = &failingDevice{Device: d}
				return dev
			})
			if !noUndo {
				// A File whose second chunk fails keeps its first, once
				// growing its last extent in place and once adding one.
				for _, second := range []int{1 << 20, 300 << 10} {
					f, err := img.CreateExcl("/keep/stream"+strings.Repeat("x", second>>20), 0o644)
					require.NoError(t, err)
					_, err = f.Write(bytes.Repeat([]byte{1}, 1<<20))
					require.NoError(t, err)
					if second < 1<<20 {
						// Something between the chunks: the second cannot
						// continue the first's extent.
						require.NoError(t, img.WriteFile("/keep/between", make([]byte, 8192), 0o644))
					}
					dev.armed = true
					_, err = f.Write(bytes.Repeat([]byte{2}, second))
					require.ErrorIs(t, err, errInjected)
					dev.armed = false
					require.NoError(t, f.Close())
				}
			}
			dev.armed = true
			err := img.WriteFile("/keep/data", bytes.Repeat([]byte{7}, 100<<10), 0o644)
			require.ErrorIs(t, err, errInjected)
			dev.armed = false
			if !noUndo {
				require.NoError(t, img.Mkdir("/later", 0o755))
				require.NoError(t, img.Close())
				testimg.RequireClean(t, p)
				require.True(t, testimg.DebugfsExists(t, p, "/later"))
				require.False(t, testimg.DebugfsExists(t, p, "/keep/data"))
				for _, name := range []string{"/keep/streamx", "/keep/stream"} {
					require.Equal(t, bytes.Repeat([]byte{1}, 1<<20), testimg.Cat(t, p, name), name)
				}
				return
			}
			require.ErrorIs(t, err, ext4edit.ErrPartialEdit)
			require.ErrorIs(t, img.Mkdir("/later", 0o755), ext4edit.ErrPartialEdit)
			require.ErrorIs(t, img.Sync(), ext4edit.ErrPartialEdit)
			require.ErrorIs(t, img.Close(), ext4edit.ErrPartialEdit)
			testimg.RequireClean(t, p)
			require.True(t, testimg.DebugfsExists(t, p, "/keep"))
			require.False(t, testimg.DebugfsExists(t, p, "/after"))
			require.False(t, testimg.DebugfsExists(t, p, "/later"))
		})
	}
}

// Scratch commits write home without barriers and Close flushes once;
// the result is as clean as a journaled commit's, journal empty.
func TestScratchCommit(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs", "dumpe2fs")
	for _, variant := range builderVariants {
		t.Run(variant, func(t *testing.T) {
			img, p := builderImage(t, variant, ext4edit.Options{Scratch: true})
			var dev *failingDevice
			ext4edit.WrapDevice(img, func(d ext4edit.Device) ext4edit.Device {
				dev = &failingDevice{Device: d}
				return dev
			})
			for i := 0; i < 300; i++ {
				d := "/d" + strings.Repeat("x", i%7)
				require.NoError(t, img.MkdirAll(d, 0o755))
				require.NoError(t, img.WriteFile(d+"/f"+strings.Repeat("y", i%200), bytes.Repeat([]byte{byte(i)}, i*97), 0o644))
			}
			require.NoError(t, img.Sync())
			require.Zero(t, dev.syncs, "Sync of a scratch image flushes nothing")
			// Frees wait for the commit: remove and replace after a Sync.
			require.NoError(t, img.RemoveAll("/dxx"))
			require.NoError(t, img.WriteFile("/d/f", []byte("replaced"), 0o600))
			require.NoError(t, img.Rename("/dxxx", "/moved"))
			require.NoError(t, img.Close())
			require.Equal(t, 1, dev.syncs, "Close flushes once")
			testimg.RequireClean(t, p)
			require.NotContains(t, testimg.Dumpe2fs(t, p, true), "needs_recovery")
			require.False(t, testimg.DebugfsExists(t, p, "/dxx"))
			require.Equal(t, "replaced", string(testimg.Cat(t, p, "/d/f")))
			require.True(t, testimg.DebugfsExists(t, p, "/moved/f"+strings.Repeat("y", 3)))
		})
	}
}
