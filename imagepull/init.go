package imagepull

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
)

// InitSystem names the init system InjectGuestAgents installs for.
type InitSystem string

// The init systems. InitAuto, like the zero value, detects it from the
// image (DetectInit) and fails with ErrNoInit when nothing is found. The
// others force a choice.
const (
	InitAuto     InitSystem = "auto"
	InitSystemd  InitSystem = InitSystem(guestassets.Systemd)
	InitSysvinit InitSystem = InitSystem(guestassets.Sysvinit)
	InitOpenRC   InitSystem = InitSystem(guestassets.OpenRC)
	InitBusybox  InitSystem = InitSystem(guestassets.Busybox)
)

// InitSystems lists the values ParseInitSystem accepts besides auto.
func InitSystems() []InitSystem {
	return []InitSystem{InitSystemd, InitSysvinit, InitOpenRC, InitBusybox}
}

// ParseInitSystem parses a --init value: auto, systemd, sysvinit, openrc
// or busybox (case-insensitive); "" is the zero value.
func ParseInitSystem(s string) (InitSystem, error) {
	v := InitSystem(strings.ToLower(strings.TrimSpace(s)))
	if v == "" || v == InitAuto {
		return v, nil
	}
	for _, i := range InitSystems() {
		if v == i {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown init system %q (want auto, systemd, sysvinit, openrc or busybox)", s)
}

// ErrNoInit: the image shows none of the init systems DetectInit knows.
var ErrNoInit = errors.New("no init system found")

// Where DetectInit looks.
var (
	initPaths       = []string{"/sbin/init", "/usr/sbin/init"}
	openrcPaths     = []string{"/sbin/openrc", "/usr/sbin/openrc"}
	systemdBinaries = []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"}
	systemdUnitDirs = []string{"/lib/systemd/system", "/usr/lib/systemd/system", "/etc/systemd/system"}
	rcDirs          = []string{"/etc/rcS.d", "/etc/rc0.d", "/etc/rc1.d", "/etc/rc2.d", "/etc/rc3.d", "/etc/rc4.d", "/etc/rc5.d", "/etc/rc6.d"}
)

// DetectInit tells which init system img boots with, reading only. It
// decides by the first of these that holds (symlinks are followed inside
// the image, so /sbin -> usr/sbin and /sbin/init -> ../bin/busybox
// resolve as the guest would):
//
//  1. /sbin/init (else /usr/sbin/init) resolves to systemd's binary
//     (.../lib/systemd/systemd): systemd.
//  2. OpenRC is installed: /sbin/openrc or /usr/sbin/openrc is a file and
//     /etc/runlevels a directory. OpenRC runs its services whether the
//     init is its own openrc-init, busybox's (Alpine: /sbin/init ->
//     /bin/busybox, an inittab running `openrc sysinit`) or sysvinit's
//     (Debian's openrc package, an inittab calling openrc); its services
//     are what those images' admins manage, so that is what we install.
//  3. /sbin/init resolves to busybox: busybox init.
//  4. /sbin/init is another regular file (sysvinit's), /etc/init.d is a
//     directory with at least one /etc/rc?.d beside it, and /etc/inittab,
//     if present, is not busybox's: sysvinit with sysv-rc.
//  5. No usable /sbin/init but systemd's binary exists with a unit
//     directory (images that boot with init=/lib/systemd/systemd):
//     systemd.
//
// None: an error wrapping ErrNoInit that names what was looked for.
func DetectInit(img *ext4edit.Image) (InitSystem, error) {
	initBin, initReg := "", false
	for _, p := range initPaths {
		if r, ok := resolveFile(img, p); ok {
			initBin, initReg = r, true
			break
		}
	}
	if initReg && isSystemdBinary(initBin) {
		return InitSystemd, nil
	}
	if anyFile(img, openrcPaths) && isDir(img, "/etc/runlevels") {
		return InitOpenRC, nil
	}
	if initReg && path.Base(initBin) == "busybox" {
		return InitBusybox, nil
	}
	if initReg && isDir(img, guestassets.InitDir) && anyDir(img, rcDirs) && !busyboxInittab(img) {
		return InitSysvinit, nil
	}
	if anyFile(img, systemdBinaries) && anyDir(img, systemdUnitDirs) {
		return InitSystemd, nil
	}
	return "", fmt.Errorf("%w: looked for %s resolving to systemd (%s), busybox or sysvinit's init with %s and /etc/rc?.d; OpenRC (%s with /etc/runlevels); systemd's binary with its unit directories; name the init to install for (InjectOptions.Init, --init)",
		ErrNoInit, strings.Join(initPaths, " or "), strings.Join(systemdBinaries, ", "), guestassets.InitDir, strings.Join(openrcPaths, " or "))
}

// isSystemdBinary: .../lib/systemd/systemd (Debian's /lib, merged /usr,
// Arch's /usr/lib all end so).
func isSystemdBinary(p string) bool {
	return path.Base(p) == "systemd" && strings.HasSuffix(path.Dir(p), "lib/systemd")
}

// busyboxInittab reports an /etc/inittab in busybox's syntax: entries
// with busybox-only actions (askfirst) or no initdefault and no runlevel
// field anywhere, where sysvinit's always has "id:N:initdefault:".
func busyboxInittab(img *ext4edit.Image) bool {
	b, err := img.ReadFile(guestassets.InittabPath)
	if err != nil {
		return false
	}
	sysv := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.SplitN(line, ":", 4)
		if len(f) < 4 {
			continue
		}
		if f[2] == "askfirst" {
			return true
		}
		if f[2] == "initdefault" || f[1] != "" {
			sysv = true
		}
	}
	return !sysv
}

// resolveFile follows p's symlinks inside the image and returns the
// regular file it names.
func resolveFile(img *ext4edit.Image, p string) (string, bool) {
	r, err := realpath(img, p)
	if err != nil {
		return "", false
	}
	fi, err := img.Lstat(r)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return r, true
}

// realpath resolves every symlink in p the way the guest's kernel would
// with the image as its root ("/.." is "/"), giving up after 40 links.
func realpath(img *ext4edit.Image, p string) (string, error) {
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := img.Lstat(next)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", &fs.PathError{Op: "resolve", Path: p, Err: errors.New("too many levels of symbolic links")}
		}
		t, err := img.Readlink(next)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(t, "/") {
			cur = "/"
		}
		rest = append(strings.Split(t, "/"), rest...)
	}
	return cur, nil
}

func anyFile(img *ext4edit.Image, paths []string) bool {
	for _, p := range paths {
		if _, ok := resolveFile(img, p); ok {
			return true
		}
	}
	return false
}

func isDir(img *ext4edit.Image, p string) bool {
	fi, err := img.Stat(p)
	return err == nil && fi.IsDir()
}

func anyDir(img *ext4edit.Image, paths []string) bool {
	for _, p := range paths {
		if isDir(img, p) {
			return true
		}
	}
	return false
}

// resolveInit turns opts.Init into the init to install for.
func resolveInit(img *ext4edit.Image, want InitSystem) (InitSystem, error) {
	switch want {
	case InitAuto, "":
		return DetectInit(img)
	}
	// Exactly one of the names: ParseInitSystem is where spelling
	// variants are forgiven.
	if !slices.Contains(InitSystems(), want) {
		return "", fmt.Errorf("unknown init system %q (want auto, systemd, sysvinit, openrc or busybox)", want)
	}
	return want, nil
}

// initReports carries the init InjectGuestAgents installed for back to
// Pull, which records it in image.json: Pull registers the image it
// hands its Finalize step, InjectGuestAgents fills the slot of a
// registered image (whichever step calls it), Pull reads and removes it.
// Images no Pull registered are never stored, so nothing accumulates.
var initReports sync.Map // *ext4edit.Image -> *InitSystem

func reportInit(img *ext4edit.Image, sys InitSystem) {
	if v, ok := initReports.Load(img); ok {
		*v.(*InitSystem) = sys
	}
}

// watchInit registers img and returns a function that unregisters it and
// tells the init reported (empty if none was).
func watchInit(img *ext4edit.Image) func() InitSystem {
	slot := new(InitSystem)
	initReports.Store(img, slot)
	return func() InitSystem {
		initReports.Delete(img)
		return *slot
	}
}

// hasLine reports whether text holds line (without its newline) as a
// whole line.
func hasLine(text, line []byte) bool {
	for _, l := range bytes.Split(text, []byte("\n")) {
		if bytes.Equal(l, line) {
			return true
		}
	}
	return false
}

// appended is what a guestassets.Append makes of the current content
// (nil, exists=false for a missing file); changed is false when every
// line is already there.
func appended(a guestassets.Append, cur []byte, exists bool) (out []byte, changed bool) {
	if !exists {
		return append(append([]byte(nil), a.Default...), a.Lines...), true
	}
	out = append([]byte(nil), cur...)
	for _, l := range bytes.SplitAfter(a.Lines, []byte("\n")) {
		if len(l) == 0 || hasLine(cur, bytes.TrimSuffix(l, []byte("\n"))) {
			continue
		}
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, l...)
		changed = true
	}
	return out, changed
}
