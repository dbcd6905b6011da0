package fuzz

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	_ "github.com/banger/ext4kit/internal/checkhook"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/internal/testimg"
)

// inputTimeout bounds one input: a hang is reported as a failure with
// every goroutine's stack.
const inputTimeout = 10 * time.Second

func TestMain(m *testing.M) {
	code := m.Run()
	if dir, err := scratch(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// FuzzOpenWalk opens any bytes as an image (read-only) and walks it with
// every read method: it must never panic or hang, whatever the bytes.
func FuzzOpenWalk(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte(sparseMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		name := scratchFile(t)
		if _, err := writeImage(name, data); err != nil {
			t.Fatal(err)
		}
		guard(t, "open+walk", inputTimeout, func() error {
			for _, opts := range []*ext4edit.Options{{ReadOnly: true, NoLock: true}, {ReadOnly: true, NoLock: true, Partition: 1}} {
				img, err := ext4edit.Open(name, opts)
				if err != nil {
					continue
				}
				var st walkStats
				walkImage(img, &st)
				if err := img.Close(); err != nil {
					return fmt.Errorf("close of a read-only image: %v", err)
				}
			}
			return nil
		})
	})
}

// Base images for FuzzEdits, chosen by the input's first byte. Made once
// per process and copied for every input.
type baseImage struct {
	name   string
	size   int64
	chunks []sparseChunk
	m      *model
}

var editBases = sync.OnceValues(func() ([]*baseImage, error) {
	dir, err := scratch()
	if err != nil {
		return nil, err
	}
	type spec struct {
		name   string
		create *ext4edit.MkfsOptions
		size   int64
		mkfs   []string
	}
	specs := []spec{
		{name: "create-4k-journal", create: &ext4edit.MkfsOptions{}, size: 16 << 20},
		{name: "create-1k-nojournal", create: &ext4edit.MkfsOptions{BlockSize: 1024, NoJournal: true}, size: 4 << 20},
		{name: "mkfs-1k-inline", mkfs: []string{"-t", "ext4", "-b", "1024", "-N", "256", "-O", "inline_data"}, size: 4 << 20},
		{name: "mkfs-ext3", mkfs: []string{"-t", "ext3", "-b", "1024", "-N", "256"}, size: 4 << 20},
	}
	var out []*baseImage
	for _, s := range specs {
		p := path.Join(dir, "base-"+s.name)
		switch {
		case s.create != nil:
			img, err := ext4edit.Mkfs(p, s.size, s.create)
			if err != nil {
				return nil, err
			}
			if err := img.Close(); err != nil {
				return nil, err
			}
		default:
			mk := testimg.LookTool("mke2fs")
			if mk == "" {
				continue // no e2fsprogs: the Create bases only
			}
			args := append(append([]string{"-q", "-F"}, s.mkfs...), p, fmt.Sprint(s.size>>10)+"k")
			cmd := exec.Command(mk, args...)
			cmd.Env = append(os.Environ(), "MKE2FS_CONFIG=/etc/mke2fs.conf")
			if o, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("mke2fs %v: %v\n%s", args, err, o)
			}
		}
		size, chunks, err := imageChunks(p)
		if err != nil {
			return nil, err
		}
		img, err := ext4edit.Open(p, &ext4edit.Options{ReadOnly: true, NoLock: true})
		if err != nil {
			return nil, err
		}
		m, err := modelFromImage(img)
		img.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, &baseImage{name: s.name, size: size, chunks: chunks, m: m})
		os.Remove(p)
	}
	return out, nil
})

// The fixed small namespace FuzzEdits works in. "/a" is both a name and a
// directory of the namespace, so files and directories collide.
var (
	edDirs    = []string{"/", "/a", "/a/b", "/c"}
	edNames   = []string{"a", "b", "c", "f", "g"}
	edTargets = []string{"/a", "/a/b", "/c/f", "f", "b", "/zz", "/a/zz/q", "..", ".", "/c/f/x",
		"/a/b/" + strings.Repeat("long", 20)}
	edPerms  = []uint16{0o755, 0o644, 0o700, 0o4755, 0o1777, 0o2750, 0o000, 0o777}
	edSizes  = []int{0, 1, 60, 100, 4095, 4096, 5000, 70000, 300000}
	edIDs    = []int{0, 1000, 65535, 70000}
	edXNames = []string{"user.a", "user.bb", "security.c", "trusted.d"}
	edXSizes = []int{0, 3, 40, 200, 300, 700}
)

func fileMode(perm uint16) fs.FileMode {
	m := fs.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*int(seed|1)+i>>9) ^ seed
	}
	return b
}

type opReader struct{ b []byte }

func (r *opReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *opReader) path() string {
	c := r.next()
	return path.Join(edDirs[int(c)%len(edDirs)], edNames[int(c>>2)%len(edNames)])
}

func pick[T any](r *opReader, s []T) T { return s[int(r.next())%len(s)] }

// FuzzEdits decodes its input as edit operations on a small valid image
// (resizes among them),
// applies each to the image and to a model, and requires them to agree:
// the editor succeeds exactly when the model says the operation is
// valid (running out of space aside), and after Close a fresh read-only
// open shows the model's tree, and e2fsck -fn calls the image clean.
//
// Every input runs twice: with the default options, and as a builder
// opens a scratch image (Options.NoUndo and Scratch). There an operation
// that fails part way (ErrPartialEdit) ends the run, once Sync and Close
// refuse too; every other failure must have left the image as the model
// has it.
func FuzzEdits(f *testing.F) {
	f.Add([]byte{0, 1, 5, 2, 2, 9, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		bases, err := editBases()
		if err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 {
			return
		}
		base := bases[int(data[0])%len(bases)]
		for _, builder := range []bool{false, true} {
			name := scratchFile(t)
			if err := writeChunks(name, base.size, base.chunks); err != nil {
				t.Fatal(err)
			}
			what := base.name
			if builder {
				what += " (NoUndo, Scratch)"
			}
			var log []string
			guard(t, "edits on "+what, 2*inputTimeout, func() error {
				err := runEdits(name, base, builder, data[1:], &log)
				if os.Getenv("EXT4EDIT_FUZZ_LOG") != "" {
					t.Logf("%s:\n  %s", what, strings.Join(log, "\n  "))
				}
				if err != nil {
					return fmt.Errorf("%v\noperations:\n  %s", err, strings.Join(log, "\n  "))
				}
				return nil
			})
		}
	})
}

// errPartialDone ends runEdits early: an operation failed part way on a
// NoUndo image, which refused Sync and Close after it, as it must.
var errPartialDone = errors.New("partial edit")

const maxOps = 48

func runEdits(name string, base *baseImage, builder bool, ops []byte, log *[]string) error {
	err := runEditsOn(name, base, builder, ops, log)
	if err == errPartialDone {
		return nil
	}
	return err
}

func runEditsOn(name string, base *baseImage, builder bool, ops []byte, log *[]string) error {
	opts := &ext4edit.Options{NoLock: true, Now: func() time.Time { return time.Unix(1700000000, 0) }, NoUndo: builder, Scratch: builder}
	img, err := ext4edit.Open(name, opts)
	if err != nil {
		return fmt.Errorf("open base: %v", err)
	}
	defer func() {
		if img != nil {
			img.Close()
		}
	}()
	// partial ends the run when err says an operation failed part way
	// (builder images only): the image must then refuse Sync and Close.
	partial := func(desc string, err error) error {
		if !errors.Is(err, ext4edit.ErrPartialEdit) {
			return nil
		}
		*log = append(*log, fmt.Sprintf("%s -> %v", desc, err))
		if !builder {
			return fmt.Errorf("%s: %v without Options.NoUndo", desc, err)
		}
		if serr := img.Sync(); !errors.Is(serr, ext4edit.ErrPartialEdit) {
			return fmt.Errorf("Sync after %s: %v, want ErrPartialEdit", desc, serr)
		}
		cerr := img.Close()
		img = nil
		if !errors.Is(cerr, ext4edit.ErrPartialEdit) {
			return fmt.Errorf("Close after %s: %v, want ErrPartialEdit", desc, cerr)
		}
		return errPartialDone
	}
	m := base.m.clone()
	r := &opReader{ops}
	// Files left open across other operations (Create ... Close), at most
	// two. A File whose inode loses its last name, or is truncated by a
	// WriteFile/Create of the same file, is orphaned: its data is dropped
	// at Close. Otherwise Close makes the file hold what was written.
	var handles []*openFile
	closeHandle := func(h *openFile, mm *model) error {
		handles = slices.DeleteFunc(handles, func(o *openFile) bool { return o == h })
		err := h.f.Close()
		if perr := partial(h.desc+".Close()", err); perr != nil {
			return perr
		}
		n := mm.nodeByID(h.id)
		*log = append(*log, fmt.Sprintf("  %s.Close() -> %v (orphaned %v)", h.desc, err, h.orphaned))
		if h.orphaned {
			if err != nil {
				return fmt.Errorf("%s.Close of an orphaned File: %v", h.desc, err)
			}
			return nil
		}
		if n == nil {
			return fmt.Errorf("%s: model lost a non-orphaned file", h.desc)
		}
		if err != nil {
			if !errors.Is(err, ext4edit.ErrNoSpace) {
				return fmt.Errorf("%s.Close: %v", h.desc, err)
			}
			got, rerr := img.ReadFile(mm.pathOf(h.id))
			if rerr != nil || !bytes.HasPrefix(h.data, got) {
				return fmt.Errorf("%s.Close out of space, then the file holds %d bytes (%v), not a prefix", h.desc, len(got), rerr)
			}
			h.data = got
		}
		n.data = h.data
		return nil
	}
	closeAll := func(mm *model) error {
		for len(handles) > 0 {
			if err := closeHandle(handles[0], mm); err != nil {
				return err
			}
		}
		return nil
	}
	for i := 0; i < maxOps && len(r.b) > 0; i++ {
		op := r.next() % 21
		mm := m.clone()
		var opened *openFile
		var desc string
		var ierr, merr error
		tolerate := func(err error) bool {
			return errors.Is(err, ext4edit.ErrNoSpace) || errors.Is(err, ext4edit.ErrTooManyLinks)
		}
		switch op {
		case 0:
			p, perm := r.path(), pick(r, edPerms)
			desc = fmt.Sprintf("Mkdir(%q, %o)", p, perm)
			ierr, merr = img.Mkdir(p, fileMode(perm)), mm.mkdir(p, perm)
		case 1:
			p, perm := r.path(), pick(r, edPerms)
			if r.next()&1 == 1 {
				p = path.Join(p, pick(r, edNames))
			}
			desc = fmt.Sprintf("MkdirAll(%q, %o)", p, perm)
			ierr, merr = img.MkdirAll(p, fileMode(perm)), mm.mkdirAll(p, perm)
		case 2, 15:
			p, perm, size, seed := r.path(), pick(r, edPerms), pick(r, edSizes), r.next()
			d := pattern(size, seed)
			if op == 2 {
				desc = fmt.Sprintf("WriteFile(%q, %d bytes, %o)", p, size, perm)
				ierr = img.WriteFile(p, d, fileMode(perm))
			} else {
				desc = fmt.Sprintf("Create+Write(%q, %d bytes, %o)", p, size, perm)
				ierr = streamWrite(img, p, d, fileMode(perm))
				if perr := partial(desc, ierr); perr != nil {
					return perr
				}
				var sw *streamErr
				if errors.As(ierr, &sw) && tolerate(sw.err) {
					// Out of space mid-stream: the file keeps a prefix.
					got, err := img.ReadFile(p)
					if err != nil || !bytes.HasPrefix(d, got) {
						return fmt.Errorf("%s: out of space mid-stream, then the file holds %d bytes (%v), not a prefix", desc, len(got), err)
					}
					d, ierr = got, nil
				}
			}
			merr = mm.writeFile(p, d, perm)
		case 3:
			p := r.path()
			desc = fmt.Sprintf("Remove(%q)", p)
			ierr, merr = img.Remove(p), mm.remove(p)
		case 4:
			p := r.path()
			if r.next()&1 == 1 {
				p = path.Dir(p)
			}
			desc = fmt.Sprintf("RemoveAll(%q)", p)
			ierr, merr = img.RemoveAll(p), mm.removeAll(p)
		case 5:
			p, q := r.path(), r.path()
			desc = fmt.Sprintf("Rename(%q, %q)", p, q)
			ierr, merr = img.Rename(p, q), mm.rename(p, q)
		case 6:
			tg, p := pick(r, edTargets), r.path()
			desc = fmt.Sprintf("Symlink(%q, %q)", tg, p)
			ierr = img.Symlink(tg, p)
			merr = mm.newNode(p, &mnode{kind: 'l', perm: 0o777, target: tg, xattrs: map[string][]byte{}})
		case 7:
			p, q := r.path(), r.path()
			desc = fmt.Sprintf("Link(%q, %q)", p, q)
			ierr, merr = img.Link(p, q), mm.link(p, q)
		case 8:
			p, perm := r.path(), pick(r, edPerms)
			desc = fmt.Sprintf("Chmod(%q, %o)", p, perm)
			ierr = img.Chmod(p, fileMode(perm))
			if res, err := mm.existing(p, true); err != nil {
				merr = err
			} else {
				res.in.perm = perm
			}
		case 9, 10:
			p, uid, gid := r.path(), pick(r, edIDs), pick(r, edIDs)
			follow := op == 10
			if follow {
				desc = fmt.Sprintf("Chown(%q, %d, %d)", p, uid, gid)
				ierr = img.Chown(p, uid, gid)
			} else {
				desc = fmt.Sprintf("Lchown(%q, %d, %d)", p, uid, gid)
				ierr = img.Lchown(p, uid, gid)
			}
			if res, err := mm.existing(p, follow); err != nil {
				merr = err
			} else {
				res.in.uid, res.in.gid = uint32(uid), uint32(gid)
			}
		case 11:
			p, xn, xs, seed := r.path(), pick(r, edXNames), pick(r, edXSizes), r.next()
			v := pattern(xs, seed)
			desc = fmt.Sprintf("SetXattr(%q, %q, %d bytes)", p, xn, xs)
			ierr = img.SetXattr(p, xn, v)
			if res, err := mm.existing(p, false); err != nil {
				merr = err
			} else {
				res.in.xattrs[xn] = v
				total := 0
				for k, v := range res.in.xattrs {
					total += len(k) + len(v) + 20
				}
				if total > 400 {
					// Big attribute sets may not fit (one block): either
					// outcome is valid, the image must match it.
					tolerate = func(error) bool { return true }
				}
			}
		case 12:
			p, xn := r.path(), pick(r, edXNames)
			desc = fmt.Sprintf("RemoveXattr(%q, %q)", p, xn)
			ierr = img.RemoveXattr(p, xn)
			if res, err := mm.existing(p, false); err != nil {
				merr = err
			} else if _, ok := res.in.xattrs[xn]; !ok {
				merr = errMNotExist
			} else {
				delete(res.in.xattrs, xn)
			}
		case 13:
			desc = "Sync()"
			if err := closeAll(mm); err != nil {
				return err
			}
			if err := img.Sync(); err != nil {
				return fmt.Errorf("Sync: %v", err)
			}
		case 14:
			desc = "Close()+Open()"
			if err := closeAll(mm); err != nil {
				return err
			}
			err := img.Close()
			img = nil
			if err != nil {
				return fmt.Errorf("Close: %v", err)
			}
			if img, err = ext4edit.Open(name, opts); err != nil {
				return fmt.Errorf("reopen: %v", err)
			}
			if err := compareImage(img, mm); err != nil {
				*log = append(*log, desc)
				return fmt.Errorf("after reopen the image differs from the model:\n%v", err)
			}
		case 16:
			p := r.path()
			if r.next()&1 == 0 {
				desc = fmt.Sprintf("Mknod(%q, fifo)", p)
				ierr = img.Mknod(p, fs.ModeNamedPipe|0o640, 0, 0)
				merr = mm.newNode(p, &mnode{kind: 'p', perm: 0o640, xattrs: map[string][]byte{}})
			} else {
				major, minor := uint32(r.next()), uint32(r.next())*300
				desc = fmt.Sprintf("Mknod(%q, char %d:%d)", p, major, minor)
				ierr = img.Mknod(p, fs.ModeDevice|fs.ModeCharDevice|0o600, major, minor)
				merr = mm.newNode(p, &mnode{kind: 'c', perm: 0o600, major: major, minor: minor, xattrs: map[string][]byte{}})
			}
		case 17:
			p, perm := r.path(), pick(r, edPerms)
			if len(handles) >= 2 {
				desc = "(third open File skipped)"
				break
			}
			desc = fmt.Sprintf("Create(%q, %o) [left open]", p, perm)
			var f *ext4edit.File
			f, ierr = img.Create(p, fileMode(perm))
			if merr = mm.writeFile(p, []byte{}, perm); merr == nil {
				res, err := mm.existing(p, true)
				if err != nil {
					return fmt.Errorf("model: %s created nothing: %v", desc, err)
				}
				opened = &openFile{id: res.in.id, desc: fmt.Sprintf("File(%q#%d)", p, i)}
			}
			if ierr == nil && opened != nil {
				opened.f = f
			} else if ierr == nil {
				f.Close()
			}
		case 18:
			size, seed := pick(r, []int{1, 100, 4096, 5000, 70000}), r.next()
			if len(handles) == 0 {
				desc = "(write without an open File skipped)"
				break
			}
			h := handles[int(seed)%len(handles)]
			d := pattern(size, seed)
			desc = fmt.Sprintf("%s.Write(%d bytes)", h.desc, size)
			n, err := h.f.Write(d)
			h.data = append(h.data, d[:n]...)
			if perr := partial(desc, err); perr != nil {
				return perr
			}
			if err != nil && !errors.Is(err, ext4edit.ErrNoSpace) {
				return fmt.Errorf("%s: %v", desc, err)
			}
		case 19:
			sel := r.next()
			if len(handles) == 0 {
				desc = "(close without an open File skipped)"
				break
			}
			desc = "File.Close()"
			if err := closeHandle(handles[int(sel)%len(handles)], mm); err != nil {
				return err
			}
		case 20:
			// A resize leaves the tree as it is: the model does not
			// change. Files must be closed first (Resize refuses open
			// ones); a shrink the content (or the journal a filesystem
			// without one borrows) does not fit, and a feature mix
			// resize does not handle, are refused.
			if err := closeAll(mm); err != nil {
				return err
			}
			cur := img.Size()
			var size int64
			switch r.next() % 5 {
			case 0:
				size = cur * 3 / 2
			case 1:
				size = min(cur*4, 64<<20)
			case 2:
				size = cur * 3 / 4
			case 3:
				size = cur / 2
			case 4:
				desc = "MinSize()"
				if size, ierr = img.MinSize(); ierr != nil {
					if perr := partial(desc, ierr); perr != nil {
						return perr
					}
					return fmt.Errorf("%s: %v", desc, ierr)
				}
			}
			desc = fmt.Sprintf("Resize(%d) from %d", size, cur)
			ierr = img.Resize(size)
			if ierr != nil && (errors.Is(ierr, ext4edit.ErrNoSpace) || errors.Is(ierr, ext4edit.ErrUnsupportedFeature)) {
				*log = append(*log, fmt.Sprintf("%s -> %v (refused)", desc, ierr))
				ierr, desc = nil, desc+" (refused)"
				if img.Size() != cur {
					return fmt.Errorf("%s: refused, but the size went from %d to %d", desc, cur, img.Size())
				}
			} else if ierr == nil {
				if err := compareImage(img, mm); err != nil {
					*log = append(*log, desc)
					return fmt.Errorf("after %s the image differs from the model:\n%v", desc, err)
				}
			}
		}
		if perr := partial(desc, ierr); perr != nil {
			return perr
		}
		*log = append(*log, fmt.Sprintf("%s -> %v (model: %v)", desc, ierr, merr))
		switch {
		case ierr == nil && merr == nil:
			m = mm
			for _, h := range handles {
				if slices.Contains(m.truncated, h.id) || m.nodeByID(h.id) == nil {
					h.orphaned = true
				}
			}
			if opened != nil {
				handles = append(handles, opened)
			}
		case ierr != nil && merr != nil:
		case ierr != nil:
			if !tolerate(ierr) {
				return fmt.Errorf("%s failed: %v; the model says it is valid", desc, ierr)
			}
		default:
			return fmt.Errorf("%s succeeded; the model says it fails: %v", desc, merr)
		}
	}
	if err := closeAll(m); err != nil {
		return err
	}
	err = img.Close()
	img = nil
	if err != nil {
		return fmt.Errorf("Close: %v", err)
	}
	ro, err := ext4edit.Open(name, &ext4edit.Options{ReadOnly: true, NoLock: true})
	if err != nil {
		return fmt.Errorf("read-only reopen: %v", err)
	}
	err = compareImage(ro, m)
	ro.Close()
	if err != nil {
		return fmt.Errorf("the image differs from the model:\n%v", err)
	}
	if ok, ran, out := fsckClean(name); ran && !ok {
		return fmt.Errorf("e2fsck -fn is not clean:\n%s", out)
	}
	return nil
}

// openFile is a File FuzzEdits keeps open across operations.
type openFile struct {
	f        *ext4edit.File
	id       int64 // the model node it writes to
	data     []byte
	orphaned bool
	desc     string
}

// streamErr marks an error of File.Write or File.Close (after Create
// succeeded), where the file may keep a prefix of the data.
type streamErr struct{ err error }

func (e *streamErr) Error() string { return e.err.Error() }
func (e *streamErr) Unwrap() error { return e.err }

func streamWrite(img *ext4edit.Image, p string, d []byte, mode fs.FileMode) error {
	f, err := img.Create(p, mode)
	if err != nil {
		return err
	}
	for len(d) > 0 {
		n := min(len(d), 1+len(d)/3)
		if _, err := f.Write(d[:n]); err != nil {
			f.Close()
			return &streamErr{err}
		}
		d = d[n:]
	}
	if err := f.Close(); err != nil {
		return &streamErr{err}
	}
	return nil
}

// FuzzBuildTar applies a tar stream to a fresh image through the public
// API. The applier is a minimal one written for this test (the real
// tar-to-ext4 builder, BuildExt4, is being written elsewhere): each entry
// becomes MkdirAll/WriteFile/Symlink/Link/Mknod plus Chmod/Lchown/
// SetXattr/Chtimes; refused entries are skipped. Afterwards the image must
// close cleanly, read back (every regular file holds the bytes last
// written to its inode) and pass e2fsck -fn.
func FuzzBuildTar(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		base, err := tarBase()
		if err != nil {
			t.Fatal(err)
		}
		name := scratchFile(t)
		if err := writeChunks(name, base.size, base.chunks); err != nil {
			t.Fatal(err)
		}
		guard(t, "tar", 2*inputTimeout, func() error { return applyTar(name, data) })
	})
}

var tarBase = sync.OnceValues(func() (*baseImage, error) {
	dir, err := scratch()
	if err != nil {
		return nil, err
	}
	p := path.Join(dir, "base-tar")
	img, err := ext4edit.Mkfs(p, 16<<20, &ext4edit.MkfsOptions{InodeRatio: 8192})
	if err != nil {
		return nil, err
	}
	if err := img.Close(); err != nil {
		return nil, err
	}
	size, chunks, err := imageChunks(p)
	os.Remove(p)
	return &baseImage{name: "tar", size: size, chunks: chunks}, err
})

const (
	tarMaxEntries = 256
	tarMaxData    = 4 << 20
)

func applyTar(name string, data []byte) error {
	img, err := ext4edit.Open(name, &ext4edit.Options{NoLock: true})
	if err != nil {
		return fmt.Errorf("open base: %v", err)
	}
	content := map[uint32][32]byte{} // inode -> sha256 of the last bytes written to it
	ino := func(p string, follow bool) (uint32, uint16, bool) {
		var fi fs.FileInfo
		var err error
		if follow {
			fi, err = img.Stat(p)
		} else {
			fi, err = img.Lstat(p)
		}
		if err != nil {
			return 0, 0, false
		}
		ii := fi.Sys().(*ext4edit.InodeInfo)
		return ii.Ino, ii.LinksCount, true
	}
	// removeNonDir makes way for an entry, like tar does.
	removeNonDir := func(p string) {
		fi, err := img.Lstat(p)
		if err != nil || fi.IsDir() {
			return
		}
		n, links, _ := ino(p, false)
		if img.Remove(p) == nil && links <= 1 {
			delete(content, n)
		}
	}
	tr := tar.NewReader(bytes.NewReader(data))
	total := 0
	for i := 0; i < tarMaxEntries; i++ {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		p := path.Clean("/" + hdr.Name)
		perm := hdr.FileInfo().Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
		if p == "/" {
			_ = img.Chmod(p, perm)
			continue
		}
		parent := path.Dir(p)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if img.MkdirAll(p, perm) == nil {
				_ = img.Chmod(p, perm)
				_ = img.Lchown(p, hdr.Uid, hdr.Gid)
			}
		case tar.TypeReg, '\x00', tar.TypeCont:
			body, _ := io.ReadAll(io.LimitReader(tr, int64(tarMaxData-total)))
			total += len(body)
			if img.MkdirAll(parent, 0o755) != nil {
				continue
			}
			removeNonDir(p)
			if img.WriteFile(p, body, perm) == nil {
				if n, _, ok := ino(p, true); ok {
					content[n] = sha256.Sum256(body)
				}
				_ = img.Chmod(p, perm)
				_ = img.Chown(p, hdr.Uid, hdr.Gid)
			}
		case tar.TypeSymlink:
			if img.MkdirAll(parent, 0o755) != nil {
				continue
			}
			removeNonDir(p)
			if img.Symlink(hdr.Linkname, p) == nil {
				_ = img.Lchown(p, hdr.Uid, hdr.Gid)
			}
		case tar.TypeLink:
			if img.MkdirAll(parent, 0o755) != nil {
				continue
			}
			removeNonDir(p)
			_ = img.Link(path.Clean("/"+hdr.Linkname), p)
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			if img.MkdirAll(parent, 0o755) != nil {
				continue
			}
			removeNonDir(p)
			mode := fs.ModeNamedPipe
			switch hdr.Typeflag {
			case tar.TypeChar:
				mode = fs.ModeDevice | fs.ModeCharDevice
			case tar.TypeBlock:
				mode = fs.ModeDevice
			}
			if img.Mknod(p, mode|perm, uint32(hdr.Devmajor), uint32(hdr.Devminor)) == nil {
				_ = img.Lchown(p, hdr.Uid, hdr.Gid)
			}
		default:
			continue
		}
		for k, v := range hdr.PAXRecords {
			if a, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				_ = img.SetXattr(p, a, []byte(v))
			}
		}
		if hdr.Typeflag != tar.TypeSymlink && !hdr.ModTime.IsZero() {
			_ = img.Chtimes(p, hdr.AccessTime, hdr.ModTime)
		}
	}
	if err := img.Close(); err != nil {
		return fmt.Errorf("Close: %v", err)
	}
	ro, err := ext4edit.Open(name, &ext4edit.Options{ReadOnly: true, NoLock: true})
	if err != nil {
		return fmt.Errorf("read-only reopen: %v", err)
	}
	defer ro.Close()
	var problems []string
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		ents, err := ro.ReadDir(dir)
		if err != nil {
			problems = append(problems, fmt.Sprintf("readdir %s: %v", dir, err))
			return
		}
		for _, e := range ents {
			p := path.Join(dir, e.Name())
			fi, err := ro.Lstat(p)
			if err != nil {
				problems = append(problems, fmt.Sprintf("lstat %s: %v", p, err))
				continue
			}
			if _, err := ro.ListXattr(p); err != nil {
				problems = append(problems, fmt.Sprintf("listxattr %s: %v", p, err))
			}
			ii := fi.Sys().(*ext4edit.InodeInfo)
			switch {
			case fi.IsDir():
				if depth < 64 {
					walk(p, depth+1)
				}
			case fi.Mode()&fs.ModeSymlink != 0:
				if _, err := ro.Readlink(p); err != nil {
					problems = append(problems, fmt.Sprintf("readlink %s: %v", p, err))
				}
			case fi.Mode().IsRegular():
				b, err := ro.ReadFile(p)
				if err != nil {
					problems = append(problems, fmt.Sprintf("read %s: %v", p, err))
				} else if want, ok := content[ii.Ino]; ok && sha256.Sum256(b) != want {
					problems = append(problems, fmt.Sprintf("%s (inode %d): content is not what was last written", p, ii.Ino))
				}
			}
		}
	}
	walk("/", 0)
	if len(problems) > 0 {
		return fmt.Errorf("read-back:\n%s", strings.Join(problems, "\n"))
	}
	if ok, ran, out := fsckClean(name); ran && !ok {
		return fmt.Errorf("e2fsck -fn is not clean:\n%s", out)
	}
	return nil
}
