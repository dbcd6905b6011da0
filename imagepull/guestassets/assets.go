// Package guestassets is the one source of truth for what banger installs
// into a guest image so that its init system starts banger's agents at
// first boot. The file contents are embedded from the files/ directory
// (the systemd set) and initfiles/ (the other inits') of this package;
// the injector (imagepull.InjectGuestAgents), the tests and the
// documentation all read them from here. FilesFor, SymlinksFor and
// AppendsFor list what goes where for each Init; Files and Symlinks are
// the systemd set.
//
// Every init gets, owned by root:root:
//
//	/usr/local/bin/banger-vsock-agent                  0755  the agent binary (built from cmd/banger-vsock-agent, supplied at injection)
//	/usr/local/libexec/banger-network-bootstrap        0755  files/banger-network-bootstrap
//
// systemd (Systemd):
//
//	/etc/systemd/system/banger-network.service         0644  files/banger-network.service
//	/etc/systemd/system/banger-vsock-agent.service     0644  files/banger-vsock-agent.service
//	/etc/modules-load.d/banger-vsock.conf              0644  files/banger-vsock.conf
//	/etc/systemd/system/multi-user.target.wants/<unit> -> /etc/systemd/system/<unit> (what systemctl enable makes)
//
// sysvinit with sysv-rc (Sysvinit): LSB init scripts, the agent run under
// a restart loop (rc scripts have no respawn), the links update-rc.d
// defaults makes (see SymlinksFor for the sequence numbers), the vsock
// modules appended to /etc/modules for kmod's init script, and, where
// insserv has written them (a makefile-style boot, whose startpar runs
// only the scripts they name), both scripts added to its makefiles:
//
//	/etc/init.d/banger-network                         0755  initfiles/sysvinit-banger-network
//	/etc/init.d/banger-vsock-agent                     0755  initfiles/sysvinit-banger-vsock-agent
//	/usr/local/libexec/banger-vsock-agent-supervise    0755  initfiles/banger-vsock-agent-supervise
//	/etc/rc{2,3,4,5}.d/S01banger-network, S02banger-vsock-agent -> ../init.d/<name>
//	/etc/rc{0,1,6}.d/K01banger-vsock-agent, K02banger-network -> ../init.d/<name>
//	/etc/modules                                       lines added: the modules of files/banger-vsock.conf
//	/etc/init.d/.depend.start                          lines added: initfiles/sysvinit-depend-start (if it exists)
//	/etc/init.d/.depend.stop                           lines added: initfiles/sysvinit-depend-stop (if it exists)
//
// OpenRC (OpenRC; Alpine too, whose init is busybox but whose services
// are OpenRC's): openrc-run scripts, the agent under supervise-daemon
// with respawn, added to the default runlevel as rc-update does:
//
//	/etc/init.d/banger-network                         0755  initfiles/openrc-banger-network
//	/etc/init.d/banger-vsock-agent                     0755  initfiles/openrc-banger-vsock-agent
//	/etc/runlevels/default/<name> -> /etc/init.d/<name>
//	/etc/modules                                       lines added: the modules of files/banger-vsock.conf
//
// busybox init (Busybox): a sysinit entry (modules, then the network
// bootstrap) and a respawn entry for the agent's restart loop (busybox
// respawns at once; the loop waits between runs), added to /etc/inittab;
// an image without one gets busybox init's built-in defaults first
// (initfiles/busybox-inittab-default), since busybox stops using them
// once a table exists:
//
//	/usr/local/libexec/banger-vsock-agent-supervise    0755  initfiles/banger-vsock-agent-supervise
//	/usr/local/libexec/banger-busybox-sysinit          0755  initfiles/busybox-sysinit
//	/etc/inittab                                       lines added: initfiles/busybox-inittab-banger
//
// Lines are added once: a line already in the file is not added again,
// and the file's other bytes, mode and owner are kept.
//
// The network bootstrap reads NetworkConfigPath; see the comment at the top
// of files/banger-network-bootstrap for its keys and kernel parameters.
package guestassets

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
)

//go:embed files
var files embed.FS

// Paths of the assets inside the guest image.
const (
	// AgentName is the agent binary's file name, in the image and next to
	// the host executable that injects it.
	AgentName = "banger-vsock-agent"
	// AgentPath is where the agent binary is installed (the ExecStart of
	// banger-vsock-agent.service).
	AgentPath = "/usr/local/bin/" + AgentName
	// NetworkBootstrapPath is the network script (the ExecStart of
	// banger-network.service).
	NetworkBootstrapPath = "/usr/local/libexec/banger-network-bootstrap"
	// NetworkConfigPath is the KEY=VALUE file the network script reads.
	NetworkConfigPath = "/etc/banger/network.env"
	// UnitDir is where the units are installed.
	UnitDir = "/etc/systemd/system"
	// NetworkUnit and AgentUnit are the unit names.
	NetworkUnit = "banger-network.service"
	AgentUnit   = "banger-vsock-agent.service"
	// NetworkUnitPath and AgentUnitPath are the unit files.
	NetworkUnitPath = UnitDir + "/" + NetworkUnit
	AgentUnitPath   = UnitDir + "/" + AgentUnit
	// WantedBy is the target both units are enabled for, and WantsDir the
	// directory holding the enable symlinks.
	WantedBy = "multi-user.target"
	WantsDir = UnitDir + "/" + WantedBy + ".wants"
	// ModulesLoadPath lists the kernel modules systemd-modules-load loads.
	ModulesLoadPath = "/etc/modules-load.d/banger-vsock.conf"
)

// File is one regular file of the assets.
type File struct {
	Path string      // absolute path in the image
	Mode fs.FileMode // permission bits
	// Data is the content; nil for the agent binary, which the injector
	// supplies (Companion is then true).
	Data      []byte
	Companion bool
}

// Symlink is one enable symlink.
type Symlink struct {
	Path   string // absolute path of the link in the image
	Target string // absolute target, as systemctl enable writes it
}

// embedded returns the content of files/NAME.
func embedded(name string) []byte {
	b, err := files.ReadFile("files/" + name)
	if err != nil {
		panic("guestassets: missing embedded file " + name) // a build defect
	}
	return b
}

// Files returns every regular file in the order the injector writes them:
// the agent binary first (the largest, so a full image fails early), then
// the script, the units and the modules list. Each call returns fresh
// slices; callers may not rely on sharing.
func Files() []File {
	return []File{
		{Path: AgentPath, Mode: 0o755, Companion: true},
		{Path: NetworkBootstrapPath, Mode: 0o755, Data: NetworkBootstrap()},
		{Path: NetworkUnitPath, Mode: 0o644, Data: NetworkService()},
		{Path: AgentUnitPath, Mode: 0o644, Data: AgentService()},
		{Path: ModulesLoadPath, Mode: 0o644, Data: ModulesLoad()},
	}
}

// Symlinks returns the enable symlinks, one per unit.
func Symlinks() []Symlink {
	var out []Symlink
	for _, u := range []string{NetworkUnitPath, AgentUnitPath} {
		out = append(out, Symlink{Path: path.Join(WantsDir, path.Base(u)), Target: u})
	}
	return out
}

// NetworkBootstrap is the network bootstrap script (POSIX sh).
func NetworkBootstrap() []byte { return embedded("banger-network-bootstrap") }

// NetworkService is banger-network.service.
func NetworkService() []byte { return embedded(NetworkUnit) }

// AgentService is banger-vsock-agent.service.
func AgentService() []byte { return embedded(AgentUnit) }

// ModulesLoad is the modules-load.d file.
func ModulesLoad() []byte { return embedded("banger-vsock.conf") }

// FS exposes the embedded files (under "files/") for tests and tools.
func FS() fs.FS { return files }

// Digest identifies this version of every asset text (the systemd set and
// the per-init files, names and contents): "sha256:" and 64 hex digits.
// A pull cache keys finished images by it, so changing any asset makes
// new images instead of reusing old ones.
func Digest() string {
	h := sha256.New()
	for _, fsys := range []fs.FS{files, initFiles} {
		_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
			h.Write(b)
			return nil
		})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
