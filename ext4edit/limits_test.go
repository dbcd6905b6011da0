package ext4edit_test

// The format's limits, where hostile input meets them: inode times
// outside what the fields hold (clamped, as the kernel clamps, never
// wrapped), extended attributes that no image size can hold
// (ErrXattrTooLarge, not ErrNoSpace), and formatting a file the caller
// opened (MkfsFile) instead of a path.

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/filelock"
	"github.com/banger/ext4kit/internal/testimg"
)

var (
	ltMin    = time.Date(1901, 12, 13, 20, 45, 52, 0, time.UTC)
	ltMax32  = time.Date(2038, 1, 19, 3, 14, 7, 0, time.UTC)
	ltMaxExt = time.Date(2446, 5, 10, 22, 38, 55, 0, time.UTC)
	ltClock  = time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC)
)

// ltTimes are the times set, with what a 256-byte inode (extra time
// fields) and a 128-byte inode store of each.
var ltTimes = []struct {
	name          string
	set           time.Time
	want, want128 time.Time
}{
	{"min", ltMin, ltMin, ltMin},
	{"min-1s", ltMin.Add(-time.Second), ltMin, ltMin},
	{"min+ns", ltMin.Add(time.Nanosecond), ltMin, ltMin}, // on the bound: nanoseconds go (timestamp_truncate)
	{"1800", time.Date(1800, 1, 1, 0, 0, 0, 0, time.UTC), ltMin, ltMin},
	{"year1", time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC), ltMin, ltMin},
	{"pre-1970-ns", time.Date(1969, 12, 31, 23, 59, 59, 500, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 500, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)},
	{"ns", time.Date(2000, 1, 1, 0, 0, 0, 123456789, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 123456789, time.UTC), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)},
	{"max32", ltMax32, ltMax32, ltMax32},
	{"max32+1s", ltMax32.Add(time.Second), ltMax32.Add(time.Second), ltMax32},
	{"2106", time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC), time.Date(2106, 2, 7, 6, 28, 16, 0, time.UTC), ltMax32},
	{"2300", time.Date(2300, 6, 1, 0, 0, 0, 7, time.UTC), time.Date(2300, 6, 1, 0, 0, 0, 7, time.UTC), ltMax32},
	{"2340", time.Date(2340, 3, 3, 0, 0, 0, 9, time.UTC), time.Date(2340, 3, 3, 0, 0, 0, 9, time.UTC), ltMax32},
	{"max", ltMaxExt, ltMaxExt, ltMax32},
	{"max+1s", ltMaxExt.Add(time.Second), ltMaxExt, ltMax32},
	{"2447", time.Date(2447, 1, 1, 0, 0, 0, 0, time.UTC), ltMaxExt, ltMax32},
	{"9999", time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), ltMaxExt, ltMax32},
}

func TestTimeClamp(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	methods := []string{"Chtimes", "Lsetattr", "File.SetAttr", "Options.Now", "MkfsOptions.Time"}
	for _, isz := range []uint32{256, 128} {
		for _, method := range methods {
			t.Run(fmt.Sprintf("i%d/%s", isz, method), func(t *testing.T) {
				ltTimeMethod(t, isz, method)
			})
		}
	}
}

func ltTimeMethod(t *testing.T, isz uint32, method string) {
	dir := t.TempDir()
	now := ltClock
	clock := func() time.Time { return now }
	// mkfs's own times go through MkfsOptions.Time: one image per time.
	images := 1
	if method == "MkfsOptions.Time" {
		images = len(ltTimes)
	}
	for im := 0; im < images; im++ {
		p := filepath.Join(dir, fmt.Sprintf("img%d", im))
		co := &ext4edit.MkfsOptions{InodeSize: isz, Time: ltClock, Open: ext4edit.Options{Now: clock}}
		if method == "MkfsOptions.Time" {
			co.Time, co.Open.Now = ltTimes[im].set, nil
		}
		img, err := ext4edit.Mkfs(p, 64<<20, co)
		require.NoError(t, err)
		lo, hi := img.TimeRange()
		require.True(t, lo.Equal(ltMin), "TimeRange min %v", lo)
		if isz == 128 {
			require.True(t, hi.Equal(ltMax32), "TimeRange max %v", hi)
		} else {
			require.True(t, hi.Equal(ltMaxExt), "TimeRange max %v", hi)
		}

		// What each case stores, per file: name -> (atime, mtime, ctime, crtime).
		type want struct{ a, m, c, cr time.Time }
		wants := map[string]want{}
		cases := ltTimes
		if method == "MkfsOptions.Time" {
			cases = ltTimes[im : im+1]
		}
		for i, tc := range cases {
			w := tc.want
			if isz == 128 {
				w = tc.want128
			}
			name := fmt.Sprintf("/t%02d", i)
			set := tc.set
			switch method {
			case "Chtimes":
				require.NoError(t, img.WriteFile(name, nil, 0o644))
				require.NoError(t, img.Chtimes(name, set, set))
				wants[name] = want{w, w, ltClock, ltClock}
			case "Lsetattr":
				require.NoError(t, img.WriteFile(name, nil, 0o644))
				require.NoError(t, img.Lsetattr(name, ext4edit.Attr{Atime: &set, Mtime: &set, Ctime: &set, Crtime: &set}))
				wants[name] = want{w, w, w, w}
			case "File.SetAttr":
				f, err := img.CreateExcl(name, 0o644)
				require.NoError(t, err)
				require.NoError(t, f.SetAttr(ext4edit.Attr{Atime: &set, Mtime: &set, Ctime: &set, Crtime: &set}))
				require.NoError(t, f.Close())
				wants[name] = want{w, w, w, w}
			case "Options.Now":
				now = set
				require.NoError(t, img.WriteFile(name, nil, 0o644))
				now = ltClock
				wants[name] = want{w, w, w, w}
			case "MkfsOptions.Time":
				// Create's clock stamps the root and what this session
				// makes.
				require.NoError(t, img.WriteFile(name, nil, 0o644))
				wants["/"] = want{w, w, w, w}
				wants[name] = want{w, w, w, w}
			}
		}
		check := func(name string, w want, got ext4edit.InodeInfo, via string) {
			t.Helper()
			require.True(t, got.Atime.Equal(w.a), "%s atime %v via %s, want %v", name, got.Atime.UTC(), via, w.a)
			require.True(t, got.Mtime.Equal(w.m), "%s mtime %v via %s, want %v", name, got.Mtime.UTC(), via, w.m)
			require.True(t, got.Ctime.Equal(w.c), "%s ctime %v via %s, want %v", name, got.Ctime.UTC(), via, w.c)
			if isz == 128 {
				require.True(t, got.Crtime.IsZero(), "%s crtime %v on a 128-byte inode", name, got.Crtime)
			} else {
				require.True(t, got.Crtime.Equal(w.cr), "%s crtime %v via %s, want %v", name, got.Crtime.UTC(), via, w.cr)
			}
		}
		for name, w := range wants {
			fi, err := img.Lstat(name)
			require.NoError(t, err)
			check(name, w, *fi.Sys().(*ext4edit.InodeInfo), "Lstat")
		}
		require.NoError(t, img.Close())

		for name, w := range wants {
			st := testimg.DebugfsStat(t, p, name)
			times := testimg.StatTimes(st)
			got := ext4edit.InodeInfo{Atime: times["atime"], Mtime: times["mtime"], Ctime: times["ctime"], Crtime: times["crtime"]}
			check(name, w, got, "debugfs stat")
		}
		// Every stored time is one e2fsck accepts, 2310..2378 included
		// (epoch bits 3 with bit 31 set, which old e2fsck versions took
		// for mis-encoded pre-1970 times; the "2340" case).
		testimg.RequireClean(t, p)
	}
}

// ltXattrImage makes a 64 MiB image of the given block and inode size with
// one empty file /f.
func ltXattrImage(t *testing.T, bs, isz uint32, o ext4edit.Options) (*ext4edit.Image, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "img")
	img, err := ext4edit.Mkfs(p, 64<<20, &ext4edit.MkfsOptions{BlockSize: bs, InodeSize: isz, Open: o})
	require.NoError(t, err)
	require.NoError(t, img.WriteFile("/f", []byte("data\n"), 0o644))
	return img, p
}

// ltRequireTooLarge checks an ErrXattrTooLarge error: a *fs.PathError,
// not ErrNoSpace, naming the attribute, what it needs and the block size.
func ltRequireTooLarge(t *testing.T, err error, attr string, bs uint32) {
	t.Helper()
	require.ErrorIs(t, err, ext4edit.ErrXattrTooLarge)
	require.False(t, errors.Is(err, ext4edit.ErrNoSpace), "%v must not suggest a larger image", err)
	var pe *fs.PathError
	require.True(t, errors.As(err, &pe), "%T is not a *fs.PathError", err)
	msg := err.Error()
	require.Contains(t, msg, fmt.Sprintf("%q needs", attr))
	require.Contains(t, msg, "inode body")
	require.Contains(t, msg, fmt.Sprintf("%d-byte attribute block", bs))
}

func TestXattrTooLarge(t *testing.T) {
	testimg.Require(t, "e2fsck", "debugfs")
	for _, bs := range []uint32{4096, 1024} {
		for _, isz := range []uint32{256, 128} {
			t.Run(fmt.Sprintf("b%d-i%d", bs, isz), func(t *testing.T) {
				t.Run("64KiB-value", func(t *testing.T) {
					img, p := ltXattrImage(t, bs, isz, ext4edit.Options{})
					err := img.SetXattr("/f", "user.big", bytes.Repeat([]byte{'v'}, 64<<10))
					ltRequireTooLarge(t, err, "user.big", bs)
					require.Contains(t, err.Error(), "65556 bytes") // 20-byte entry + value
					// The largest value the block holds still fits: 32-byte
					// header, 20-byte entry, 4-byte end marker.
					require.NoError(t, img.SetXattr("/f", "user.fits", bytes.Repeat([]byte{'w'}, int(bs)-56)))
					err = img.SetXattr("/f", "user.over", bytes.Repeat([]byte{'x'}, int(bs)-55))
					ltRequireTooLarge(t, err, "user.over", bs)
					names, err := img.ListXattr("/f")
					require.NoError(t, err)
					require.Equal(t, []string{"user.fits"}, names)
					require.NoError(t, img.Close())
					testimg.RequireClean(t, p)
					v, ok := testimg.DebugfsXattr(t, p, "/f", "user.fits")
					require.True(t, ok)
					require.Len(t, v, int(bs)-56)
				})
				t.Run("1000-xattrs", func(t *testing.T) {
					img, p := ltXattrImage(t, bs, isz, ext4edit.Options{})
					set := 0
					var err error
					for ; set < 1000; set++ {
						name := fmt.Sprintf("user.attr%04d", set)
						if err = img.SetXattr("/f", name, []byte("0123456789abcdef")); err != nil {
							ltRequireTooLarge(t, err, name, bs)
							break
						}
					}
					require.Error(t, err, "1000 xattrs fit one inode")
					t.Logf("%d attributes fit, the next failed: %v", set, err)
					names, err := img.ListXattr("/f")
					require.NoError(t, err)
					require.Len(t, names, set)
					require.NoError(t, img.Close())
					testimg.RequireClean(t, p)
					require.Len(t, testimg.DebugfsXattrNames(t, p, "/f"), set)
				})
				// File.SetXattr checks at Close before anything changes, so
				// even a NoUndo image stays usable and consistent.
				t.Run("File-NoUndo", func(t *testing.T) {
					img, p := ltXattrImage(t, bs, isz, ext4edit.Options{NoUndo: true})
					f, err := img.CreateExcl("/g", 0o644)
					require.NoError(t, err)
					// Whole blocks go to disk at once: a failed Close keeps
					// them (the unwritten tail goes with it).
					payload := mxData(3, 2*int(bs))
					_, err = f.Write(payload)
					require.NoError(t, err)
					for i := 0; i < 1000; i++ {
						require.NoError(t, f.SetXattr(fmt.Sprintf("user.attr%04d", i), []byte("0123456789abcdef")))
					}
					err = f.Close()
					require.ErrorIs(t, err, ext4edit.ErrXattrTooLarge)
					require.False(t, errors.Is(err, ext4edit.ErrPartialEdit), "%v", err)
					require.False(t, errors.Is(err, ext4edit.ErrNoSpace), "%v", err)
					require.NoError(t, img.Mkdir("/after", 0o755))
					got, err := img.ReadFile("/g")
					require.NoError(t, err)
					require.Equal(t, payload, got)
					require.NoError(t, img.Close())
					testimg.RequireClean(t, p)
				})
			})
		}
	}
}

// TestXattrNoSpace: an attribute that would fit a block, on an image with
// no block left for it, is still ErrNoSpace (a larger image helps).
func TestXattrNoSpace(t *testing.T) {
	testimg.Require(t, "e2fsck")
	p := filepath.Join(t.TempDir(), "img")
	img, err := ext4edit.Mkfs(p, 8<<20, &ext4edit.MkfsOptions{BlockSize: 1024, NoJournal: true})
	require.NoError(t, err)
	require.NoError(t, img.WriteFile("/f", nil, 0o644))
	fill, err := img.CreateExcl("/fill", 0o644)
	require.NoError(t, err)
	chunk := bytes.Repeat([]byte{1}, 1024)
	for {
		if _, err = fill.Write(chunk); err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ext4edit.ErrNoSpace)
	_ = fill.Close() // its buffered tail may not fit either; what was written stays

	err = img.SetXattr("/f", "user.v", bytes.Repeat([]byte{'v'}, 500))
	require.ErrorIs(t, err, ext4edit.ErrNoSpace)
	require.False(t, errors.Is(err, ext4edit.ErrXattrTooLarge), "%v", err)
	require.NoError(t, img.Close())
	testimg.RequireClean(t, p)
}

func TestCreateFile(t *testing.T) {
	testimg.Require(t, "e2fsck")
	for _, co := range []ext4edit.MkfsOptions{
		{},
		{BlockSize: 1024, InodeSize: 128, Label: "rootfs", NoJournal: true},
	} {
		t.Run(fmt.Sprintf("b%d-i%d", co.BlockSize, co.InodeSize), func(t *testing.T) {
			dir := t.TempDir()
			co.Seed = []byte("sha256:0123")
			co.Time = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
			edit := func(img *ext4edit.Image) {
				require.NoError(t, img.MkdirAll("/etc", 0o755))
				require.NoError(t, img.WriteFile("/etc/hostname", []byte("vm\n"), 0o644))
				require.NoError(t, img.Close())
			}

			byPath := filepath.Join(dir, "by-path")
			img, err := ext4edit.Mkfs(byPath, 64<<20, &co)
			require.NoError(t, err)
			edit(img)

			// A temp file that held other bytes, whose name is then
			// swapped for a symlink: MkfsFile formats the file itself.
			f, err := os.CreateTemp(dir, ".img-*")
			require.NoError(t, err)
			_, err = f.Write(bytes.Repeat([]byte{0xAA}, 3<<20))
			require.NoError(t, err)
			victim := filepath.Join(dir, "victim")
			require.NoError(t, os.WriteFile(victim, []byte("keep me"), 0o644))
			require.NoError(t, os.Rename(f.Name(), filepath.Join(dir, "by-file")))
			require.NoError(t, os.Symlink(victim, f.Name()))

			img, err = ext4edit.MkfsFile(f, 64<<20, &co)
			require.NoError(t, err)
			// The Image holds f's lock as Open would.
			_, err = ext4edit.Open(filepath.Join(dir, "by-file"), nil)
			require.ErrorIs(t, err, ext4edit.ErrLocked)
			edit(img)
			_, err = f.Write([]byte{0})
			require.ErrorIs(t, err, os.ErrClosed, "Close must close the caller's file")

			got, err := os.ReadFile(victim)
			require.NoError(t, err)
			require.Equal(t, "keep me", string(got), "the name was reopened")
			require.Equal(t, fileSHA(t, byPath), fileSHA(t, filepath.Join(dir, "by-file")))
			testimg.RequireClean(t, filepath.Join(dir, "by-file"))
		})
	}
	t.Run("error-leaves-file-open-unlocked", func(t *testing.T) {
		f, err := os.CreateTemp(t.TempDir(), ".img-*")
		require.NoError(t, err)
		defer f.Close()
		_, err = ext4edit.MkfsFile(f, 4096, nil)
		require.ErrorIs(t, err, fs.ErrInvalid)
		var pe *fs.PathError
		require.True(t, errors.As(err, &pe))
		_, err = f.Write([]byte("still mine"))
		require.NoError(t, err)
		g, err := os.Open(f.Name())
		require.NoError(t, err)
		defer g.Close()
		require.NoError(t, filelock.Lock(g, true), "MkfsFile kept its lock after failing")
	})
	t.Run("locked-elsewhere", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "img")
		img, err := ext4edit.Mkfs(p, 64<<20, nil)
		require.NoError(t, err)
		defer img.Close()
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		require.NoError(t, err)
		defer f.Close()
		_, err = ext4edit.MkfsFile(f, 64<<20, nil)
		require.ErrorIs(t, err, ext4edit.ErrLocked)
		require.True(t, strings.Contains(err.Error(), p), "%v", err)
		st, err := f.Stat()
		require.NoError(t, err)
		require.Equal(t, int64(64<<20), st.Size(), "a locked image was touched")
	})
}
