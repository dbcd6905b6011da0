package script

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/banger/ext4kit/ext4edit"
)

// request is one entry of the request table.
type request struct {
	usage  string
	writes bool // changes the image: refused by a read-only Runner
	run    func(r *Runner, args []string) error
}

// requests maps every name and alias debugfs accepts to its request.
var requests = func() map[string]*request {
	table := []struct {
		names []string
		req   request
	}{
		{[]string{"mkdir"}, request{"[-p] PATH", true, doMkdir}},
		{[]string{"write"}, request{"HOSTFILE PATH", true, doWrite}},
		{[]string{"symlink"}, request{"PATH TARGET", true, doSymlink}},
		{[]string{"set_inode_field", "sif"}, request{"PATH FIELD VALUE", true, doSetInodeField}},
		{[]string{"link", "ln"}, request{"SRC DEST", true, doLink}},
		{[]string{"rm", "unlink"}, request{"PATH", true, doRm}},
		{[]string{"rmdir"}, request{"PATH", true, doRmdir}},
		{[]string{"mknod"}, request{"PATH p|c|b [MAJOR MINOR]", true, doMknod}},
		{[]string{"cd"}, request{"PATH", false, doCd}},
		{[]string{"show_inode_info", "stat"}, request{"PATH", false, doStat}},
		{[]string{"list_directory", "ls"}, request{"[-l] [-p] [PATH]", false, doLs}},
		{[]string{"cat"}, request{"PATH", false, doCat}},
		{[]string{"dump_inode", "dump"}, request{"[-p] PATH HOSTFILE", false, doDump}},
	}
	m := make(map[string]*request)
	for i := range table {
		for _, name := range table[i].names {
			m[name] = &table[i].req
		}
	}
	return m
}()

// getopt splits leading single-letter options (from allowed) off args, as
// debugfs's getopt does; "--" ends the options.
func getopt(args []string, allowed string) (opts string, rest []string, err error) {
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' {
		if args[0] == "--" {
			return opts, args[1:], nil
		}
		for _, c := range args[0][1:] {
			if !strings.ContainsRune(allowed, c) {
				return "", nil, errUsage
			}
			opts += string(c)
		}
		args = args[1:]
	}
	return opts, args, nil
}

const dirPerm = 0o755 // debugfs: 0777 &^ its umask 022

func doMkdir(r *Runner, args []string) error {
	opts, args, err := getopt(args, "p")
	if err != nil || len(args) != 1 {
		return errUsage
	}
	name := r.abs(args[0])
	if strings.Contains(opts, "p") {
		return r.Img.MkdirAll(name, dirPerm)
	}
	err = r.Img.Mkdir(name, dirPerm)
	if errors.Is(err, fs.ErrExist) {
		if fi, serr := r.Img.Lstat(name); serr == nil && fi.IsDir() {
			return notice("directory already exists")
		}
	}
	return err
}

// permBits are the mode bits a host file carries into the image and back
// (debugfs: st_mode & ~S_IFMT): permissions plus setuid, setgid, sticky.
const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

func doWrite(r *Runner, args []string) error {
	if len(args) != 2 {
		return errUsage
	}
	name := r.abs(args[1])
	src, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "write", Path: args[0], Err: ext4edit.ErrIsDir}
	}
	// debugfs's write never replaces an existing file.
	if _, err := r.Img.Lstat(name); err == nil {
		return &fs.PathError{Op: "write", Path: name, Err: fs.ErrExist}
	}
	f, err := r.Img.Create(name, fi.Mode()&permBits)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// Leave no half-written file behind.
		return errors.Join(err, r.Img.Remove(name))
	}
	return nil
}

func doSymlink(r *Runner, args []string) error {
	if len(args) != 2 {
		return errUsage
	}
	return r.Img.Symlink(args[1], r.abs(args[0]))
}

func doSetInodeField(r *Runner, args []string) error {
	if len(args) != 3 {
		return errUsage
	}
	name := r.abs(args[0])
	var a ext4edit.Attr
	if err := setField(&a, args[1], args[2]); err != nil {
		return err
	}
	if a.Mode != nil {
		ii, err := lstatInode(r.Img, name)
		if err != nil {
			return err
		}
		if have, want := ii.Mode&sIFMT, *a.Mode&sIFMT; have != want {
			return fmt.Errorf("mode %#o would change %s from %s to %s; give the whole i_mode (for example %#o)",
				*a.Mode, name, typeName(ii.Mode), typeName(*a.Mode), have|*a.Mode&0o7777)
		}
	}
	return r.Img.Lsetattr(name, a)
}

// setField parses value for the inode field named field (debugfs's names,
// with or without the "i_" prefix) into a.
func setField(a *ext4edit.Attr, field, value string) error {
	name := strings.TrimPrefix(field, "i_")
	var (
		t   time.Time
		v   uint64
		err error
	)
	switch name {
	case "atime", "mtime", "ctime", "crtime":
		t, err = parseTime(value, time.Now)
	case "mode", "links_count":
		v, err = parseUint(value, 16)
	case "uid", "gid", "generation", "flags":
		v, err = parseUint(value, 32)
	default:
		return fmt.Errorf("invalid field specifier: %s (supported: uid gid mode links_count generation flags atime mtime ctime crtime)", field)
	}
	if err != nil {
		return fmt.Errorf("field %s: %w", name, err)
	}
	v16, v32 := uint16(v), uint32(v)
	switch name {
	case "atime":
		a.Atime = &t
	case "mtime":
		a.Mtime = &t
	case "ctime":
		a.Ctime = &t
	case "crtime":
		a.Crtime = &t
	case "mode":
		a.Mode = &v16
	case "links_count":
		a.LinksCount = &v16
	case "uid":
		a.UID = &v32
	case "gid":
		a.GID = &v32
	case "generation":
		a.Generation = &v32
	case "flags":
		a.Flags = &v32
	}
	return nil
}

func doLink(r *Runner, args []string) error {
	if len(args) != 2 {
		return errUsage
	}
	src, dst := r.abs(args[0]), r.abs(args[1])
	// Like debugfs (and ln), a destination directory receives the link
	// under the source's name.
	if fi, err := r.Img.Stat(dst); err == nil && fi.IsDir() {
		dst = path.Join(dst, path.Base(src))
	}
	return r.Img.Link(src, dst)
}

func doRm(r *Runner, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	name := r.abs(args[0])
	fi, err := r.Img.Lstat(name)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return &fs.PathError{Op: "rm", Path: name, Err: ext4edit.ErrIsDir}
	}
	return r.Img.Remove(name)
}

func doRmdir(r *Runner, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	name := r.abs(args[0])
	fi, err := r.Img.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "rmdir", Path: name, Err: ext4edit.ErrNotDir}
	}
	return r.Img.Remove(name)
}

func doMknod(r *Runner, args []string) error {
	var (
		mode         fs.FileMode
		major, minor uint64
		err          error
	)
	switch {
	case len(args) == 2 && args[1] == "p":
		mode = fs.ModeNamedPipe
	case len(args) == 4 && (args[1] == "c" || args[1] == "b"):
		mode = fs.ModeDevice
		if args[1] == "c" {
			mode |= fs.ModeCharDevice
		}
		if major, err = parseUint(args[2], 16); err != nil {
			return fmt.Errorf("major: %w", err)
		}
		if minor, err = parseUint(args[3], 16); err != nil {
			return fmt.Errorf("minor: %w", err)
		}
	default:
		return errUsage
	}
	// debugfs gives new nodes no permission bits; sif mode sets them.
	return r.Img.Mknod(r.abs(args[0]), mode, uint32(major), uint32(minor))
}

func doCd(r *Runner, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	name := r.abs(args[0])
	fi, err := r.Img.Lstat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return &fs.PathError{Op: "cd", Path: name, Err: ext4edit.ErrNotDir}
	}
	r.Cwd = name
	return nil
}

func doStat(r *Runner, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	name := r.abs(args[0])
	ii, err := lstatInode(r.Img, name)
	if err != nil {
		return err
	}
	var target string
	if isFastSymlink(ii) {
		if target, err = r.Img.Readlink(name); err != nil {
			return err
		}
	}
	writeStat(r.stdout(), ii, target)
	return nil
}

func doLs(r *Runner, args []string) error {
	opts, args, err := getopt(args, "lp")
	if err != nil || len(args) > 1 {
		return errUsage
	}
	dir := r.abs(".")
	if len(args) == 1 {
		dir = r.abs(args[0])
	}
	self, err := lstatInode(r.Img, dir)
	if err != nil {
		return err
	}
	if self.Mode&sIFMT != sIFDIR {
		return &fs.PathError{Op: "ls", Path: dir, Err: ext4edit.ErrNotDir}
	}
	parent, err := lstatInode(r.Img, path.Dir(dir))
	if err != nil {
		return err
	}
	entries, err := r.Img.ReadDir(dir)
	if err != nil {
		return err
	}
	list := []dirEntry{{".", self}, {"..", parent}}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return err
		}
		ii, err := inodeOf(fi)
		if err != nil {
			return err
		}
		list = append(list, dirEntry{e.Name(), ii})
	}
	format := lsShort
	switch {
	case strings.Contains(opts, "p"):
		format = lsParseable
	case strings.Contains(opts, "l"):
		format = lsLong
	}
	writeList(r.stdout(), list, format)
	return nil
}

func doCat(r *Runner, args []string) error {
	if len(args) != 1 {
		return errUsage
	}
	return r.copyOut(r.abs(args[0]), func() (io.WriteCloser, error) { return nopCloser{r.stdout()}, nil })
}

// copyOut writes the contents of the image file name to the writer
// open returns: whole when ReadFile returns it, streamed when the file is
// too large for that, so a cat or dump of a huge file never holds it in
// memory. open is called only once the file is known readable.
func (r *Runner) copyOut(name string, open func() (io.WriteCloser, error)) error {
	data, err := r.Img.ReadFile(name)
	var src io.Reader = bytes.NewReader(data)
	if errors.Is(err, ext4edit.ErrFileTooLarge) {
		f, oerr := r.Img.FS().Open(strings.TrimPrefix(path.Clean(name), "/"))
		if oerr != nil {
			return err
		}
		defer f.Close()
		src, err = f, nil
	}
	if err != nil {
		return err
	}
	w, err := open()
	if err != nil {
		return err
	}
	_, err = io.Copy(w, src)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func doDump(r *Runner, args []string) error {
	opts, args, err := getopt(args, "p")
	if err != nil || len(args) != 2 {
		return errUsage
	}
	name, host := r.abs(args[0]), args[1]
	err = r.copyOut(name, func() (io.WriteCloser, error) {
		return os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
	})
	if err != nil {
		return err
	}
	if !strings.Contains(opts, "p") {
		return nil
	}
	// -p: mode, owner and times of the inode, as far as the host allows.
	fi, err := r.Img.Stat(name)
	if err != nil {
		return err
	}
	ii, err := inodeOf(fi)
	if err != nil {
		return err
	}
	// chown first: it clears setuid/setgid, which chmod then restores.
	chownErr := os.Chown(host, int(ii.UID), int(ii.GID))
	if err := os.Chmod(host, fi.Mode()&permBits); err != nil {
		return err
	}
	if err := os.Chtimes(host, ii.Atime, ii.Mtime); err != nil {
		return err
	}
	if chownErr != nil {
		return notice(fmt.Sprintf("owner %d:%d not kept: %v", ii.UID, ii.GID, chownErr))
	}
	return nil
}

// lstatInode returns the inode behind name itself.
func lstatInode(img *ext4edit.Image, name string) (*ext4edit.InodeInfo, error) {
	fi, err := img.Lstat(name)
	if err != nil {
		return nil, err
	}
	return inodeOf(fi)
}

func inodeOf(fi fs.FileInfo) (*ext4edit.InodeInfo, error) {
	ii, ok := fi.Sys().(*ext4edit.InodeInfo)
	if !ok {
		return nil, fmt.Errorf("%s: no inode information (%T)", fi.Name(), fi.Sys())
	}
	return ii, nil
}
