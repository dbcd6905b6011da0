package imagepull

import (
	"crypto/sha256"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/banger/ext4kit/ext4edit"
	"github.com/banger/ext4kit/imagepull/guestassets"
	"github.com/banger/ext4kit/internal/paths"
)

// InjectOptions control InjectGuestAgents.
type InjectOptions struct {
	// AgentPath is the banger-vsock-agent binary to install (a static
	// Linux ELF executable built from cmd/banger-vsock-agent). Empty means
	// the companion binary next to the running executable.
	AgentPath string
	// AllowArchMismatch skips the check that the agent is built for the
	// image's architecture (as the ELF header of the image's /bin/sh
	// tells; images without one are not checked).
	AllowArchMismatch bool
	// Init is the init system to install for: InitAuto (or the zero
	// value) detects it (DetectInit) and fails with ErrNoInit, before any
	// write, when the image shows none; the others force a choice (an
	// image DetectInit cannot read, or to override it).
	Init InitSystem
}

// ErrInvalidAgent marks an agent binary that cannot be installed: not an
// ELF file, not an executable, not for Linux, or not for the image's
// architecture. A missing binary wraps fs.ErrNotExist instead.
var ErrInvalidAgent = errors.New("invalid guest agent binary")

// agentPath resolves the agent binary InjectGuestAgents would install.
func (o InjectOptions) agentPath() (string, error) {
	if o.AgentPath != "" {
		return o.AgentPath, nil
	}
	return paths.CompanionBinaryPath(guestassets.AgentName)
}

// InjectGuestAgents installs banger's guest assets (package guestassets)
// into img for its init system (opts.Init; see DetectInit), owned by
// root:root with their modes, and enables them the way the init's own
// tool would: systemctl enable, update-rc.d defaults, rc-update add, or
// entries added to busybox's /etc/inittab. Files it adds lines to
// (/etc/inittab, /etc/modules) keep their content, mode and owner; a
// line already there is not added again. Unless opts.Init names one, an
// image with no init DetectInit knows is an error wrapping ErrNoInit,
// before any write.
// Everything happens in img's current editor session: the caller owns
// Open and Close, and Close commits it all at once.
//
// The agent binary and every obstacle in the image (a non-directory where
// a directory must be, a directory where a file or link goes, a dangling
// symlinked directory) are checked before anything is written, so a
// rejected injection leaves img unchanged. Missing ancestor directories are
// created shallow first (mode 0755, root:root); existing ones, and
// symlinks to directories inside the image (merged /usr, /usr/local/bin ->
// /opt/bin), are used as they are. Existing assets are replaced, so
// running it again gives the same tree.
func InjectGuestAgents(img *ext4edit.Image, opts InjectOptions) error {
	agent, err := openAgent(opts)
	if err != nil {
		return fmt.Errorf("inject guest agents: %w", err)
	}
	defer agent.f.Close()
	if !opts.AllowArchMismatch {
		if err := checkImageArch(img, agent); err != nil {
			return fmt.Errorf("inject guest agents: %w", err)
		}
	}
	initSys, err := resolveInit(img, opts.Init)
	if err != nil {
		return fmt.Errorf("inject guest agents: %w", err)
	}
	gi := guestassets.Init(initSys)
	files, links, appends := guestassets.FilesFor(gi), guestassets.SymlinksFor(gi), guestassets.AppendsFor(gi)
	var targets []string
	for _, f := range files {
		targets = append(targets, f.Path)
	}
	for _, l := range links {
		targets = append(targets, l.Path)
	}
	for _, a := range appends {
		targets = append(targets, a.Path)
	}
	dirs := ancestors(targets)
	missing, err := preflight(img, dirs, targets)
	if err != nil {
		return fmt.Errorf("inject guest agents: %s assets: %w", initSys, err)
	}
	edits, err := preflightAppends(img, missing, appends)
	if err != nil {
		return fmt.Errorf("inject guest agents: %s assets: %w", initSys, err)
	}
	if err := inject(img, agent, dirs, missing, files, links); err != nil {
		return fmt.Errorf("inject guest agents: %s assets: %w", initSys, err)
	}
	if err := applyAppends(img, edits); err != nil {
		return fmt.Errorf("inject guest agents: %s assets: %w", initSys, err)
	}
	reportInit(img, initSys)
	return nil
}

// appendEdit is one guestassets.Append worked out by preflightAppends.
type appendEdit struct {
	a       guestassets.Append
	data    []byte
	created bool
}

// preflightAppends reads the files the assets add lines to and works out
// their new content, before anything is written: each must be a regular
// file (through symlinks inside the image) or absent (an IfExists one
// then stays absent).
func preflightAppends(img *ext4edit.Image, missing map[string]bool, appends []guestassets.Append) ([]appendEdit, error) {
	var out []appendEdit
	for _, a := range appends {
		var cur []byte
		exists := false
		if !missing[path.Dir(a.Path)] {
			fi, err := img.Stat(a.Path)
			switch {
			case err == nil && !fi.Mode().IsRegular():
				return nil, &fs.PathError{Op: "inject", Path: a.Path, Err: fmt.Errorf("a %s is in the way of the lines to add", kind(fi))}
			case err == nil:
				if cur, err = img.ReadFile(a.Path); err != nil {
					return nil, err
				}
				exists = true
			case !errors.Is(err, fs.ErrNotExist):
				return nil, err
			default:
				if li, lerr := img.Lstat(a.Path); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
					target, _ := img.Readlink(a.Path)
					return nil, &fs.PathError{Op: "inject", Path: a.Path, Err: fmt.Errorf("%w: symlink to %q, which does not exist", fs.ErrNotExist, target)}
				}
			}
		}
		if !exists && a.IfExists {
			continue
		}
		data, changed := appended(a, cur, exists)
		if changed {
			out = append(out, appendEdit{a: a, data: data, created: !exists})
		}
	}
	return out, nil
}

// applyAppends writes what preflightAppends worked out. An existing
// file is rewritten in place (WriteFile keeps its mode, owner and other
// names); a new one gets the asset's mode and root:root.
func applyAppends(img *ext4edit.Image, edits []appendEdit) error {
	for _, e := range edits {
		if err := img.WriteFile(e.a.Path, e.data, e.a.Mode); err != nil {
			return err
		}
		if !e.created {
			continue
		}
		if err := img.Chmod(e.a.Path, e.a.Mode); err != nil {
			return err
		}
		if err := img.Lchown(e.a.Path, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// InjectGuestAgentsFile opens the ext4 image at path, injects the guest
// assets and commits. A rejected agent binary leaves the file untouched.
func InjectGuestAgentsFile(path string, opts InjectOptions) (err error) {
	// Check the agent before opening, so that a bad one does not even take
	// the image's lock.
	agent, err := openAgent(opts)
	if err != nil {
		return fmt.Errorf("inject guest agents: %w", err)
	}
	agent.f.Close()
	img, err := ext4edit.Open(path, nil)
	if err != nil {
		return fmt.Errorf("inject guest agents: %w", err)
	}
	defer func() {
		if cerr := img.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("inject guest agents: %w", cerr)
		}
	}()
	return InjectGuestAgents(img, opts)
}

// ancestors returns every ancestor directory of the given absolute paths
// (not "/" and not the paths themselves), deduplicated, shallow first and
// in name order within a depth.
func ancestors(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		for d := path.Dir(path.Clean("/" + p)); d != "/"; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if di != dj {
			return di < dj
		}
		return out[i] < out[j]
	})
	return out
}

// preflight checks, reading only, that the assets can be installed. It
// returns the ancestor directories that do not exist yet.
func preflight(img *ext4edit.Image, dirs, targets []string) (missing map[string]bool, err error) {
	missing = map[string]bool{}
	for _, d := range dirs {
		if missing[path.Dir(d)] {
			missing[d] = true
			continue
		}
		fi, err := img.Stat(d)
		switch {
		case err == nil && fi.IsDir():
			continue
		case err == nil:
			return nil, &fs.PathError{Op: "inject", Path: d, Err: fmt.Errorf("%w: exists as a %s, a directory is needed", ext4edit.ErrNotDir, kind(fi))}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
		// Absent: fine unless it is a symlink whose target is missing
		// (mkdir -p would fail on it too).
		if li, lerr := img.Lstat(d); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			target, _ := img.Readlink(d)
			return nil, &fs.PathError{Op: "inject", Path: d, Err: fmt.Errorf("%w: symlink to %q, which does not exist", fs.ErrNotExist, target)}
		}
		missing[d] = true
	}
	for _, p := range targets {
		if missing[path.Dir(p)] {
			continue
		}
		fi, err := img.Lstat(p)
		switch {
		case err == nil && fi.IsDir():
			return nil, &fs.PathError{Op: "inject", Path: p, Err: fmt.Errorf("%w: a directory is in the way", ext4edit.ErrIsDir)}
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	return missing, nil
}

func kind(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "non-directory"
}

// inject writes everything; preflight has passed.
func inject(img *ext4edit.Image, agent *agentFile, dirs []string, missing map[string]bool, files []guestassets.File, links []guestassets.Symlink) error {
	for _, d := range dirs {
		if !missing[d] {
			continue
		}
		if err := img.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := img.Lchown(d, 0, 0); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := clearPath(img, f.Path, func(fi fs.FileInfo) bool {
			// A regular file with one name is rewritten in place; a
			// symlink (WriteFile would follow it), a node or a file
			// shared with another name is replaced.
			ii, _ := fi.Sys().(*ext4edit.InodeInfo)
			return fi.Mode().IsRegular() && ii != nil && ii.LinksCount == 1
		}); err != nil {
			return err
		}
		if f.Companion {
			if err := writeAgent(img, f.Path, f.Mode, agent); err != nil {
				return err
			}
		} else if err := img.WriteFile(f.Path, f.Data, f.Mode); err != nil {
			return err
		}
		// WriteFile keeps an existing file's mode and owner: set both.
		if err := img.Chmod(f.Path, f.Mode); err != nil {
			return err
		}
		if err := img.Lchown(f.Path, 0, 0); err != nil {
			return err
		}
	}
	for _, l := range links {
		keep := false
		if err := clearPath(img, l.Path, func(fi fs.FileInfo) bool {
			if fi.Mode()&fs.ModeSymlink == 0 {
				return false
			}
			t, err := img.Readlink(l.Path)
			keep = err == nil && t == l.Target
			return keep
		}); err != nil {
			return err
		}
		if !keep {
			if err := img.Symlink(l.Target, l.Path); err != nil {
				return err
			}
		}
		if err := img.Lchown(l.Path, 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// clearPath removes what is at p unless keep says it may stay.
func clearPath(img *ext4edit.Image, p string, keep func(fs.FileInfo) bool) error {
	fi, err := img.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if keep(fi) {
		return nil
	}
	return img.Remove(p)
}

// writeAgent streams the agent binary into the image.
func writeAgent(img *ext4edit.Image, p string, mode fs.FileMode, agent *agentFile) error {
	if _, err := agent.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w, err := img.Create(p, mode)
	if err != nil {
		return err
	}
	// Whole 1 MiB reads: the editor gathers 1 MiB before it allocates, so
	// this feeds it in its own unit (io.Copy's 32 KiB would make it grow
	// its buffer step by step).
	n, err := io.CopyBuffer(w, struct{ io.Reader }{agent.f}, make([]byte, 1<<20))
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != agent.size {
		return fmt.Errorf("agent binary %s changed while being copied (%d bytes, expected %d)", agent.path, n, agent.size)
	}
	return nil
}

// agentFile is an open, validated agent binary.
type agentFile struct {
	f       *os.File
	path    string
	size    int64
	machine elf.Machine
	class   elf.Class
}

// openAgent opens and validates the agent binary opts names.
func openAgent(opts InjectOptions) (*agentFile, error) {
	p, err := opts.agentPath()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			hint := "set the agent path (InjectOptions.AgentPath, imagepull inject --agent)"
			if opts.AgentPath == "" {
				hint = "install it next to the running executable, or " + hint
			}
			return nil, fmt.Errorf("agent binary %s not found (build cmd/banger-vsock-agent with CGO_ENABLED=0 GOOS=linux; %s): %w", p, hint, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	a, err := validateAgent(f, p)
	if err != nil {
		f.Close()
		return nil, err
	}
	return a, nil
}

func validateAgent(f *os.File, p string) (*agentFile, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidAgent, p, fmt.Sprintf(format, args...))
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("agent binary: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, bad("not a regular file (%v)", st.Mode().Type())
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, bad("not an ELF executable (%v)", err)
	}
	switch ef.OSABI {
	case elf.ELFOSABI_NONE, elf.ELFOSABI_LINUX:
	default:
		return nil, bad("built for %v, not Linux", ef.OSABI)
	}
	switch ef.Type {
	case elf.ET_EXEC:
	case elf.ET_DYN:
		if !isPIE(ef) {
			return nil, bad("a shared library (ELF type ET_DYN without an interpreter), not an executable")
		}
	default:
		return nil, bad("not an executable (ELF type %v)", ef.Type)
	}
	return &agentFile{f: f, path: p, size: st.Size(), machine: ef.Machine, class: ef.Class}, nil
}

// isPIE tells a position-independent executable from a shared library:
// it has an interpreter or the DF_1_PIE flag.
func isPIE(ef *elf.File) bool {
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			return true
		}
	}
	if v, err := ef.DynValue(elf.DT_FLAGS_1); err == nil {
		for _, x := range v {
			if elf.DynFlag1(x)&elf.DF_1_PIE != 0 {
				return true
			}
		}
	}
	return false
}

// checkImageArch compares the agent's ELF machine with the image's shell.
func checkImageArch(img *ext4edit.Image, agent *agentFile) error {
	for _, probe := range []string{"bin/sh", "usr/bin/sh", "bin/busybox"} {
		f, err := img.FS().Open(probe)
		if err != nil {
			continue
		}
		ra, ok := f.(io.ReaderAt)
		var ef *elf.File
		if ok {
			ef, err = elf.NewFile(ra)
		}
		f.Close()
		if !ok || err != nil {
			continue // a script, or not a regular file: ask the next
		}
		if ef.Machine != agent.machine || ef.Class != agent.class {
			return fmt.Errorf("%w: %s is %s but the image's /%s is %s: build the agent with GOARCH=%s (or allow the mismatch)",
				ErrInvalidAgent, agent.path, archName(agent.machine, agent.class), probe, archName(ef.Machine, ef.Class), goarch(ef.Machine, ef.Class))
		}
		return nil
	}
	return nil
}

func archName(m elf.Machine, c elf.Class) string {
	bits := "32-bit"
	if c == elf.ELFCLASS64 {
		bits = "64-bit"
	}
	return fmt.Sprintf("%v %s", m, bits)
}

func goarch(m elf.Machine, c elf.Class) string {
	switch m {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_386:
		return "386"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		if c == elf.ELFCLASS64 {
			return "riscv64"
		}
	case elf.EM_PPC64:
		return "ppc64le"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loong64"
	}
	return "<the image's architecture>"
}

// FinalizeID names what DefaultFinalize(nil, opts) does to an image, for
// a pull cache's key (PullOptions.FinalizeID): the agent binary's digest,
// the guest assets' version (guestassets.Digest) and the init choice. Two
// pulls with equal IDs finalize equal images.
func (o InjectOptions) FinalizeID() (string, error) {
	a, err := openAgent(o)
	if err != nil {
		return "", err
	}
	defer a.f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(a.f, 0, 1<<62)); err != nil {
		return "", fmt.Errorf("agent binary: %w", err)
	}
	return fmt.Sprintf("inject agent=sha256:%x assets=%s init=%s arch-mismatch=%t", h.Sum(nil), guestassets.Digest(), o.Init, o.AllowArchMismatch), nil
}
